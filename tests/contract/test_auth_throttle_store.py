"""One contract for the login throttle's stores: in the process and in Redis (a real
Redis, one fresh key prefix per test). Redis must stay atomic when several processes
count attempts at one username at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from types import MappingProxyType

import pytest
import redis.asyncio as aioredis

from cti.web.login_throttle import Failures, Go, Limits, LoginThrottle, Wait
from cti.web.throttle_store import (
    InMemoryThrottleStore,
    Records,
    RedisThrottleStore,
    ThrottleStore,
    ThrottleUnavailable,
)

NOW = 1_700_000_000.0


@pytest.fixture(params=["memory", "redis"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], ThrottleStore]]:
    clients: list[aioredis.Redis] = []
    prefix = f"ctihub:test:{uuid.uuid4().hex}:"
    if request.param == "memory":
        shared = InMemoryThrottleStore()
        yield lambda: shared
        return
    url = request.getfixturevalue("redis_url")

    def one() -> ThrottleStore:
        # A client of its own per store: as two hub processes would have.
        client = aioredis.from_url(url)
        clients.append(client)
        return RedisThrottleStore(client, prefix=prefix)

    yield one
    if clients:
        keys = [k async for k in clients[0].scan_iter(match=prefix + "*")]
        if keys:
            await clients[0].delete(*keys)
    for client in clients:
        await client.aclose()


def record(count: int, *, at: float = NOW, ttl: float = 60.0) -> Failures:
    return Failures(counts=MappingProxyType({"x": count}), last_at=at, expires_at=at + ttl)


async def test_absent_records_read_as_none_and_written_ones_come_back(make_store: Callable[[], ThrottleStore]) -> None:
    store = make_store()
    seen: list[Records] = []

    def write(records: Records) -> tuple[str, Records]:
        seen.append(records)
        return "done", (record(2), None)

    assert await store.update(["a", "b"], write, NOW) == "done"
    assert seen == [(None, None)]

    def read(records: Records) -> tuple[Records, Records]:
        return records, records

    back = await store.update(["a", "b"], read, NOW + 1)
    assert back[1] is None and back[0] is not None
    assert dict(back[0].counts) == {"x": 2} and back[0].expires_at == NOW + 60


async def test_expired_records_are_gone(make_store: Callable[[], ThrottleStore]) -> None:
    store = make_store()
    await store.update(["a"], lambda r: (None, (record(1, ttl=0.3),)), NOW)
    got = await store.update(["a"], lambda r: (r, r), NOW + 0.5)
    assert got == (None,)


async def test_none_deletes(make_store: Callable[[], ThrottleStore]) -> None:
    store = make_store()
    await store.update(["a"], lambda r: (None, (record(1),)), NOW)
    await store.update(["a"], lambda r: (None, (None,)), NOW)
    assert await store.update(["a"], lambda r: (r, r), NOW) == (None,)


async def test_concurrent_attempts_from_two_processes_are_all_counted(make_store: Callable[[], ThrottleStore]) -> None:
    throttle = LoginThrottle(
        per_username=Limits(free=200, lock_after=1000, base_delay_s=1, max_delay_s=1, lockout_s=60, window_s=60)
    )
    stores = [make_store(), make_store()]

    async def attempt(n: int) -> object:
        def count(records: Records) -> tuple[object, Records]:
            verdict, by_user, by_source = throttle.attempt(
                username="anna", source=f"10.0.0.{n % 7}", by_username=records[0], by_source=records[1], now=NOW
            )
            return verdict, (by_user, by_source)

        return await stores[n % 2].update(["user:anna", f"source:10.0.0.{n % 7}"], count, NOW)

    verdicts = await asyncio.gather(*(attempt(n) for n in range(60)))
    assert all(isinstance(v, Go) for v in verdicts)
    total = await stores[0].update(["user:anna"], lambda r: (r[0], r), NOW)
    assert isinstance(total, Failures) and total.total == 60


async def test_the_throttle_answers_the_same_through_any_store(make_store: Callable[[], ThrottleStore]) -> None:
    throttle = LoginThrottle()
    store_a, store_b = make_store(), make_store()

    async def attempt(store: ThrottleStore, now: float) -> object:
        def count(records: Records) -> tuple[object, Records]:
            verdict, u, s = throttle.attempt(username="anna", source="192.0.2.1", by_username=records[0], by_source=records[1], now=now)
            return verdict, (u, s)

        return await store.update(["user:anna", "source:192.0.2.1"], count, now)

    for n in range(4):
        assert isinstance(await attempt(store_a if n % 2 else store_b, NOW), Go)
    assert await attempt(store_b, NOW + 0.5) == Wait(retry_after_s=0.5, locked=False, scope="username")


async def test_an_unreachable_redis_is_reported_not_raised_raw() -> None:
    client = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises(ThrottleUnavailable):
            await RedisThrottleStore(client).update(["a"], lambda r: (None, r), NOW)
    finally:
        await client.aclose()


async def test_the_memory_store_stays_bounded() -> None:
    store = InMemoryThrottleStore(max_tracked=10)
    for n in range(50):
        await store.update([f"k{n}"], lambda r: (None, (record(1),)), NOW)
    assert len(store._records) <= 10
