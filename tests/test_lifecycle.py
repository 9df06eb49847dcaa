"""The connection lifecycle, property-based: random clients against random views.

Hypothesis draws a view shape (echo, send-only, never reads, raises or
returns at step k, `async with`, manual accept and close, reject, an
exception that names its close code) and a client (messages, binary frames
the text route cannot read, pauses, then: close with a legal code, vanish
without a close frame, flood without reading, or wait for the server's
close), and runs them in-process under a mock clock. Every example must keep
the promises of docs/errors.md:

- the run never crashes, and no task outlives the connection;
- the view's `finally` runs;
- a client that hears the server close hears the code (or HTTP status) the
  table promises for the way the view ended;
- nothing but a view's own exception is logged at ERROR, and that once.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import trio
import trio.testing
from hypothesis import event, given, settings
from hypothesis import strategies as st

from trio_boca import App, WebSocket, WebSocketDisconnect
from trio_boca.testing import TestClient, WebSocketRejected

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
]
PAUSES = [0, 0.001, 0.05, 0.15, 1.0]
CLIENT_CLOSE_CODES = [1000, 1001, 3000, 4000, 4999]


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
    ending: str  # "close" | "vanish" | "flood" | "wait"
    code: int


@dataclass
class Seen:
    """What happened, from both ends."""

    view_ended: str = ""  # "returned" | "raised" | "cancelled" | "disconnect"
    finally_ran: bool = False
    server_close: int | None = None  # the code (or status) the client heard
    client_left_first: bool = False
    notes: list[str] = field(default_factory=list)


shapes = st.builds(Shape, st.sampled_from(VIEWS), st.integers(0, 3), st.sampled_from(PAUSES))
clients = st.builds(
    Client,
    st.lists(
        st.tuples(st.sampled_from(["text", "binary", "pause"]), st.sampled_from(PAUSES)),
        max_size=6,
    ),
    st.sampled_from(["close", "vanish", "flood", "wait"]),
    st.sampled_from(CLIENT_CLOSE_CODES),
)


def make_app(shape: Shape, seen: Seen) -> App:
    app = App(inbox_messages=4, stall_timeout=0.5, close_timeout=1, disconnect_grace=0.1)
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
                if plan.ending in ("flood", "wait"):
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


@settings(max_examples=400, deadline=None)
@given(shapes, clients)
def test_every_connection_ends_as_the_table_promises(shape: Shape, plan: Client) -> None:
    seen = Seen()
    with logged(logging.ERROR) as errors:
        trio.run(scenario, shape, plan, seen, clock=trio.testing.MockClock(autojump_threshold=0))
    event(f"view {seen.view_ended}")
    event(f"client heard {seen.server_close}")
    assert seen.finally_ran
    if seen.server_close is not None:
        assert seen.server_close in promised(shape, seen), seen
    crashed = seen.view_ended == "raised" and shape.view in ("raises", "raises_before_accept")
    assert len(errors.messages) == (1 if crashed else 0), errors.messages
