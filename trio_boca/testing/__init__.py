"""Testing trio_boca apps: in-process (`TestClient`) and over a real socket (`LiveServer`).

Both hand a test a WebSocket with the same API, so one test body can run
against either.
"""

from ._client import TestClient, TestResponse, TestWebSocket
from ._live import LiveServer, LiveWebSocket, connect_websocket
from ._session import ClientWebSocket, WebSocketRejected

__all__ = [
    "ClientWebSocket",
    "LiveServer",
    "LiveWebSocket",
    "TestClient",
    "TestResponse",
    "TestWebSocket",
    "WebSocketRejected",
    "connect_websocket",
]
