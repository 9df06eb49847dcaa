"""Testing a trio_boca app under anyio's pytest plugin, on the trio backend.

For a project whose async tests already use anyio's plugin (it comes with
`pip install anyio`): no `trio_mode`; mark the tests `anyio` and choose the
trio backend with an `anyio_backend` fixture. pytest-trio's way (a `trio`
mark, or `trio_mode = true`) works beside it in the same project.
"""

import pytest
import sniffio
import trio

from trio_boca import App, WebSocket
from trio_boca.testing import LiveServer, TestClient

app = App()


@app.websocket_route("/echo")
async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


@pytest.fixture
def anyio_backend() -> str:
    return "trio"  # trio_boca runs on Trio; anyio's asyncio backend cannot run it


@pytest.mark.anyio
async def test_under_anyio() -> None:
    assert sniffio.current_async_library() == "trio"
    with trio.fail_after(5):
        async with TestClient(app) as client, client.websocket("/echo") as ws:
            await ws.send("hi")
            assert await ws.receive() == "hi"


@pytest.mark.trio
async def test_under_pytest_trio() -> None:
    with trio.fail_after(5):
        async with LiveServer(app) as server, server.websocket("/echo") as ws:
            await ws.send("hi")
            assert await ws.receive() == "hi"
