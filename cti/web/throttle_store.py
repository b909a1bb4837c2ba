"""Where the login throttle's failure records live: in the process, or in Redis so that
every hub process counts the same failures.

Owns reading and writing a set of records atomically. Must never decide anything: it
hands the current records to a pure function (the throttle's), stores what comes
back, and returns that function's verdict.

Redis layout: one JSON string per record at `<prefix><key>`, with a TTL that ends
when the record expires. A WATCH/MULTI transaction over the keys of one attempt (the
username's and the source's) makes read-decide-write atomic across processes; on a
conflict it waits a little (jitter) and reads and decides again. Inside one process
the transactions take turns, so only other processes can conflict. Times are
whatever the caller passes, so processes sharing one Redis must pass wall-clock time.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError, WatchError

from cti.web.login_throttle import Failures

__all__ = ["InMemoryThrottleStore", "RedisThrottleStore", "ThrottleStore", "ThrottleUnavailable", "make_throttle_store"]

T = TypeVar("T")
Records = tuple[Failures | None, ...]
Change = Callable[[Records], tuple[T, Records]]

_COMMAND_TIMEOUT_S = 3.0
_MAX_CONFLICTS = 20


class ThrottleUnavailable(Exception):
    """The records could not be read or written; the caller must refuse the login."""


class ThrottleStore(Protocol):
    async def update(self, keys: Sequence[str], change: Change[T], now: float) -> T:
        """Apply `change` to the live records of `keys` (None: no record) atomically."""
        ...

    async def close(self) -> None: ...


class InMemoryThrottleStore:
    def __init__(self, *, max_tracked: int = 100_000) -> None:
        self.max_tracked = max_tracked  # bounds memory under a spray from many addresses
        self._records: dict[str, Failures] = {}

    async def update(self, keys: Sequence[str], change: Change[T], now: float) -> T:
        # No await between read and write: atomic on the event loop.
        before = tuple(self._live(key, now) for key in keys)
        result, after = change(before)
        for key, record in zip(keys, after, strict=True):
            if record is None:
                self._records.pop(key, None)
            else:
                if key not in self._records:
                    self._make_room(now)
                self._records[key] = record
        return result

    def _live(self, key: str, now: float) -> Failures | None:
        record = self._records.get(key)
        if record is not None and record.expires_at <= now:
            del self._records[key]
            return None
        return record

    def _make_room(self, now: float) -> None:
        if len(self._records) < self.max_tracked:
            return
        for key in [k for k, r in self._records.items() if r.expires_at <= now]:
            del self._records[key]
        while len(self._records) >= self.max_tracked:
            # Still full of live records: forget the oldest rather than grow without bound.
            del self._records[next(iter(self._records))]

    async def close(self) -> None:
        pass


class RedisThrottleStore:
    """On the hub's shared Redis client; whoever made the client closes it."""

    def __init__(self, redis: Redis, *, prefix: str = "ctihub:login:") -> None:
        self.prefix = prefix
        self._redis = redis
        # One transaction at a time per process: concurrent attempts at one username
        # (or from one address) would otherwise keep invalidating each other's WATCH
        # and starve. Only other processes can conflict then, and they retry.
        self._lock = asyncio.Lock()

    async def update(self, keys: Sequence[str], change: Change[T], now: float) -> T:
        names = [self.prefix + key for key in keys]
        try:
            async with asyncio.timeout(_COMMAND_TIMEOUT_S), self._lock:
                return await self._transact(names, change, now)
        except (RedisError, OSError, TimeoutError) as err:
            raise ThrottleUnavailable(f"login throttle store: {err or type(err).__name__}") from err

    async def _transact(self, names: list[str], change: Change[T], now: float) -> T:
        async with self._redis.pipeline(transaction=True) as pipe:
            for conflicts in range(_MAX_CONFLICTS):
                if conflicts:
                    # Jitter, so that two processes that collided do not collide again.
                    await asyncio.sleep(random.uniform(0, 0.002 * 2 ** min(conflicts, 6)))
                try:
                    await pipe.watch(*names)
                    raw: list[Any] = await pipe.mget(names)
                    result, after = change(tuple(_decode(value, now) for value in raw))
                    pipe.multi()
                    for name, record in zip(names, after, strict=True):
                        if record is None:
                            pipe.delete(name)
                        else:
                            ttl_ms = max(1, math.ceil((record.expires_at - now) * 1000))
                            pipe.set(name, _encode(record), px=ttl_ms)
                    await pipe.execute()
                    return result
                except WatchError:
                    continue  # another process wrote one of the keys: read and decide again
        raise ThrottleUnavailable(f"login throttle store: {_MAX_CONFLICTS} write conflicts in a row on {names}")

    async def close(self) -> None:
        pass


def make_throttle_store(redis: Redis | None) -> ThrottleStore:
    return RedisThrottleStore(redis) if redis is not None else InMemoryThrottleStore()


def _encode(record: Failures) -> str:
    return json.dumps({"counts": dict(record.counts), "last_at": record.last_at, "expires_at": record.expires_at})


def _decode(raw: bytes | str | None, now: float) -> Failures | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        counts = {str(k): int(v) for k, v in data["counts"].items()}
        record = Failures(counts=MappingProxyType(counts), last_at=float(data["last_at"]), expires_at=float(data["expires_at"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # written by a newer hub, or damaged: start that key afresh
    return record.live(now)
