from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio
import trio.testing

from trio_boca import App, WebSocket, WebSocketDisconnect
from trio_boca.testing import ClientWebSocket, LiveServer, TestClient, WebSocketRejected

#: Every test that touches a connection runs under `trio.fail_after(TIMEOUT)`.
TIMEOUT = 10


# --8<-- [start:transport]
class Transport:
    """Opens an app in-process, under plain hypercorn, or under trio_boca's serve().

    All three give `.websocket()` with the same API.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.live = name != "in-process"
        #: hypercorn on its own reports every client close as 1006, no reason.
        self.real_close_codes = name != "hypercorn"

    def __call__(self, app: Any) -> TestClient | LiveServer:
        if self.live:
            return LiveServer(app, plain=self.name == "hypercorn")
        # Over a socket a view's exception reaches the client only as 1011 or
        # 500, so the contract tests ask the same of the in-process client.
        return TestClient(app, raise_server_exceptions=False)

    def __repr__(self) -> str:
        return self.name


@pytest.fixture(params=["in-process", "hypercorn", "serve"])
def serve(request: pytest.FixtureRequest) -> Transport:
    return Transport(request.param)


# --8<-- [end:transport]


def echo_app(**options: Any) -> App:
    """An app whose /echo sends back every message, made with `App(**options)`."""
    app = App(**options)

    @app.websocket_route("/echo")
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    return app


async def task_baseline() -> int:
    """The number of tasks alive once everything started so far has settled."""
    await trio.testing.wait_all_tasks_blocked()
    return count_tasks()


def count_tasks() -> int:
    """Every task alive under the test's own task.

    (trio_boca's watchdog is a system task of the run, outside the test.)
    """

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(
            walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks
        )

    return walk(trio.lowlevel.current_task())


async def settle_tasks(baseline: int, within: float = 2.0) -> int:
    """Wait until no more than `baseline` tasks are alive; return the count."""
    with trio.move_on_after(within):
        while count_tasks() > baseline:  # noqa: ASYNC110 - nothing to wait on but the count
            await trio.sleep(0.01)
    return count_tasks()


async def refused(server: TestClient | LiveServer, path: str, **options: Any) -> WebSocketRejected:
    """The rejection the server answers a handshake to `path` with."""
    with pytest.raises(WebSocketRejected) as rejected:
        async with server.websocket(path, **options):
            pass  # pragma: no cover
    return rejected.value


async def server_close(client: ClientWebSocket) -> WebSocketDisconnect:
    """Receive until the server closes; how it closed."""
    with pytest.raises(WebSocketDisconnect) as closed:
        await client.receive()
    return closed.value


class ViewProbe:
    """What a view reports about how it ended: `with probe.watching():` around its body."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self.ended = trio.Event()
        self.ended_at = 0.0
        self.cancelled = False
        self.after_loop = False

    @contextmanager
    def watching(self) -> Iterator[None]:
        self.started.set()
        try:
            yield
        except trio.Cancelled:
            self.cancelled = True
            raise
        finally:
            self.end()

    def end(self) -> None:
        self.ended_at = trio.current_time()
        self.ended.set()


def records(
    caplog: pytest.LogCaptureFixture, level: int, name: str = "trio_boca"
) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name and r.levelno == level]


def no_server_errors(caplog: pytest.LogCaptureFixture) -> bool:
    """Hypercorn logged no application error of its own."""
    return not [r for r in caplog.records if r.name.startswith("hypercorn") and r.levelno >= 40]


Factory = Callable[[Any], TestClient | LiveServer]
