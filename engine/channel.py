"""D-ID's data-channel events as text: ``subject`` or ``subject:{json}`` (``stream/started``,
``stream/done``, ``stream/error``, ``stream/ready``), written by the server and read by the client.

What it must never do: raise on text a peer sent; what does not parse is a subject with its raw payload.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["event_payload", "event_text", "split_event"]


def event_text(subject: str, payload: object | None = None) -> str:
    """The message for `subject`, with `payload` as compact JSON after a colon when there is one."""
    if payload is None:
        return subject
    return f"{subject}:{json.dumps(payload, separators=(',', ':'))}"


def split_event(text: str) -> tuple[str, str]:
    """(subject, payload text) of a message; the payload is "" when there is none."""
    subject, _, payload = text.partition(":")
    return subject, payload


def event_payload(payload: str) -> Any:
    """A payload's JSON, or its text as is when it is not JSON."""
    try:
        return json.loads(payload)
    except ValueError:
        return payload
