"""Every example in examples/ does what its docstring promises."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import trio

from examples.auth import app as auth_app
from examples.echo import app as echo_app

from .conftest import TIMEOUT, Transport, refused, server_close
from .services import free_port


async def test_echo(serve: Transport) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(echo_app) as server, server.websocket("/echo") as client:
            for message in ("hello", "wörld", ""):
                await client.send(message)
                assert await client.receive() == message


async def test_auth_accepts_the_right_key(serve: Transport) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(auth_app) as server, server.websocket("/secret?api_key=SECRET") as client:
            closed = await server_close(client)
    assert closed.code == 1000


@pytest.mark.parametrize("query", ["", "?api_key=wrong"])
async def test_auth_rejects_anything_else_with_403(serve: Transport, query: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(auth_app) as server:
            rejected = await refused(server, "/secret" + query)
    assert rejected.status == 403


async def test_login_answers_401_with_a_reason(serve: Transport) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(auth_app) as server:
            rejected = await refused(server, "/login")
            headers = {"Authorization": "Bearer SECRET"}
            async with server.websocket("/login", headers=headers) as client:
                assert await client.receive() == "welcome"
    assert rejected.status == 401
    assert rejected.body == b"a valid bearer token is required"
    assert rejected.headers["www-authenticate"] == "Bearer"


async def test_terminal_client_talks_to_the_echo_server() -> None:
    """examples/client.py, as a person would run it, against a real server."""
    from trio_boca.testing import LiveServer

    with trio.fail_after(TIMEOUT):
        async with LiveServer(echo_app) as server:
            url = f"ws://127.0.0.1:{server.port}/echo"
            result = await trio.run_process(
                [sys.executable, "examples/client.py", url],
                stdin=b"hello\nagain\n",
                capture_stdout=True,
                capture_stderr=True,
            )
    lines = result.stdout.decode().splitlines()
    assert lines[0] == f"connected to {url}; type a message, Ctrl-D to leave"
    assert "< hello" in lines and "< again" in lines


async def test_terminal_client_leaves_in_one_line_when_the_server_closes() -> None:
    from trio_boca.testing import LiveServer

    with trio.fail_after(TIMEOUT):
        async with LiveServer(echo_app) as server:
            url = f"ws://127.0.0.1:{server.port}/echo"
            client = await trio.lowlevel.open_process(
                [sys.executable, "examples/client.py", url],
                stdin=subprocess.PIPE,  # held open: the client is still reading the keyboard
                stdout=subprocess.PIPE,
            )
            assert client.stdout is not None
            output = b""
            while b"Ctrl-D" not in output:
                output += await client.stdout.receive_some()
        # The server has stopped: the client says how, and exits by itself.
        while chunk := await client.stdout.receive_some():
            output += chunk
        assert await client.wait() == 0
    assert output.decode().splitlines()[-1] == (
        "the server closed the connection: 1001 server shutting down"
    )


async def test_terminal_client_without_a_server_is_one_line() -> None:
    url = f"ws://127.0.0.1:{free_port()}/echo"  # nothing listens there
    with trio.fail_after(TIMEOUT):
        result = await trio.run_process(
            [sys.executable, "examples/client.py", url],
            stdin=b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert result.returncode == 1
    [line] = result.stderr.decode().splitlines()
    assert line.startswith(f"cannot connect to {url}: ")
    assert result.stdout == b""


async def test_clock_stops_when_its_client_leaves(serve: Transport) -> None:
    from datetime import datetime

    from examples.clock import app as clock_app

    stopped = trio.Event()

    class OnStop(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            stopped.set()

    clock_logger = logging.getLogger("examples.clock")
    handler = OnStop(logging.INFO)
    clock_logger.addHandler(handler)
    clock_logger.setLevel(logging.INFO)
    try:
        with trio.fail_after(TIMEOUT):
            async with serve(clock_app) as server:
                async with server.websocket("/clock") as client:
                    datetime.fromisoformat(await client.receive_text())
                with trio.fail_after(0.5):  # well before the next tick
                    await stopped.wait()
    finally:
        clock_logger.removeHandler(handler)


async def test_embedded_server_runs_beside_the_rest_of_the_program() -> None:
    from examples.embedded import main
    from trio_boca.testing import connect_websocket

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(main)
            async with connect_websocket(url) as ws:
                first = (await ws.receive_json())["latest"]
            await trio.sleep(0.25)
            async with connect_websocket(url) as ws:
                assert (await ws.receive_json())["latest"] > first
            nursery.cancel_scope.cancel()


async def test_cookie_auth_refuses_a_socket_without_a_session(serve: Transport) -> None:
    from examples.cookie_auth import app, sessions

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            anonymous = await refused(server, "/ws")
            assert (anonymous.status, anonymous.body) == (401, b"sign in first: /login?name=...")
            forged = await refused(server, "/ws", headers={"cookie": "session=guessed"})
            assert forged.status == 401
            hostile = await refused(server, "/ws", headers={"origin": "https://evil.test"})
            assert hostile.status == 403
    sessions.clear()


async def test_cookie_auth_signs_in_and_talks() -> None:
    from examples.cookie_auth import app, sessions
    from trio_boca.testing import TestClient

    with trio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            assert (await client.get("/login")).status_code == 400
            signed = await client.get("/login?name=ada")
            assert signed.text == "signed in as ada"
            cookie = signed.headers["set-cookie"].split(";", 1)[0]
            assert "HttpOnly" in signed.headers["set-cookie"]
            async with client.websocket("/ws", headers={"cookie": cookie}) as ws:
                await ws.send("hello")
                assert await ws.receive() == "ada: hello"
    sessions.clear()
