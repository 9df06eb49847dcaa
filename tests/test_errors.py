"""Exceptions and client close codes: contract rows 5 and 6."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

import pytest
import trio

from trio_boca import App, WebSocket, WebSocketDisconnect
from trio_boca._errors import leaves
from trio_boca.testing import TestClient

from .asgi import Server
from .conftest import TIMEOUT, Transport, no_server_errors, records, refused, server_close

ViewFn = Callable[..., Awaitable[None]]


def record_escape(escaped: list[BaseException]) -> Callable[[ViewFn], ViewFn]:
    """Wrap a view to record what propagates out of it."""

    def decorate(view: ViewFn) -> ViewFn:
        @wraps(view)
        async def wrapper(ws: WebSocket, **params: Any) -> None:
            try:
                await view(ws, **params)
            except BaseException as exc:
                escaped.append(exc)
                raise

        return wrapper

    return decorate


async def test_exception_after_accept_closes_1011_and_is_logged_once(
    serve: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()

    @app.websocket_route("/crash")
    async def crash(ws: WebSocket) -> None:
        await ws.send("about to fail")
        raise ValueError("the view broke")

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server, server.websocket("/crash") as client:
            assert await client.receive() == "about to fail"
            closed = await server_close(client)
    assert closed.code == 1011
    [error] = records(caplog, logging.ERROR)
    assert error.exc_info is not None and isinstance(error.exc_info[1], ValueError)
    assert "/crash" in error.getMessage()
    assert no_server_errors(caplog)  # hypercorn did not log it a second time


async def test_exception_before_accept_is_http_500(
    serve: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()

    @app.websocket_route("/early", auto_accept=False)
    async def early(ws: WebSocket) -> None:
        raise LookupError("no such user")

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            rejected = await refused(server, "/early")
    assert rejected.status == 500
    [error] = records(caplog, logging.ERROR)
    assert error.exc_info is not None and isinstance(error.exc_info[1], LookupError)
    assert no_server_errors(caplog)


async def test_a_normal_client_close_ends_the_view_quietly(
    serve: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()
    escaped: list[BaseException] = []
    finished = trio.Event()

    @app.websocket_route("/chat")
    @record_escape(escaped)
    async def chat(ws: WebSocket) -> None:
        try:
            async with ws:
                async for message in ws:
                    await ws.send(message)
        finally:
            finished.set()

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            async with server.websocket("/chat") as client:
                await client.send("hi")
                assert await client.receive() == "hi"
                await client.close(1000)
            await finished.wait()
    assert escaped == []
    assert records(caplog, logging.WARNING) == records(caplog, logging.ERROR) == []


@pytest.mark.parametrize("style", ["async with", "async for", "receive"])
async def test_an_uncaught_close_code_propagates_and_is_logged_once_without_traceback(
    serve: Transport, caplog: pytest.LogCaptureFixture, style: str
) -> None:
    app = App()
    escaped: list[BaseException] = []
    finished = trio.Event()

    @app.websocket_route("/strict", caught_close_codes=[1000])
    @record_escape(escaped)
    async def strict(ws: WebSocket) -> None:
        try:
            if style == "async with":
                async with ws:
                    await ws.receive()
            elif style == "async for":
                async for _ in ws:
                    pass
            else:
                await ws.receive()
        finally:
            finished.set()

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            async with server.websocket("/strict") as client:
                await client.close(4002, "bye")
            await finished.wait()
    # Bare hypercorn 0.18 reports every client close as 1006 and drops the
    # reason; trio_boca's serve() and the test client pass them through.
    expected = (
        WebSocketDisconnect(4002, "bye") if serve.real_close_codes else WebSocketDisconnect(1006)
    )
    [exc] = escaped
    assert isinstance(exc, WebSocketDisconnect)
    assert (exc.code, exc.reason) == (expected.code, expected.reason)
    [warning] = records(caplog, logging.WARNING)
    assert warning.exc_info is None
    assert str(expected.code) in warning.getMessage()
    assert records(caplog, logging.ERROR) == []


async def test_test_client_reraises_view_exceptions_by_default() -> None:
    app = App()

    @app.websocket_route("/crash")
    async def crash(ws: WebSocket) -> None:
        raise ValueError("the view broke")

    @app.websocket_route("/early", auto_accept=False)
    async def early(ws: WebSocket) -> None:
        raise LookupError("before accept")

    with trio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            with pytest.raises(ValueError, match="the view broke"):
                async with client.websocket("/crash") as ws:
                    await ws.receive()
            # Also when the test never reads: raised on leaving the block.
            with pytest.raises(ValueError, match="the view broke"):
                async with client.websocket("/crash"):
                    pass
            with pytest.raises(LookupError, match="before accept"):
                async with client.websocket("/early"):
                    pass  # pragma: no cover


async def test_a_view_must_be_async_and_types_must_be_known() -> None:
    app = App()

    def sync_view(ws: WebSocket) -> None:  # pragma: no cover
        pass

    with pytest.raises(TypeError, match="sync_view"):
        app.websocket_route("/sync")(sync_view)  # type: ignore[type-var]
    with pytest.raises(ValueError, match="receive_type='xml'"):
        app.websocket_route("/xml", receive_type="xml")  # type: ignore[arg-type]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_or_system_exit_in_a_view_is_not_a_crash(
    stop: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    """The process is stopping: the client gets 1001 "server shutting down",
    nothing is logged as the view's failure, and the exception goes on up."""
    app = App()

    @app.websocket_route("/stop")
    async def stopping(ws: WebSocket) -> None:
        await ws.receive()
        raise stop()

    server = Server(app, "/stop")

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.run)
                await server.connect()
                await server.text("go")
                await server.wait_for("websocket.close")
                await server.disconnect(1000)  # the client answers the close

    with pytest.raises(BaseException) as raised:
        trio.run(main)
    assert [type(e) for e in leaves(raised.value)] == [stop]
    assert server.close_code() == 1001
    assert records(caplog, logging.ERROR) == []


@pytest.mark.parametrize("where", ["reader", "exit path", "drain"])
async def test_a_keyboard_interrupt_always_goes_on_up_bare(where: str) -> None:
    """Found in review: a KeyboardInterrupt landing in the connection's reader
    or exit path left App.__call__ inside an exception group, which a server
    logs as the app's error and swallows (Ctrl-C lost); and the view's own
    was dropped when the server stopped during the drain after its 1001."""
    app = App(close_timeout=5)

    @app.websocket_route("/x")
    async def view(ws: WebSocket) -> None:
        if where == "drain":
            raise KeyboardInterrupt
        async for _ in ws:
            if where == "exit path":
                return  # the close that follows gets the Ctrl-C

    server = Server(app, "/x")
    receive, send = server._receive, server._send
    taken = 0

    async def interrupted_receive() -> dict[str, Any]:
        nonlocal taken
        taken += 1
        if where == "reader" and taken == 3:  # connect, one message, then Ctrl-C
            raise KeyboardInterrupt
        return await receive()

    async def interrupted_send(message: dict[str, Any]) -> None:
        if where == "exit path" and message["type"] == "websocket.close":
            raise KeyboardInterrupt
        await send(message)

    server._receive = interrupted_receive  # type: ignore[method-assign]
    server._send = interrupted_send  # type: ignore[method-assign]
    raised: list[BaseException] = []

    async def run() -> None:
        try:
            await server.run()
        except BaseException as exc:  # what the server would see
            raised.append(exc)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await server.connect()
            await server.text("a")
            if where == "drain":
                await server.wait_for("websocket.close")  # the client never answers
                await trio.sleep(0.1)
                nursery.cancel_scope.cancel()  # the server stops meanwhile
            else:
                await server.done.wait()
    [exc] = raised
    assert isinstance(exc, KeyboardInterrupt), repr(exc)


async def test_deeply_nested_json_is_bad_input_not_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found in review: json.loads raises RecursionError, not ValueError, on
    "[[[[...": ten kilobytes from any client made the view "fail" at ERROR."""
    app = App()

    @app.websocket_route("/j", value_type="json")
    async def view(ws: WebSocket) -> None:
        async for _ in ws:
            pass

    with trio.fail_after(TIMEOUT):
        async with TestClient(app) as client, client.websocket("/j") as ws:
            await ws.send("[" * 5000 + "]" * 5000)
            closed = await server_close(ws)
    assert (closed.code, closed.reason) == (1007, "invalid JSON: nested too deeply")
    assert records(caplog, logging.ERROR) == []
