"""What one run of the server is told: where to listen, and its limits."""

from __future__ import annotations

import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    """The server's settings; `serve()` builds one from its keyword arguments."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: Serve on this inherited listening socket instead of binding (workers).
    fd: int | None = None
    #: Serve TLS with this context.
    ssl_context: ssl.SSLContext | None = None
    #: How long a stop may take before what is still open is cut.
    shutdown_timeout: float = 5.0
    #: How long a connection may wait for a request, and then for the rest
    #: of its head once it began: a silent socket, or one that trickles its
    #: headers, is closed after it.
    idle_timeout: float = 5.0
    #: The largest request head (request line and headers), in bytes: 431 beyond.
    max_header_size: int = 16 * 1024
    #: The largest WebSocket message, in bytes: 1009 beyond.
    max_message_size: int = 16 * 1024 * 1024
    #: Ping a silent WebSocket client after this many seconds (0: never)...
    ping_interval: float = 20.0
    #: ...and close it (1011) if it is still silent this long after the ping (0: never).
    ping_timeout: float = 20.0
    #: Accept permessage-deflate, without context takeover.
    compression: bool = False
    #: Longest a write may take, unless the app says otherwise: then the
    #: connection is aborted (a client that stopped reading).
    write_timeout: float = 30.0
    #: Longest the WebSocket closing handshake may take once begun.
    close_timeout: float = 5.0
    #: The listen queue's length.
    backlog: int = 2048
