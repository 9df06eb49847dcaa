"""Startup and shutdown hooks, and the app nursery, in-process and under serve()."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing

from trio_boca import App, Request, Response
from trio_boca.server import StartupFailed
from trio_boca.testing import LiveServer, TestClient

from .conftest import TIMEOUT, records


def app_with_hooks(events: list[str]) -> App:
    app = App()

    @app.on("startup")
    async def first() -> None:
        events.append("startup 1")

    @app.on("startup")
    async def second() -> None:
        events.append("startup 2")

    @app.on("shutdown")
    async def closing() -> None:
        events.append("shutdown")

    async def background() -> None:
        try:
            await trio.sleep_forever()
        finally:
            events.append("background cancelled")

    @app.route("/start")
    async def start(req: Request, res: Response) -> None:
        app.nursery.start_soon(background)
        await trio.testing.wait_all_tasks_blocked()
        res.text = "started"

    return app


@pytest.mark.parametrize("server", ["in-process", "serve"])
async def test_hooks_run_in_order_and_background_tasks_end_before_shutdown_hooks(
    server: str,
) -> None:
    import httpx

    events: list[str] = []
    app = app_with_hooks(events)
    with trio.fail_after(TIMEOUT):
        if server == "in-process":
            async with TestClient(app) as client:
                assert events == ["startup 1", "startup 2"]
                assert (await client.get("/start")).text == "started"
        else:
            async with LiveServer(app) as live:
                assert events == ["startup 1", "startup 2"]
                async with httpx.AsyncClient(base_url=live.url) as client:
                    assert (await client.get("/start")).text == "started"
    assert events == ["startup 1", "startup 2", "background cancelled", "shutdown"]


def test_app_nursery_outside_the_lifespan_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="only between startup and shutdown"):
        App().nursery  # noqa: B018


def failing_app() -> App:
    app = App()

    @app.on("startup")
    async def connect_to_database() -> None:
        raise ConnectionRefusedError("database at db:5432 refused")

    return app


async def test_a_failing_startup_hook_stops_the_test_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(RuntimeError, match="db:5432 refused"):
        async with TestClient(failing_app()):
            pass  # pragma: no cover
    [error] = records(caplog, logging.ERROR)
    assert error.getMessage().endswith(
        "connect_to_database failed: ConnectionRefusedError: database at db:5432 refused"
    )
    assert error.exc_info is None  # a service that cannot be reached: one line


async def test_a_failing_startup_hook_stops_serve_with_the_error_shown_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            with pytest.raises(StartupFailed, match="connect_to_database failed"):
                await nursery.start(failing_app().serve, "127.0.0.1", 0)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].name == "trio_boca"


def test_hooks_are_checked_at_declaration() -> None:
    app = App()
    with pytest.raises(ValueError, match="unknown event 'ready'"):
        app.on("ready")  # type: ignore[arg-type]

    def sync() -> None:  # pragma: no cover
        pass

    hook: Any = sync
    with pytest.raises(TypeError, match="startup hook"):
        app.on("startup")(hook)


@pytest.mark.parametrize("server", ["in-process", "serve", "hypercorn"])
async def test_two_servers_of_one_app_each_have_their_own_nursery(server: str) -> None:
    """Issue 14, defect 5: a second server replaced the first's app.nursery,
    and stopping the first left the second's raising RuntimeError. The
    nursery belongs to a run of the lifespan: requests get their server's."""
    import httpx

    app = App()
    started: list[str] = []

    async def tagged(name: str) -> None:
        started.append(name)
        await trio.sleep_forever()

    @app.route("/spawn/{name}")
    async def spawn(req: Request, res: Response, name: str) -> None:
        app.nursery.start_soon(tagged, name)
        res.text = "ok"

    def open_server() -> TestClient | LiveServer:
        if server == "in-process":
            return TestClient(app)
        return LiveServer(app, plain=server == "hypercorn")

    async def get(running: TestClient | LiveServer, path: str) -> int:
        if isinstance(running, TestClient):
            return (await running.get(path)).status_code
        async with httpx.AsyncClient(base_url=running.url) as client:
            return (await client.get(path)).status_code

    with trio.fail_after(TIMEOUT):
        async with open_server() as second:
            async with open_server() as first:
                assert await get(first, "/spawn/a") == 200
                assert await get(second, "/spawn/b") == 200
            # The first stopped: its tasks were cancelled, the second's nursery stays.
            assert await get(second, "/spawn/c") == 200
    assert started == ["a", "b", "c"]


@pytest.mark.parametrize("server", ["in-process", "serve"])
async def test_a_failing_background_task_is_logged_and_shutdown_still_runs(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A task in app.nursery that raises is logged once; the app goes on
    serving, app.nursery is closed from then on, and the shutdown hooks run."""
    import httpx

    app = App()
    events: list[str] = []
    failed = trio.Event()

    async def doomed() -> None:
        try:
            raise LookupError("the background task broke")
        finally:
            failed.set()

    @app.on("startup")
    async def start() -> None:
        app.nursery.start_soon(doomed)

    @app.on("shutdown")
    async def stop() -> None:
        events.append("shutdown")

    @app.route("/nursery")
    async def nursery(req: Request, res: Response) -> None:
        try:
            app.nursery.start_soon(trio.sleep_forever)
            res.text = "open"
        except RuntimeError:
            res.text = "closed"

    with trio.fail_after(TIMEOUT):
        if server == "in-process":
            async with TestClient(app) as client:
                await failed.wait()
                await trio.testing.wait_all_tasks_blocked()
                assert (await client.get("/nursery")).text == "closed"
        else:
            async with LiveServer(app) as live, httpx.AsyncClient(base_url=live.url) as http:
                await failed.wait()
                await trio.sleep(0.05)
                assert (await http.get("/nursery")).text == "closed"
    assert events == ["shutdown"]
    errors = records(caplog, logging.ERROR)
    assert [r.getMessage() for r in errors] == ["a background task in app.nursery failed"]


async def test_a_shutdown_hook_never_gets_another_servers_nursery() -> None:
    """Found in review: with two servers, the first one's shutdown hook got
    the second one's nursery (the only run left), and a task it started
    there outlived its own server's shutdown."""
    app = App()
    got: list[str] = []

    @app.on("shutdown")
    async def down() -> None:
        try:
            app.nursery.start_soon(trio.sleep_forever)
            got.append("a nursery")
        except RuntimeError:
            got.append("RuntimeError")

    with trio.fail_after(TIMEOUT):
        async with TestClient(app):
            async with TestClient(app):
                pass
            assert got == ["RuntimeError"]  # the inner one's, while the outer one runs
    assert got == ["RuntimeError", "RuntimeError"]


@pytest.mark.parametrize("server", ["in-process", "serve"])
async def test_a_background_task_failing_during_startup_fails_the_startup(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Found in review: a task of app.nursery that failed while a later
    startup hook ran cancelled that hook, and the server started anyway,
    with half a startup; its stop then raised."""
    app = App()
    finished: list[str] = []

    async def doomed() -> None:
        raise LookupError("no such table")

    @app.on("startup")
    async def first() -> None:
        app.nursery.start_soon(doomed)

    @app.on("startup")
    async def second() -> None:
        await trio.sleep(1)
        finished.append("second")  # pragma: no cover

    with trio.fail_after(TIMEOUT):
        if server == "in-process":
            with pytest.raises(RuntimeError, match=r"lifespan startup failed.*no such table"):
                async with TestClient(app):
                    pass  # pragma: no cover
        else:
            async with trio.open_nursery() as nursery:
                with pytest.raises(StartupFailed, match="no such table"):
                    await nursery.start(app.serve, "127.0.0.1", 0)
    assert finished == []
    [error] = records(caplog, logging.ERROR)
    assert error.getMessage() == "a background task in app.nursery failed"
