"""Timing edges, swept under a mock clock: hundreds of runs each, in seconds.

Each test runs one scenario per timing in its own `trio.run` with
`MockClock(autojump_threshold=0)`, so virtual time is exact and sleeps cost
nothing, and collects every timing at which an invariant broke. The
scenarios are the races found in the first connection core (issue 8): a view
returning on the very tick something else looks at it; a stall close while
the view is busy sending; the server's own close path failing a send; a
closed connection never released because the server's queue was full.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_boca import App, WebSocket, WebSocketDisconnect
from trio_boca._connection import Connections, current
from trio_boca.testing import TestClient, WebSocketRejected
from trio_boca.websockets import WebSocketState

from .asgi import Server

#: Virtual seconds any one run may take before it counts as a hang.
VIRTUAL_TIMEOUT = 60


class Logged(logging.Handler):
    """What trio_boca logs at `level` or above."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def logged(level: int) -> Iterator[Logged]:
    handler = Logged(level)
    logger = logging.getLogger("trio_boca")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def sweep(
    scenario: Callable[[float], Awaitable[object]], timings: Iterable[float]
) -> list[tuple[float, str]]:
    """Run `scenario(t)` for each timing; return what went wrong, and when.

    A scenario fails by raising (an assertion, a hang past VIRTUAL_TIMEOUT,
    anything from the app) or by making trio_boca log at ERROR.
    """
    failures: list[tuple[float, str]] = []
    for t in timings:

        async def run(t: float = t) -> None:
            with trio.fail_after(VIRTUAL_TIMEOUT):
                await scenario(t)

        with logged(logging.ERROR) as errors:
            try:
                trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
            except BaseException as exc:  # every way a run can break counts
                failures.append((t, f"{type(exc).__name__}: {exc}"))
                continue
        if errors.messages:
            failures.append((t, f"logged at ERROR: {errors.messages}"))
    return failures


def steps(start: float, stop: float, count: int) -> list[float]:
    return [start + (stop - start) * i / count for i in range(count)]


async def close_code(ws: Any) -> int:
    """Read until the server closes; its code."""
    while True:
        try:
            await ws.receive()
        except WebSocketDisconnect as closed:
            return closed.code


def test_a_view_returning_at_any_instant_after_its_last_receive() -> None:
    """The first core's watchdog, a system task, crashed the whole run when a
    view returned on the tick that found it away from receive()."""
    finished: list[float] = []

    async def scenario(delay: float) -> None:
        app = App()

        @app.websocket_route("/x")
        async def view(ws: WebSocket) -> None:
            try:
                await ws.receive()
                await trio.sleep(delay)  # some work, then return
            finally:
                finished.append(delay)

        async with TestClient(app) as client, client.websocket("/x") as ws:
            await ws.send("work")
            assert await close_code(ws) == 1000

    delays = steps(0, 0.2, 400)
    assert sweep(scenario, delays) == []
    assert finished == delays


def test_a_client_leaving_at_any_instant_of_an_echo() -> None:
    """However the client's departure falls against the view's receive, send
    and work, the view ends quietly, told or cancelled within the grace."""
    ended: list[tuple[float, bool]] = []

    async def scenario(leave_at: float) -> None:
        app = App()

        @app.websocket_route("/echo")
        async def echo(ws: WebSocket) -> None:
            cancelled = True
            try:
                async for message in ws:
                    await trio.sleep(0.01)  # work between receive and send
                    await ws.send(message)
                cancelled = False
            finally:
                ended.append((leave_at, cancelled))

        async with TestClient(app) as client, client.websocket("/echo") as ws:
            for n in range(5):
                await ws.send(str(n))
            await trio.sleep(leave_at)
            await ws.close()

    timings = steps(0, 0.08, 400)
    assert sweep(scenario, timings) == []
    # An echo loop that leaves receive() for 10 ms is always told, never cancelled.
    assert [cancelled for _, cancelled in ended] == [False] * len(timings)


def test_a_stall_close_while_the_view_is_sending() -> None:
    """The first core closed with 1008 from the reader's task: a view busy
    sending then failed with RuntimeError("... state CLOSED"), logged as a
    crash. Now the reader only records the stall and cancels the view."""
    cancelled: list[bool] = []

    async def scenario(period: float) -> None:
        app = App(inbox_messages=1, stall_timeout=0.2)

        @app.websocket_route("/x")
        async def view(ws: WebSocket) -> None:
            try:
                while True:
                    await ws.send("tick")
                    await trio.sleep(period)
            except trio.Cancelled:
                cancelled.append(True)
                raise

        async def flood(ws: Any) -> None:
            with contextlib.suppress(WebSocketDisconnect):  # once closed
                for n in range(100):
                    await ws.send(str(n))

        async with (
            TestClient(app) as client,
            client.websocket("/x") as ws,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(flood, ws)
            assert await close_code(ws) == 1008
            nursery.cancel_scope.cancel()

    # Whole milliseconds, so that some wake-ups fall on the stall's very instant.
    periods = [k / 1000 for k in range(1, 301)]
    assert sweep(scenario, periods) == []
    assert len(cancelled) == len(periods)


def test_a_server_stop_at_any_instant_of_a_connections_life() -> None:
    """A stop before the handshake is answered refuses it with 503; after,
    the client gets 1001; after the view has ended, nothing changes."""
    outcomes: dict[str, int] = {}

    async def scenario(stop_at: float) -> None:
        app = App()

        @app.websocket_route("/x", auto_accept=False)
        async def view(ws: WebSocket) -> None:
            await trio.sleep(0.02)  # deciding whether to accept
            async with ws:
                await ws.send(await ws.receive())
                await trio.sleep(0.02)

        connections = Connections()
        token = current.set(connections)
        try:

            async def stop() -> None:
                await trio.sleep(stop_at)
                connections.go_away()

            async with (
                TestClient(app, raise_server_exceptions=False) as client,
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(stop)
                try:
                    async with client.websocket("/x") as ws:
                        await ws.send("hi")
                        code = await close_code(ws)
                except WebSocketRejected as refused:
                    code = refused.status
        finally:
            current.reset(token)
        # At the very instant the view accepts, or returns, either side may win.
        expected = {503} if stop_at < 0.02 else {1001} if stop_at < 0.04 else {1000}
        if stop_at in (0.02, 0.04):
            expected = {503, 1001} if stop_at == 0.02 else {1001, 1000}
        assert code in expected, (stop_at, code)
        outcomes[str(code)] = outcomes.get(str(code), 0) + 1

    assert sweep(scenario, steps(0, 0.06, 300)) == []
    assert set(outcomes) == {"503", "1001", "1000"}


def test_a_failing_server_send_is_a_departure_not_a_crash() -> None:
    """hypercorn's own close path (a client's protocol error) can make the
    app's send raise BusyResourceError: the client is gone, the view did
    nothing wrong, and nothing is logged at ERROR."""
    ended: list[float] = []

    async def scenario(fail_at: float) -> None:
        app = App()

        @app.websocket_route("/x")
        async def view(ws: WebSocket) -> None:
            try:
                while True:
                    await ws.send("tick")
                    await trio.sleep(0.005)
            finally:
                ended.append(fail_at)

        server = Server(app, "/x")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.run)
            await server.connect()
            await trio.sleep(fail_at)
            server.fail_send = trio.BusyResourceError
            await trio.sleep(0.003)
            await server.disconnect(1006)
            await server.done.wait()

    timings = steps(0, 0.05, 200)
    assert sweep(scenario, timings) == []
    assert ended == timings


def test_a_closed_connection_releases_a_full_server_queue() -> None:
    """hypercorn puts the disconnect into a queue of ten and waits while it
    is full; the first core never read it once the view ended, so the socket
    was held until the server stopped. Now the connection reads until the
    disconnect, whichever way the view ended."""

    async def scenario(at: float) -> None:
        app = App(inbox_messages=2, stall_timeout=0.1, close_timeout=1)

        @app.websocket_route("/raises")
        async def raises(ws: WebSocket) -> None:
            await trio.sleep(at)
            raise ValueError("broken with messages queued")

        @app.websocket_route("/deaf")
        async def deaf(ws: WebSocket) -> None:
            await trio.sleep_forever()

        for path, code in (("/raises", 1011), ("/deaf", 1008)):
            server = Server(app, path, queue=10)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.run)
                await server.connect()

                async def flood_then_leave(server: Server = server) -> None:
                    for n in range(30):
                        await server.text(str(n))
                    await server.disconnect(1000)  # blocks while the queue is full

                nursery.start_soon(flood_then_leave)
                closed = await server.wait_for("websocket.close")
                started = trio.current_time()
                await server.done.wait()
                # Released as soon as the client's goodbye could be read.
                assert trio.current_time() - started < 1, path
                assert closed["code"] == code

    # Raising before stall_timeout: later, the stall (1008) comes first.
    timings = steps(0, 0.095, 150)
    failures = sweep(scenario, timings)
    # A view's exception is logged at ERROR once per run by design: only the
    # "/raises" crash may appear, and nothing else.
    unexpected = [
        (t, what)
        for t, what in failures
        if what != "logged at ERROR: [\"WebSocket view for '/raises' failed; closed with 1011\"]"
    ]
    assert unexpected == []
    assert len(failures) == len(timings)


def test_a_view_reading_a_backlog_after_the_client_left_is_told_not_cancelled() -> None:
    """It comes back to receive() within the grace each time, for as long as
    the backlog takes: the grace restarts with every return, so it reads
    every message and the code after its loop runs."""
    seen: list[tuple[int, float, list[str], bool]] = []

    def scenario_for(count: int) -> Callable[[float], Awaitable[None]]:
        async def scenario(work: float) -> None:
            app = App(disconnect_grace=0.1)
            got: list[str] = []
            after_loop = False

            @app.websocket_route("/backlog")
            async def backlog(ws: WebSocket) -> None:
                nonlocal after_loop
                async for message in ws:
                    await trio.sleep(work)  # less than the grace, every time
                    got.append(message)
                after_loop = True

            async with TestClient(app) as client, client.websocket("/backlog") as ws:
                for n in range(count):
                    await ws.send(str(n))
                await ws.close()
            seen.append((count, work, got, after_loop))

        return scenario

    for count in (2, 5, 9):
        assert sweep(scenario_for(count), steps(0.005, 0.099, 60)) == []
    assert all(got == [str(n) for n in range(count)] and after for count, _, got, after in seen)


# The next two races turn on the order Trio runs tasks that wake at the same
# instant, which it randomizes. pytest-trio hands that randomness to
# Hypothesis, so `random_module()` runs each example under another order, and
# a failure replays.


@settings(max_examples=150, deadline=None)
@given(st.random_module())
def test_two_of_the_views_tasks_reading_bad_input_at_once(order: object) -> None:
    """Both are handed a frame the route cannot read before either closes:
    the first closes with 1007, the second finds it closed. Neither fails."""

    async def scenario(gap: float) -> None:
        app = App()

        @app.websocket_route("/json", value_type="json")
        async def twice(ws: WebSocket) -> None:
            async def reader() -> None:
                with contextlib.suppress(WebSocketDisconnect):
                    await ws.receive()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                nursery.start_soon(reader)

        async with TestClient(app) as client, client.websocket("/json") as ws:
            await trio.sleep(0.01)  # both readers are waiting
            await ws.send("{bad")
            if gap:
                await trio.sleep(gap)
            with contextlib.suppress(WebSocketDisconnect):
                await ws.send("{worse")
            assert await close_code(ws) == 1007

    assert sweep(scenario, [0, 1e-6]) == []


@settings(max_examples=150, deadline=None)
@given(st.random_module())
def test_a_send_and_a_close_from_two_tasks_at_the_same_instant(order: object) -> None:
    """A send that passed its state check before a close from another task
    goes out first, as under hypercorn, which takes a message before its
    first await. (The test client once yielded first, and refused it.)"""

    async def scenario(close_at: float) -> None:
        app = App()

        @app.websocket_route("/two")
        async def two(ws: WebSocket) -> None:
            async def sender() -> None:
                await trio.sleep(0.75)
                if ws.connection_state is WebSocketState.CONNECTED:
                    await ws.send("tick")

            async def closer() -> None:
                await trio.sleep(close_at)
                await ws.close(4000)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(sender)
                nursery.start_soon(closer)

        async with TestClient(app) as client, client.websocket("/two") as ws:
            assert await close_code(ws) == 4000

    assert sweep(scenario, [0.75 - 1e-6, 0.75, 0.75 + 1e-6]) == []


def closing_then_cleaning_up(
    runs: list[tuple[float, int | None, bool, list[str]]], **limits: Any
) -> Callable[[float], Awaitable[None]]:
    """A view that reads one message, closes with 4000 after `close_at`, then
    cleans up for longer than the stall timeout, while the client keeps
    sending (it has not seen the close yet)."""

    async def scenario(close_at: float) -> None:
        app = App(stall_timeout=1, **limits)
        finished = False

        @app.websocket_route("/x")
        async def view(ws: WebSocket) -> None:
            nonlocal finished
            await ws.receive()
            await trio.sleep(close_at)
            await ws.close(4000)
            await trio.sleep(2)
            finished = True

        server = Server(app, "/x")
        with logged(logging.WARNING) as warnings:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.run)
                await server.connect()
                for n in range(400):
                    await server.text(f"{n:09}")  # 9 characters each
                    await trio.sleep(0.01)
                await server.disconnect(1000)
        runs.append((close_at, server.close_code(), finished, warnings.messages))

    return scenario


def test_what_arrives_after_the_views_close_is_never_a_stall() -> None:
    """The first version still counted those messages against the byte
    budget, so the reader waited for room nobody would make, and called it a
    stall: the view's clean-up was cancelled and 1008 logged, though the
    client had its 4000."""
    runs: list[tuple[float, int | None, bool, list[str]]] = []
    timings = steps(0.1, 0.5, 100)
    scenario = closing_then_cleaning_up(runs, inbox_bytes=100)
    assert sweep(scenario, timings) == []
    assert [(code, finished, warnings) for _, code, finished, warnings in runs] == [
        (4000, True, [])
    ] * len(timings)


def test_a_stall_timer_firing_as_the_view_closes() -> None:
    """Around the stall's own instant either may come first, but never both:
    a client that got the view's 4000 saw no stall recorded, and the view's
    clean-up ran; a stall first means 1008, logged once."""
    runs: list[tuple[float, int | None, bool, list[str]]] = []
    scenario = closing_then_cleaning_up(runs, inbox_messages=2)
    # The reader waits from the third message on (t = 0.03): the stall is due at 1.03.
    assert sweep(scenario, steps(0.98, 1.08, 100) + [1.03] * 50) == []
    outcomes = set()
    for _, code, finished, warnings in runs:
        if code == 4000:
            assert finished and warnings == []
        else:
            assert code == 1008 and not finished and len(warnings) == 1
        outcomes.add(code)
    assert outcomes == {4000, 1008}


def test_a_server_stop_before_the_handshake_is_answered_refuses_it() -> None:
    """A connection that arrives as the server stops is refused with 503; the
    first version accepted it anyway and closed it at once with 1001."""
    started: list[bool] = []

    async def scenario(connect_at: float) -> None:
        app = App()

        @app.websocket_route("/x")
        async def view(ws: WebSocket) -> None:
            started.append(True)
            await trio.sleep_forever()

        connections = Connections()
        token = current.set(connections)
        try:
            async with TestClient(app, raise_server_exceptions=False) as client:
                await trio.sleep(connect_at)
                connections.go_away()
                try:
                    async with client.websocket("/x"):
                        raise AssertionError("accepted after the stop")
                except WebSocketRejected as refused:
                    assert refused.status == 503
        finally:
            current.reset(token)

    assert sweep(scenario, steps(0, 0.01, 100)) == []
    assert started == []  # refused before the view ran at all


@settings(max_examples=60, deadline=None)
@given(st.random_module())
def test_messages_and_the_departure_in_one_delivery(order: object) -> None:
    """Issue 14, defect 1: the reader handed a message straight to the view
    waiting in receive(), and the departure right behind it found the view
    still "in receive()" and left it to be told there. The view, which only
    sleeps or sends after its last receive ("take the request, then stream
    the answer"), never came back, and ran until the server stopped."""
    ends: list[tuple[str, int, float]] = []

    def scenario_for(then: str, takes: int) -> Callable[[float], Awaitable[None]]:
        async def scenario(gap: float) -> None:
            app = App(disconnect_grace=0.1)

            @app.websocket_route("/job")
            async def job(ws: WebSocket) -> None:
                for _ in range(takes):
                    await ws.receive()
                while True:  # the answer, streamed; or a long job
                    if then == "sends":
                        await ws.send("part")
                    await trio.sleep(0.05 if then == "sends" else 10)

            server = Server(app, "/job")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.run)
                await server.connect()
                await trio.sleep(gap)
                server.burst(*["request"] * takes)
                left = trio.current_time()
                await server.done.wait()
                # Cancelled within the grace of leaving its last receive().
                ended_after = trio.current_time() - left
                assert ended_after <= 0.1 + 1e-9, (then, takes, gap, ended_after)
                ends.append((then, takes, ended_after))

        return scenario

    for then in ("sleeps", "sends"):
        for takes in (1, 2, 3):
            assert sweep(scenario_for(then, takes), [0, 1e-6, 0.01]) == []


@settings(max_examples=40, deadline=None)
@given(st.random_module())
def test_an_async_for_loop_ends_quietly_when_another_task_closes(order: object) -> None:
    """Found in review: one task iterates `async for m in ws`, another closes
    with 4000. Waiting in receive(), the loop ended quietly; busy with a
    message, its next step raised RuntimeError ("cannot receive() ...
    CLOSED"), logged at ERROR: half the timings. Now the loop ends either way."""
    ended: list[bool] = []

    async def scenario(close_at: float) -> None:
        app = App()

        @app.websocket_route("/two")
        async def two(ws: WebSocket) -> None:
            async def reader() -> None:
                async for _ in ws:
                    await trio.sleep(0.01)  # handling the message
                ended.append(True)

            async def closer() -> None:
                await trio.sleep(close_at)
                await ws.close(4000)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                nursery.start_soon(closer)

        async with TestClient(app) as client, client.websocket("/two") as ws:
            for n in range(10):
                await ws.send(str(n))
                await trio.sleep(0.005)
            assert await close_code(ws) == 4000

    timings = steps(0, 0.06, 60)
    assert sweep(scenario, timings) == []
    assert len(ended) == len(timings)
