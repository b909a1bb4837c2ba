"""Two hubs' profile caches on one real Redis and one database, on SQLite and PostgreSQL.

Each "hub" is a `CrmStore` with its own `TieredProfileCache` (its own Redis clients
and feed), as `cti.app.Hub` builds it. A write through one hub reaches the other's
in-process tier within a bounded time, for every write path; a fill another hub's
write overtook is refused in both tiers; a feed that lost its connection (a killed
connection, a Redis restart) comes back with an empty tier; and with Redis gone the
screen pop still answers from the database.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_sync.cache import RedisProfileCache
from crm_sync.cache_tiers import TieredProfileCache, feed_client
from crm_sync.store import CrmStore
from cti.db import make_engine, make_sessionmaker, migrate
from tests.conftest import free_tcp_port
from tests.contract.test_crm_profile_cache import LATER, WRITE_PATHS, _read, _seed
from tests.contract.test_crm_store import inbound

# How long a write through one hub may take to reach another hub's in-process tier:
# one PUBLISH and one read on a loopback connection, on a loaded 2-core machine.
PROPAGATION_BOUND_S = 1.0


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


@dataclass
class Hub:
    store: CrmStore
    cache: TieredProfileCache
    client: aioredis.Redis

    def holds(self, customer_id: str) -> bool:
        return self.cache.local.get(customer_id, time.monotonic()) is not None


async def _hubs(engine: AsyncEngine, url: str, prefix: str, *, subscribed: bool = True) -> list[Hub]:
    hubs = []
    for _ in range(2):
        client = aioredis.from_url(url, socket_connect_timeout=0.5)
        cache = TieredProfileCache(RedisProfileCache(client, prefix=prefix), feed_client(url), retry_s=0.1)
        cache.start()
        if subscribed:
            assert await cache.wait_subscribed(5), "the feed did not subscribe"
        hubs.append(Hub(CrmStore(make_sessionmaker(engine), cache=cache), cache, client))
    return hubs


async def _close(hubs: list[Hub]) -> None:
    for hub in hubs:
        await hub.cache.close()
        await hub.client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:8]}:profile:"


@pytest.fixture
async def hubs(engine: AsyncEngine, redis_url: str, prefix: str) -> AsyncIterator[list[Hub]]:
    made = await _hubs(engine, redis_url, prefix)
    yield made
    await _close(made)


async def _within(condition: Callable[[], bool], seconds: float) -> float:
    """How long `condition` took to become true; fails after `seconds`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not true within {seconds} s")
        await asyncio.sleep(0.002)
    return time.monotonic() - started


async def test_a_cached_profile_is_served_from_the_hubs_own_memory(
    engine: AsyncEngine, hubs: list[Hub], redis_url: str, prefix: str
) -> None:
    a, b = hubs
    await _seed(a.store)
    first, statements = await _read(engine, b.store)
    assert statements == 1 and first is not None and b.holds("cus_1")
    # Gone from Redis without an invalidation (evicted, say): b still has it in memory.
    client = aioredis.from_url(redis_url)
    try:
        assert await client.delete(prefix + "cus_1") == 1
    finally:
        await client.aclose()
    second, statements = await _read(engine, b.store)
    assert statements == 0 and second == first
    # a never read it: its first read is a database read, and fills Redis again.
    _, statements = await _read(engine, a.store)
    assert statements == 1 and a.holds("cus_1")


@pytest.mark.parametrize("path", list(WRITE_PATHS))
async def test_a_write_through_one_hub_refreshes_the_others_next_read(
    path: str, engine: AsyncEngine, hubs: list[Hub]
) -> None:
    write, check = WRITE_PATHS[path]
    a, b = hubs
    ids = await _seed(a.store)
    before, _ = await _read(engine, b.store)
    cached, statements = await _read(engine, b.store)
    assert statements == 0 and cached == before and not check(before) and b.holds("cus_1")

    await write(a.store, ids)

    waited = await _within(lambda: not b.holds("cus_1"), PROPAGATION_BOUND_S)
    after, statements = await _read(engine, b.store)
    assert statements == 1, "the other hub's cached profile outlived the write"
    assert check(after), (after, waited)


async def test_a_fill_another_hubs_write_overtook_is_refused_everywhere(hubs: list[Hub]) -> None:
    a, b = hubs
    # b misses and goes to the database...
    found = await b.cache.lookup("cus_9")
    assert found.value is None
    # ...while a commits a write and invalidates...
    await a.cache.invalidate("cus_9")
    # ...so what b read may predate the write: neither Redis nor b's memory keeps it.
    assert not await b.cache.fill("cus_9", b"read before the write", found.fence)
    assert await a.cache.shared.get("cus_9") is None and not b.holds("cus_9")
    # A fill after a fresh lookup goes through and reaches both tiers.
    found = await b.cache.lookup("cus_9")
    assert await b.cache.fill("cus_9", b"read after the write", found.fence)
    assert await a.cache.shared.get("cus_9") == b"read after the write" and b.holds("cus_9")
    # A hit in b's memory that b must replace (say it holds too few interactions) is
    # fenced the same way.
    hit = await b.cache.lookup("cus_9")
    assert hit.value == b"read after the write"
    await a.cache.invalidate("cus_9")
    assert not await b.cache.fill("cus_9", b"replacement read before the write", hit.fence)
    assert await a.cache.shared.get("cus_9") is None


class PrivateRedis:
    """A redis-server of this test's own, so that it can be cut off and restarted."""

    def __init__(self) -> None:
        self.port = free_tcp_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        client = aioredis.from_url(self.url)
        try:
            for _ in range(200):
                try:
                    if await client.ping():
                        return
                except (ConnectionError, OSError, aioredis.ConnectionError):
                    await asyncio.sleep(0.025)
            raise RuntimeError("redis-server did not start")
        finally:
            await client.aclose()

    async def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            await asyncio.wait_for(self._process.wait(), 5)
            self._process = None

    async def kill_subscribers(self) -> int:
        client = aioredis.from_url(self.url)
        try:
            return int(await client.client_kill_filter(_type="pubsub"))
        finally:
            await client.aclose()


@pytest.fixture
async def private_redis() -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis()
    await server.start()
    yield server
    await server.stop()


RENAME: dict[str, Any] = {"id": "cus_1", "last_name": "King"}


async def test_a_feed_that_lost_its_connection_comes_back_with_nothing_in_memory(
    engine: AsyncEngine, private_redis: PrivateRedis, prefix: str
) -> None:
    a, b = hubs = await _hubs(engine, private_redis.url, prefix)
    try:
        await _seed(a.store)
        await _read(engine, b.store)
        assert b.holds("cus_1")
        # Both feeds are cut off; a's write is published while nobody listens.
        assert await private_redis.kill_subscribers() == 2
        renamed = inbound("customer.updated", occurred_at=LATER, customer=RENAME)
        assert await a.store.apply_inbound(renamed, create_unknown=False, now=renamed.occurred_at) == "applied"
        # b cannot know what it missed: once subscribed again it holds nothing.
        await _within(lambda: b.cache.subscriptions == 2, 5)
        assert len(b.cache.local) == 0
        profile, statements = await _read(engine, b.store)
        assert statements == 1 and profile is not None and profile.name == "Ada King"
        assert b.holds("cus_1")  # and the tier works again
    finally:
        await _close(hubs)


async def test_a_redis_restart_empties_memory_and_pops_go_on_from_the_database(
    engine: AsyncEngine, private_redis: PrivateRedis, prefix: str
) -> None:
    a, b = hubs = await _hubs(engine, private_redis.url, prefix)
    try:
        await _seed(a.store)
        await _read(engine, b.store)
        assert b.holds("cus_1")
        await private_redis.stop()
        await _within(lambda: len(b.cache.local) == 0 and not b.cache.local.trusted(time.monotonic()), 5)
        # Redis is gone: pops come from the database, writes still commit.
        for hub in hubs:
            profile, statements = await _read(engine, hub.store)
            assert statements == 1 and profile is not None and profile.name == "Ada Lovelace"
        renamed = inbound("customer.updated", occurred_at=LATER, customer=RENAME)
        assert await a.store.apply_inbound(renamed, create_unknown=False, now=renamed.occurred_at) == "applied"
        profile, _ = await _read(engine, b.store)
        assert profile is not None and profile.name == "Ada King"

        await private_redis.start()
        await _within(lambda: b.cache.subscriptions == 2 and a.cache.subscriptions == 2, 5)
        assert len(b.cache.local) == 0
        profile, _ = await _read(engine, b.store)
        assert profile is not None and profile.name == "Ada King"
    finally:
        await _close(hubs)


async def test_without_redis_the_hubs_pop_from_the_database(engine: AsyncEngine, prefix: str) -> None:
    # Nothing listens on a port we just freed: every Redis call fails at once.
    a, b = hubs = await _hubs(engine, f"redis://127.0.0.1:{free_tcp_port()}/0", prefix, subscribed=False)
    try:
        await _seed(a.store)
        for _ in range(2):
            for hub in hubs:
                profile, statements = await _read(engine, hub.store)
                assert statements == 1 and profile is not None and profile.name == "Ada Lovelace"
        assert (a.cache.subscriptions, b.cache.subscriptions) == (0, 0)
    finally:
        await _close(hubs)


async def test_an_unreadable_invalidation_empties_memory(
    engine: AsyncEngine, hubs: list[Hub], redis_url: str
) -> None:
    a, b = hubs
    await _seed(a.store)
    await _read(engine, b.store)
    assert b.holds("cus_1")
    # Whatever it meant, it may have named cus_1: nothing in memory can be trusted.
    client = aioredis.from_url(redis_url)
    try:
        assert await client.publish(b.cache.shared.channel, b"cus_1 but not JSON") == 2
    finally:
        await client.aclose()
    await _within(lambda: len(b.cache.local) == 0, PROPAGATION_BOUND_S)
    _, statements = await _read(engine, b.store)
    assert statements == 0 and b.holds("cus_1")  # back from Redis, which kept its entry
