"""Liveness and operations: keepalive, write deadlines, compression, TLS, metrics."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import psutil
import pytest
import trio

from trio_boca import App, Broadcast, WebSocket
from trio_boca.metrics import prometheus
from trio_boca.testing import LiveServer, TestClient, connect_websocket

from .conftest import TIMEOUT, ViewProbe, echo_app, records
from .rawclient import RawClient, Rejected


def app_with(probe: ViewProbe, **options: float) -> App:
    app = App(**options)  # type: ignore[arg-type]

    @app.websocket_route("/wait")
    async def wait(ws: WebSocket) -> None:
        with probe.watching():
            async for message in ws:
                await ws.send(message)

    @app.websocket_route("/flood")
    async def flood(ws: WebSocket) -> None:
        with probe.watching():
            chunk = "x" * 65536
            while True:
                await ws.send(chunk)

    return app


# -- keepalive ---------------------------------------------------------------------


async def test_a_client_that_never_answers_pings_is_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A peer that vanished without a FIN (a phone in a tunnel) answers no
    ping: its view ends within a second, and the server serves others."""
    caplog.set_level(logging.INFO, logger="trio_boca")
    probe = ViewProbe()
    with trio.fail_after(TIMEOUT):
        async with LiveServer(app_with(probe), ping_interval=0.2, ping_timeout=0.2) as server:
            silent = await RawClient.connect(server.port, "/wait")  # reads nothing
            await probe.started.wait()
            started = trio.current_time()
            await probe.ended.wait()
            assert probe.ended_at - started < 1.0
            # Had it still been listening, it would have heard why.
            assert await silent.close_code() == 1011
            await silent.abort()
            async with server.websocket("/wait") as other:
                await other.send("still serving")
                assert await other.receive() == "still serving"
    [line] = [r for r in records(caplog, logging.INFO) if "keepalive" in r.getMessage()]
    assert "keepalive ping timeout" in line.getMessage()
    assert "no pong within 0.2 s" in line.getMessage()


async def test_a_client_that_answers_pings_is_never_dropped() -> None:
    probe = ViewProbe()
    with trio.fail_after(TIMEOUT):
        async with (
            LiveServer(app_with(probe), ping_interval=0.05, ping_timeout=0.2) as server,
            server.websocket("/wait") as client,  # trio-websocket answers pings
        ):
            for n in range(20):  # a second: twenty intervals
                await trio.sleep(0.05)
                await client.send(str(n))
                assert await client.receive() == str(n)
    assert not probe.cancelled


# -- write deadlines ---------------------------------------------------------------------


async def test_a_view_flooding_a_client_that_never_reads_is_ended(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """hypercorn writes with a shielded send_all: without a deadline the view
    waited for ever. Now the transport is aborted after send_timeout."""
    probe = ViewProbe()
    process = psutil.Process()
    with trio.fail_after(TIMEOUT):
        async with LiveServer(app_with(probe, send_timeout=0.5)) as server:
            rss = process.memory_info().rss
            stuck = await RawClient.connect(server.port, "/flood")  # never reads
            await probe.started.wait()
            started = trio.current_time()
            async with server.websocket("/wait") as other:
                await probe.ended.wait()
                assert trio.current_time() - started < 2.0
                await other.send("untouched")
                assert await other.receive() == "untouched"
            assert process.memory_info().rss - rss < 64 * 2**20
            await stuck.abort()
    [warning] = records(caplog, logging.WARNING)
    assert "'/flood' aborted (the client stopped reading)" in warning.getMessage()


async def test_a_broadcast_relay_to_a_stuck_client_is_ended_too() -> None:
    app = App(send_timeout=0.5)
    broadcast = Broadcast()
    probe = ViewProbe()

    @app.on("startup")
    async def start() -> None:
        await app.nursery.start(broadcast.run)

    @app.websocket_route("/news")
    async def news(ws: WebSocket) -> None:
        with probe.watching():
            async with broadcast.subscribe("news") as subscription:
                await ws.send("subscribed")
                async for message in subscription:
                    await ws.send(message)

    with trio.fail_after(TIMEOUT):
        async with LiveServer(app) as server:
            stuck = await RawClient.connect(server.port, "/news")
            assert await stuck.receive_text() == "subscribed"  # then reads nothing more
            started = trio.current_time()
            while not probe.ended.is_set():
                await broadcast.publish("news", "y" * 65536)
                await trio.sleep(0.001)
            assert trio.current_time() - started < 3.0
            await stuck.abort()


# -- compression -----------------------------------------------------------------------


REPETITIVE = "trio_boca " * 2_000  # 20,000 characters that compress well


@pytest.mark.parametrize(
    ("options", "offered_back"),
    [
        ({}, None),  # trio_boca's default: off
        ({"compression": False}, None),
        ({"compression": True}, "bounded"),
        ({"plain": True}, "hypercorn's"),
    ],
    ids=["default", "off", "on", "plain hypercorn"],
)
async def test_compression_is_declined_or_accepted_with_bounded_memory(
    options: dict[str, bool], offered_back: str | None
) -> None:
    with trio.fail_after(TIMEOUT):
        async with LiveServer(echo_app(), **options) as server:  # type: ignore[arg-type]
            client = await RawClient.connect(server.port, "/echo", offer_deflate=True)
            await client.send(REPETITIVE)
            assert await client.receive_text() == REPETITIVE
            await client.abort()
    if offered_back is None:
        assert client.extensions == []
        assert client.received > len(REPETITIVE)
        return
    [deflate] = client.extensions
    # Without context takeover, zlib state lives only while a message does.
    bounded = deflate.client_no_context_takeover and deflate.server_no_context_takeover
    assert bounded == (offered_back == "bounded")
    assert client.received < len(REPETITIVE) / 10  # compressed on the wire


# -- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates() -> Any:
    """A certificate authority of the test's own, and a certificate for 127.0.0.1."""
    import trustme

    authority = trustme.CA()
    return authority, authority.issue_cert("127.0.0.1", "localhost")


def contexts(certificates: Any) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """The server's context, and a client's that trusts the test's authority."""
    authority, certificate = certificates
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(server)
    client = ssl.create_default_context()
    authority.configure_trust(client)
    return server, client


async def test_wss_through_app_serve(certificates: Any) -> None:
    server_context, client_context = contexts(certificates)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            address = await nursery.start(
                lambda task_status: echo_app().serve(
                    "127.0.0.1", 0, ssl_context=server_context, task_status=task_status
                )
            )
            assert address.url.startswith("https://") and address.ws_url.startswith("wss://")
            async with connect_websocket(
                address.ws_url + "/echo", ssl_context=client_context
            ) as client:
                await client.send("over TLS")
                assert await client.receive() == "over TLS"
            with pytest.raises(trio.BrokenResourceError) as untrusted:  # the system's CAs
                async with connect_websocket(address.ws_url + "/echo"):
                    pass  # pragma: no cover
            assert isinstance(untrusted.value.__cause__, ssl.SSLCertVerificationError)
            nursery.cancel_scope.cancel()


async def test_wss_through_the_cli(certificates: Any, tmp_path: Path) -> None:
    from .test_cli import start

    _, certificate = certificates
    certificate.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    certificate.private_key_pem.write_to_path(tmp_path / "key.pem")
    _, client_context = contexts(certificates)
    with trio.fail_after(TIMEOUT):
        server = await start(
            "tests.cli_apps:app",
            "--certfile",
            str(tmp_path / "cert.pem"),
            "--keyfile",
            str(tmp_path / "key.pem"),
        )
        assert server.url.startswith("https://")
        async with connect_websocket(
            "wss" + server.url[len("https") :] + "/wait", ssl_context=client_context
        ) as client:
            assert await client.receive() == "ready"
        assert await server.stop() == 0


# -- what an operator sees ---------------------------------------------------------------


def metered_app() -> App:
    app = App()

    @app.websocket_route("/echo/{room}")
    async def echo(ws: WebSocket, room: str) -> None:
        async for message in ws:
            if message == "crash":
                raise ValueError("a view that fails")
            await ws.send(message)

    app.route("/metrics")(prometheus(app))
    return app


def scraped(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus scrape, by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_a_scrape_during_a_load_has_the_known_counts() -> None:
    import httpx

    app = metered_app()
    route = (("route", "/echo/{room}"),)
    with trio.fail_after(TIMEOUT):
        async with LiveServer(app) as server:
            staying = [await RawClient.connect(server.port, f"/echo/{n}") for n in range(10)]
            leaving = [await RawClient.connect(server.port, "/echo/x") for _ in range(10)]
            for client in staying + leaving:
                for n in range(5):
                    await client.send(str(n))
                    assert await client.receive_text() == str(n)
            for client in leaving:
                await client.ws_close(4001)  # a close code, passed through by serve()
            crashing = await RawClient.connect(server.port, "/echo/x")
            await crashing.send("crash")
            assert await crashing.close_code() == 1011
            await crashing.abort()
            for origin in ("https://a.test", "https://b.test", "https://c.test"):
                with pytest.raises(Rejected):
                    await RawClient.connect(server.port, "/echo/x", headers={"origin": origin})
            with pytest.raises(Rejected):
                await RawClient.connect(server.port, "/nowhere")
            with trio.fail_after(2):  # until the server has counted every end
                while sum(app.metrics.route("/echo/{room}").ends.values()) < 11:  # noqa: ASYNC110
                    await trio.sleep(0.01)
            async with httpx.AsyncClient() as http:
                response = await http.get(server.url + "/metrics")
            for client in staying + leaving:
                await client.abort()
    assert response.headers["content-type"].startswith("text/plain")
    samples = scraped(response.text)
    prefix = "trio_boca_websocket_"
    assert samples[(prefix + "connections", route)] == 10
    assert samples[(prefix + "handshakes_total", (*route, ("status", "101")))] == 21
    assert samples[(prefix + "handshakes_total", (*route, ("status", "403")))] == 3
    assert samples[(prefix + "handshakes_total", (("route", ""), ("status", "404")))] == 1
    assert samples[(prefix + "messages_total", (("direction", "in"), *route))] == 101
    assert samples[(prefix + "messages_total", (("direction", "out"), *route))] == 100
    assert samples[(prefix + "closes_total", (("code", "4001"), *route))] == 10
    assert samples[(prefix + "closes_total", (("code", "1011"), *route))] == 1
    assert samples[(prefix + "ends_total", (("reason", "client_left"), *route))] == 10
    assert samples[(prefix + "ends_total", (("reason", "failed"), *route))] == 1
    assert samples[(prefix + "refusals_total", (("reason", "origin"),))] == 3


async def test_the_counts_in_process_and_the_access_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trio_boca.access")
    app = metered_app()
    with trio.fail_after(TIMEOUT):
        async with TestClient(app) as client, client.websocket("/echo/lobby") as ws:
            for word in ("one", "two"):
                await ws.send(word)
                await ws.receive()
    counts = app.metrics.snapshot()["routes"]["/echo/{room}"]
    assert counts == {
        "open": 0,
        "handshakes": {101: 1},
        "closes": {1000: 1},
        "ends": {"client_left": 1},
        "messages_in": 2,
        "messages_out": 2,
    }
    [line] = [r.getMessage() for r in caplog.records if r.name == "trio_boca.access"]
    assert line.startswith("testclient:50000 WebSocket '/echo/lobby' ")
    assert line.endswith(", closed 1000, 2 in, 2 out")


async def test_a_connection_cancelled_by_hypercorns_stop_is_still_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 14, defect 4: plain hypercorn cancels what is left at its
    graceful timeout. The view's close went out (1001), but the wait for the
    client's answer raised Cancelled before the connection was recorded:
    `metrics.open` stayed at 1 and no access line was written."""
    caplog.set_level(logging.INFO, logger="trio_boca.access")
    app = App()

    @app.websocket_route("/wait")
    async def wait(ws: WebSocket) -> None:
        await trio.sleep_forever()

    with trio.fail_after(TIMEOUT):
        async with LiveServer(app, plain=True, shutdown_timeout=0.3) as server:
            # A client that never answers the close: the connection waits for it.
            client = await RawClient.connect(server.port, "/wait")
        assert await client.close_code() == 1001
        await client.abort()
    assert app.metrics.route("/wait").open == 0
    assert app.metrics.route("/wait").ends == {"shutdown": 1}
    [line] = [r.getMessage() for r in caplog.records if r.name == "trio_boca.access"]
    assert " WebSocket '/wait' " in line and ", closed 1001, 0 in, 0 out" in line
