"""The examples of docs/testing.md, which includes them from here."""

# --8<-- [start:echo]
import trio

from examples.echo import app
from trio_boca.testing import LiveServer, TestClient


async def test_echo_in_process() -> None:
    with trio.fail_after(5):
        async with TestClient(app) as client, client.websocket("/echo") as ws:
            await ws.send("hello")
            assert await ws.receive() == "hello"


# --8<-- [end:echo]


# --8<-- [start:live]
async def test_echo_over_a_socket() -> None:
    with trio.fail_after(5):
        async with LiveServer(app) as server, server.websocket("/echo") as ws:
            await ws.send("hello")
            assert await ws.receive() == "hello"


# --8<-- [end:live]
