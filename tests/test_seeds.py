"""The examples of Bocadillo's two WebSocket guide pages, as written there.

Only the imports differ: `bocadillo` became `trio_boca` (and `API`, the old
name of `App`, is imported under that name). Each example is then driven
in-process and over hypercorn.
"""

from __future__ import annotations

import pytest
import trio

from trio_boca import App, WebSocket, WebSocketDisconnect
from trio_boca import App as API

from .conftest import TIMEOUT, Transport, refused, server_close

# ---- "Handling connections" ---------------------------------------------

app = App()


@app.websocket_route("/echo")
async def echo(ws: WebSocket): ...


@app.websocket_route("/", auto_accept=False)
async def accept_close(ws: WebSocket):
    print("Going to accept connection…")
    await ws.accept()
    ...
    await ws.close()
    print("Connection closed normally!")


@app.websocket_route("/hello", auto_accept=False)
async def hello(ws: WebSocket):
    print("Going to accept connection…")
    async with ws:
        ...
    print("Connection closed normally!")


# (The API-key decorator example of this page is examples/auth.py.)

# ---- "Accepting and closing connections" --------------------------------

api = API()


@api.websocket_route("/hello")
async def hello_api(ws: WebSocket):
    async with ws:
        # Connection accepted.
        # Receive or send messages…
        await ws.send("Hello, world!")
    # Connection closed.
    print("Connection closed as expected")


rough_api = API()


@rough_api.websocket_route("/hello")
async def hello_rough(ws: WebSocket):
    await ws.accept()
    try:
        await ws.send("Hello, world!")
    except WebSocketDisconnect as exc:
        if exc.code in ws.caught_close_codes:
            print("Connection closed as expected")
        else:
            raise
    except:  # as in the guide
        await ws.close(1011)
        raise
    else:
        await ws.close()


@api.websocket_route("/secret")
async def secret(ws: WebSocket):
    if ws.query_params.get("api_key") != "SECRET":
        await ws.reject()
    async with ws:
        # Proceed with an authorized client…
        pass


# ---- the tests ----------------------------------------------------------


async def closes_with(server, path: str) -> int:
    async with server.websocket(path) as client:
        closed = await server_close(client)
    return closed.code


async def test_echo_placeholder_view_is_accepted_and_closed(serve: Transport) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            assert await closes_with(server, "/echo") == 1000


@pytest.mark.parametrize("path", ["/", "/hello"])
async def test_manual_handling_prints_and_closes_normally(
    serve: Transport, capsys: pytest.CaptureFixture[str], path: str
) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            assert await closes_with(server, path) == 1000
    out = capsys.readouterr().out
    assert out == "Going to accept connection…\nConnection closed normally!\n"


async def test_context_manager_page_hello(
    serve: Transport, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(api) as server, server.websocket("/hello") as client:
            assert await client.receive() == "Hello, world!"
            closed = await server_close(client)
    assert closed.code == 1000
    assert capsys.readouterr().out == "Connection closed as expected\n"


async def test_rough_equivalent_runs_on_an_auto_accept_route(serve: Transport) -> None:
    # Written for views that accept by hand; its accept() is a no-op here.
    with trio.fail_after(TIMEOUT):
        async with serve(rough_api) as server, server.websocket("/hello") as client:
            assert await client.receive() == "Hello, world!"
            closed = await server_close(client)
    assert closed.code == 1000


async def test_secret_with_a_key_is_accepted(serve: Transport) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(api) as server:
            assert await closes_with(server, "/secret?api_key=SECRET") == 1000


async def test_secret_without_a_key_cannot_reject_after_the_automatic_accept(
    serve: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    """This example predates auto_accept: on an auto-accept route its reject()
    comes after the handshake was answered. Bocadillo then sends an invalid
    close code 403; we refuse with a RuntimeError that says what to change,
    and the client gets 1011."""
    with trio.fail_after(TIMEOUT):
        async with serve(api) as server:
            assert await closes_with(server, "/secret") == 1011
    [error] = [r for r in caplog.records if r.name == "trio_boca" and r.levelname == "ERROR"]
    assert error.exc_info is not None
    assert "auto_accept=False" in str(error.exc_info[1])


async def test_secret_as_a_manual_route_rejects_with_403(serve: Transport) -> None:
    manual = API()
    manual.websocket_route("/secret", auto_accept=False)(secret)
    with trio.fail_after(TIMEOUT):
        async with serve(manual) as server:
            rejected = await refused(server, "/secret")
    assert rejected.status == 403
