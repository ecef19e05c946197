"""The client's side of HTTP: ports that carry `engine.ports.HttpRequest` to a server, over the network
(`network`, aiohttp), into an aiohttp app in the same process (`inprocess`), or with faults injected
(`faulty`). Users import these from `talkstream`."""
