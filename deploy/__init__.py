"""The deployment files `talkstream cluster` starts from (HAProxy, Redis, coturn, systemd): data, no code."""
