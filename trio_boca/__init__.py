"""trio_boca: a Trio-native web framework built around Bocadillo's WebSocket model."""

from .app import App
from .broadcast import Broadcast
from .http import HTTPError, Request, Response
from .websockets import WebSocket, WebSocketDisconnect

__all__ = [
    "App",
    "Broadcast",
    "HTTPError",
    "Request",
    "Response",
    "WebSocket",
    "WebSocketDisconnect",
]
__version__ = "0.1.0"
