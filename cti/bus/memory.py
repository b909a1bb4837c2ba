"""The in-process event bus: the default when no Redis is configured.

Owns: fanning each published event out to the live subscriptions of this process.

Must never: await inside `publish` on a subscriber (a full subscriber buffer drops its
oldest event instead, see `Subscription`), or share events with other processes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from cti.bus.base import DEFAULT_MAX_PENDING, Subscription
from cti.events import Event

log = logging.getLogger(__name__)


class InMemoryBus:
    def __init__(self, *, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self._max_pending = max_pending
        self._subs: list[Subscription] = []
        self._closed = False

    async def publish(self, event: Event) -> None:
        if self._closed:
            raise RuntimeError("publish on a closed bus")
        self._fan_out(event)

    def publish_nowait(self, event: Event) -> bool:
        """Always done at once: a subscriber's buffer never makes a publisher wait. On
        a closed bus the event is dropped and logged (the hub is stopping)."""
        if self._closed:
            log.warning("event %s published on a closed bus: dropped", event.topic)
            return True
        self._fan_out(event)
        return True

    def _fan_out(self, event: Event) -> None:
        for sub in tuple(self._subs):
            if sub.wants(event.topic):
                sub.push_nowait(event)

    def subscribe(self, topics: Iterable[str] | None = None) -> Subscription:
        if self._closed:
            raise RuntimeError("subscribe on a closed bus")
        sub = Subscription(topics, max_pending=self._max_pending, on_close=self._subs.remove)
        self._subs.append(sub)
        sub.set_ready()
        return sub

    async def close(self) -> None:
        self._closed = True
        for sub in tuple(self._subs):
            await sub.close()
