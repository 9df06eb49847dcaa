"""Who may connect: origins, checks before accept, limits, proxies, message size."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import psutil
import pytest
import trio

from trio_boca import App, Request, Response, WebSocket
from trio_boca.testing import LiveServer, TestClient, WebSocketRejected

from .conftest import TIMEOUT, Transport, echo_app, records, refused, server_close
from .rawclient import RawClient, Rejected
from .test_release import stuck_sockets


async def status(server: TestClient | LiveServer, origin: str | None, path: str = "/echo") -> int:
    """101 if the handshake with this Origin is accepted, else its HTTP status."""
    headers = {} if origin is None else {"origin": origin}
    try:
        async with server.websocket(path, headers=headers):
            return 101
    except WebSocketRejected as rejected:
        return rejected.status


def own_host(server: TestClient | LiveServer) -> tuple[str, str]:
    """The host and the ":port" the client asks for: the server's own origin."""
    if isinstance(server, LiveServer):
        return "127.0.0.1", f":{server.port}"
    return "testserver", ""  # the test client's Host header


# -- origins ---------------------------------------------------------------------

SAME_ORIGIN = [  # (case, origin from host and port, status)
    ("no Origin (not a browser)", None, 101),
    ("the same origin", "http://{host}{port}", 101),
    ("another port", "http://{host}:1", 403),
    ("another scheme", "https://{host}{port}", 403),
    ("null (a sandboxed page)", "null", 403),
    ("a suffix trick", "http://{host}.evil.test{port}", 403),
    ("mixed case", "HTTP://{host}{port}", 403),
    ("a trailing slash", "http://{host}{port}/", 403),
]


@pytest.mark.parametrize(
    ("case", "origin", "expected"), SAME_ORIGIN, ids=[c[0] for c in SAME_ORIGIN]
)
async def test_by_default_only_the_same_origin_may_connect(
    serve: Transport, case: str, origin: str | None, expected: int
) -> None:
    with trio.fail_after(TIMEOUT):
        async with serve(echo_app()) as server:
            host, port = own_host(server)
            assert await status(server, origin and origin.format(host=host, port=port)) == expected


LISTED = [
    ("listed", "https://app.example.com", 101),
    ("listed, with its port", "http://localhost:3000", 101),
    ("no Origin", None, 101),
    ("the server's own origin, not listed", "http://{host}{port}", 403),
    ("another port", "https://app.example.com:8443", 403),
    ("another scheme", "http://app.example.com", 403),
    ("a suffix trick", "https://app.example.com.evil.test", 403),
    ("a prefix trick", "https://evil-app.example.com", 403),
    ("mixed case", "https://App.Example.com", 403),
    ("a trailing slash", "https://app.example.com/", 403),
    ("null", "null", 403),
]


@pytest.mark.parametrize(("case", "origin", "expected"), LISTED, ids=[c[0] for c in LISTED])
async def test_a_list_names_the_allowed_origins_exactly(
    serve: Transport, case: str, origin: str | None, expected: int
) -> None:
    # Written as a user might: the default port and the case are normalized.
    app = echo_app(allowed_origins=["HTTPS://app.example.com:443", "http://localhost:3000"])
    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            host, port = own_host(server)
            assert await status(server, origin and origin.format(host=host, port=port)) == expected


async def test_a_star_allows_any_origin_and_a_route_may_override_the_app(serve: Transport) -> None:
    app = App(allowed_origins=["*"])

    @app.websocket_route("/open")
    async def open_(ws: WebSocket) -> None:
        pass

    @app.websocket_route("/own", allowed_origins=None)
    async def own(ws: WebSocket) -> None:
        pass

    @app.websocket_route("/partner", allowed_origins=["https://partner.example"])
    async def partner(ws: WebSocket) -> None:
        pass

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            host, port = own_host(server)
            assert await status(server, "null", "/open") == 101
            assert await status(server, "https://anyone.example", "/open") == 101
            assert await status(server, "https://anyone.example", "/own") == 403
            assert await status(server, f"http://{host}{port}", "/own") == 101
            assert await status(server, "https://partner.example", "/partner") == 101
            assert await status(server, f"http://{host}{port}", "/partner") == 403


async def test_a_refused_origin_gets_a_403_that_says_why_and_one_warning(
    serve: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    reached = False
    app = App()

    @app.websocket_route("/chat")
    async def chat(ws: WebSocket) -> None:
        nonlocal reached
        reached = True

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            rejected = await refused(server, "/chat", headers={"origin": "https://evil.test"})
    assert (rejected.status, rejected.body) == (403, b"origin not allowed: https://evil.test")
    assert not reached
    [warning] = records(caplog, logging.WARNING)
    message = warning.getMessage()
    assert "'https://evil.test'" in message and "/chat" in message
    assert "App(allowed_origins=...)" in message


@pytest.mark.parametrize(
    ("allowed", "error"),
    [
        (["https://app.example.com/"], ValueError),
        (["https://app.example.com/chat"], ValueError),
        (["app.example.com"], ValueError),
        (["ftp://app.example.com"], ValueError),
        (["https://app.example.com:http"], ValueError),
        (["null"], ValueError),
        ("https://app.example.com", TypeError),
    ],
)
def test_an_allowed_origin_that_is_not_one_is_refused_when_declared(
    allowed: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=r"origin|null"):
        App(allowed_origins=allowed)


# -- checks before accept -----------------------------------------------------------


def app_with_checks(ran: list[str]) -> App:
    app = App()

    @app.websocket_check
    async def logged_in(ws: WebSocket) -> None:
        ran.append("app")
        if ws.cookies.get("session") != "s3cret":
            await ws.reject(401, body="log in first")

    async def admin(ws: WebSocket) -> None:
        ran.append("route")
        if ws.query_params.get("role") != "admin":
            await ws.reject(403, body="admins only")

    @app.websocket_route("/admin", checks=[admin])
    async def panel(ws: WebSocket) -> None:
        ran.append("view")
        await ws.send(f"welcome, {ws.cookies['session'][:1]}...")

    @app.websocket_route("/manual", auto_accept=False, checks=[admin])
    async def manual(ws: WebSocket) -> None:
        ran.append("view")
        async with ws:
            await ws.send("accepted by the view")

    return app


async def test_app_checks_then_route_checks_run_before_accept(serve: Transport) -> None:
    ran: list[str] = []
    app = app_with_checks(ran)
    cookie = {"cookie": "theme=dark; session=s3cret"}
    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            no_login = await refused(server, "/admin?role=admin")
            assert (no_login.status, no_login.body, ran) == (401, b"log in first", ["app"])
            ran.clear()
            no_admin = await refused(server, "/admin?role=guest", headers=cookie)
            assert (no_admin.status, ran) == (403, ["app", "route"])
            ran.clear()
            async with server.websocket("/admin?role=admin", headers=cookie) as client:
                assert await client.receive() == "welcome, s..."
            assert ran == ["app", "route", "view"]
            ran.clear()
            async with server.websocket("/manual?role=admin", headers=cookie) as client:
                assert await client.receive() == "accepted by the view"


async def test_a_check_that_fails_answers_500_and_one_that_accepts_is_an_error(
    serve: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    app = App()

    async def broken(ws: WebSocket) -> None:
        raise LookupError("the session store is down")

    async def accepts(ws: WebSocket) -> None:
        await ws.accept()

    @app.websocket_route("/broken", checks=[broken])
    async def never(ws: WebSocket) -> None:
        raise AssertionError("the view must not run")  # pragma: no cover

    @app.websocket_route("/accepts", checks=[accepts])
    async def never_either(ws: WebSocket) -> None:
        raise AssertionError("the view must not run")  # pragma: no cover

    with trio.fail_after(TIMEOUT):
        async with serve(app) as server:
            assert (await refused(server, "/broken")).status == 500
            async with server.websocket("/accepts") as client:
                assert (await server_close(client)).code == 1011
    failures = records(caplog, logging.ERROR)
    assert [type(r.exc_info[1]) for r in failures if r.exc_info] == [LookupError, RuntimeError]
    assert "a check may only refuse" in str(failures[1].exc_info[1])  # type: ignore[index]


def test_a_check_must_be_async() -> None:
    app = App()

    def sync_check(ws: WebSocket) -> None:  # pragma: no cover
        pass

    with pytest.raises(TypeError, match="sync_check"):
        app.websocket_check(sync_check)  # type: ignore[type-var]


# -- cookies ------------------------------------------------------------------------


async def test_cookies_are_parsed_leniently_on_requests_and_websockets() -> None:
    app = App()

    @app.route("/cookies")
    async def http_cookies(req: Request, res: Response) -> None:
        res.json = req.cookies

    @app.websocket_route("/cookies")
    async def ws_cookies(ws: WebSocket) -> None:
        await ws.send(json.dumps(ws.cookies))

    # A malformed pair (a JSON value) is skipped; the others are kept; the
    # first of a repeated name wins.
    header = {"cookie": 'session=abc; prefs={"a":1}; theme=dark; session=other'}
    expected = {"session": "abc", "theme": "dark"}
    with trio.fail_after(TIMEOUT):
        async with TestClient(app) as client:
            assert (await client.get("/cookies", headers=header)).json() == expected
            async with client.websocket("/cookies", headers=header) as ws:
                assert json.loads(await ws.receive()) == expected
            assert (await client.get("/cookies")).json() == {}


# -- connection limits ------------------------------------------------------------------


async def test_connection_limits_in_process() -> None:
    app = echo_app(max_connections=3, max_connections_per_client=2)
    with trio.fail_after(TIMEOUT):
        async with (
            TestClient(app, client=("10.0.0.1", 1)) as one,
            TestClient(app, client=("10.0.0.2", 1)) as two,
            one.websocket("/echo") as a,
            one.websocket("/echo"),
        ):
            per_client = await refused(one, "/echo")
            assert (per_client.status, per_client.headers["retry-after"]) == (503, "5")
            assert per_client.body == b"too many connections from this address"
            async with two.websocket("/echo"):
                in_all = await refused(two, "/echo")
                assert (in_all.status, in_all.body) == (503, b"too many connections")
            await a.send("open connections are never affected")
            assert await a.receive() == "open connections are never affected"
        assert app.guard.census.open == 0
        assert app.guard.refusals.counts == {
            "max_connections_per_client": 1,
            "max_connections": 1,
        }


async def test_connection_limits_over_sockets(caplog: pytest.LogCaptureFixture) -> None:
    """With 50 per client, 60 handshakes from 127.0.0.1 open 50 and get 10
    refusals; 127.0.0.2 still gets in; a slot freed is a slot taken; a burst
    of 1,000 refusals leaves the log within bounds and the open connections
    echoing."""
    app = echo_app(max_connections_per_client=50)
    opened: list[RawClient] = []
    statuses: list[int] = []

    async def handshake(local_address: str = "127.0.0.1") -> None:
        try:
            opened.append(await RawClient.connect(port, "/echo", local_address=local_address))
            statuses.append(101)
        except Rejected as rejected:
            statuses.append(rejected.status)

    with trio.fail_after(TIMEOUT * 3):
        async with LiveServer(app) as server:
            port = server.port
            async with trio.open_nursery() as nursery:
                for _ in range(60):
                    nursery.start_soon(handshake)
            assert sorted(statuses) == [101] * 50 + [503] * 10
            statuses.clear()
            await handshake("127.0.0.2")
            assert statuses == [101]
            # Closing one frees a slot (once its connection has ended).
            await opened.pop(0).abort()
            with trio.fail_after(2):
                while app.guard.census.per_client["127.0.0.1"] > 49:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            statuses.clear()
            await handshake()
            await handshake()
            assert statuses == [101, 503]
            # A burst of refusals, in a second of its own for the log's limit
            # (the refusals above may be less than a second ago).
            await trio.sleep(1)
            caplog.clear()
            started = trio.current_time()
            statuses.clear()
            async with trio.open_nursery() as nursery:
                for _ in range(1_000):
                    nursery.start_soon(handshake)
            took = trio.current_time() - started
            assert statuses == [503] * 1_000
            lines = [r for r in caplog.records if "max_connections_per_client" in r.getMessage()]
            assert 1 <= len(lines) <= took + 2
            for client in opened[-3:]:
                await client.send("still here")
                assert await client.receive_text() == "still here"
            for client in opened:
                await client.abort()


# -- trusted proxies ----------------------------------------------------------------


def whoami_app(**options: Any) -> App:
    app = App(**options)

    @app.websocket_route("/whoami")
    async def whoami(ws: WebSocket) -> None:
        await ws.send(json.dumps([ws.client, ws.url.scheme, ws.headers.get("host")]))

    @app.route("/whoami")
    async def http_whoami(req: Request, res: Response) -> None:
        res.json = [req.client, req.url.scheme, req.headers.get("host")]

    return app


FORWARDED = {
    "x-forwarded-for": "198.51.100.9, 203.0.113.7",  # the nearest proxy added the last
    "x-forwarded-proto": "https",
    "x-forwarded-host": "app.example.com",
    "origin": "https://app.example.com",  # the same origin, as the browser saw it
}


async def whoami(port: int, local_address: str, headers: dict[str, str]) -> Any:
    client = await RawClient.connect(port, "/whoami", local_address=local_address, headers=headers)
    try:
        return json.loads(await client.receive_text())
    finally:
        await client.abort()


async def test_proxy_headers_from_a_trusted_peer_only() -> None:
    import httpx

    app = whoami_app()
    with trio.fail_after(TIMEOUT):
        async with LiveServer(app, proxy_headers=True, forwarded_allow_ips="127.0.0.1") as server:
            port = server.port
            trusted = await whoami(port, "127.0.0.1", FORWARDED)
            assert trusted == [["203.0.113.7", 0], "wss", "app.example.com"]
            # The proxy writes X-Forwarded-*: a Forwarded header the client
            # wrote, which the proxy passed on, is not believed.
            injected = {**FORWARDED, "forwarded": "for=198.51.100.66;proto=http"}
            assert await whoami(port, "127.0.0.1", injected) == trusted
            shouting = {**FORWARDED, "x-forwarded-proto": "HTTPS"}
            assert await whoami(port, "127.0.0.1", shouting) == trusted
            async with httpx.AsyncClient() as http:
                response = await http.get(f"{server.url}/whoami", headers=FORWARDED)
            assert response.json() == [["203.0.113.7", 0], "https", "app.example.com"]
            # Spoofed headers from a peer that is not trusted are ignored; the
            # origin check then compares with what the client really asked for.
            with pytest.raises(Rejected) as spoofed:
                await whoami(port, "127.0.0.2", FORWARDED)
            assert spoofed.value.status == 403
            plain = {k: v for k, v in FORWARDED.items() if k != "origin"}
            untrusted = await whoami(port, "127.0.0.2", plain)
            assert untrusted[0][0] == "127.0.0.2"
            assert untrusted[1:] == ["ws", f"127.0.0.1:{port}"]


async def test_the_forwarded_header_when_the_proxy_writes_that_one() -> None:
    app = whoami_app()
    modern = {
        "forwarded": 'for="198.51.100.7:4711";proto=https;host=app.example.com',
        "x-forwarded-for": "203.0.113.66",  # not this family: the client's
        "origin": "https://app.example.com",
    }
    ipv6 = {"forwarded": 'for="[2001:db8::1]:4711";proto=https', "origin": "https://x.test"}
    with trio.fail_after(TIMEOUT):
        async with LiveServer(app, proxy_headers="forwarded") as server:
            # The client's address, without the quotes and port RFC 7239 allows.
            assert await whoami(server.port, "127.0.0.1", modern) == [
                ["198.51.100.7", 0],
                "wss",
                "app.example.com",
            ]
            with pytest.raises(Rejected):  # another origin, checked against the forwarded host
                await whoami(server.port, "127.0.0.1", ipv6)
            plain = {k: v for k, v in ipv6.items() if k != "origin"}
            assert (await whoami(server.port, "127.0.0.1", plain))[0] == ["2001:db8::1", 0]


async def test_without_proxy_headers_forwarded_headers_are_ignored() -> None:
    app = whoami_app(allowed_origins=["*"])
    with trio.fail_after(TIMEOUT):
        async with LiveServer(app) as server:
            seen = await whoami(server.port, "127.0.0.1", FORWARDED)
    assert seen[0][0] == "127.0.0.1" and seen[1] == "ws"


async def test_limits_count_the_forwarded_client() -> None:
    app = echo_app(max_connections_per_client=1)

    async def from_(address: str) -> RawClient:
        return await RawClient.connect(port, "/echo", headers={"x-forwarded-for": address})

    with trio.fail_after(TIMEOUT):
        async with LiveServer(app, proxy_headers=True) as server:
            port = server.port
            first, second = await from_("203.0.113.1"), await from_("203.0.113.2")
            with pytest.raises(Rejected):
                await from_("203.0.113.1")
            await first.abort()
            await second.abort()


def test_a_proxy_list_that_is_not_one_is_refused() -> None:
    from trio_boca.server import trusted_peers

    assert trusted_peers("10.0.0.0/8, 127.0.0.1") == (
        False,
        trusted_peers("10.0.0.0/8,127.0.0.1")[1],
    )
    assert trusted_peers("*")[0]
    with pytest.raises(ValueError, match="'nonsense' is not an IP address or network"):
        trusted_peers("127.0.0.1,nonsense")


# -- message size ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [5_000, 3_000_000])
async def test_an_oversized_message_closes_that_connection_with_1009(
    size: int, caplog: pytest.LogCaptureFixture
) -> None:
    """hypercorn sends 1009; without trio_boca's adaptation it then kept the
    socket until the client dropped it (a message of several reads), telling
    the view nothing. Now the connection ends and it is logged once."""
    ended = trio.Event()
    app = App()

    @app.websocket_route("/echo")
    async def echo(ws: WebSocket) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            ended.set()

    process = psutil.Process()
    with trio.fail_after(TIMEOUT):
        async with LiveServer(app, max_message_size=1_000) as server:
            fds = process.num_fds()
            bystander = await RawClient.connect(server.port, "/echo")
            big = await RawClient.connect(server.port, "/echo")
            # The server may close while this is still being written.
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await big.send("x" * size)
            assert await big.close_code() == 1009
            with pytest.raises(EOFError):  # the server has closed the TCP connection
                await big.receive_text()
            await ended.wait()
            await big.abort()
            await bystander.send("unaffected")
            assert await bystander.receive_text() == "unaffected"
            await bystander.abort()
            while stuck_sockets(server.port) or process.num_fds() > fds:  # noqa: ASYNC110
                await trio.sleep(0.01)
    [warning] = records(caplog, logging.WARNING)
    assert "1009" in warning.getMessage() and "message over max_message_size (1000)" in (
        warning.getMessage()
    )


# -- hostile handshakes ---------------------------------------------------------------


def masked_text_frame(text: bytes) -> bytes:
    return bytes([0x81, 0x80 | len(text)]) + b"\x00" * 4 + text  # a zero mask


async def test_a_frame_before_the_handshake_is_answered_stops_nothing_and_leaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One TCP packet, a handshake and a frame, took hypercorn's whole server
    down (its 400 raced the app's accept); a frame sent while a check was
    running left the connection, its view and its slot open for ever.
    trio_boca's own server holds such frames until the app accepts, then
    delivers them. (Plain hypercorn 0.18 still does both: docs/serving.md.)"""
    app = echo_app(max_connections_per_client=2)

    async def slowly(ws: WebSocket) -> None:
        await trio.sleep(0.3)

    @app.websocket_route("/slow", checks=[slowly])
    async def slow(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    def handshake(port: int, path: str) -> bytes:
        return (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

    async def early(port: int, path: str, pause: float) -> tuple[bytes, bool]:
        """The answer's status line, and whether "hi" came back."""
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(handshake(port, path) + (b"" if pause else masked_text_frame(b"hi")))
        if pause:
            await trio.sleep(pause)
            await stream.send_all(masked_text_frame(b"hi"))
        answer = b""
        with trio.move_on_after(1):
            while chunk := await stream.receive_some(4096):
                answer += chunk
                if answer.endswith(b"\x81\x02hi"):
                    break
        await stream.aclose()
        return answer.split(b"\r\n", 1)[0], answer.endswith(b"\x81\x02hi")

    with trio.fail_after(TIMEOUT):
        async with LiveServer(app) as server:
            accepted = (b"HTTP/1.1 101 Switching Protocols", True)
            for _ in range(20):
                assert await early(server.port, "/echo", 0) == accepted
            assert await early(server.port, "/slow", 0.1) == accepted
            with trio.fail_after(2):
                while app.guard.census.open:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            async with server.websocket("/echo") as client:  # still serving
                await client.send("alive")
                assert await client.receive() == "alive"
    assert records(caplog, logging.ERROR) == []


async def test_a_malformed_host_is_refused_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(TIMEOUT):
        async with LiveServer(echo_app()) as server:
            for host in ("[", "[::1", "evil]", "[not-ipv6]", "a:b:c"):
                with pytest.raises(Rejected) as refused_:
                    await RawClient.connect(
                        server.port, "/echo", host=host, headers={"origin": "http://a.test"}
                    )
                assert refused_.value.status in (400, 403)
    assert records(caplog, logging.ERROR) == []


async def test_cookies_that_are_not_utf8_are_repaired_not_an_error() -> None:
    app = App()

    @app.websocket_route("/cookies")
    async def ws_cookies(ws: WebSocket) -> None:
        await ws.send(json.dumps(ws.cookies))

    with trio.fail_after(TIMEOUT):
        async with LiveServer(app) as server:
            client = await RawClient.connect(
                server.port, "/cookies", headers={"cookie": "session=good; pref=caf\xe9"}
            )
            assert json.loads(await client.receive_text()) == {
                "session": "good",
                "pref": "caf\ufffd",
            }
            await client.abort()


async def test_paths_with_control_characters_neither_route_nor_forge_log_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with TestClient(echo_app()) as client:
            assert (await refused(client, "/echo\n")).status == 404
            await refused(client, "/echo\nINFO trio_boca: forged", headers={"origin": "http://x"})
    assert all("\n" not in record.getMessage() for record in caplog.records)


def test_allowed_origins_are_written_as_browsers_write_them() -> None:
    policy = App(allowed_origins=["http://[0:0::1]:8000", "HTTPS://Example.COM:443"]).guard.origins
    assert policy.origins == frozenset({"http://[::1]:8000", "https://example.com"})
    with pytest.raises(ValueError, match="punycode"):
        App(allowed_origins=["https://bücher.example"])


async def test_an_error_inside_the_server_closes_that_connection_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever the server raises while serving one connection (a bug of
    ours, say) is logged and that connection closed; the server goes on."""
    from trio_boca.server._http import HTTPConnection

    exchange = HTTPConnection._exchange

    async def failing(self: Any, request: Any) -> bool:
        if b"boom" in request.target:
            raise RuntimeError("a bug inside the server")
        return await exchange(self, request)

    monkeypatch.setattr(HTTPConnection, "_exchange", failing)
    with trio.fail_after(TIMEOUT):
        async with LiveServer(echo_app()) as server:
            for _ in range(3):
                stream = await trio.open_tcp_stream("127.0.0.1", server.port)
                await stream.send_all(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
                assert await stream.receive_some(100) == b""  # closed
                await stream.aclose()
            async with server.websocket("/echo") as client:
                await client.send("still serving")
                assert await client.receive() == "still serving"
    [failure] = records(caplog, logging.ERROR)  # three failures, one line a second
    assert failure.getMessage().startswith("the server failed on a connection; closed it")


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; client_max_window_bits=x",
        'permessage-deflate; client_max_window_bits="9"',
        "permessage-deflate; server_max_window_bits=20",
        "permessage-deflate;;",
    ],
)
@pytest.mark.parametrize("plain", [True, False], ids=["hypercorn", "serve-compression"])
async def test_a_malformed_compression_offer_is_refused_with_400(
    plain: bool, offer: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 14, defect 2. hypercorn's parser failed on these offers inside
    the app's accept: the client got no answer at all, hypercorn logged
    "Error in ASGI Framework", and `metrics.open` stayed raised for good
    (under plain hypercorn a quoted value, which RFC 7692 allows, also took
    the whole server down). Now, under hypercorn, the door refuses the offer
    with 400; trio_boca's own server negotiates with websockets, which
    declines a bad offer (101 without compression) or refuses a header it
    cannot read (400)."""
    app = echo_app()

    async def handshake(port: int) -> bytes:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        request = (
            f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: {offer}\r\n\r\n"
        )
        await stream.send_all(request.encode())
        answer = b""
        with trio.move_on_after(2):
            while chunk := await stream.receive_some(4096):
                answer += chunk
        await stream.aclose()
        return answer

    options: dict[str, Any] = {"plain": True} if plain else {"compression": True}
    with trio.fail_after(TIMEOUT):
        async with LiveServer(app, **options) as server:
            answer = await handshake(server.port)
            head = answer.split(b"\r\n\r\n")[0].lower()
            if plain:  # the door refuses what would break hypercorn's parser
                assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
                assert b"malformed Sec-WebSocket-Extensions" in answer
            elif answer.startswith(b"HTTP/1.1 101 "):
                # websockets declined a bad offer; a quoted value is legal, and taken
                assert (b"sec-websocket-extensions" in head) == ('"' in offer)
            else:  # websockets could not even read the header
                assert answer.startswith(b"HTTP/1.1 400 "), answer[:100]
                assert b"invalid Sec-WebSocket-Extensions header" in answer
            # A well-formed offer is still served, with compression where on.
            client = await RawClient.connect(server.port, "/echo", offer_deflate=True)
            await client.send("alive")
            assert await client.receive_text() == "alive"
            await client.ws_close()
            await client.abort()
            with trio.fail_after(2):
                while app.metrics.route("/echo").open or app.guard.census.open:  # noqa: ASYNC110
                    await trio.sleep(0.01)
    refused = app.metrics.route("/echo").handshakes[400] + sum(
        1 for r in caplog.records if "refused a WebSocket handshake" in r.getMessage()
    )
    assert refused == (1 if plain or answer.startswith(b"HTTP/1.1 400 ") else 0)
    assert [r.levelno for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert len(records(caplog, logging.WARNING)) == refused  # a refusal, in one line
