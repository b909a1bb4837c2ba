"""The event bus: one interface, in-process or over a Redis stream.

Owns: the public surface of the bus package and the choice of implementation.
Must never: hold routing, call or CRM logic; it moves `cti.events.Event`s, nothing else.
"""

from __future__ import annotations

from cti.bus.base import EventBus, Subscription, SubscriptionClosed, topic_matches
from cti.bus.memory import InMemoryBus
from cti.bus.redis_streams import RedisStreamsBus

__all__ = [
    "EventBus",
    "InMemoryBus",
    "RedisStreamsBus",
    "Subscription",
    "SubscriptionClosed",
    "make_bus",
    "topic_matches",
]


def make_bus(redis_url: str | None) -> EventBus:
    """The Redis streams bus when a Redis URL is configured, else the in-process bus."""
    if redis_url:
        return RedisStreamsBus(redis_url)
    return InMemoryBus()
