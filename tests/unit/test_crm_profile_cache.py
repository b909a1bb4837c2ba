"""Profile caches without a server: the in-memory LRU, the failure guard, the fill guard."""

from __future__ import annotations

import asyncio
import logging

import pytest

from crm_sync.cache import FillGuard, GuardedCache, MemoryProfileCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_cache_expires_entries_after_the_ttl() -> None:
    clock = FakeClock()
    cache = MemoryProfileCache(ttl_s=10, clock=clock)
    await cache.set("a", b"1")
    clock.now += 9.9
    assert await cache.get("a") == b"1"
    clock.now += 0.1
    assert await cache.get("a") is None
    assert len(cache) == 0  # an expired entry is dropped when seen


async def test_memory_cache_evicts_the_least_recently_used() -> None:
    cache = MemoryProfileCache(max_entries=2)
    await cache.set("a", b"1")
    await cache.set("b", b"2")
    assert await cache.get("a") == b"1"  # a is now the most recent
    await cache.set("c", b"3")
    assert (await cache.get("a"), await cache.get("b"), await cache.get("c")) == (b"1", None, b"3")
    await cache.set("a", b"1bis")  # replacing counts as a use, and keeps the bound
    assert len(cache) == 2 and await cache.get("a") == b"1bis"


async def test_memory_cache_invalidates_several_and_unknown_ids() -> None:
    cache = MemoryProfileCache()
    for key in "abc":
        await cache.set(key, key.encode())
    await cache.invalidate("a", "c", "zzz")
    await cache.invalidate()
    assert [await cache.get(k) for k in "abc"] == [None, b"b", None]
    with pytest.raises(ValueError, match="max_entries"):
        MemoryProfileCache(max_entries=0)


class BrokenCache:
    """A cache that fails (or hangs) on demand and counts the calls that reached it."""

    def __init__(self) -> None:
        self.broken = True
        self.hang = False
        self.calls: list[str] = []
        self.inner = MemoryProfileCache()

    async def _maybe_fail(self, call: str) -> None:
        self.calls.append(call)
        if self.hang:
            await asyncio.sleep(10)
        if self.broken:
            raise ConnectionError("connection refused")

    async def get(self, customer_id: str) -> bytes | None:
        await self._maybe_fail("get")
        return await self.inner.get(customer_id)

    async def set(self, customer_id: str, value: bytes) -> None:
        await self._maybe_fail("set")
        await self.inner.set(customer_id, value)

    async def invalidate(self, *customer_ids: str) -> None:
        await self._maybe_fail("invalidate")
        await self.inner.invalidate(*customer_ids)


async def test_guard_turns_failures_into_misses_and_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    broken = BrokenCache()
    guard = GuardedCache(broken, retry_after_s=5, clock=clock)
    with caplog.at_level(logging.WARNING, logger="crm_sync.cache"):
        assert await guard.get("a") is None
        # Left alone for a while: no more calls reach it, and nothing is raised.
        assert await guard.get("a") is None
        await guard.set("a", b"1")
        assert broken.calls == ["get"]
        clock.now += 5
        assert await guard.get("a") is None
        assert broken.calls == ["get", "get"]
        broken.broken = False
        clock.now += 5
        await guard.set("a", b"1")
        assert await guard.get("a") == b"1"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in messages) == 1
    assert sum("is back" in m for m in messages) == 1


async def test_guard_times_out_a_hanging_cache() -> None:
    broken = BrokenCache()
    broken.hang = True
    guard = GuardedCache(broken, timeout_s=0.01)
    assert await asyncio.wait_for(guard.get("a"), 1) is None


async def test_a_lost_invalidation_distrusts_the_cache_for_its_ttl() -> None:
    clock = FakeClock()
    broken = BrokenCache()
    broken.broken = False
    guard = GuardedCache(broken, retry_after_s=5, distrust_s=300, clock=clock)
    await guard.set("a", b"old")
    broken.broken = True
    await guard.invalidate("a")  # failed: "a" may still be cached, stale
    broken.broken = False
    clock.now += 10
    # The cache answers again, but what it holds may be stale: reads bypass it...
    assert await guard.get("a") is None
    assert broken.calls[-1] == "invalidate"
    # ...while fills refresh it, and invalidations go through again.
    await guard.set("b", b"fresh")
    await guard.invalidate("c")
    assert broken.calls[-2:] == ["set", "invalidate"]
    clock.now += 290
    assert await guard.get("b") == b"fresh"


async def test_an_invalidation_skipped_while_down_distrusts_the_cache() -> None:
    clock = FakeClock()
    broken = BrokenCache()
    guard = GuardedCache(broken, retry_after_s=5, distrust_s=300, clock=clock)
    assert await guard.get("a") is None  # down
    await guard.invalidate("a")  # not even tried while backing off
    assert broken.calls == ["get"]
    broken.broken = False
    clock.now += 6
    assert await guard.get("a") is None and broken.calls == ["get"]
    clock.now += 300
    assert await guard.get("a") is None and broken.calls == ["get", "get"]


def test_fill_guard_voids_reads_in_flight() -> None:
    guard = FillGuard()
    before = guard.begin("a")
    other = guard.begin("b")
    assert guard.valid("a", before)
    guard.void("a")
    assert not guard.valid("a", before) and guard.valid("b", other)
    after = guard.begin("a")  # a read that starts after the write is fine
    assert guard.valid("a", after) and not guard.valid("a", before)
    for customer_id, ticket in (("a", before), ("a", after), ("b", other)):
        guard.end(customer_id, ticket)
    assert guard._tickets == {}  # nothing kept once no read is in flight


def test_fill_guard_tells_concurrent_reads_apart() -> None:
    guard = FillGuard()
    first, second = guard.begin("a"), guard.begin("a")
    guard.end("a", first)
    assert guard.valid("a", second) and not guard.valid("a", first)
