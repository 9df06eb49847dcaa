"""The benchmark suite: trio_boca against a raw ASGI app and its peers, in one run.

    scripts/bench                 (sets up .venv with the `bench` extra, then this)
    python -m bench [--rounds 3] [--seconds 2] [--quick]

Every row serves the same /echo (bench/apps.py, served by bench/serve.py), one
after the other, interleaved over the rounds so a noisy moment hits all of
them; each figure is the median of the rounds, and each is also given as a
ratio to the baseline, a raw ASGI app on hypercorn's Trio worker. The server
runs on core 0 and the load (bench/client.py, in its own process) on core 1;
server and client CPU are reported so a reader can see which one was the
bottleneck.

The rows: trio_boca on its own server (what `trio-boca run` and `app.serve()`
use) and on plain hypercorn; the raw app on trio_boca's server; the echo of
trio-websocket's and of websockets' own Trio servers, handlers with no
framework; Starlette on uvicorn (uvloop, httptools, websockets), the asyncio
reference; and the Trio ceiling (bench/ceiling.py), no library at all.

Writes docs/benchmarks.md and docs/benchmarks.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

from .testclients import run_all as test_clients

FRAMEWORKS = [
    "raw",
    "trio_boca-serve",
    "trio_boca",
    "raw-serve",
    "trio-websocket",
    "websockets-trio",
    "starlette-uvicorn",
    "ceiling",
]
# Keys are bench/serve.py names; a column is headed by its key unless named here.
HEADINGS = {
    "raw": "raw ASGI, hypercorn",
    "trio_boca-serve": "trio_boca",
    "trio_boca": "trio_boca, hypercorn",
    "raw-serve": "raw ASGI, trio_boca's server",
    "trio-websocket": "trio-websocket",
    "websockets-trio": "websockets.trio",
    "starlette-uvicorn": "Starlette, uvicorn",
    "ceiling": "Trio ceiling",
}
#: The server's core and the load's: the two never compete.
SERVER_CORE, CLIENT_CORE = 0, 1
ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


class Server:
    """One framework served by bench/serve.py in its own process."""

    def __init__(self, name: str, port: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.serve", name, str(port)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: pin(SERVER_CORE),
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{name} did not start")

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def pin(core: int) -> None:
    """Run this process on `core` alone (when the machine has it)."""
    if core < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {core})


def client(*args: Any) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, "-m", "bench.client", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        preexec_fn=lambda: pin(CLIENT_CORE),
    ).stdout
    result: dict[str, Any] = json.loads(output)
    return result


def loaded(server: Server, *args: Any) -> dict[str, Any]:
    """Run a client scenario; add the server's CPU use (cores) over it."""
    cpu = server.cpu()
    result = client(*args)
    result["server_cpu"] = (server.cpu() - cpu) / result["elapsed"]
    return result


def idle_memory(name: str, port: int, connections: int, mode: str = "idle") -> float:
    """Server RSS growth per idle connection, in KiB (a fresh server each time).

    With mode "idle-deflate" the clients offer permessage-deflate, as every
    browser does, and exchange one compressed message where it is accepted.
    """
    server = Server(name, port)
    try:
        time.sleep(0.3)
        before = server.rss_kib()
        holder = subprocess.Popen(
            [sys.executable, "-m", "bench.client", mode, str(port), str(connections)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: pin(CLIENT_CORE),
        )
        assert holder.stdout is not None and holder.stdin is not None
        opened = json.loads(holder.stdout.readline())["open"]
        time.sleep(0.5)
        after = server.rss_kib()
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=60)
        return (after - before) / opened
    finally:
        server.stop()


def run(rounds: int, seconds: float) -> dict[str, Any]:
    results: dict[str, dict[str, list[Any]]] = {name: {} for name in FRAMEWORKS}
    port = 18700
    for round_ in range(rounds):
        order = FRAMEWORKS[round_ % len(FRAMEWORKS) :] + FRAMEWORKS[: round_ % len(FRAMEWORKS)]
        for name in order:
            port += 1
            print(f"round {round_ + 1}/{rounds}: {name}", file=sys.stderr, flush=True)
            server = Server(name, port)
            try:
                for connections in (1, 16, 64):
                    result = loaded(server, "echo", port, connections, seconds)
                    results[name].setdefault(f"echo {connections}", []).append(result)
                result = loaded(server, "churn", port, 16, seconds)
                results[name].setdefault("churn 16", []).append(result)
            finally:
                server.stop()
            for connections in (1000, 5000):
                port += 1
                kib = idle_memory(name, port, connections)
                results[name].setdefault(f"memory {connections}", []).append(kib)
            port += 1
            kib = idle_memory(name, port, 1000, "idle-deflate")
            results[name].setdefault("memory deflate 1000", []).append(kib)
    clients = [test_clients(seconds / 2) for _ in range(rounds)]
    return {"servers": results, "test clients": clients}


def median(values: list[Any], key: str | None = None) -> float:
    return statistics.median(v[key] if key else v for v in values)


def heading(name: str) -> str:
    return HEADINGS.get(name, name)


def report(data: dict[str, Any], fanout: str, rounds: int, seconds: float) -> str:
    servers = data["servers"]

    def cell(name: str, scenario: str, key: str | None, digits: int = 0) -> str:
        value = median(servers[name][scenario], key)
        base = median(servers["raw"][scenario], key)
        text = f"{value:,.{digits}f}"
        return text if name == "raw" else f"{text} ({value / base:.2f}x)"

    lines = [
        "# Benchmarks",
        "",
        "Generated by `scripts/bench` (`python -m bench`); do not edit by hand.",
        "",
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {rounds} rounds, "
        f"{seconds:g} s per load, frameworks interleaved; medians of the rounds.",
        f"- Machine: {os.cpu_count()} cores ({_cpu_model()}), Linux {platform.release()}, "
        f"Python {platform.python_version()}.",
        "- Versions: "
        + ", ".join(
            f"{package} {version(package)}"
            for package in (
                "trio_boca",
                "trio",
                "h11",
                "websockets",
                "hypercorn",
                "trio-websocket",
                "starlette",
                "uvicorn",
                "uvloop",
            )
        )
        + ".",
        "- Rows: the baseline is a raw ASGI echo app on plain `hypercorn.trio.serve`"
        " (hypercorn's Trio worker). trio_boca runs on its own server (`trio_boca.server"
        ".serve`, what `trio-boca run` and `app.serve()` use) and on plain hypercorn;"
        " the raw app also runs on trio_boca's server. trio-websocket and websockets.trio"
        " are hand-written echo handlers on those libraries' own Trio servers, no ASGI;"
        " Starlette on uvicorn (uvloop, httptools, websockets) is the asyncio reference;"
        " the Trio ceiling (`bench/ceiling.py`) parses frames by hand, no library. All on"
        " 127.0.0.1, the server on core 0 and the load (`bench/client.py`, hand-built"
        " frames, 32-byte text messages) on core 1.",
        "- In parentheses: the ratio to the baseline (higher is better for"
        " throughput, lower for latency and memory).",
        "",
        "![ratios to the baseline](benchmarks.png)",
        "",
        "## Echo throughput (messages/s) and round-trip latency",
        "",
        "| | " + " | ".join(map(heading, FRAMEWORKS)) + " |",
        "|---|" + "---|" * len(FRAMEWORKS),
    ]
    for connections in (1, 16, 64):
        scenario = f"echo {connections}"
        lines.append(
            f"| {connections} connection{'s' if connections > 1 else ''}, msg/s | "
            + " | ".join(cell(n, scenario, "messages_per_s") for n in FRAMEWORKS)
            + " |"
        )
        for key, label in (("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")):
            lines.append(
                f"| {connections}, {label} | "
                + " | ".join(cell(n, scenario, key, 2) for n in FRAMEWORKS)
                + " |"
            )
    lines += [
        "",
        "## Connection churn (connect, one echo, close; 16 loops)",
        "",
        "| | " + " | ".join(map(heading, FRAMEWORKS)) + " |",
        "|---|" + "---|" * len(FRAMEWORKS),
        "| connections/s | "
        + " | ".join(cell(n, "churn 16", "connections_per_s") for n in FRAMEWORKS)
        + " |",
        "",
        "## Server memory per idle connection (KiB of RSS growth)",
        "",
        "| | " + " | ".join(map(heading, FRAMEWORKS)) + " |",
        "|---|" + "---|" * len(FRAMEWORKS),
    ]
    for connections in (1000, 5000):
        lines.append(
            f"| {connections:,} connections | "
            + " | ".join(cell(n, f"memory {connections}", None, 1) for n in FRAMEWORKS)
            + " |"
        )
    lines.append(
        "| 1,000, client offering permessage-deflate | "
        + " | ".join(cell(n, "memory deflate 1000", None, 1) for n in FRAMEWORKS)
        + " |"
    )
    lines += [
        "",
        "## Who was busy (cores used during the echo loads, median)",
        "",
        "| | " + " | ".join(f"{heading(n)} server / client" for n in FRAMEWORKS) + " |",
        "|---|" + "---|" * len(FRAMEWORKS),
    ]
    for connections in (1, 16, 64):
        scenario = f"echo {connections}"
        lines.append(
            f"| echo, {connections} | "
            + " | ".join(
                f"{median(servers[n][scenario], 'server_cpu'):.2f} / "
                f"{median(servers[n][scenario], 'client_cpu'):.2f}"
                for n in FRAMEWORKS
            )
            + " |"
        )
    clients = data["test clients"]
    names = list(clients[0])
    ours = median(clients, "trio_boca")
    lines += [
        "",
        "## In-process test clients (echo round-trips/s)",
        "",
        "| " + " | ".join(names) + " |",
        "|" + "---|" * len(names),
        "| " + " | ".join(f"{median(clients, n):,.0f}" for n in names) + " |",
        "",
        f"trio_boca's TestClient: {ours / median(clients, 'starlette'):.1f}x"
        " Starlette's thread-based TestClient, "
        f"{ours / median(clients, 'quart-trio'):.2f}x quart-trio's;"
        " the memory channels are the ceiling (a bare pair with an echo task).",
        "",
        "## Broadcast fan-out (trio_boca only; `bench/fanout.py`)",
        "",
        "```",
        fanout.strip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def chart(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = data["servers"]
    scenarios = [
        ("echo 1", "messages_per_s", "echo, 1 conn"),
        ("echo 16", "messages_per_s", "echo, 16"),
        ("echo 64", "messages_per_s", "echo, 64"),
        ("churn 16", "connections_per_s", "churn"),
        ("memory 1000", None, "memory/conn, 1k\n(lower is better)"),
        ("memory 5000", None, "memory/conn, 5k\n(lower is better)"),
        ("memory deflate 1000", None, "memory/conn,\nclient offers\ndeflate"),
    ]
    peers = [n for n in FRAMEWORKS if n != "raw"]
    figure, axes = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(peers)
    for i, name in enumerate(peers):
        ratios = [
            median(servers[name][s], k) / median(servers["raw"][s], k) for s, k, _ in scenarios
        ]
        positions = [x + (i - (len(peers) - 1) / 2) * width for x in range(len(scenarios))]
        axes.bar(positions, ratios, width, label=heading(name))
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_xticks(range(len(scenarios)), [label for _, _, label in scenarios])
    axes.set_ylabel("ratio to the baseline")
    axes.set_title("Medians, as ratios to a raw ASGI app on hypercorn's Trio worker")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="1 round of 0.5 s: a smoke test")
    options = parser.parse_args()
    rounds, seconds = (1, 0.5) if options.quick else (options.rounds, options.seconds)
    data = run(rounds, seconds)
    fanout = subprocess.run(
        [sys.executable, "-m", "bench.fanout", "--rounds", str(rounds)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = ROOT / "docs"
    (docs / "benchmarks.md").write_text(report(data, fanout, rounds, seconds))
    chart(data, docs / "benchmarks.png")
    (ROOT / "bench" / "last-run.json").write_text(json.dumps(data, indent=1))
    print((docs / "benchmarks.md").read_text())


if __name__ == "__main__":
    main()
