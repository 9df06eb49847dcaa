"""`trio-boca run module:app`: trio_boca's own server (or hypercorn's Trio worker).

One worker serves in this process. With `--workers N` or `--reload`, this
process becomes a small supervisor: it binds the socket itself and hands it
to worker processes (each a full trio_boca server, so each closes its
WebSockets with 1001 when stopped), and with `--reload` it restarts them when
a Python file under the current directory changes (see `_supervisor`).

SIGINT (Ctrl-C) and SIGTERM stop gracefully: see `trio_boca.server`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Sequence
from typing import Any

import trio

from ._errors import plain_errors
from ._supervisor import EXIT_NOT_STARTED, Supervisor
from .server import Address, StartupFailed, require_asgi, serve, trusted_peers

EXIT_USAGE = 2
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class UsageError(Exception):
    """A mistake on the command line, reported in one line."""


def load_app(target: str) -> Any:
    """Import `module:attribute` (the current directory is importable)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"{target!r} is not module:attribute, e.g. examples.echo:app")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageError(
                f"cannot import {module_name!r}: no module named {exc.name!r}"
            ) from None
        raise
    try:
        app = getattr(module, attribute)
    except AttributeError:
        raise UsageError(f"module {module_name!r} has no attribute {attribute!r}") from None
    try:
        require_asgi(app)
    except TypeError as exc:
        raise UsageError(f"{target} is {exc}") from None
    return app


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="trio-boca", description=__doc__.split("\n", 1)[0])
    commands = main.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve an app")
    run.add_argument("app", help="the app to serve, as module:attribute")
    run.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=8000, help="port to bind; 0 picks a free one")
    run.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    run.add_argument(
        "--reload",
        action="store_true",
        help="restart when a .py file under the current directory changes (needs watchfiles)",
    )
    run.add_argument(
        "--shutdown-timeout",
        type=float,
        default=5.0,
        help="seconds a stop may take before open connections are cut (default 5)",
    )
    run.add_argument(
        "--idle-timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="close a connection silent for S seconds while a request is due, or slower "
        "than that to send a request's head (default 5; behind a proxy, make it longer "
        "than the proxy's own keep-alive)",
    )
    run.add_argument(
        "--max-message-size",
        type=int,
        help="largest WebSocket message, in bytes; bigger ones close with 1009 (default 16 MiB)",
    )
    run.add_argument(
        "--proxy-headers",
        nargs="?",
        const="x-forwarded",
        choices=["x-forwarded", "forwarded"],
        help="take the client address, scheme and host from the X-Forwarded-* headers "
        "(or, with =forwarded, the Forwarded header) of a trusted proxy",
    )
    run.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1,::1",
        metavar="IPS",
        help="with --proxy-headers: the proxies to trust, as comma-separated addresses or "
        "networks, or * (default 127.0.0.1,::1)",
    )
    run.add_argument(
        "--ping-interval",
        type=float,
        default=20.0,
        metavar="S",
        help="ping WebSocket clients every S seconds; 0: never (default 20)",
    )
    run.add_argument(
        "--ping-timeout",
        type=float,
        default=20.0,
        metavar="S",
        help="close a client that sends no pong within S seconds of a ping; 0: never (default 20)",
    )
    run.add_argument(
        "--compression",
        choices=["on", "off"],
        default="off",
        help="accept permessage-deflate (without context takeover: memory stays bounded); "
        "default off",
    )
    run.add_argument(
        "--access-log",
        action="store_true",
        help="log a line per HTTP request and per WebSocket session (at INFO)",
    )
    run.add_argument(
        "--server",
        choices=["trio_boca", "hypercorn"],
        default="trio_boca",
        help="trio_boca's own server (the default), or hypercorn's Trio worker, unpatched "
        "(see docs/serving.md for what each gives)",
    )
    run.add_argument("--certfile", help="serve TLS (https, wss) with this certificate chain")
    run.add_argument("--keyfile", help="the private key of --certfile")
    run.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # set by the supervisor
    return main


def main(argv: Sequence[str] | None = None) -> int:
    options = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in ("trio_boca.access", "hypercorn.access"):
        logging.getLogger(name).setLevel(logging.INFO if options.access_log else logging.WARNING)
    try:
        if options.workers < 1:
            raise UsageError("--workers must be at least 1")
        if options.max_message_size is not None and options.max_message_size < 1:
            raise UsageError("--max-message-size must be at least 1 byte")
        for flag in ("ping_interval", "ping_timeout"):
            if getattr(options, flag) < 0:
                raise UsageError(f"--{flag.replace('_', '-')} must be 0 (off) or more")
        if options.idle_timeout <= 0:
            raise UsageError("--idle-timeout must be more than 0")
        if (options.certfile is None) != (options.keyfile is None):
            raise UsageError("--certfile and --keyfile go together")
        for path in (options.certfile, options.keyfile):
            if path is not None and not os.path.isfile(path):
                raise UsageError(f"no such file: {path}")
        try:
            trusted_peers(options.forwarded_allow_ips)
        except ValueError as exc:
            raise UsageError(f"--forwarded-allow-ips: {exc}") from None
        if options.reload and importlib.util.find_spec("watchfiles") is None:
            raise UsageError('--reload needs watchfiles: pip install "trio_boca[reload]"')
        app = load_app(options.app)
        if options.workers == 1 and not options.reload:
            return _run(_serve, app, options)
        return _run(_supervise, options)
    except UsageError as exc:
        print(f"trio-boca: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StartupFailed:
        print("trio-boca: the app's startup failed (see above); not serving", file=sys.stderr)
        return 1 if options.fd is None else EXIT_NOT_STARTED
    except OSError as exc:
        print(f"trio-boca: cannot serve on {options.host}:{options.port}: {exc}", file=sys.stderr)
        return 1 if options.fd is None else EXIT_NOT_STARTED


def _run(function: Any, *args: Any) -> int:
    """trio.run, raising the one real error a nursery wrapped, as itself."""
    with plain_errors():
        result: int = trio.run(function, *args)
    return result


async def _serve(app: Any, options: argparse.Namespace) -> int:
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:
            if options.server == "hypercorn":
                address = await nursery.start(_under_hypercorn, app, options)
            else:
                address = await nursery.start(_under_trio_boca, app, options)
            if options.fd is None:
                print(f"trio-boca: serving {options.app} on {address.url}", flush=True)
            async for signum in signals:
                logging.getLogger("trio_boca").info("%s: stopping", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
    return 0


async def _under_trio_boca(
    app: Any, options: argparse.Namespace, *, task_status: trio.TaskStatus[Address]
) -> None:
    context = None
    if options.certfile is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(options.certfile, options.keyfile)
    await serve(
        app,
        options.host,
        options.port,
        shutdown_timeout=options.shutdown_timeout,
        max_message_size=options.max_message_size,
        ping_interval=options.ping_interval,
        ping_timeout=options.ping_timeout,
        compression=options.compression == "on",
        proxy_headers=options.proxy_headers or False,
        forwarded_allow_ips=options.forwarded_allow_ips,
        ssl_context=context,
        idle_timeout=options.idle_timeout,
        fd=options.fd,
        task_status=task_status,
    )


async def _under_hypercorn(
    app: Any, options: argparse.Namespace, *, task_status: trio.TaskStatus[Address]
) -> None:
    from . import _hypercorn

    settings: dict[str, Any] = {"certfile": options.certfile, "keyfile": options.keyfile}
    if options.access_log:
        settings["accesslog"] = logging.getLogger("hypercorn.access")
    if options.max_message_size is not None:
        settings["websocket_max_message_size"] = options.max_message_size
    settings["websocket_ping_interval"] = options.ping_interval or None
    settings["keep_alive_timeout"] = options.idle_timeout
    port = options.port if options.fd is None else 0
    config = _hypercorn.make_config(options.host, port, options.shutdown_timeout, **settings)
    if options.fd is not None:
        config.bind = [f"fd://{options.fd}"]
    await _hypercorn.serve(
        app,
        config,
        proxy_headers=options.proxy_headers or False,
        forwarded_allow_ips=options.forwarded_allow_ips,
        task_status=task_status,
    )


async def _supervise(options: argparse.Namespace) -> int:
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    with listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((options.host, options.port))
        listener.listen(2048)
        port = listener.getsockname()[1]
        host = f"[{options.host}]" if family == socket.AF_INET6 else options.host
        print(
            f"trio-boca: serving {options.app} on "
            f"{'https' if options.certfile else 'http'}://{host}:{port} "
            f"with {options.workers} worker{'s' if options.workers > 1 else ''}"
            + (", reloading on changes" if options.reload else ""),
            flush=True,
        )
        command = [
            sys.executable,
            "-m",
            "trio_boca",
            "run",
            options.app,
            "--fd",
            str(listener.fileno()),
        ]
        command += ["--shutdown-timeout", str(options.shutdown_timeout)]
        command += ["--forwarded-allow-ips", options.forwarded_allow_ips]
        command += ["--ping-interval", str(options.ping_interval)]
        command += ["--ping-timeout", str(options.ping_timeout)]
        command += ["--idle-timeout", str(options.idle_timeout)]
        command += ["--compression", options.compression]
        command += ["--server", options.server]
        if options.access_log:
            command.append("--access-log")
        if options.certfile is not None:
            command += ["--certfile", options.certfile, "--keyfile", options.keyfile]
        if options.proxy_headers:
            command.append(f"--proxy-headers={options.proxy_headers}")
        if options.max_message_size is not None:
            command += ["--max-message-size", str(options.max_message_size)]
        supervisor = Supervisor(
            command, listener.fileno(), options.workers, options.shutdown_timeout, options.reload
        )
        with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
            return await supervisor.run(signals)
