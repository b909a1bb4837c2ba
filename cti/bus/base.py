"""The event bus interface and the subscription every bus hands out.

Owns: the `EventBus` protocol, topic pattern matching, and `Subscription` (a bounded
buffer of events that is an async iterator and an async context manager).

Must never: know how events travel between publishers and subscribers (that is each
bus implementation's job), or block a publisher on a slow subscriber.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Protocol

from cti.events import Event

log = logging.getLogger(__name__)

DEFAULT_MAX_PENDING = 10_000


class SubscriptionClosed(Exception):
    """`Subscription.get()` was called on (or was waiting when) the subscription closed."""


class EventBus(Protocol):
    async def publish(self, event: Event) -> None: ...

    def publish_nowait(self, event: Event) -> bool:
        """Publish at once when this bus can do it without waiting, and say so; False:
        nothing was done, `await publish(event)` instead. A publisher that emits
        several events per call saves a task for each on the in-process bus."""
        ...

    def subscribe(self, topics: Iterable[str] | None = None) -> "Subscription": ...

    async def close(self) -> None: ...


def validate_patterns(topics: Iterable[str] | None) -> frozenset[str] | None:
    """`None` means every topic. A pattern is an exact topic (`call.offered`), a prefix
    ending in `.*` (`call.*`), or `*`."""
    if topics is None:
        return None
    if isinstance(topics, str):
        # A bare string would otherwise be taken as a set of one-letter topics.
        raise TypeError("topics must be an iterable of topic patterns, not a string")
    patterns = frozenset(topics)
    for p in patterns:
        body = p[:-2] if p.endswith(".*") else p
        if p != "*" and (not body or "*" in body):
            raise ValueError(f"bad topic pattern {p!r}: use 'noun.verb', 'noun.*' or '*'")
    return patterns


def topic_matches(topic: str, patterns: frozenset[str] | None) -> bool:
    if patterns is None or "*" in patterns or topic in patterns:
        return True
    return any(p.endswith(".*") and topic.startswith(p[:-1]) for p in patterns)


class Subscription:
    """Events published after the subscription was made, in publish order per publisher.

    Use it as `async with bus.subscribe(["call.*"]) as sub: async for ev in sub: ...`
    or `await sub.get(timeout=1.0)`. Entering the `async with` waits until the
    subscription's starting point is fixed on the bus (instant in memory, one round trip
    on Redis).

    Events wait in a bounded buffer (`max_pending`). A bus that cannot hold events back
    (the in-memory bus) drops the OLDEST buffered event when the buffer is full, so a
    slow subscriber never blocks a publisher; each drop is counted in `dropped` and
    logged as a warning. A bus backed by a log (Redis streams) instead pauses its reader.

    `close()` ends iteration at once; events still buffered are discarded. It returns an
    awaitable that completes when the bus's reader for this subscription has stopped,
    so both `sub.close()` and `await sub.close()` are correct.
    """

    def __init__(
        self,
        topics: Iterable[str] | None = None,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        on_close: Callable[["Subscription"], None] | None = None,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.topics = validate_patterns(topics)
        self.dropped = 0
        # None in the queue is the end-of-subscription marker.
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=max_pending)
        self._closed = False
        self._ready = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._on_close = on_close

    # --- for bus implementations ------------------------------------------------------

    def wants(self, topic: str) -> bool:
        return not self._closed and topic_matches(topic, self.topics)

    def push_nowait(self, event: Event) -> None:
        """Buffer an event without waiting; drop the oldest buffered one when full."""
        if self._closed:
            return
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
            # Every drop is counted, but only some are logged so a stuck consumer cannot
            # flood the log.
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "slow subscriber %s: buffer of %d full, dropped the oldest event (%d dropped so far)",
                    sorted(self.topics) if self.topics is not None else "*",
                    self._queue.maxsize,
                    self.dropped,
                )
        self._queue.put_nowait(event)

    async def push(self, event: Event) -> None:
        """Buffer an event, waiting for room: for readers that can pause their source."""
        if not self._closed:
            await self._queue.put(event)

    def set_ready(self) -> None:
        self._ready.set()

    def attach_reader(self, task: "asyncio.Task[None]") -> None:
        self._reader = task

    # --- for consumers ---------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def is_ready(self) -> bool:
        return self._ready.is_set()

    async def ready(self) -> None:
        """Wait until the subscription's starting point on the bus is fixed."""
        await self._ready.wait()

    async def get(self, timeout: float | None = None) -> Event:
        """The next event; `TimeoutError` after `timeout` seconds, `SubscriptionClosed`
        once closed."""
        if self._closed:
            raise SubscriptionClosed()
        # asyncio.timeout rather than wait_for: on Python 3.11, wait_for can swallow a
        # cancellation of the caller.
        async with asyncio.timeout(timeout):
            item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # wake any other waiter too
            raise SubscriptionClosed()
        return item

    def close(self) -> Awaitable[None]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        reader = self._reader
        if not self._closed:
            self._closed = True
            if reader is not None:
                reader.cancel()
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)
            self._ready.set()
            if self._on_close is not None:
                self._on_close(self)
        if reader is None or reader.done():
            done.set_result(None)
        else:

            def finished(_task: "asyncio.Task[None]") -> None:
                if not done.done():
                    done.set_result(None)

            reader.add_done_callback(finished)
        return done

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> "Subscription":
        await self.ready()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
