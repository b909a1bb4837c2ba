"""The two-level profile cache of a hub process: its own `LocalProfileTier` in front of
the `RedisProfileCache` every hub process shares, kept honest by a feed of invalidations.

Owns the asyncio/Redis shell: a lookup tries this process's tier, then Redis; a fill
goes to Redis only if no invalidation overtook it (the generation fence) and then to
this process's tier; an invalidation empties this process's tier at once and, through
Redis, every other process's (one MULTI: delete, bump the generation, publish). The
feed is one task holding a subscription on its own connection, with no automatic
reconnection, so that a lost connection is seen, not papered over: the local tier
stops serving, and empties itself when the subscription is back. A silent connection
is pinged every `heartbeat_s`; what counts as too silent is the local tier's rule.
Must never let a Redis error escape except through the calls `GuardedCache` wraps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from crm_sync.cache import Lookup, RedisProfileCache
from crm_sync.cache_local import DEFAULT_MAX_SILENCE_S, LocalProfileTier

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_S = 1.0
DEFAULT_RETRY_S = 0.5
CLOSE_WAIT_S = 2.0

# What the local tier keeps: the document and the Redis generation it was current at,
# so that a hit that turns out unusable can still fence the fill that replaces it.
LocalEntry = tuple[bytes, bytes]


def feed_client(url: str) -> redis.asyncio.Redis:
    """A Redis client for the feed: no retries, so that every lost connection surfaces."""
    return redis.asyncio.from_url(url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=2.0)


class TieredProfileCache:
    """A `FencedProfileCache`: this process's tier in front of the shared Redis one.

    `start` launches the feed; until it has subscribed (and whenever it is down) the
    local tier is skipped and every read goes to Redis. `close` stops it.
    """

    def __init__(
        self,
        shared: RedisProfileCache,
        feed: redis.asyncio.Redis,
        *,
        local: LocalProfileTier[LocalEntry] | None = None,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        retry_s: float = DEFAULT_RETRY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shared = shared
        self.local: LocalProfileTier[LocalEntry] = local or LocalProfileTier(
            max_silence_s=max(DEFAULT_MAX_SILENCE_S, 3 * heartbeat_s)
        )
        self._feed = feed
        self._heartbeat_s = heartbeat_s
        self._retry_s = retry_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._lost_said = False
        self.subscriptions = 0  # how many times the feed (re)subscribed

    @property
    def ttl_s(self) -> int:
        # What a failed invalidation leaves stale for at most (see GuardedCache).
        return self.shared.ttl_s

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="profile-cache-feed")

    async def wait_subscribed(self, timeout_s: float) -> bool:
        """Whether the feed is subscribed within `timeout_s` (for callers that want the
        local tier from their first read, like a benchmark)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._subscribed.wait()
        return self._subscribed.is_set()

    async def close(self) -> None:
        """Stop the feed and close its connection, in at most about `CLOSE_WAIT_S` twice:
        a Redis read being torn down must never hold up a hub's shutdown."""
        if self._task is not None:
            self._task.cancel()
            done, _ = await asyncio.wait({self._task}, timeout=CLOSE_WAIT_S)
            if not done:
                log.warning("profile cache invalidation feed did not stop within %.0f s", CLOSE_WAIT_S)
            self._task = None
        self.local.feed_lost()
        try:
            async with asyncio.timeout(CLOSE_WAIT_S):
                await self._feed.aclose()
        except Exception as exc:  # noqa: BLE001 - closing: nothing left to protect
            log.warning("profile cache invalidation feed did not close cleanly: %r", exc)

    # --- the cache ----------------------------------------------------------------

    async def get(self, customer_id: str) -> bytes | None:
        return (await self.lookup(customer_id)).value

    async def lookup(self, customer_id: str) -> Lookup:
        ticket = self.local.ticket()
        entry = self.local.get(customer_id, self._clock())
        if entry is not None:
            value, generation = entry
            return Lookup(value, (ticket, generation))
        found = await self.shared.lookup(customer_id)
        generation = found.fence if isinstance(found.fence, bytes) else b""
        if found.value is not None:
            self.local.put(customer_id, (found.value, generation), ticket, self._clock())
        return Lookup(found.value, (ticket, generation))

    async def fill(self, customer_id: str, value: bytes, fence: Any) -> bool:
        ticket, generation = fence
        if not await self.shared.fill(customer_id, value, generation):
            return False
        self.local.put(customer_id, (value, generation), ticket, self._clock())
        return True

    async def set(self, customer_id: str, value: bytes) -> None:
        # Unfenced: nothing proves `value` current, so this process does not keep it.
        self.local.invalidate(customer_id)
        await self.shared.set(customer_id, value)

    async def invalidate(self, *customer_ids: str) -> None:
        self.local.invalidate(*customer_ids)
        await self.shared.invalidate(*customer_ids)

    # --- the feed -----------------------------------------------------------------

    def _received(self, message: dict[str, Any], now: float) -> None:
        kind = message.get("type")
        if kind == "subscribe":
            self.local.feed_started(now)
            self.subscriptions += 1
            self._subscribed.set()
            if self._lost_said:
                self._lost_said = False
                log.warning("profile cache invalidation feed is back; in-process profiles were dropped")
            return
        self.local.feed_heard(now)
        if kind != "message":
            return  # a pong
        try:
            ids = json.loads(message["data"])
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise ValueError("not a list of customer ids")
        except (ValueError, TypeError, KeyError) as exc:
            # Someone else's message on our channel: which entries it meant is unknown.
            log.warning("unreadable profile invalidation %r (%s); in-process profiles dropped", message, exc)
            self.local.clear()
            return
        self.local.invalidate(*ids)

    async def _follow(self) -> None:
        while True:
            pubsub = self._feed.pubsub()
            try:
                await pubsub.subscribe(self.shared.channel)
                while True:
                    message = await pubsub.get_message(timeout=self._heartbeat_s)
                    now = self._clock()
                    if message is not None:
                        self._received(message, now)
                    elif self.local.silent(now):
                        raise TimeoutError(f"no reply on the feed for {self._heartbeat_s * 3:.0f} s")
                    else:
                        await pubsub.ping()
            except asyncio.CancelledError:
                raise
            # Whatever broke, invalidations may now pass this process by: stop serving
            # local entries, and retry; the screen pop goes on through Redis or SQL.
            except Exception as exc:  # noqa: BLE001
                self.local.feed_lost()
                self._subscribed.clear()
                if not self._lost_said:
                    self._lost_said = True
                    log.warning("profile cache invalidation feed lost (%r); in-process profiles off until it is back",
                                exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(self._retry_s)


__all__ = ["DEFAULT_HEARTBEAT_S", "DEFAULT_RETRY_S", "LocalEntry", "TieredProfileCache", "feed_client"]
