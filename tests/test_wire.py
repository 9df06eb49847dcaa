"""trio_boca's own server on the wire: HTTP/1.1 as a browser and a proxy use it,
and every hostile client of issue 15, each with a bystander that keeps echoing
and nothing logged at ERROR.

Each test speaks raw bytes over a real socket, where a polite client library
would not go.
"""

from __future__ import annotations

import gc
import logging
import re
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from trio_boca import App, Request, Response, WebSocket
from trio_boca.testing import LiveServer

from .conftest import TIMEOUT, echo_app, records
from .rawclient import RawClient


def wire_app(**options: float) -> App:
    """/echo (WebSocket), and HTTP: / (text), /body (echoes the request body)."""
    app = echo_app(**options)

    @app.route("/")
    async def index(req: Request, res: Response) -> None:
        res.text = "hello"

    @app.route("/body", methods=["POST"])
    async def body(req: Request, res: Response) -> None:
        res.content = await req.body()

    return app


class Bystander:
    """A WebSocket client that echoes every 20 ms: the worst round trip it saw."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.count = 0


@asynccontextmanager
async def bystander(port: int) -> AsyncIterator[Bystander]:
    """Meanwhile, the objects the test session has made so far are frozen
    out of the garbage collector's way: late in the suite, one collection of
    them took 80 ms, which the bystander (in this same process) saw as a
    slow server."""
    gc.collect()
    gc.freeze()
    try:
        async with _bystander(port) as seen:
            yield seen
    finally:
        gc.unfreeze()


@asynccontextmanager
async def _bystander(port: int) -> AsyncIterator[Bystander]:
    seen = Bystander()
    client = await RawClient.connect(port, "/echo")

    async def echo() -> None:
        while True:
            sent = trio.current_time()
            await client.send("ping")
            assert await client.receive_text() == "ping"
            seen.worst = max(seen.worst, trio.current_time() - sent)
            seen.count += 1
            await trio.sleep(0.02)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo)
        yield seen
        nursery.cancel_scope.cancel()
    await client.ws_close()
    await client.abort()
    assert seen.count > 0


async def exchange(port: int, data: bytes, *, wait: float = 2.0) -> bytes:
    """Send `data`, read until the server closes (or `wait` passes)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(data)
    answer = b""
    with trio.move_on_after(wait):
        while chunk := await stream.receive_some(65536):
            answer += chunk
    await stream.aclose()
    return answer


def statuses(answer: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1\.[01] (\d{3}) ", answer)


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST /body HTTP/1.1\r\nHost: x\r\n"


# -- HTTP/1.1 as clients use it ----------------------------------------------------------


async def test_pipelined_requests_are_answered_in_order() -> None:
    with trio.fail_after(TIMEOUT):
        async with LiveServer(wire_app()) as server:
            post = b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nworld"
            close = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            answer = await exchange(server.port, GET + post + close)
    assert statuses(answer) == [b"200", b"200", b"200"]
    assert answer.index(b"hello") < answer.index(b"world") < answer.rindex(b"hello")


async def test_expect_100_continue() -> None:
    with trio.fail_after(TIMEOUT):
        async with LiveServer(wire_app()) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            await stream.send_all(
                b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            assert (await stream.receive_some(100)).startswith(b"HTTP/1.1 100 ")
            await stream.send_all(b"body")
            answer = await stream.receive_some(1000)
            await stream.aclose()
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"body")


async def test_head_http_1_0_and_connection_close() -> None:
    with trio.fail_after(TIMEOUT):
        async with LiveServer(wire_app()) as server:
            head = await exchange(
                server.port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            old = await exchange(server.port, b"GET / HTTP/1.0\r\n\r\n")
    assert statuses(head) == [b"200"] and b"content-length: 5" in head.lower()
    assert head.endswith(b"\r\n\r\n")  # the headers of a GET, and no body
    assert old.startswith(b"HTTP/1.0 200 ") or old.startswith(b"HTTP/1.1 200 ")
    assert old.endswith(b"hello")  # and then closed: exchange() read to the end


# -- hostile clients -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (
            POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"400",
        ),
        (
            POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            b"400",
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", b"431"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000, b"431"),  # never ends
        (b"GET / HTTP/1.1\r\n\r\n", b"400"),  # no Host
        (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
        (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            b"400",
        ),
    ],
    ids=[
        "cl-and-te",
        "two-different-cl",
        "big-head",
        "big-unfinished-head",
        "no-host",
        "garbage",
        "upgrade-not-get",
    ],
)
async def test_requests_that_could_be_read_two_ways_or_not_at_all_are_refused(
    request_: bytes, status: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Ambiguous framing (request smuggling), heads over the limit, garbage:
    one clear status, the connection closed, one WARNING, nothing else lost."""
    with trio.fail_after(TIMEOUT):
        async with LiveServer(wire_app()) as server, bystander(server.port) as seen:
            answer = await exchange(server.port, request_)
    assert statuses(answer) == [status]
    assert b"connection: close" in answer.lower()
    assert len(records(caplog, logging.WARNING)) == 1
    assert records(caplog, logging.ERROR) == []
    assert seen.worst < 0.5


async def test_two_equal_content_lengths_are_one() -> None:
    """Two equal lengths are one length, merged as RFC 9112 allows (h11 does):
    no reading of the request can differ, so nothing can be smuggled."""
    request = (
        b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"
    )
    with trio.fail_after(TIMEOUT):
        async with LiveServer(wire_app()) as server:
            answer = await exchange(server.port, request, wait=0.5)
    assert statuses(answer) == [b"200"] and answer.endswith(b"hello")


async def test_slow_headers_and_silent_sockets_are_closed_and_a_bystander_never_notices(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """200 sockets that say nothing, and 50 that trickle a header line every
    0.2 s: all closed by the idle timeout (once more for a head that began),
    while a bystander's echo stays quick. The trickles are said once a second;
    the silent sockets are routine, at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="trio_boca")
    closed_after: list[float] = []

    async def silent(port: int) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        opened = trio.current_time()
        assert await stream.receive_some(100) == b""
        closed_after.append(trio.current_time() - opened)
        await stream.aclose()

    async def trickle(port: int) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        opened = trio.current_time()
        await stream.send_all(b"GET / HTTP/1.1\r\n")
        try:
            for n in range(100):
                await stream.send_all(b"X-%d: y\r\n" % n)
                await trio.sleep(0.2)
        except trio.BrokenResourceError:
            pass
        closed_after.append(trio.current_time() - opened)
        await stream.aclose()

    with trio.fail_after(TIMEOUT):
        async with (
            LiveServer(wire_app(), idle_timeout=0.5) as server,
            bystander(server.port) as seen,
            trio.open_nursery() as nursery,
        ):
            for _ in range(200):
                nursery.start_soon(silent, server.port)
            for _ in range(50):
                nursery.start_soon(trickle, server.port)
    assert len(closed_after) == 250
    assert max(closed_after) < 0.5 * 2 + 0.5  # the timekeeper looks four times a second
    assert seen.worst < 0.1
    slow = [r for r in caplog.records if "request head did not arrive" in r.getMessage()]
    assert 1 <= len(slow) <= 3
    assert all(r.levelno == logging.WARNING for r in slow)
    quiet = [r for r in caplog.records if "closed a silent connection" in r.getMessage()]
    assert len(quiet) == 200
    assert all(r.levelno == logging.DEBUG for r in quiet)
    assert records(caplog, logging.ERROR) == []


async def test_an_idle_keep_alive_connection_is_closed_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After a response, a browser keeps its connection open and says
    nothing: the idle timeout closes it, at DEBUG (routine, not a slow head)."""
    caplog.set_level(logging.DEBUG, logger="trio_boca")
    with trio.fail_after(TIMEOUT):
        async with LiveServer(wire_app(), idle_timeout=0.3) as server:
            answer = await exchange(server.port, GET, wait=2.0)
    assert statuses(answer) == [b"200"]
    assert [r.levelname for r in caplog.records if "silent connection" in r.getMessage()] == [
        "DEBUG"
    ]
    assert records(caplog, logging.WARNING) == []


@pytest.mark.parametrize(
    "chunks",
    [b"zz\r\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n"],
    ids=["bad chunk size", "chunk without CRLF"],
)
async def test_a_malformed_chunked_body_is_answered_400(
    chunks: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """The app is told the body ended; the client, that its body was bad
    (400, one WARNING), not that the server failed (500)."""
    request = POST + b"Transfer-Encoding: chunked\r\n\r\n" + chunks
    with trio.fail_after(TIMEOUT):
        async with LiveServer(wire_app()) as server, bystander(server.port) as seen:
            answer = await exchange(server.port, request)
    assert statuses(answer) == [b"400"]
    assert b"connection: close" in answer.lower()
    assert len(records(caplog, logging.WARNING)) == 1
    assert records(caplog, logging.ERROR) == []
    assert seen.worst < 0.5


async def test_a_client_that_leaves_during_a_large_response_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Clients that drop a download half-way: routine, nothing at ERROR."""
    app = wire_app()

    @app.route("/big")
    async def big(req: Request, res: Response) -> None:
        res.content = b"x" * (8 << 20)

    async def leave_half_way(port: int) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        await stream.receive_some(65536)
        await stream.aclose()

    with trio.fail_after(TIMEOUT):
        async with LiveServer(app) as server, trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(leave_half_way, server.port)
    assert records(caplog, logging.ERROR) == []


async def test_a_message_in_many_tiny_fragments_holds_its_size_not_a_list() -> None:
    """100,000 two-byte continuation frames: the server holds the message's
    bytes as they come (200 kB), not an object per fragment (some 5 MB)."""
    got: list[int] = []

    async def app(scope: dict[str, object], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        got.append(len(message.get("bytes") or b""))
        await send({"type": "websocket.close", "code": 1000})

    first = bytes([0x02, 0x80 | 2]) + b"\x00" * 4 + b"ab"  # binary, not final
    piece = bytes([0x00, 0x80 | 2]) + b"\x00" * 4 + b"ab"  # continuation
    last = bytes([0x80, 0x80 | 2]) + b"\x00" * 4 + b"ab"  # the final one
    with trio.fail_after(TIMEOUT * 2):
        async with LiveServer(app) as server:
            client = await RawClient.connect(server.port, "/")
            await client.stream.send_all(first)
            gc.collect()
            tracemalloc.start()
            try:
                began = tracemalloc.get_traced_memory()[0]
                for _ in range(10):
                    await client.stream.send_all(piece * 10_000)
                await trio.sleep(0.2)  # the server reads all of it
                held = tracemalloc.get_traced_memory()[0] - began
            finally:
                tracemalloc.stop()
            await client.stream.send_all(last)
            assert await client.close_code() == 1000
            await client.abort()
    assert got == [2 * 100_002]
    assert held < 1_000_000


async def test_a_ping_flood_from_a_client_that_never_reads_is_ended(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The client sends pings and never reads: the pongs fill its window, the
    server's write waits, and within send_timeout (plus the timekeeper's
    quarter second) the connection is aborted; the view is told, and a
    bystander never notices. (Under hypercorn this pinned the connection
    for ever: its pongs are written without a deadline.)"""
    app = wire_app(send_timeout=1)
    ended = trio.Event()

    @app.websocket_route("/quiet")
    async def quiet(ws: WebSocket) -> None:
        try:
            async for _ in ws:
                pass
        finally:
            ended.set()

    with trio.fail_after(TIMEOUT):
        async with LiveServer(app) as server, bystander(server.port) as seen:
            client = await RawClient.connect(server.port, "/quiet")
            ping = bytes([0x89, 0x80 | 125]) + b"\x00" * 4 + b"p" * 125
            began = trio.current_time()
            with trio.move_on_after(TIMEOUT - 2):
                try:
                    while not ended.is_set():
                        await client.stream.send_all(ping * 64)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            await ended.wait()
            took = trio.current_time() - began
            await client.abort()
    assert took < 1 + 1
    assert seen.worst < 0.5
    assert records(caplog, logging.ERROR) == []
