"""Rooms and broadcast: publish to a channel, and every subscriber gets it.

    broadcast = Broadcast("memory://")          # one process, no set-up
    broadcast = Broadcast("redis://host:6379/0")  # many workers and hosts

    await broadcast.publish("room:lobby", {"text": "hi"})
    async with broadcast.subscribe("room:lobby") as subscription:
        async for message in subscription:
            ...

A broadcast runs as a task (`await nursery.start(broadcast.run)`, usually
from a startup hook into `app.nursery`), which holds the Redis connection.

Delivery: every subscriber of a channel gets every message published after
it subscribed, once, in the order each publisher published them (Redis keeps
the order of one connection's publishes; each process publishes through one).
What a subscriber cannot keep up with, or what is published while Redis is
unreachable, is not delivered late: the subscriber is told, with an
exception, and the publisher never waits for anyone.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import trio

from ._errors import leaves, plain_errors
from ._running import Running

logger = logging.getLogger("trio_boca")

#: What can be published: str and bytes come back as they went; anything
#: else is sent as JSON and comes back decoded.
Message = Any


class SlowSubscriber(Exception):
    """This subscriber fell `buffer` messages behind and was dropped.

    The publisher does not wait for slow subscribers, and the broadcast does
    not buffer without bound: the subscriber learns, here, that it missed
    messages. Left to escape a WebSocket view, it closes that socket with
    1008 and the reason.
    """

    close_code = 1008

    def __init__(self, channel: str, buffer: int) -> None:
        self.reason = f"too slow: fell {buffer} messages behind on {channel!r}"
        super().__init__(self.reason)


class BroadcastUnavailable(ConnectionError):
    """The broadcast cannot deliver: its Redis connection is down.

    A `ConnectionError`, so that a startup hook that cannot reach Redis is
    reported as one line, like any service that cannot be reached.

    Raised by `publish()` and `subscribe()` while it is down, and by the
    iteration of every subscription open when it went down (what was
    published meanwhile is lost). The broadcast reconnects by itself, with
    backoff. Left to escape a WebSocket view, it closes that socket with 1013
    ("try again later").
    """

    close_code = 1013
    reason = "broadcast unavailable; try again later"


class Subscription:
    """One subscriber's view of a channel; iterate it for messages.

    Iteration raises `SlowSubscriber` once the subscriber has fallen too far
    behind, and `BroadcastUnavailable` once the broadcast can no longer
    deliver (Redis went down, or the broadcast stopped running): either way,
    messages were lost, and the subscription is over.
    """

    def __init__(self, channel: str, buffer: int) -> None:
        self.channel = channel
        self._buffer = buffer
        self._send, self._receive = trio.open_memory_channel[bytes](buffer)
        self._failure: Exception | None = None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._failure is None:
            try:
                # Take what is already queued without yielding: a subscriber
                # woken once drains its backlog in one turn, instead of one
                # message a turn, which would let any two publishers outrun it.
                try:
                    payload = self._receive.receive_nowait()
                except trio.WouldBlock:
                    payload = await self._receive.receive()
                return _decode(payload)
            except trio.EndOfChannel:
                pass  # closed by _fail
        raise self._failure or StopAsyncIteration

    def _offer(self, payload: bytes) -> bool:
        """Queue a message; False (and the subscriber failed) if it is too slow."""
        try:
            self._send.send_nowait(payload)
        except trio.WouldBlock:
            self._fail(SlowSubscriber(self.channel, self._buffer))
            return False
        except trio.ClosedResourceError:
            return False
        return True

    def _fail(self, failure: Exception) -> None:
        if self._failure is None:
            self._failure = failure
        self._send.close()


class _Hub:
    """The subscriptions of this process, by channel."""

    def __init__(self) -> None:
        self.channels: dict[str, set[Subscription]] = {}

    def add(self, subscription: Subscription) -> bool:
        """Register; True if it is the channel's first subscriber here."""
        subscribers = self.channels.setdefault(subscription.channel, set())
        subscribers.add(subscription)
        return len(subscribers) == 1

    def remove(self, subscription: Subscription) -> bool:
        """Unregister; True if it was the channel's last subscriber here."""
        subscribers = self.channels.get(subscription.channel, set())
        subscribers.discard(subscription)
        if subscribers:
            return False
        self.channels.pop(subscription.channel, None)
        return True

    def deliver(self, channel: str, payload: bytes) -> None:
        for subscription in list(self.channels.get(channel, ())):
            if not subscription._offer(payload):
                self.remove(subscription)

    def fail_all(self, failure: type[Exception]) -> None:
        for subscribers in list(self.channels.values()):
            for subscription in list(subscribers):
                subscription._fail(failure())
        self.channels.clear()


class Broadcast(Running):
    """Publish/subscribe across one process (`memory://`) or many (`redis://`).

    `buffer` is how many messages a subscription may hold unread before the
    subscriber is dropped with `SlowSubscriber`. Raises `ValueError` for a
    `buffer` below 1, or a URL that is neither `memory://` nor a Redis one
    (`redis://`, `rediss://`, `unix://`).

    It runs once at a time, as `run()` or as `async with broadcast:`; starting
    it again while it runs raises `RuntimeError`, and so do `publish()` and
    `subscribe()` while it is not running.
    """

    def __init__(self, url: str = "memory://", *, buffer: int = 100) -> None:
        if buffer < 1:
            raise ValueError("buffer must be at least 1")
        self.url = url
        self.buffer = buffer
        self._hub = _Hub()
        if url == "memory://":
            self._backend: _Backend = _Memory(self._hub)
        elif url.startswith(("redis://", "rediss://", "unix://")):
            self._backend = _Redis(url, self._hub)
        else:
            raise ValueError(
                f"unknown broadcast URL {url!r}: use memory:// or redis://host:port/db"
            )
        self._is_running = False

    # -- running ------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, and serve publishers and subscribers until cancelled.

        Reports started once connected, so a Redis that cannot be reached at
        startup fails the startup. Later losses are survived: see
        `BroadcastUnavailable`.

        Raises `RuntimeError` if this broadcast is running already, and
        `BroadcastUnavailable` if Redis cannot be reached at the start. When it
        ends, every open subscription fails with `BroadcastUnavailable`.
        """
        if self._is_running:
            raise RuntimeError("this Broadcast is already running")
        self._is_running = True
        try:
            with plain_errors():
                await self._backend.run(task_status)
        except Exception as exc:
            if trio.current_effective_deadline() != -math.inf:
                raise
            # Raised on the way out of a cancellation (coredis fails so when
            # Redis stops answering): the broadcast was stopping anyway.
            logger.warning("broadcast: %s failed as it stopped: %r", _shown(self.url), exc)
            await trio.lowlevel.checkpoint()  # the cancellation goes on
        finally:
            self._is_running = False
            self._hub.fail_all(BroadcastUnavailable)

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        with plain_errors():
            async with trio.open_nursery() as nursery:
                await nursery.start(self.run)
                yield
                nursery.cancel_scope.cancel()

    def _require_running(self) -> None:
        if not self._is_running:
            raise RuntimeError(
                "this Broadcast is not running: start it with "
                "`await app.nursery.start(broadcast.run)` in a startup hook, "
                "or use `async with broadcast:`"
            )

    # -- publishing and subscribing --------------------------------------------

    async def publish(self, channel: str, message: Message) -> None:
        """Send `message` (str, bytes, or anything JSON can encode) to `channel`.

        Never waits for subscribers. Raises `BroadcastUnavailable` while the
        Redis connection is down: nothing is dropped silently. Raises
        `RuntimeError` if the broadcast is not running, and `TypeError` for a
        message that is not str, bytes or JSON-able.
        """
        self._require_running()
        await self._backend.publish(channel, _encode(message))

    @asynccontextmanager
    async def subscribe(
        self, channel: str, *, buffer: int | None = None
    ) -> AsyncIterator[Subscription]:
        """Subscribe to `channel` for the duration of the block.

        Leaving the block, by any road (cancellation included), unsubscribes.
        `buffer` replaces the broadcast's for this subscription. Raises
        `RuntimeError` if the broadcast is not running, and
        `BroadcastUnavailable` while the Redis connection is down; see
        `Subscription` for what iterating it raises.
        """
        self._require_running()
        subscription = Subscription(channel, buffer or self.buffer)
        if self._hub.add(subscription):
            try:
                await self._backend.subscribe(channel)
            except BaseException:
                self._hub.remove(subscription)
                raise
        try:
            yield subscription
        finally:
            if self._hub.remove(subscription):
                with trio.CancelScope(shield=True):
                    await self._backend.unsubscribe(channel)


# -- backends --------------------------------------------------------------------


class _Backend:
    async def run(self, task_status: trio.TaskStatus[None]) -> None:
        raise NotImplementedError

    async def publish(self, channel: str, payload: bytes) -> None:
        raise NotImplementedError

    async def subscribe(self, channel: str) -> None:
        await trio.lowlevel.checkpoint()

    async def unsubscribe(self, channel: str) -> None:
        await trio.lowlevel.checkpoint()


class _Memory(_Backend):
    def __init__(self, hub: _Hub) -> None:
        self._hub = hub

    async def run(self, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def publish(self, channel: str, payload: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self._hub.deliver(channel, payload)


class _Redis(_Backend):
    """Redis pub/sub through coredis.

    One connection listens for every channel this process subscribes to; the
    client's pool publishes. coredis would reconnect the listener silently,
    losing what was published meanwhile without a word, so its retries are
    off and this class reconnects itself, telling subscribers first.
    """

    MAX_BACKOFF = 5.0

    def __init__(self, url: str, hub: _Hub) -> None:
        self._url = url
        self._hub = hub
        self._client: Any = None
        self._pubsub: Any = None
        self._lock = trio.Lock()

    async def run(self, task_status: trio.TaskStatus[None]) -> None:
        import coredis

        self._client = coredis.Redis.from_url(self._url)
        started = False
        backoff = 0.1
        async with self._client:
            while True:
                try:
                    async with self._client.pubsub(
                        retry_policy=None, ignore_subscribe_messages=True
                    ) as pubsub:
                        self._pubsub = pubsub
                        if started:
                            logger.info("broadcast: Redis at %s is back", _shown(self._url))
                        else:
                            started = True
                            task_status.started()
                        backoff = 0.1
                        while True:
                            message = await pubsub.get_message()
                            if message is not None and message["type"] == "message":
                                self._hub.deliver(_text(message["channel"]), message["data"])
                except BaseException as exc:
                    if not _connection_lost(exc):
                        raise
                    self._pubsub = None
                    self._hub.fail_all(BroadcastUnavailable)
                    if not started:  # a Redis out of reach at startup fails the startup
                        raise BroadcastUnavailable(
                            f"cannot reach Redis at {_shown(self._url)}"
                        ) from exc
                    logger.warning(
                        "broadcast: lost Redis at %s; reconnecting in %.1f s",
                        _shown(self._url),
                        backoff,
                    )
                await trio.sleep(backoff)
                backoff = min(backoff * 2, self.MAX_BACKOFF)

    async def publish(self, channel: str, payload: bytes) -> None:
        if self._pubsub is None:
            await trio.lowlevel.checkpoint()
            raise BroadcastUnavailable
        try:
            await self._client.publish(channel, payload)
        except Exception as exc:
            if _connection_lost(exc):
                raise BroadcastUnavailable from exc
            raise

    async def subscribe(self, channel: str) -> None:
        async with self._lock:
            if self._pubsub is None:
                raise BroadcastUnavailable
            try:
                await self._pubsub.subscribe(channel)
            except Exception as exc:
                if _connection_lost(exc):
                    raise BroadcastUnavailable from exc
                raise

    async def unsubscribe(self, channel: str) -> None:
        async with self._lock:
            if self._pubsub is not None:
                try:
                    await self._pubsub.unsubscribe(channel)
                except Exception as exc:
                    if not _connection_lost(exc):
                        raise


def _connection_lost(exc: BaseException) -> bool:
    """Whether `exc` (or every real error in the group it is) is a lost connection."""
    from coredis.exceptions import ConnectionError as RedisConnectionError

    errors = [e for e in leaves(exc) if not isinstance(e, trio.Cancelled)]
    lost = (RedisConnectionError, ConnectionError, OSError, TimeoutError)
    return bool(errors) and all(isinstance(e, lost) for e in errors)


def _text(channel: str | bytes) -> str:
    return channel.decode() if isinstance(channel, bytes) else channel


# One tag byte says how to give a message back: as text, as bytes, or as JSON.


def _encode(message: Message) -> bytes:
    if isinstance(message, str):
        return b"s" + message.encode()
    if isinstance(message, (bytes, bytearray, memoryview)):
        return b"b" + bytes(message)
    try:
        return b"j" + json.dumps(message).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"a broadcast message must be str, bytes or JSON-able: {exc}") from None


def _decode(payload: bytes) -> Message:
    tag, body = payload[:1], payload[1:]
    if tag == b"s":
        return body.decode()
    if tag == b"b":
        return body
    return json.loads(body)


def _shown(url: str) -> str:
    """The URL as logs and errors show it: its password, if any, masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
