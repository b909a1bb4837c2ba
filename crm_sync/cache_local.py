"""The in-process tier of the profile cache: a bounded LRU with a TTL that is only
trusted while the feed of invalidations from every hub process is provably alive.

Owns which documents this process keeps, for how long, and the rules that keep them
from going stale: a fill is refused when an invalidation of its customer (or a clear)
happened after the fill began (fill tickets are generation numbers, so an abandoned
fill costs nothing); nothing is served or stored while the feed is down or has been
silent too long; a feed that (re)starts empties everything, since what was published
while it was away is lost. Pure: no asyncio, no Redis, no clock (every `now` is an
argument). Must never serve an entry it cannot prove fresh: a miss costs one Redis
round trip, a stale screen pop costs a wrong answer to a customer.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")

DEFAULT_LOCAL_ENTRIES = 10_000
DEFAULT_LOCAL_TTL_S = 60.0
DEFAULT_MAX_SILENCE_S = 3.0
# How many customers' last invalidation are remembered to check fills against; a fill
# older than the oldest one forgotten is refused (rare: it needs this many distinct
# invalidations while one Redis round trip or one profile query is in flight).
DEFAULT_REMEMBERED_INVALIDATIONS = 10_000


class LocalProfileTier(Generic[V]):
    """Values (profile documents and what goes with them) of this process, by customer id.

    The feed (the subscriber to the shared invalidation channel) reports through
    `feed_started`, `feed_heard` and `feed_lost`; readers use `get`, then `ticket`
    before asking the shared tier or the database and `put` with that ticket after.
    """

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_LOCAL_ENTRIES,
        ttl_s: float = DEFAULT_LOCAL_TTL_S,
        max_silence_s: float = DEFAULT_MAX_SILENCE_S,
        remembered_invalidations: int = DEFAULT_REMEMBERED_INVALIDATIONS,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if remembered_invalidations < 1:
            raise ValueError("remembered_invalidations must be at least 1")
        self.ttl_s = ttl_s
        self._max_entries = max_entries
        self._max_silence_s = max_silence_s
        self._remembered = remembered_invalidations
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        # Generations: every invalidation or clear takes the next number. A ticket is
        # the generation a fill began in; it may land only if nothing that concerns
        # its customer took a later one.
        self._generation = 0
        self._cleared_at = 0
        self._forgotten_up_to = 0
        self._invalidated_at: OrderedDict[str, int] = OrderedDict()
        self._live = False
        self._heard_at = float("-inf")

    def __len__(self) -> int:
        return len(self._entries)

    # --- the feed -----------------------------------------------------------------

    def feed_started(self, now: float) -> None:
        """The subscription is (again) in place: anything published before may be lost."""
        self.clear()
        self._live = True
        self._heard_at = now

    def feed_heard(self, now: float) -> None:
        """A message or a reply to a ping came in on the feed's connection."""
        self._heard_at = max(self._heard_at, now)

    def feed_lost(self) -> None:
        """The feed's connection failed: invalidations may be passing us by."""
        self.clear()
        self._live = False

    def silent(self, now: float) -> bool:
        """Whether the feed has said nothing for longer than it may (see `trusted`)."""
        return now - self._heard_at > self._max_silence_s

    def trusted(self, now: float) -> bool:
        """Whether entries may be served and stored at `now`: the feed is up and has
        been heard from lately (a connection that died without a word stops
        invalidations as surely as one that failed)."""
        return self._live and not self.silent(now)

    # --- entries ------------------------------------------------------------------

    def get(self, customer_id: str, now: float) -> V | None:
        entry = self._entries.get(customer_id)
        if entry is None or not self.trusted(now):
            return None
        expires_at, value = entry
        if now >= expires_at:
            del self._entries[customer_id]
            return None
        self._entries.move_to_end(customer_id)
        return value

    def ticket(self) -> int:
        """What `put` needs to know whether an invalidation overtook the fill."""
        return self._generation

    def fresh(self, customer_id: str, ticket: int) -> bool:
        """True while no invalidation of `customer_id` and no clear happened since `ticket`."""
        if ticket < self._cleared_at or ticket < self._forgotten_up_to:
            return False
        return self._invalidated_at.get(customer_id, 0) <= ticket

    def put(self, customer_id: str, value: V, ticket: int, now: float) -> bool:
        """Keep `value` unless the fill that read it is overtaken or the feed is not trusted."""
        if not self.trusted(now) or not self.fresh(customer_id, ticket):
            return False
        self._entries[customer_id] = (now + self.ttl_s, value)
        self._entries.move_to_end(customer_id)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return True

    def invalidate(self, *customer_ids: str) -> None:
        if not customer_ids:
            return
        self._generation += 1
        for customer_id in customer_ids:
            self._entries.pop(customer_id, None)
            self._invalidated_at[customer_id] = self._generation
            self._invalidated_at.move_to_end(customer_id)
        while len(self._invalidated_at) > self._remembered:
            _, generation = self._invalidated_at.popitem(last=False)
            self._forgotten_up_to = max(self._forgotten_up_to, generation)

    def clear(self) -> None:
        """Drop every entry and refuse every fill that began before now."""
        self._generation += 1
        self._cleared_at = self._generation
        self._entries.clear()
        # Older records can no longer decide anything: every older ticket is refused.
        self._invalidated_at.clear()


__all__ = [
    "DEFAULT_LOCAL_ENTRIES",
    "DEFAULT_LOCAL_TTL_S",
    "DEFAULT_MAX_SILENCE_S",
    "DEFAULT_REMEMBERED_INVALIDATIONS",
    "LocalProfileTier",
]
