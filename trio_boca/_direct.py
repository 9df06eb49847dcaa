"""An ASGI extension: a WebSocket's messages handed straight to the app.

Under any ASGI server a WebSocket's messages travel server -> a queue ->
the app's `receive()`. trio_boca's connection must read them all the time
(to notice a client that leaves while its view only sends), so under such a
server it runs a reader task of its own: one more task, and one more queue
hop, per connection. trio_boca's own server offers this extension instead.
Its task for the connection already reads the socket; with the extension it
hands each message to the connection's inbox itself.

The contract, in the scope's `extensions`:

    scope["extensions"][EXTENSION] = handle    # the server's, one per connection
    handle.attach(sink)                         # the app's, before it accepts

From then on, the server does not queue `websocket.receive` or
`websocket.disconnect` for `receive()`; it calls, from its own task:

- `await sink.deliver(message)` for each `websocket.receive` event, in order.
  It may wait: that is backpressure, and the server reads nothing meanwhile.
- `sink.left(code, reason, ended_by)` once, when the connection is over on
  the client's side: the client's close code and reason, or the server's own
  end (`ended_by`: one of ENDINGS) with the code it closed with.
- `sink.shutdown()` when the server stops: the app should close (1001).

`handle.write_timeout` and `handle.close_timeout` may be set by the app
before it accepts: how long the server lets one write, and the closing
handshake, take.

This module is shared by the server and the core and imports neither.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Protocol

#: The extension's key in `scope["extensions"]`.
EXTENSION = "trio_boca.direct"

#: Why the server itself ended a connection: the `ended_by` of `left()`.
ENDINGS = ("keepalive", "write_timeout", "bad_input")


class Sink(Protocol):
    """What the app attaches: the receiving end of a connection."""

    async def deliver(self, message: MutableMapping[str, Any]) -> None: ...

    def left(self, code: int, reason: str, ended_by: str | None = None) -> None: ...

    def shutdown(self) -> None: ...
