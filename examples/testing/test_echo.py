"""A test file for your own app, using the fixtures trio_boca's pytest plugin adds.

Needs only `pip install "trio_boca[testing]"` and, in pyproject.toml,
`trio_mode = true` under `[tool.pytest.ini_options]`.
"""

import pytest
import trio

from trio_boca import App, Request, Response, WebSocket
from trio_boca.testing import LiveServer, TestClient

echo = App()


@echo.route("/")
async def index(req: Request, res: Response) -> None:
    res.text = "hello"


@echo.websocket_route("/echo")
async def echo_view(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


@pytest.fixture
def app() -> App:
    return echo  # the plugin's `client` and `live_server` serve this


async def test_in_process(client: TestClient) -> None:
    with trio.fail_after(5):
        assert (await client.get("/")).text == "hello"
        async with client.websocket("/echo") as ws:
            await ws.send("hi")
            assert await ws.receive() == "hi"


async def test_over_a_socket(live_server: LiveServer) -> None:
    with trio.fail_after(5):
        async with live_server.websocket("/echo") as ws:
            await ws.send("hi")
            assert await ws.receive() == "hi"
