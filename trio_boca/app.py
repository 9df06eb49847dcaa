"""`App`: route declarations, lifespan, and the ASGI entry point."""

from __future__ import annotations

import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import trio

from ._connection import Connection, Limits, Receive, Send
from ._messages import MESSAGE_TYPES, MessageType
from .guards import Check, Guard, OriginPolicy
from .http import ClientDisconnected, HTTPError, Request, Response, plain
from .metrics import Metrics
from .mounting import ASGIApp, Mount, Mounts, normalized_prefix, route_path, serve_websocket
from .routing import Router
from .websockets import DEFAULT_CAUGHT_CLOSE_CODES

if TYPE_CHECKING:
    from types import EllipsisType

    from .server import Address

logger = logging.getLogger("trio_boca")

Scope = MutableMapping[str, Any]
View = TypeVar("View", bound=Callable[..., Awaitable[None]])
Hook = TypeVar("Hook", bound=Callable[[], Awaitable[None]])
C = TypeVar("C", bound=Check)

#: Scope extension a test client sets to have view exceptions re-raised to it
#: (after they are logged and the client got 1011 or 500). Real servers never
#: set it, so an exception is logged once, by us, and not again by the server.
RAISE_EXCEPTIONS = "trio_boca.raise_server_exceptions"


@dataclass(frozen=True)
class WebSocketRoute:
    pattern: str
    view: Callable[..., Awaitable[None]]
    auto_accept: bool
    receive_type: MessageType
    send_type: MessageType
    caught_close_codes: frozenset[int]
    #: The route's own origin policy; None: the app's.
    origins: OriginPolicy | None
    #: The route's checks, run after the app's.
    checks: tuple[Check, ...]


@dataclass
class HTTPRoute:
    pattern: str
    views: dict[str, Callable[..., Awaitable[None]]] = field(default_factory=dict)

    def allowed(self) -> list[str]:
        methods = set(self.views)
        if "GET" in methods:
            methods.add("HEAD")
        return sorted(methods)


class App:
    """A trio_boca application: a plain ASGI 3 callable.

    The keyword arguments bound what one request or WebSocket connection may
    hold and how long its edges may take (see "Backpressure and limits" in the
    docs), and who may open a WebSocket (see "Security"): by default only
    pages of the app's own origin, with no limit on the number of
    connections. The defaults suit most servers.

    Mistakes fail where they are made, not on the first request: a limit
    below 1 or a malformed origin raises `ValueError` here (and a single
    string where a list of origins belongs, `TypeError`), and each method
    that declares something says what it raises. `nursery` raises
    `RuntimeError` outside the app's lifespan.
    """

    def __init__(
        self,
        *,
        allowed_origins: Iterable[str] | None = None,
        max_connections: int | None = None,
        max_connections_per_client: int | None = None,
        max_body_size: int = 1 << 20,
        inbox_messages: int = Limits.inbox_messages,
        inbox_bytes: int = Limits.inbox_bytes,
        stall_timeout: float = Limits.stall_timeout,
        disconnect_grace: float = Limits.disconnect_grace,
        close_timeout: float = Limits.close_timeout,
        send_timeout: float = Limits.send_timeout,
    ) -> None:
        if inbox_messages < 1 or inbox_bytes < 1:
            raise ValueError("inbox_messages and inbox_bytes must be at least 1")
        self.max_body_size = max_body_size
        self.limits = Limits(
            inbox_messages,
            inbox_bytes,
            stall_timeout,
            disconnect_grace,
            close_timeout,
            send_timeout,
        )
        #: The origin policy and connection limits every WebSocket handshake passes.
        self.guard = Guard(allowed_origins, max_connections, max_connections_per_client)
        #: What the app's WebSocket connections have done: `metrics.snapshot()`.
        self.metrics = Metrics(self.guard.refusals.counts)
        self._checks: list[Check] = []
        self.http_routes: Router[HTTPRoute] = Router("HTTP")
        self.websocket_routes: Router[WebSocketRoute] = Router("WebSocket")
        self.mounts = Mounts()
        self._hooks: dict[str, list[Callable[[], Awaitable[None]]]] = {
            "startup": [],
            "shutdown": [],
        }
        # The lifespans running now: one per server that serves the app.
        self._runs: set[_Run] = set()

    # -- declaring ---------------------------------------------------------------

    def route(
        self, pattern: str, *, methods: Iterable[str] | None = None
    ) -> Callable[[View], View]:
        """Declare an HTTP view `async def view(req, res, **params)` for `pattern`.

        `methods` defaults to `["GET"]`; HEAD is answered wherever GET is. A
        pattern may be declared again for other methods, with other views.

        Applying the decorator raises `ValueError` if the pattern already has a
        view for one of `methods`, is malformed, or matches exactly the paths
        of another pattern (`/a/{x}` and `/a/{y}`, say), and `TypeError` if the
        view is not an async function.
        """
        wanted = [m.upper() for m in (methods or ["GET"])]

        def register(view: View) -> View:
            _require_async("HTTP view", view)
            found = self.http_routes.find(pattern)
            route = found if found is not None else HTTPRoute(pattern)
            for method in wanted:  # all checked before any is added: no half-registered view
                if method in route.views:
                    raise ValueError(f"HTTP route {pattern!r} already has a {method} view")
            route.views.update(dict.fromkeys(wanted, view))
            if found is None:
                self.http_routes.add(pattern, route)
            return view

        return register

    def websocket_route(
        self,
        pattern: str,
        *,
        auto_accept: bool = True,
        value_type: MessageType | None = None,
        receive_type: MessageType | None = None,
        send_type: MessageType | None = None,
        caught_close_codes: Iterable[int] | None = None,
        allowed_origins: Iterable[str] | EllipsisType | None = ...,
        checks: Iterable[Check] = (),
    ) -> Callable[[View], View]:
        """Declare a WebSocket view `async def view(ws, **params)` for `pattern`.

        `value_type` sets both `receive_type` and `send_type` (and wins over
        them); each defaults to `"text"`. `caught_close_codes` are the client
        close codes that end a view quietly; the default is
        `DEFAULT_CAUGHT_CLOSE_CODES` (1000, 1001, 1005, 1006).
        `allowed_origins`, when given, replaces the app's origin policy for
        this route (`None`: the same origin only). `checks` run before the
        handshake is accepted, after the app's (see `websocket_check`).

        Raises `ValueError` for an unknown message type or a malformed origin,
        and, once the decorator is applied, for a malformed pattern or one that
        matches exactly the paths of another WebSocket route. Raises
        `TypeError` if `allowed_origins` is a single string, or a check or the
        view is not an async function.
        """
        for name, kind in (
            ("value_type", value_type),
            ("receive_type", receive_type),
            ("send_type", send_type),
        ):
            if kind is not None and kind not in MESSAGE_TYPES:
                raise ValueError(f"{name}={kind!r} is not a message type (one of {MESSAGE_TYPES})")
        codes = DEFAULT_CAUGHT_CLOSE_CODES if caught_close_codes is None else caught_close_codes
        origins = None if allowed_origins is ... else OriginPolicy(allowed_origins)
        route_checks = tuple(checks)
        for check in route_checks:
            _require_async("WebSocket check", check)

        def register(view: View) -> View:
            _require_async("WebSocket view", view)
            route = WebSocketRoute(
                pattern,
                view,
                auto_accept,
                value_type or receive_type or "text",
                value_type or send_type or "text",
                frozenset(codes),
                origins,
                route_checks,
            )
            self.websocket_routes.add(pattern, route)
            return view

        return register

    def mount(
        self,
        prefix: str,
        app: ASGIApp,
        *,
        allowed_origins: Iterable[str] | EllipsisType | None = ...,
        checks: Iterable[Check] = (),
        app_checks: bool = True,
    ) -> None:
        """Serve another ASGI app's HTTP and WebSockets under `prefix`.

        `app.mount("/legacy", starlette_app)` hands `/legacy` and everything
        under it to `starlette_app` (whole segments: not `/legacyx`), when
        none of this App's own routes matches the path; of several mounts,
        the longest prefix wins. The mounted app sees the prefix added to
        the scope's `root_path`, and the whole path in `path`, as the ASGI
        spec says (and Starlette's `Mount` does).

        A WebSocket handshake to the mounted app passes this App's door
        first, as one to a route does: the origin policy (`allowed_origins`
        replaces the App's for this mount, as on `websocket_route`), the
        connection limits (always), the App's `websocket_check`s (unless
        `app_checks=False`) and then the mount's own `checks`. Only an
        admitted handshake reaches the mounted app.

        Lifespan is not forwarded: the mounted app's startup and shutdown
        do not run unless this App's hooks run them (docs/anyio.md shows
        how). Each app's lifespan stays the one its author wrote for; two
        apps that each claim a server's lifespan cannot both have it.

        Raises `ValueError` for a prefix that is not a plain path (it must
        start with '/' and takes no parameters) or already has an app, or a
        malformed origin; `TypeError` if a check is not an async function,
        or `allowed_origins` is a single string.
        """
        if not callable(app):
            raise TypeError(f"mount() takes an ASGI app, not {app!r}")
        origins = None if allowed_origins is ... else OriginPolicy(allowed_origins)
        mount_checks = tuple(checks)
        for check in mount_checks:
            _require_async("WebSocket check", check)
        self.mounts.add(Mount(normalized_prefix(prefix), app, origins, mount_checks, app_checks))

    def websocket_check(self, check: C) -> C:
        """Declare `async def check(ws)`, run for every WebSocket route before accept.

        Checks run in declaration order, after the origin check and the
        connection limits and before the route's own `checks`; the first to
        refuse with `await ws.reject(status, body=...)` ends the handshake,
        and the view never runs. A check that raises answers 500, logged as
        a view's failure would be. A check must not accept: that is the
        view's to do (or the route's, with `auto_accept`).

        Raises `TypeError` if `check` is not an async function.
        """
        _require_async("WebSocket check", check)
        self._checks.append(check)
        return check

    def on(self, event: Literal["startup", "shutdown"]) -> Callable[[Hook], Hook]:
        """Run an async hook at startup or at shutdown, in declaration order.

        A hook that raises is logged, and the hooks after it do not run; at
        startup that fails the startup, so the server does not start (`serve()`
        raises `StartupFailed`). Raises `ValueError` for an event other than
        `"startup"` or `"shutdown"`, and, once the decorator is applied,
        `TypeError` if the hook is not an async function.
        """
        if event not in self._hooks:
            raise ValueError(f"unknown event {event!r}: use 'startup' or 'shutdown'")

        def register(hook: Hook) -> Hook:
            _require_async(f"{event} hook", hook)
            self._hooks[event].append(hook)
            return hook

        return register

    @property
    def nursery(self) -> trio.Nursery:
        """The app's nursery, open from startup to shutdown, for background tasks.

        Its tasks are cancelled at shutdown, before the shutdown hooks run.
        Each server that runs the app has its own (the nursery belongs to
        one run of the lifespan, not to the app): hooks, views and the tasks
        they start get their server's. A background task that raises is
        logged; the app's other background tasks are then cancelled, and
        the shutdown hooks still run.

        Raises `RuntimeError` outside that span: before startup, once shutdown
        has begun (in a shutdown hook, too), after a background task failed,
        and whenever no server runs the app's lifespan.
        """
        run = _current_run.get()
        if run is None and len(self._runs) == 1:
            # A server that passes no lifespan state to requests: one run only.
            (run,) = self._runs
        if run is None or run.nursery is None:
            raise RuntimeError(
                "app.nursery is open only between startup and shutdown, "
                "while a server runs the app's lifespan"
            )
        return run.nursery

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        shutdown_timeout: float = 5.0,
        max_message_size: int | None = None,
        ping_interval: float = 20.0,
        ping_timeout: float = 20.0,
        compression: bool = False,
        proxy_headers: bool | Literal["x-forwarded", "forwarded"] = False,
        forwarded_allow_ips: str = "127.0.0.1,::1",
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout: float = 5.0,
        task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve the app with trio_boca's own server inside the caller's Trio program.

        `await nursery.start(app.serve, "127.0.0.1", 0)` returns the bound
        `Address` once the server listens. Cancelling the caller stops it
        gracefully. The other arguments are `trio_boca.server.serve`'s.
        """
        from .server import serve

        await serve(
            self,
            host,
            port,
            shutdown_timeout=shutdown_timeout,
            max_message_size=max_message_size,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            compression=compression,
            proxy_headers=proxy_headers,
            forwarded_allow_ips=forwarded_allow_ips,
            ssl_context=ssl_context,
            idle_timeout=idle_timeout,
            task_status=task_status,
        )

    # -- ASGI --------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        # The server copies the lifespan's state into each request's scope:
        # that names the run (and so the app.nursery) this request belongs to.
        run = scope.get("state", {}).get(_RUN)
        token = None if run is None else _current_run.set(run)
        try:
            if kind == "http":
                await self._http(scope, receive, send)
            elif kind == "websocket":
                await self._websocket(scope, receive, send)
        finally:
            if token is not None:
                _current_run.reset(token)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        path = route_path(scope)
        found = self.http_routes.match(path)
        failure: Exception | None = None
        if found is None:
            mount = self.mounts.match(path)
            if mount is not None:
                await mount.app(mount.scope_for(scope), receive, send)
                return
            res = plain(404)
        else:
            route, params = found
            scope["path_params"] = params
            view = route.views.get("GET" if method == "HEAD" else method)
            if view is None:
                res = plain(405, headers={"allow": ", ".join(route.allowed())})
            elif _declared_length(scope) > self.max_body_size:
                res = plain(413, f"request body over {self.max_body_size} bytes")
            else:
                res = Response()
                try:
                    await view(
                        Request(scope, receive, max_body_size=self.max_body_size), res, **params
                    )
                except HTTPError as exc:
                    res = exc.response()
                except ClientDisconnected:
                    return
                except Exception as exc:
                    logger.error(
                        "HTTP view for %s %r failed; answered 500",
                        method,
                        scope["path"],
                        exc_info=exc,
                    )
                    res = plain(500)
                    failure = exc
        try:
            await res.send(send, head=method == "HEAD")
        except OSError:  # ASGI 2.4: the client left (or was cut) while the response went out
            logger.debug("HTTP %s %r: the client left during the response", method, scope["path"])
            return
        if failure is not None and scope.get("extensions", {}).get(RAISE_EXCEPTIONS):
            raise failure

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return  # the client left before the handshake began
        path = route_path(scope)
        found = self.websocket_routes.match(path)
        if found is None:
            mount = self.mounts.match(path)
            if mount is not None:
                failure = await serve_websocket(
                    mount,
                    scope,
                    receive,
                    send,
                    guard=self.guard,
                    app_checks=self._checks,
                    tally=self.metrics.route(mount.pattern),
                    limits=self.limits,
                )
                if failure is not None and scope.get("extensions", {}).get(RAISE_EXCEPTIONS):
                    raise failure
                return
            self.metrics.route("").handshakes[404] += 1
            await _refuse_unknown_path(scope, send)
            return
        route, params = found
        scope["path_params"] = params
        tally = self.metrics.route(route.pattern)
        refusal = self.guard.admit(scope, route.origins)
        if refusal is not None:
            connection = Connection(scope, receive, send, self.limits, tally)
            await connection.run(refusal, {}, auto_accept=False)
            return
        try:
            connection = Connection(
                scope,
                receive,
                send,
                self.limits,
                tally,
                receive_type=route.receive_type,
                send_type=route.send_type,
                caught_close_codes=route.caught_close_codes,
            )
            failure = await connection.run(
                route.view,
                params,
                auto_accept=route.auto_accept,
                checks=(*self._checks, *route.checks),
            )
        finally:
            self.guard.release(scope)
        if failure is not None and scope.get("extensions", {}).get(RAISE_EXCEPTIONS):
            raise failure

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        run = _Run()
        state = scope.get("state")
        if isinstance(state, dict):
            state[_RUN] = run
        token = _current_run.set(run)
        self._runs.add(run)
        started = answered = stopping = False
        from_server: Exception | None = None
        try:
            async with trio.open_nursery() as nursery:
                run.nursery = nursery
                try:
                    started = await self._run_hooks("startup", send)
                    answered = True
                    if started:
                        await receive()  # lifespan.shutdown
                        stopping = True
                except Exception as exc:  # the server's (hypercorn raises on a failed startup)
                    from_server = exc
                run.nursery = None
                nursery.cancel_scope.cancel()  # background tasks end first, then the hooks
        except Exception as exc:
            # A background task failed (perhaps as it was cancelled): said
            # once, and the shutdown hooks still run when the server stops.
            run.nursery = None
            logger.error("a background task in app.nursery failed", exc_info=exc)
            if from_server is None:
                if not answered:  # during startup: the startup failed
                    message = f"a background task in app.nursery failed: {exc!r}"
                    await send({"type": "lifespan.startup.failed", "message": message})
                elif not stopping:
                    await receive()  # lifespan.shutdown
        try:
            if from_server is not None:
                raise from_server
            if started:
                await self._run_hooks("shutdown", send)
        finally:
            # Only now: in a shutdown hook, app.nursery is this run's (closed),
            # never another server's.
            self._runs.discard(run)
            _current_run.reset(token)

    async def _run_hooks(self, event: str, send: Send) -> bool:
        try:
            for hook in self._hooks[event]:
                await hook()
        except Exception as exc:
            message = f"{event} hook {_name(hook)} failed: {type(exc).__name__}: {exc}"
            # A service that cannot be reached (a database, Redis) is not a bug
            # in the app: its message says which, and a traceback adds nothing.
            logger.error(message, exc_info=None if isinstance(exc, OSError) else exc)
            await send({"type": f"lifespan.{event}.failed", "message": message})
            return False
        await send({"type": f"lifespan.{event}.complete"})
        return True


class _Run:
    """One run of the app's lifespan, by one server."""

    def __init__(self) -> None:
        #: Open from the start of startup to the end of the running span.
        self.nursery: trio.Nursery | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> _Run:
        # A run is an identity, not a value: a middleware that deep-copies
        # the scope (hypercorn's proxy fix does) still names the same run.
        return self


#: The lifespan state key that names a request's run (`_Run`).
_RUN = "trio_boca.run"
#: The run of the task at hand: its lifespan's, or its request's.
_current_run: ContextVar[_Run | None] = ContextVar("trio_boca_run", default=None)


def _name(view: object) -> str:
    return str(getattr(view, "__qualname__", view))


def _require_async(kind: str, view: object) -> None:
    if not (
        inspect.iscoroutinefunction(view)
        or inspect.iscoroutinefunction(getattr(view, "__call__", None))  # noqa: B004
    ):
        raise TypeError(f"{kind} {_name(view)!r} must be an async function")


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def _refuse_unknown_path(scope: Scope, send: Send) -> None:
    if "websocket.http.response" in scope.get("extensions", {}):
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"9")]
        await send({"type": "websocket.http.response.start", "status": 404, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": b"Not Found"})
    else:
        await send({"type": "websocket.close", "code": 1000, "reason": ""})
