"""The connection lifecycle, property-based: random clients against random views.

Hypothesis draws a view shape (echo, send-only, never reads, raises or
returns at step k, takes k messages and then only sends or only sleeps,
`async with`, manual accept and close, reject, an exception that names its
close code) and a client (messages, binary frames the text route cannot
read, pauses, then: close with a legal code, vanish without a close frame,
flood without reading, wait for the server's close, or a burst: several
messages and the departure in one delivery), and runs them in-process under
a mock clock. Every example must keep the promises of docs/errors.md and
docs/design.md:

- the run never crashes, and no task outlives the connection;
- the view's `finally` runs;
- a client that hears the server close hears the code (or HTTP status) the
  table promises for the way the view ended;
- nothing but a view's own exception is logged at ERROR, and that once;
- told or cancelled: a view still running when the connection learns that
  its client left ends inside receive(), or within `disconnect_grace` of
  the later of that moment and its last return from receive().
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.testing
from hypothesis import event, given, settings
from hypothesis import strategies as st

from trio_boca import App, WebSocket, WebSocketDisconnect
from trio_boca._connection import Connection
from trio_boca.testing import TestClient, WebSocketRejected
from trio_boca.testing._client import TestWebSocket

from .test_races import VIRTUAL_TIMEOUT, logged

VIEWS = [
    "echo",
    "send_only",
    "never_reads",
    "raises",
    "returns",
    "async_with",
    "manual_close",
    "reject",
    "raises_before_accept",
    "coded",
    "takes_then_sends",
    "takes_then_sleeps",
]
PAUSES = [0, 0.001, 0.05, 0.15, 1.0]
CLIENT_CLOSE_CODES = [1000, 1001, 3000, 4000, 4999]
GRACE = 0.1


class Coded(Exception):
    close_code = 4002
    reason = "chose its own code"


@dataclass
class Shape:
    view: str
    steps: int  # messages the view takes before it acts
    pause: float  # how long it works between steps


@dataclass
class Client:
    actions: list[tuple[str, float]]  # ("text" | "binary" | "pause", pause)
    ending: str  # "close" | "vanish" | "flood" | "wait" | "burst"
    code: int
    burst: int  # with ending "burst": messages sent with the departure


@dataclass
class Seen:
    """What happened, from both ends."""

    view_ended: str = ""  # "returned" | "raised" | "cancelled" | "disconnect"
    finally_ran: bool = False
    server_close: int | None = None  # the code (or status) the client heard
    client_left_first: bool = False
    notes: list[str] = field(default_factory=list)
    # For "told or cancelled", in virtual time:
    ended_at: float | None = None
    in_receive: int = 0
    left_receive_at: float = 0.0  # the view's last return from receive()
    receive_raised_at: float | None = None  # receive() raised out of the view
    learnt_left_at: float | None = None  # the connection learnt the client left


shapes = st.builds(Shape, st.sampled_from(VIEWS), st.integers(0, 3), st.sampled_from(PAUSES))
clients = st.builds(
    Client,
    st.lists(
        st.tuples(st.sampled_from(["text", "binary", "pause"]), st.sampled_from(PAUSES)),
        max_size=6,
    ),
    # Bursts twice as often as each other ending: the departure behind
    # messages in one delivery is where a view slips past its grace.
    st.sampled_from(["close", "vanish", "flood", "wait", "burst", "burst"]),
    st.sampled_from(CLIENT_CLOSE_CODES),
    st.integers(0, 4),
)


def make_app(shape: Shape, seen: Seen) -> App:
    app = App(inbox_messages=4, stall_timeout=0.5, close_timeout=1, disconnect_grace=GRACE)
    manual = shape.view in ("async_with", "manual_close", "reject", "raises_before_accept")

    async def take(ws: WebSocket) -> None:
        for _ in range(shape.steps):
            await ws.receive()
            await trio.sleep(shape.pause)

    async def body(ws: WebSocket) -> None:
        kind = shape.view
        if kind == "echo":
            async for message in ws:
                await trio.sleep(shape.pause)
                await ws.send(message)
        elif kind == "send_only":
            while True:
                await ws.send("tick")
                await trio.sleep(shape.pause or 0.01)
        elif kind == "never_reads":
            await trio.sleep_forever()
        elif kind in ("raises", "coded"):
            await take(ws)
            raise Coded() if kind == "coded" else ValueError("the view broke")
        elif kind == "returns":
            await take(ws)
        elif kind == "async_with":
            async with ws:
                await take(ws)
        elif kind == "manual_close":
            await ws.accept()
            await take(ws)
            await ws.close(4001, "done")
        elif kind == "reject":
            await trio.sleep(shape.pause)
            await ws.reject(401, body="no")
        elif kind == "raises_before_accept":
            await trio.sleep(shape.pause)
            raise LookupError("before accept")
        elif kind in ("takes_then_sends", "takes_then_sleeps"):
            # Take the request, then stream the answer (or work on it).
            await take(ws)
            while True:
                if kind == "takes_then_sends":
                    await ws.send("part")
                await trio.sleep(shape.pause or 0.01)

    @app.websocket_route("/", auto_accept=not manual)
    async def view(ws: WebSocket) -> None:
        try:
            await body(ws)
            seen.view_ended = "returned"
        except trio.Cancelled:
            seen.view_ended = "cancelled"
            raise
        except WebSocketDisconnect:
            seen.view_ended = "disconnect"
            raise
        except Exception:
            seen.view_ended = "raised"
            raise
        finally:
            seen.finally_ran = True
            seen.ended_at = trio.current_time()

    return app


def promised(shape: Shape, seen: Seen) -> set[int]:
    """The codes or statuses the table allows for how the view ended."""
    kind, ended = shape.view, seen.view_ended
    if ended == "cancelled":
        return {1008}  # with the client still there, only a stall cancels a view
    if ended == "disconnect":
        return {1003}  # the client sent a binary frame to a text route
    if kind == "reject":
        return {401}
    if kind == "raises_before_accept":
        return {500}
    if kind == "coded":
        return {Coded.close_code}
    if kind == "raises":
        return {1011}
    if kind == "manual_close":
        return {4001}
    return {1000}


async def run_client(client: TestClient, plan: Client, seen: Seen) -> None:
    try:
        async with client.websocket("/") as ws:
            try:
                for kind, pause in plan.actions:
                    if kind == "text":
                        await ws.send("hello")
                    elif kind == "binary":
                        await ws.send(b"\x00")
                    await trio.sleep(pause)
                if plan.ending == "flood":
                    for _ in range(40):
                        await ws.send("flood")
                if plan.ending == "burst":
                    seen.client_left_first = True
                    burst(ws, plan.burst, plan.code)
                elif plan.ending in ("flood", "wait"):
                    with trio.move_on_after(5):
                        while True:
                            await ws.receive()
                    seen.client_left_first = ws.close_code is None
                    await ws.close(plan.code)
                else:
                    seen.client_left_first = True
                    # A vanished client: what a server reports for a dropped socket.
                    await ws.close(1006 if plan.ending == "vanish" else plan.code)
            except WebSocketDisconnect:
                # The server closed while we were sending: hear how.
                with trio.move_on_after(5), contextlib.suppress(WebSocketDisconnect):
                    while True:
                        await ws.receive()
            if ws.close_code is not None and not seen.client_left_first:
                seen.server_close = ws.close_code
    except WebSocketRejected as rejected:
        seen.server_close = rejected.status


def burst(ws: TestWebSocket, count: int, code: int) -> None:
    """`count` messages and the departure in one delivery, as one TCP read
    that carries them all hands them to the server: none of the app's tasks
    runs between them. (The test client's own send yields after each.)"""
    try:
        for _ in range(count):
            ws._to_app.send_nowait({"type": "websocket.receive", "text": "hello"})
        ws._to_app.send_nowait({"type": "websocket.disconnect", "code": code, "reason": ""})
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        raise WebSocketDisconnect(1006) from None  # the app has ended: as send() says
    ws._client_closed = True
    ws.close_code = code


@contextlib.contextmanager
def watching_the_grace(seen: Seen) -> Iterator[None]:
    """Note when the view enters and leaves receive(), and when its connection
    learns that the client left, through the connection's own two doors."""
    receive, left = Connection.receive, Connection.left

    async def watched_receive(self: Connection) -> Any:
        seen.in_receive += 1
        try:
            return await receive(self)
        except BaseException:
            seen.receive_raised_at = trio.current_time()
            raise
        finally:
            seen.in_receive -= 1
            seen.left_receive_at = trio.current_time()

    def watched_left(self: Connection, *args: Any) -> None:
        if seen.ended_at is None and seen.learnt_left_at is None:
            seen.learnt_left_at = trio.current_time()
        left(self, *args)

    Connection.receive = watched_receive  # type: ignore[method-assign]
    Connection.left = watched_left  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        Connection.receive, Connection.left = receive, left  # type: ignore[method-assign]


def told_or_cancelled(seen: Seen) -> None:
    """A view still running when its connection learnt the client left ended
    inside receive(), or within the grace of that moment and of its last
    return from receive()."""
    if seen.learnt_left_at is None or seen.ended_at is None:
        return
    if seen.receive_raised_at == seen.ended_at:
        return  # told: it ended from inside receive()
    deadline = max(seen.learnt_left_at, seen.left_receive_at) + GRACE
    assert seen.ended_at <= deadline + 1e-9, (
        f"the view ran {seen.ended_at - deadline:.3f} s past its grace: {seen}"
    )


def all_tasks() -> int:
    """Every task in the run, system tasks included."""

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(c) for n in task.child_nurseries for c in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


async def scenario(shape: Shape, plan: Client, seen: Seen) -> None:
    before = all_tasks()
    with trio.fail_after(VIRTUAL_TIMEOUT):
        async with TestClient(make_app(shape, seen), raise_server_exceptions=False) as client:
            await run_client(client, plan, seen)
    await trio.testing.wait_all_tasks_blocked()
    assert all_tasks() == before, "a task outlived its connection"


@settings(max_examples=1000, deadline=None)
@given(shapes, clients)
def test_every_connection_ends_as_the_table_promises(shape: Shape, plan: Client) -> None:
    seen = Seen()
    with logged(logging.ERROR) as errors, watching_the_grace(seen):
        trio.run(scenario, shape, plan, seen, clock=trio.testing.MockClock(autojump_threshold=0))
    event(f"view {seen.view_ended}")
    event(f"client heard {seen.server_close}")
    assert seen.finally_ran
    told_or_cancelled(seen)
    if seen.server_close is not None:
        assert seen.server_close in promised(shape, seen), seen
    crashed = seen.view_ended == "raised" and shape.view in ("raises", "raises_before_accept")
    assert len(errors.messages) == (1 if crashed else 0), errors.messages
