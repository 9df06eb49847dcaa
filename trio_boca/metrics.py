"""What an app's WebSocket connections have done: counts for operators.

    app.metrics.snapshot()                      # in-process, a plain dict
    app.route("/metrics")(prometheus(app))      # Prometheus' text format

Counts are kept per route pattern (never per path: a path can carry
anything a client chooses), since the app started, in this process.
Messages are counted as they pass; everything else once, when a
connection ends, where the connection decides why it ended.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import App
    from .http import Request, Response


class RouteTally:
    """One route's counts."""

    __slots__ = ("closes", "ends", "handshakes", "messages_in", "messages_out", "open")

    def __init__(self) -> None:
        #: Connections accepted and not yet ended.
        self.open = 0
        #: Handshakes by answer: 101 accepted, else the HTTP status.
        self.handshakes: Counter[int] = Counter()
        #: Ended connections by close code: the first side's to close.
        self.closes: Counter[int] = Counter()
        #: Ended connections by why (see docs/errors.md): "returned",
        #: "client_left", "stalled", "keepalive", "write_timeout", ..., or
        #: the class of an exception that named its close code
        #: ("SlowSubscriber").
        self.ends: Counter[str] = Counter()
        self.messages_in = 0
        self.messages_out = 0


class Metrics:
    """Every route's counts, and the refusals at the door (`app.guard`)."""

    def __init__(self, refusals: Counter[str]) -> None:
        self.routes: dict[str, RouteTally] = {}
        self.refusals = refusals

    def route(self, pattern: str) -> RouteTally:
        """The tally of a route pattern ("" for handshakes no route matched)."""
        tally = self.routes.get(pattern)
        if tally is None:
            tally = self.routes[pattern] = RouteTally()
        return tally

    def snapshot(self) -> dict[str, Any]:
        """Every count now, as plain data: `{"routes": {pattern: {...}}, "refusals": {...}}`."""
        return {
            "routes": {
                pattern: {
                    "open": tally.open,
                    "handshakes": dict(tally.handshakes),
                    "closes": dict(tally.closes),
                    "ends": dict(tally.ends),
                    "messages_in": tally.messages_in,
                    "messages_out": tally.messages_out,
                }
                for pattern, tally in self.routes.items()
            },
            "refusals": dict(self.refusals),
        }


def prometheus(app: App) -> Callable[[Request, Response], Awaitable[None]]:
    """An HTTP view that serves `app.metrics` in Prometheus' text format.

    Mount it where your scraper looks: `app.route("/metrics")(prometheus(app))`.
    Needs `prometheus_client` (`pip install "trio_boca[metrics]"`). The
    counts are this process's: with `--workers N`, each worker answers
    for itself (scrape each, or give each its own port).
    """
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(app.metrics))

    async def metrics(req: Request, res: Response) -> None:
        res.content = generate_latest(registry)
        res.headers["content-type"] = CONTENT_TYPE_LATEST

    return metrics


class _Collector:
    """Reads `Metrics` for prometheus_client at each scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        prefix = "trio_boca_websocket_"
        connections = GaugeMetricFamily(
            prefix + "connections", "Open WebSocket connections", labels=["route"]
        )
        handshakes = CounterMetricFamily(
            prefix + "handshakes",
            "WebSocket handshakes by answer (101: accepted)",
            labels=["route", "status"],
        )
        closes = CounterMetricFamily(
            prefix + "closes", "Ended WebSocket connections by close code", labels=["route", "code"]
        )
        ends = CounterMetricFamily(
            prefix + "ends", "Ended WebSocket connections by why", labels=["route", "reason"]
        )
        messages = CounterMetricFamily(
            prefix + "messages", "WebSocket messages", labels=["route", "direction"]
        )
        refusals = CounterMetricFamily(
            prefix + "refusals",
            "Handshakes refused by the origin check or the connection limits",
            labels=["reason"],
        )
        for route, tally in sorted(self.metrics.routes.items()):
            connections.add_metric([route], tally.open)
            for status, count in sorted(tally.handshakes.items()):
                handshakes.add_metric([route, str(status)], count)
            for code, count in sorted(tally.closes.items()):
                closes.add_metric([route, str(code)], count)
            for reason, count in sorted(tally.ends.items()):
                ends.add_metric([route, reason], count)
            messages.add_metric([route, "in"], tally.messages_in)
            messages.add_metric([route, "out"], tally.messages_out)
        for reason, count in sorted(self.metrics.refusals.items()):
            refusals.add_metric([reason], count)
        yield from (connections, handshakes, closes, ends, messages, refusals)
