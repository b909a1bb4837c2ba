"""Profile caches: the raw profile document per customer id, in memory or in Redis.

Owns where cached profile documents live and for how long (LRU bound, TTL), and the
guard that keeps a cache outage or a slow cache from reaching the screen pop. Stores
bytes only: what the bytes mean (`profile_query`'s document) and when an entry must go
(the store invalidates after each commit) are the store's business. Must never decide
anything from the clock beyond entry expiry, and never let a cache error escape the
guard: a profile read from the database is always an acceptable answer. A cache
shared by several processes is a `FencedProfileCache`: a fill that an invalidation
from any process overtook is refused, so a slow reader cannot put back what a write
just removed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import redis.asyncio

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 300


class ProfileCache(Protocol):
    """A cache of profile documents keyed by customer id."""

    async def get(self, customer_id: str) -> bytes | None: ...

    async def set(self, customer_id: str, value: bytes) -> None: ...

    async def invalidate(self, *customer_ids: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a read found: the document or None, and what a later `fill` must present
    (a hit may be unusable: corrupt, or holding fewer interactions than asked for)."""

    value: bytes | None
    fence: Any = None


NO_FENCE = Lookup(None)


@runtime_checkable
class FencedProfileCache(ProfileCache, Protocol):
    """A cache shared by several processes that refuses a fill an invalidation overtook.

    `lookup` returns the document, if any, and a fence (what the cache knew of the
    customer then); `fill` stores a document read after that lookup only if no
    invalidation of the customer happened since, whichever process made it.
    """

    async def lookup(self, customer_id: str) -> Lookup: ...

    async def fill(self, customer_id: str, value: bytes, fence: Any) -> bool: ...


class MemoryProfileCache:
    """An LRU cache in this process, at most `max_entries` entries, each kept `ttl_s`.

    Only right for a single hub process (and tests): another process's invalidations
    never reach it. Several hub processes share a `RedisProfileCache`, each with its own
    in-process tier in front (`cache_tiers.TieredProfileCache`).
    """

    def __init__(
        self, max_entries: int = 10_000, ttl_s: float = float(DEFAULT_TTL_S), clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, customer_id: str) -> bytes | None:
        entry = self._entries.get(customer_id)
        if entry is None:
            return None
        expires_at, value = entry
        if self._clock() >= expires_at:
            del self._entries[customer_id]
            return None
        self._entries.move_to_end(customer_id)
        return value

    async def set(self, customer_id: str, value: bytes) -> None:
        self._entries[customer_id] = (self._clock() + self.ttl_s, value)
        self._entries.move_to_end(customer_id)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def invalidate(self, *customer_ids: str) -> None:
        for customer_id in customer_ids:
            self._entries.pop(customer_id, None)


# SET the document only if the customer's generation is still the one the reader saw
# at its miss ('' for none): an invalidation from any process in between bumps it.
_FILL_IF_GENERATION = """
local seen = redis.call('GET', KEYS[2]) or ''
if seen ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""


class RedisProfileCache:
    """Profile documents in Redis under `prefix + customer_id`, each expiring after `ttl_s`.

    The TTL bounds how long an entry can outlive a change nobody invalidated (a writer
    in another system, an invalidation lost while Redis was unreachable). An
    invalidation, in one MULTI, deletes the entries, bumps each customer's generation
    (so that a fill read before it is refused, see `fill`) and publishes the ids as a
    JSON array on `channel`, where every hub process's in-process tier listens.
    """

    def __init__(
        self, client: redis.asyncio.Redis, *, prefix: str = "ctihub:crm:profile:", ttl_s: int = DEFAULT_TTL_S
    ) -> None:
        self._client = client
        self._prefix = prefix
        # Not under `prefix`: a customer id may be any text, "gen:..." included.
        self._generation_prefix = prefix.rstrip(":") + "-generation:"
        self.channel = prefix.rstrip(":") + "-invalidated"
        self.ttl_s = ttl_s
        self._fill_script = client.register_script(_FILL_IF_GENERATION)

    def _key(self, customer_id: str) -> str:
        return self._prefix + customer_id

    def _generation_key(self, customer_id: str) -> str:
        return self._generation_prefix + customer_id

    async def get(self, customer_id: str) -> bytes | None:
        value = await self._client.get(self._key(customer_id))
        return _as_bytes(value)

    async def lookup(self, customer_id: str) -> Lookup:
        value, generation = await self._client.mget(self._key(customer_id), self._generation_key(customer_id))
        return Lookup(_as_bytes(value), _as_bytes(generation) or b"")

    async def set(self, customer_id: str, value: bytes) -> None:
        await self._client.set(self._key(customer_id), value, ex=self.ttl_s)

    async def fill(self, customer_id: str, value: bytes, fence: Any) -> bool:
        stored = await self._fill_script(
            keys=[self._key(customer_id), self._generation_key(customer_id)],
            args=[value, fence if isinstance(fence, bytes) else b"", self.ttl_s],
        )
        return bool(stored)

    async def invalidate(self, *customer_ids: str) -> None:
        if not customer_ids:
            return
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(*(self._key(c) for c in customer_ids))
            for customer_id in customer_ids:
                pipe.incr(self._generation_key(customer_id))
                # A generation only has to outlive the fills in flight; the TTL is ample.
                pipe.expire(self._generation_key(customer_id), self.ttl_s)
            pipe.publish(self.channel, json.dumps(list(customer_ids)))
            await pipe.execute()


def _as_bytes(value: object) -> bytes | None:
    if value is None:
        return None
    return value if isinstance(value, bytes) else str(value).encode()


class GuardedCache:
    """Wraps a `ProfileCache` so that its failures become misses and log lines.

    Each call gets at most `timeout_s`. After a failure the cache is left alone for
    `retry_after_s` (reads and fills skip it), so an outage costs one timeout per
    period, not one per screen pop. An invalidation that fails or is skipped means an
    entry may now be stale, and only its TTL will end it: reads then bypass the cache
    for `distrust_s` (set it to the cache's TTL), while fills go on refreshing entries.
    Down and back are logged once each, not on every call.
    """

    def __init__(
        self,
        cache: ProfileCache,
        *,
        timeout_s: float = 0.25,
        retry_after_s: float = 5.0,
        distrust_s: float = float(DEFAULT_TTL_S),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache
        self._fenced = isinstance(cache, FencedProfileCache)
        self._timeout_s = timeout_s
        self._retry_after_s = retry_after_s
        self._distrust_s = distrust_s
        self._clock = clock
        self._down = False
        self._skip_until = float("-inf")
        self._distrust_until = float("-inf")

    def _failed(self, action: str, exc: BaseException) -> None:
        self._skip_until = self._clock() + self._retry_after_s
        if not self._down:
            self._down = True
            log.warning("profile cache unavailable (%s failed: %r); reading profiles from the database", action, exc)
        else:
            log.debug("profile cache still unavailable (%s failed: %r)", action, exc)

    def _ok(self) -> None:
        if self._down:
            self._down = False
            log.warning("profile cache is back; cached profiles are trusted again in %.0f s",
                        max(self._distrust_until - self._clock(), 0.0))

    async def get(self, customer_id: str) -> bytes | None:
        return (await self.lookup(customer_id)).value

    async def lookup(self, customer_id: str) -> Lookup:
        """The cached document, or a miss with the fence `fill` will need (caches
        that are not `FencedProfileCache`s have none)."""
        now = self._clock()
        if now < self._skip_until or now < self._distrust_until:
            return NO_FENCE
        try:
            async with asyncio.timeout(self._timeout_s):
                if self._fenced:
                    found = await self.cache.lookup(customer_id)  # type: ignore[attr-defined]
                else:
                    found = Lookup(await self.cache.get(customer_id))
        # Whatever broke (connection, timeout, protocol, a bug in a cache class), the
        # database can still answer: no cache error may cost a screen pop.
        except Exception as exc:  # noqa: BLE001
            self._failed("get", exc)
            return NO_FENCE
        self._ok()
        return found

    async def fill(self, customer_id: str, value: bytes, fence: Any) -> None:
        """Store what the database answered after `lookup` missed, unless overtaken."""
        if not self._fenced:
            await self.set(customer_id, value)
            return
        if fence is None or self._clock() < self._skip_until:
            return  # the miss did not reach the cache: nothing proves the fill fresh
        try:
            async with asyncio.timeout(self._timeout_s):
                await self.cache.fill(customer_id, value, fence)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 (see lookup)
            self._failed("fill", exc)
            return
        self._ok()

    async def set(self, customer_id: str, value: bytes) -> None:
        if self._clock() < self._skip_until:
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await self.cache.set(customer_id, value)
        except Exception as exc:  # noqa: BLE001 (see get)
            self._failed("set", exc)
            return
        self._ok()

    async def invalidate(self, *customer_ids: str) -> None:
        if self._clock() >= self._skip_until:
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self.cache.invalidate(*customer_ids)
            except Exception as exc:  # noqa: BLE001 (see get)
                self._failed("invalidate", exc)
            else:
                self._ok()
                return
        self._distrust_until = max(self._distrust_until, self._clock() + self._distrust_s)
        log.debug("profile cache invalidation of %s not done; cached profiles distrusted for %.0f s",
                  ", ".join(customer_ids), self._distrust_s)


class FillGuard:
    """Stops a read that raced a write from leaving what it read before the write cached.

    A read takes a ticket before querying; invalidating a customer voids the tickets of
    reads in flight for it. A read fills the cache only with a valid ticket, and checks
    again once the entry is stored: a write that landed meanwhile may have deleted the
    entry before the read's SET arrived, so the read deletes it again. Holds entries
    only for reads in flight. Covers writes made through this process; a
    `FencedProfileCache` also refuses fills that other processes' writes overtook, and
    for the rest (writers that bypass the hub) the cache TTL bounds the staleness.
    """

    def __init__(self) -> None:
        self._tickets: dict[str, set[object]] = {}

    def begin(self, customer_id: str) -> object:
        ticket = object()
        self._tickets.setdefault(customer_id, set()).add(ticket)
        return ticket

    def void(self, *customer_ids: str) -> None:
        for customer_id in customer_ids:
            self._tickets.pop(customer_id, None)

    def valid(self, customer_id: str, ticket: object) -> bool:
        """True while no invalidation of `customer_id` has happened since `begin`."""
        return ticket in self._tickets.get(customer_id, ())

    def end(self, customer_id: str, ticket: object) -> None:
        tickets = self._tickets.get(customer_id)
        if tickets is not None:
            tickets.discard(ticket)
            if not tickets:
                del self._tickets[customer_id]


__all__ = [
    "DEFAULT_TTL_S",
    "NO_FENCE",
    "FencedProfileCache",
    "FillGuard",
    "GuardedCache",
    "Lookup",
    "MemoryProfileCache",
    "ProfileCache",
    "RedisProfileCache",
]
