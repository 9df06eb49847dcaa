"""Accepting, closing and rejecting: contract rows 1 to 4, in-process and over hypercorn."""

from __future__ import annotations

import logging
from collections.abc import Awaitable

import pytest
import trio

from trio_boca import App, WebSocket
from trio_boca.testing import WebSocketRejected

from .asgi import Server
from .conftest import TIMEOUT, Transport, refused, server_close


async def test_auto_mode_accepts_before_the_view_and_closes_1000_on_return(
    serve: Transport,
) -> None:
    app = App()

    @app.websocket_route("/auto")
    async def auto(ws: WebSocket) -> None:
        await ws.send(ws.connection_state.value)

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server, server.websocket("/auto") as client:
            assert await client.receive() == "CONNECTED"
            closed = await server_close(client)
    assert closed.code == 1000  # never hypercorn's 1011 for an app that returns


async def test_manual_accept_and_close_send_code_and_reason(serve: Transport) -> None:
    app = App()

    @app.websocket_route("/manual", auto_accept=False)
    async def manual(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send("hello")
        await ws.close(4001, "see you")

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server, server.websocket("/manual") as client:
            assert await client.receive() == "hello"
            closed = await server_close(client)
    assert (closed.code, closed.reason) == (4001, "see you")


async def test_subprotocol_and_accept_headers(serve: Transport) -> None:
    app = App()

    @app.websocket_route("/proto", auto_accept=False)
    async def proto(ws: WebSocket) -> None:
        await ws.accept(subprotocol="chat.v2")
        await ws.send(",".join(ws.subprotocols))

    with trio.fail_after(TIMEOUT):
        async with (
            serve(app) as server,
            server.websocket("/proto", subprotocols=["chat.v1", "chat.v2"]) as client,
        ):
            assert client.subprotocol == "chat.v2"
            assert await client.receive() == "chat.v1,chat.v2"


async def test_context_manager_accepts_and_closes_1000(serve: Transport) -> None:
    app = App()
    after_block = trio.Event()

    @app.websocket_route("/hello", auto_accept=False)
    async def hello(ws: WebSocket) -> None:
        async with ws:
            await ws.send("Hello, world!")
        after_block.set()

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server, server.websocket("/hello") as client:
            assert await client.receive() == "Hello, world!"
            closed = await server_close(client)
            await after_block.wait()
    assert closed.code == 1000


async def test_context_manager_closes_1011_when_an_exception_escapes(serve: Transport) -> None:
    app = App()
    seen: list[BaseException] = []

    @app.websocket_route("/oops", auto_accept=False)
    async def oops(ws: WebSocket) -> None:
        try:
            async with ws:
                raise KeyError("oops")
        except KeyError as exc:
            # The exception left the block: the client already has its 1011.
            seen.append(exc)
            assert ws.close_code == 1011

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server, server.websocket("/oops") as client:
            closed = await server_close(client)
    assert closed.code == 1011
    assert len(seen) == 1


async def test_accept_then_context_manager_does_not_accept_twice(serve: Transport) -> None:
    app = App()

    @app.websocket_route("/both", auto_accept=False)
    async def both(ws: WebSocket) -> None:
        await ws.accept()
        async with ws:
            await ws.send("inside")

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server, server.websocket("/both") as client:
            assert await client.receive() == "inside"
            closed = await server_close(client)
    assert closed.code == 1000


async def test_context_manager_in_auto_mode_is_a_harmless_no_op_accept(serve: Transport) -> None:
    app = App()

    @app.websocket_route("/legacy")
    async def legacy(ws: WebSocket) -> None:
        async with ws:
            await ws.send("still fine")

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server, server.websocket("/legacy") as client:
            assert await client.receive() == "still fine"
            closed = await server_close(client)
    assert closed.code == 1000


async def refusal(call: Awaitable[None]) -> str:
    """The message of the RuntimeError that `call` must raise."""
    with pytest.raises(RuntimeError) as refused:
        await call
    return str(refused.value)


async def test_misuse_raises_runtime_errors_naming_the_state(serve: Transport) -> None:
    app = App()

    @app.websocket_route("/misuse", auto_accept=False)
    async def misuse(ws: WebSocket) -> None:
        early = [await refusal(ws.send("too early")), await refusal(ws.close())]
        await ws.accept()
        twice = [await refusal(ws.accept()), await refusal(ws.reject())]
        for error in early + twice:
            await ws.send(error)
        await ws.close(4000, "first")
        late = [await refusal(ws.close()), await refusal(ws.send("too late"))]
        await ws.ensure_closed()
        await ws.ensure_closed(1011)
        assert late == [
            "cannot close() a WebSocket in state CLOSED: "
            "it is already closed; use ensure_closed() when unsure",
            "cannot send() a WebSocket in state CLOSED",
        ]

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server, server.websocket("/misuse") as client:
            assert await client.receive() == (
                "cannot send() a WebSocket in state CONNECTING: accept() it first"
            )
            assert await client.receive() == (
                "cannot close() a WebSocket in state CONNECTING: refuse a handshake with reject()"
            )
            assert await client.receive() == (
                "cannot accept() a WebSocket in state CONNECTED: it is already accepted"
            )
            assert await client.receive() == (
                "cannot reject() a WebSocket in state CONNECTED: reject() refuses a handshake; "
                "end an accepted connection with close(), "
                "or declare the route with auto_accept=False to decide before accepting"
            )
            # No 403 close frame after accept, no second close: just the first.
            closed = await server_close(client)
    assert (closed.code, closed.reason) == (4000, "first")


async def test_reject_before_accept_is_http_403(serve: Transport) -> None:
    app = App()

    @app.websocket_route("/no", auto_accept=False)
    async def no(ws: WebSocket) -> None:
        await ws.reject()

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            rejected = await refused(server, "/no")
    assert rejected.status == 403


async def test_reject_with_status_body_and_headers(serve: Transport) -> None:
    app = App()

    @app.websocket_route("/login", auto_accept=False)
    async def login(ws: WebSocket) -> None:
        await ws.reject(401, body=b"token expired", headers={"WWW-Authenticate": "Bearer"})

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            rejected = await refused(server, "/login")
    assert rejected.status == 401
    assert rejected.body == b"token expired"
    assert rejected.headers["www-authenticate"] == "Bearer"


async def test_reject_without_the_denial_extension_falls_back_to_403() -> None:
    from trio_boca.testing import TestClient

    app = App()

    @app.websocket_route("/login", auto_accept=False)
    async def login(ws: WebSocket) -> None:
        await ws.reject(401, body=b"token expired")

    with trio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            session = client.websocket("/login")
            # Play a server that does not offer websocket.http.response.
            del session._scope["extensions"]["websocket.http.response"]
            with pytest.raises(WebSocketRejected) as rejected:
                async with session:
                    pass  # pragma: no cover
    assert (rejected.value.status, rejected.value.body) == (403, b"")


async def test_unknown_path_or_unconvertible_parameter_is_refused_with_404(
    serve: Transport,
) -> None:
    app = App()

    @app.websocket_route("/seats/{seat:int}")
    async def seats(ws: WebSocket, seat: int) -> None:  # pragma: no cover
        pass

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            unknown = await refused(server, "/nowhere")
            not_an_int = await refused(server, "/seats/twelve")
    assert unknown.status == not_an_int.status == 404


async def test_path_parameters_reach_the_view(serve: Transport) -> None:
    app = App()

    @app.websocket_route("/rooms/{room}/{seat:int}")
    async def rooms(ws: WebSocket, room: str, seat: int) -> None:
        assert ws.path_params == {"room": room, "seat": seat}
        await ws.send_json({"room": room, "seat": seat, "q": ws.query_params.get("q")})

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server, server.websocket("/rooms/lobby/12?q=x%20y") as client:
            assert await client.receive_json() == {"room": "lobby", "seat": 12, "q": "x y"}


async def test_view_reads_url_headers_and_client(serve: Transport) -> None:
    app = App()

    @app.websocket_route("/who")
    async def who(ws: WebSocket) -> None:
        assert ws.client is not None
        await ws.send_json(
            {"path": ws.url.path, "scheme": ws.url.scheme, "agent": ws.headers.get("x-agent")}
        )

    with trio.fail_after(TIMEOUT):
        async with (
            serve(app) as server,
            server.websocket("/who", headers={"X-Agent": "tests"}) as client,
        ):
            got = await client.receive_json()
    assert got == {"path": "/who", "scheme": "ws", "agent": "tests"}


async def test_close_refuses_codes_and_reasons_a_server_may_not_send(serve: Transport) -> None:
    app = App()

    @app.websocket_route("/codes")
    async def codes(ws: WebSocket) -> None:
        for code in (403, 1005, 1006, 1010, 1015, 2999, 5000):
            with pytest.raises(ValueError, match=f"{code} is not a close code"):
                await ws.close(code)
        with pytest.raises(ValueError, match="123 bytes"):
            await ws.close(1000, "é" * 62)
        await ws.close(4999, "é" * 61)  # nothing above changed the state

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server, server.websocket("/codes") as client:
            closed = await server_close(client)
    assert (closed.code, closed.reason) == (4999, "é" * 61)


@pytest.mark.parametrize("failure", [AttributeError, trio.BrokenResourceError])
async def test_an_accept_the_server_fails_to_send_loses_that_connection_only(
    failure: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 14, defect 2: the 101 was counted, and the state moved on, before
    the accept went out; when the server's send raised (hypercorn's parser
    failing inside it), the close that followed failed too, outside the
    connection's exit path, and `metrics.open` stayed raised for good. Now
    an answer is counted once it has gone out, and a server's send that
    fails marks the transport broken: nothing more is written to it."""
    app = App()
    ran = False

    @app.websocket_route("/x")
    async def view(ws: WebSocket) -> None:
        nonlocal ran
        ran = True
        async for message in ws:
            await ws.send(message)

    server = Server(app, "/x")
    server.fail_send = failure
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.run)  # raises out of here if the app does
            await server.connect()
            await server.disconnect(1006)
            await server.done.wait()
    tally = app.metrics.route("/x")
    assert (tally.open, dict(tally.handshakes), server.sent) == (0, {}, [])
    assert ran  # the view ran, and learnt from receive() that the client was gone
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    if failure is AttributeError:  # not a transport's error: said once, with its traceback
        assert warnings == [
            "WebSocket '/x': the server failed to send websocket.accept; the connection is lost"
        ]
    else:
        assert warnings == []
