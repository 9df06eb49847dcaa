"""How a route's messages are read and written: the four message types.

    "text"   str            <-> a text frame
    "bytes"  bytes          <-> a binary frame
    "json"   any JSON value <-> a text frame (read from text or binary)
    "event"  the raw ASGI websocket.receive / websocket.send event

A frame the route cannot read is the client's error, not the view's: it
raises `BadMessage` with the close code it calls for (1003, 1007).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Literal

Message = MutableMapping[str, Any]
MessageType = Literal["text", "bytes", "json", "event"]
MESSAGE_TYPES: tuple[MessageType, ...] = ("text", "bytes", "json", "event")


class BadMessage(Exception):
    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


def decode(event: Message, kind: MessageType) -> Any:
    if kind == "event":
        return event
    text, data = event.get("text"), event.get("bytes")
    if kind == "text":
        if text is None:
            raise BadMessage(1003, "expected a text message, got binary")
        return text
    if kind == "bytes":
        if data is None:
            raise BadMessage(1003, "expected a binary message, got text")
        return data
    try:
        return json.loads(text if text is not None else (data or b""))
    except ValueError as exc:
        raise BadMessage(1007, f"invalid JSON: {exc}"[:123]) from None
    except RecursionError:  # "[[[[...": a few kB a client may send to any JSON route
        raise BadMessage(1007, "invalid JSON: nested too deeply") from None


def encode(value: Any, kind: MessageType) -> Message:
    if kind == "text":
        if not isinstance(value, str):
            raise TypeError(f"a text message must be str, not {type(value).__name__}")
        return {"type": "websocket.send", "text": value}
    if kind == "bytes":
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"a binary message must be bytes, not {type(value).__name__}")
        return {"type": "websocket.send", "bytes": bytes(value)}
    if kind == "json":
        return {"type": "websocket.send", "text": json.dumps(value)}
    if not (isinstance(value, Mapping) and value.get("type") == "websocket.send"):
        raise TypeError("an 'event' message must be an ASGI websocket.send event (a dict)")
    return dict(value)


def encode_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
) -> list[tuple[bytes, bytes]]:
    if headers is None:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs]
