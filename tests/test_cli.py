"""`trio-boca run` as a person runs it: a subprocess, a request, a signal, an exit code."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from trio_boca import WebSocketDisconnect
from trio_boca.testing import connect_websocket

from .conftest import TIMEOUT
from .services import free_port

CLI = [sys.executable, "-m", "trio_boca"]


class Server:
    def __init__(self, process: trio.Process, url: str) -> None:
        self.process = process
        self.url = url

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http") :]

    async def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return await self.process.wait()


async def start(
    *args: str, cwd: Path | None = None, stderr: bool = False, max_fds: int | None = None
) -> Server:
    """Start `trio-boca run` on a free port; with `stderr`, keep its log to read;
    with `max_fds`, under that limit of open files (RLIMIT_NOFILE)."""

    def limited() -> None:
        if max_fds is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max_fds, max_fds))

    process = await trio.lowlevel.open_process(
        [*CLI, "run", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if stderr else None,
        cwd=cwd or Path.cwd(),
        preexec_fn=limited,
    )
    assert process.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        chunk = await process.stdout.receive_some(1)
        assert chunk, "the CLI exited before it served"
        line += chunk
    # "trio-boca: serving tests.cli_apps:app on http://127.0.0.1:PORT ..."
    url = line.decode().split(" on ", 1)[1].split()[0]
    STARTED.append(process)
    return Server(process, url)


async def read_all(stream: trio.abc.ReceiveStream | None) -> str:
    assert stream is not None
    data = b""
    while chunk := await stream.receive_some():
        data += chunk
    return data.decode()


async def worker_pids(supervisor: int, count: int) -> list[int]:
    """The supervisor's children, once there are `count` of them."""
    while len(found := children(supervisor)) < count:  # noqa: ASYNC110 - polling /proc
        await trio.sleep(0.05)
    return found


async def get_text(http: httpx.AsyncClient, url: str) -> str:
    """GET `url`, trying again while no worker is serving (starting, or restarting)."""
    while True:
        try:
            return (await http.get(url)).text
        except httpx.TransportError:
            await trio.sleep(0.05)


STARTED: list[trio.Process] = []


@pytest.fixture
async def stop_leftovers() -> AsyncIterator[None]:
    """Whatever a failing test leaves running (a supervisor, its workers) is killed."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.returncode is None:
            for pid in children(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            process.kill()
        with trio.move_on_after(TIMEOUT):
            await process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                await pipe.aclose()


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ((), "server shutting down"),
        # hypercorn's Trio worker, as it is: at its graceful timeout the view
        # is cancelled, and trio_boca closes with 1001 (hypercorn sends no reason).
        (("--server", "hypercorn", "--shutdown-timeout", "0.5"), None),
    ],
    ids=["trio_boca", "hypercorn-unpatched"],
)
@pytest.mark.usefixtures("stop_leftovers")
async def test_run_serves_until_sigterm_then_closes_websockets_with_1001(
    options: tuple[str, ...], reason: str | None
) -> None:
    with trio.fail_after(TIMEOUT):
        server = await start("tests.cli_apps:app", *options)
        async with httpx.AsyncClient() as http:
            assert (await http.get(server.url + "/pid")).text == str(server.process.pid)
        async with connect_websocket(server.ws_url + "/wait") as ws:
            assert await ws.receive() == "ready"
            server.process.send_signal(signal.SIGTERM)
            with pytest.raises(WebSocketDisconnect) as closed:
                await ws.receive()
        assert await server.process.wait() == 0
    assert closed.value.code == 1001
    if reason is not None:
        assert closed.value.reason == reason


async def test_the_console_script_and_the_demo_page() -> None:
    script = Path(sys.executable).parent / "trio-boca"
    with trio.fail_after(TIMEOUT):
        process = await trio.lowlevel.open_process(
            [str(script), "run", "examples.echo:app", "--port", "0"], stdout=subprocess.PIPE
        )
        assert process.stdout is not None
        line = (await process.stdout.receive_some(4096)).decode()
        url = line.split(" on ", 1)[1].split()[0]
        async with httpx.AsyncClient() as http:
            page = await http.get(url + "/")
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert await process.wait() == 0
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "new WebSocket(" in page.text


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nowhere:app", "cannot import 'nowhere': no module named 'nowhere'"),
        ("tests.cli_apps:nothing", "module 'tests.cli_apps' has no attribute 'nothing'"),
        ("tests.cli_apps", "'tests.cli_apps' is not module:attribute"),
        (
            "tests.cli_apps:TEXT",
            "tests.cli_apps:TEXT is a str, not an ASGI application (an async callable",
        ),
        (
            "tests.cli_apps:handler",
            "tests.cli_apps:handler is the function 'handler', not an ASGI application",
        ),
        ("tests.cli_apps:App", "tests.cli_apps:App is the class App, not an ASGI application"),
    ],
)
def test_a_bad_target_is_one_clear_line(target: str, message: str) -> None:
    result = subprocess.run([*CLI, "run", target], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"trio-boca: {message}")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            ["--forwarded-allow-ips", "10.0.0.0/8,nonsense"],
            "--forwarded-allow-ips: 'nonsense' is not an IP address or network",
        ),
        (["--max-message-size", "0"], "--max-message-size must be at least 1 byte"),
        (["--ping-timeout", "-1"], "--ping-timeout must be 0 (off) or more"),
        (["--idle-timeout", "0"], "--idle-timeout must be more than 0"),
        (["--certfile", "cert.pem"], "--certfile and --keyfile go together"),
        (["--certfile", "nowhere.pem", "--keyfile", "k.pem"], "no such file: nowhere.pem"),
    ],
)
def test_a_bad_option_is_one_clear_line(option: list[str], message: str) -> None:
    result = subprocess.run(
        [*CLI, "run", "tests.cli_apps:app", *option],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"trio-boca: {message}"]


@pytest.mark.usefixtures("stop_leftovers")
async def test_workers_get_the_message_size_and_proxy_options() -> None:
    with trio.fail_after(TIMEOUT):
        server = await start(
            "tests.cli_apps:app", "--workers", "2", "--max-message-size", "100", "--proxy-headers"
        )
        async with httpx.AsyncClient() as http:
            for _ in range(4):  # whichever worker answers
                response = await http.get(
                    server.url + "/client", headers={"x-forwarded-for": "203.0.113.7"}
                )
                assert response.text == "203.0.113.7"
        async with connect_websocket(server.ws_url + "/wait") as ws:
            assert await ws.receive() == "ready"
            await ws.send("x" * 200)
            with pytest.raises(WebSocketDisconnect) as closed:
                await ws.receive()
        assert closed.value.code == 1009
        assert await server.stop() == 0


@pytest.mark.usefixtures("stop_leftovers")
async def test_workers_get_the_idle_timeout() -> None:
    with trio.fail_after(TIMEOUT):
        server = await start("tests.cli_apps:app", "--workers", "2", "--idle-timeout", "0.3")
        host, port = server.url.rsplit("/", 1)[1].rsplit(":", 1)
        async with httpx.AsyncClient() as http:
            await get_text(http, server.url + "/pid")  # the workers serve
        silent = await trio.open_tcp_stream(host, int(port))
        opened = trio.current_time()
        assert await silent.receive_some(100) == b""  # closed by the worker
        assert trio.current_time() - opened < 0.3 + 0.5
        await silent.aclose()
        assert await server.stop() == 0


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("app = (\n", "SyntaxError"),
        ("import a_dependency_not_installed\n", "No module named 'a_dependency_not_installed'"),
    ],
)
def test_an_error_inside_the_module_is_its_traceback_and_exits_1(
    tmp_path: Path, source: str, error: str
) -> None:
    (tmp_path / "faulty.py").write_text(source)
    result = subprocess.run(
        [*CLI, "run", "faulty:app"], capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback")
    assert 'faulty.py", line 1' in result.stderr and error in result.stderr


def test_the_chat_demo_without_redis_says_so_in_one_line() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    result = subprocess.run(
        [*CLI, "run", "examples.chat.app:app", "--port", "0", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        env={**os.environ, "CHAT_BROADCAST": url},
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "startup hook" in line]
    assert set(errors) == {
        "ERROR trio_boca: startup hook start_broadcast failed: "
        f"BroadcastUnavailable: cannot reach Redis at {url}"
    }
    assert 1 <= len(errors) <= 2  # once per worker that got that far before the stop
    assert "the app could not start; stopping" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("target", "error", "traceback"),
    [
        (
            "broken",
            "startup hook connect_to_database failed: "
            "ConnectionRefusedError: database at db:5432 refused",
            False,  # a service that cannot be reached: one line
        ),
        ("crashing", "startup hook read_settings failed: KeyError: 'DATABASE_URL'", True),
    ],
)
def test_a_failing_startup_shows_the_error_once_and_exits_1(
    target: str, error: str, traceback: bool
) -> None:
    result = subprocess.run(
        [*CLI, "run", f"tests.cli_apps:{target}", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 1
    assert result.stderr.count(f"ERROR trio_boca: {error}") == 1
    assert ("Traceback" in result.stderr) is traceback
    assert result.stderr.rstrip().endswith(
        "trio-boca: the app's startup failed (see above); not serving"
    )


@pytest.mark.usefixtures("stop_leftovers")
async def test_workers_share_one_socket_and_stop_together() -> None:
    with trio.fail_after(TIMEOUT * 2):
        server = await start("tests.cli_apps:app", "--workers", "2")
        pids: set[str] = set()
        with trio.fail_after(TIMEOUT):
            workers = set(map(str, await worker_pids(server.process.pid, 2)))
            async with httpx.AsyncClient() as http:
                for _ in range(5):
                    pids.add((await http.get(server.url + "/pid")).text)
        assert pids <= workers
        assert await server.stop() == 0
        assert children(server.process.pid) == []


@pytest.mark.usefixtures("stop_leftovers")
async def test_reload_restarts_workers_when_code_changes(tmp_path: Path) -> None:
    module = tmp_path / "reloaded.py"
    source = (
        "from trio_boca import App\n"
        "app = App()\n"
        "@app.route('/')\n"
        "async def version(req, res):\n"
        "    res.text = 'v1'\n"
    )
    module.write_text(source)
    with trio.fail_after(TIMEOUT * 2):
        server = await start("reloaded:app", "--reload", cwd=tmp_path)
        async with httpx.AsyncClient() as http:

            async def version() -> str:
                return await get_text(http, server.url + "/")

            assert await version() == "v1"
            module.write_text(source.replace("v1", "v2"))
            os.utime(module)
            while await version() != "v2":  # noqa: ASYNC110 - waiting for the reload
                await trio.sleep(0.1)
        assert await server.stop() == 0


@pytest.mark.usefixtures("stop_leftovers")
async def test_the_access_log_has_a_line_per_websocket_session() -> None:
    with trio.fail_after(TIMEOUT):
        server = await start("tests.cli_apps:app", "--access-log", stderr=True)
        async with connect_websocket(server.ws_url + "/wait") as ws:
            assert await ws.receive() == "ready"
            await ws.send("hello")
        await trio.sleep(0.2)  # the session's end is logged once the server sees it
        assert await server.stop() == 0
        log = await read_all(server.process.stderr)
    [line] = [line for line in log.splitlines() if "trio_boca.access" in line]
    assert "WebSocket '/wait'" in line and line.endswith(", closed 1000, 1 in, 1 out")


@pytest.mark.usefixtures("stop_leftovers")
async def test_a_killed_worker_is_named_and_replaced() -> None:
    with trio.fail_after(TIMEOUT * 2):
        server = await start("tests.cli_apps:app", "--workers", "2", stderr=True)
        first = await worker_pids(server.process.pid, 2)
        os.kill(first[0], signal.SIGKILL)
        # Until the dead one is reaped and its replacement started.
        while first[0] in (now := await worker_pids(server.process.pid, 2)):  # noqa: ASYNC110
            await trio.sleep(0.05)
        [new] = set(now) - set(first)
        async with httpx.AsyncClient() as http:
            answered = {(await http.get(server.url + "/pid")).text for _ in range(20)}
        assert answered <= {str(new), str(first[1])}
        assert await server.stop() == 0
        log = await read_all(server.process.stderr)
    [line] = [line for line in log.splitlines() if "SIGKILL" in line]
    assert line.startswith("ERROR trio_boca: worker ")
    assert line.endswith(f"(pid {first[0]}) killed by SIGKILL; starting a new one")
    assert children(server.process.pid) == []


def test_workers_that_keep_dying_stop_the_supervisor() -> None:
    result = subprocess.run(
        [*CLI, "run", "tests.cli_apps:dying", "--port", "0", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 4,
    )
    assert result.returncode == 1
    deaths = [line for line in result.stderr.splitlines() if "exited with status 9" in line]
    assert len(deaths) == 6
    assert deaths[-1].endswith("workers died 6 times within 60 s; stopping")


@pytest.mark.usefixtures("stop_leftovers")
async def test_a_ctrl_c_reaches_the_workers_as_sigint() -> None:
    with trio.fail_after(TIMEOUT):
        server = await start("tests.cli_apps:app", "--workers", "2", stderr=True)
        await worker_pids(server.process.pid, 2)
        await trio.sleep(0.5)  # the workers are serving (their signal handlers are set)
        server.process.send_signal(signal.SIGINT)
        assert await server.process.wait() == 0
        log = (await read_all(server.process.stderr)).splitlines()
    assert "INFO trio_boca: SIGINT: stopping the workers" in log
    assert log.count("INFO trio_boca: SIGINT: stopping") == 2  # each worker, once
    assert not [line for line in log if "SIGTERM" in line]


@pytest.mark.usefixtures("stop_leftovers")
async def test_reload_logs_the_change_before_stopping_the_workers(tmp_path: Path) -> None:
    module = tmp_path / "reloaded.py"
    module.write_text("from trio_boca import App\napp = App()\n")
    with trio.fail_after(TIMEOUT * 2):
        server = await start("reloaded:app", "--reload", cwd=tmp_path, stderr=True)
        [worker] = await worker_pids(server.process.pid, 1)
        await trio.sleep(0.5)  # the watcher is watching
        module.write_text("from trio_boca import App\napp = App()  # changed\n")
        while worker in await worker_pids(server.process.pid, 1):  # noqa: ASYNC110
            await trio.sleep(0.05)
        assert await server.stop() == 0
        log = (await read_all(server.process.stderr)).splitlines()
    changed = log.index("INFO trio_boca: reload: reloaded.py changed; restarting the workers")
    assert log.index("INFO trio_boca: SIGTERM: stopping") > changed  # the worker, after


@pytest.mark.usefixtures("stop_leftovers")
async def test_reload_waits_for_a_fix_when_the_app_cannot_start(tmp_path: Path) -> None:
    module = tmp_path / "editing.py"
    source = (
        "from trio_boca import App\n"
        "app = App()\n"
        "@app.on('startup')\n"
        "async def check():\n"
        "    {}\n"
        "@app.route('/')\n"
        "async def index(req, res):\n"
        "    res.text = 'fixed'\n"
    )
    module.write_text(source.format("raise KeyError('half-written')"))
    with trio.fail_after(TIMEOUT * 2):
        server = await start("editing:app", "--reload", cwd=tmp_path)
        await worker_pids(server.process.pid, 1)
        while children(server.process.pid):  # noqa: ASYNC110 - the worker fails to start
            await trio.sleep(0.05)
        await trio.sleep(0.5)
        assert children(server.process.pid) == []  # not replaced: waiting for a change
        assert server.process.returncode is None
        module.write_text(source.format("pass"))
        async with httpx.AsyncClient() as http:
            assert await get_text(http, server.url + "/") == "fixed"
        assert await server.stop() == 0


def test_reload_without_watchfiles_names_the_extra(tmp_path: Path) -> None:
    # As if watchfiles were not installed: an entry of None makes its import fail.
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['watchfiles'] = None\n")
    result = subprocess.run(
        [*CLI, "run", "tests.cli_apps:app", "--reload"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        'trio-boca: --reload needs watchfiles: pip install "trio_boca[reload]"'
    ]


@pytest.mark.usefixtures("stop_leftovers")
async def test_at_the_file_descriptor_limit_it_survives_and_says_so_once_a_second() -> None:
    """Issue 14, defect 6: at the limit of open files, Trio's accept loop
    survives but logged "accept returned EMFILE" at ERROR with a traceback
    about ten times a second (634 records, 5,800 lines in one test). An
    operator wants one WARNING a second, with a count, and the server back
    as soon as descriptors are free again."""
    held: list[trio.SocketStream] = []
    with trio.fail_after(TIMEOUT * 2):
        server = await start("tests.cli_apps:app", stderr=True, max_fds=64)
        host, port = server.url.rsplit("/", 1)[1].rsplit(":", 1)
        began = trio.current_time()
        try:
            for _ in range(150):  # far past what the server can hold open
                held.append(await trio.open_tcp_stream(host, int(port)))
            await trio.sleep(2.5)
        finally:
            for stream in held:
                await stream.aclose()
        while True:  # served again once its connections are closed
            try:
                async with connect_websocket(server.ws_url + "/wait", connect_timeout=1) as ws:
                    assert await ws.receive() == "ready"
                    break
            except trio.TooSlowError:
                pass
        lasted = trio.current_time() - began
        assert await server.stop() == 0
        log = await read_all(server.process.stderr)
    reports = [line for line in log.splitlines() if "cannot accept connections" in line]
    assert 2 <= len(reports) <= lasted + 1, log[-2000:]  # once a second at most
    assert reports[0].startswith("WARNING trio_boca: cannot accept connections: EMFILE")
    assert "Traceback" not in log and "ERROR" not in log, log[-2000:]
