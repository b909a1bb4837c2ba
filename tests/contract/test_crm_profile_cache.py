"""The profile cache against a real Redis, on SQLite and PostgreSQL.

A cached profile costs no SQL; every kind of write empties the customer's entry once it
has committed; the KYC status is worked out at read time, so a cached entry never shows
a stale one; and a Redis that is down costs the cache, never the screen pop.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_sync.cache import MemoryProfileCache, RedisProfileCache
from crm_sync.profile import CustomerProfile
from crm_sync.store import CrmStore
from cti.db import make_engine, make_sessionmaker, migrate
from tests.conftest import free_tcp_port
from tests.contract.test_crm_store import NOW, count_statements, inbound


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:8]}:profile:"


@pytest.fixture
def cache(redis_client: Any, prefix: str) -> RedisProfileCache:
    return RedisProfileCache(redis_client, prefix=prefix, ttl_s=300)


@pytest.fixture
def store(engine: AsyncEngine, cache: RedisProfileCache) -> CrmStore:
    return CrmStore(make_sessionmaker(engine), cache=cache)


CUSTOMER = {"id": "cus_1", "first_name": "Ada", "last_name": "Lovelace", "language": "en", "country": "GB",
            "tier": "vip", "email": "ada@example.com", "phones": [{"number": "020 7946 0018", "kind": "work"}]}
KYC = {"status": "verified", "risk_rating": "low", "verified_at": "2025-01-01T00:00:00Z",
       "next_review_at": "2026-01-01T00:00:00Z"}


def _interaction(**extra: Any) -> dict[str, Any]:
    return {"customer_id": "cus_1", "channel": "voice", "direction": "inbound", "caller_number": "+442079460018",
            "dialled": "1000", "queue": "sales", "agent_id": "agent01", "started_at": NOW - timedelta(days=1),
            "answered_at": None, "ended_at": NOW - timedelta(days=1), "outcome": "completed", "call_id": None,
            **extra}


async def _seed(store: CrmStore) -> dict[str, str]:
    """cus_1 with KYC, one interaction, one open task and one open lead, written through the store."""
    assert await store.apply_inbound(inbound("customer.created", customer=CUSTOMER, kyc=KYC),
                                     create_unknown=False, now=NOW) == "applied"
    return {
        "interaction": await store.record_interaction(**_interaction()),
        "task": await store.add_task(customer_id="cus_1", kind="callback", title="Call back", now=NOW),
        "lead": await store.add_lead(name="Ada Lovelace", source="inbound_call", customer_id="cus_1", now=NOW),
    }


async def _read(engine: AsyncEngine, store: CrmStore, **kwargs: Any) -> tuple[CustomerProfile | None, int]:
    with count_statements(engine) as statements:
        profile = await store.get_profile("cus_1", now=NOW, **kwargs)
    return profile, len(statements)


async def test_a_profile_is_served_from_the_cache(engine: AsyncEngine, store: CrmStore, redis_client: Any,
                                                  prefix: str) -> None:
    await _seed(store)
    for days in range(2, 8):
        await store.record_interaction(**_interaction(started_at=NOW - timedelta(days=days)))
    first, statements = await _read(engine, store)
    assert statements == 1 and first is not None
    second, statements = await _read(engine, store)
    assert statements == 0
    assert second == first
    assert 0 < await redis_client.ttl(prefix + "cus_1") <= 300

    # The entry holds the screen pop's five: fewer are cut from it, more go to the database once.
    fewer, statements = await _read(engine, store, recent=2)
    assert statements == 0 and fewer is not None
    assert fewer.recent_interactions == first.recent_interactions[:2]
    more, statements = await _read(engine, store, recent=10)
    assert statements == 1 and more is not None and len(more.recent_interactions) == 7
    for recent in (10, 5, 7):
        again, statements = await _read(engine, store, recent=recent)
        assert statements == 0 and again is not None
        assert again.recent_interactions == more.recent_interactions[:recent]
    # An unknown customer is not cached: there is nothing to invalidate when it appears.
    with count_statements(engine) as sent:
        assert await store.get_profile("cus_nobody") is None
        assert await store.get_profile("cus_nobody") is None
    assert len(sent) == 2


async def _link_prospect(store: CrmStore) -> None:
    # A prospect's lead is on nobody's profile (adding it invalidates nothing) until it is
    # linked to the customer.
    lead = await store.add_lead(name="Prospect", source="web_form", now=NOW + timedelta(seconds=1))
    assert await store.set_lead_status(lead, "qualified", customer_id="cus_1", now=NOW)


Write = Callable[[CrmStore, dict[str, str]], Awaitable[Any]]
Check = Callable[[CustomerProfile | None], bool]
LATER = "2025-03-02T00:00:00Z"

WRITE_PATHS: dict[str, tuple[Write, Check]] = {
    "customer.updated": (
        lambda s, ids: s.apply_inbound(inbound("customer.updated", occurred_at=LATER,
                                               customer={"id": "cus_1", "last_name": "King"}),
                                       create_unknown=False, now=NOW),
        lambda p: p is not None and p.name == "Ada King",
    ),
    "customer.updated email": (
        lambda s, ids: s.apply_inbound(inbound("customer.updated", occurred_at=LATER,
                                               customer={"id": "cus_1", "email": "Ada@New.example"}),
                                       create_unknown=False, now=NOW),
        lambda p: p is not None and [e.address for e in p.emails] == ["ada@new.example"],
    ),
    "customer.deleted": (
        lambda s, ids: s.apply_inbound(inbound("customer.deleted", occurred_at=LATER, customer_id="cus_1"),
                                       create_unknown=False, now=NOW),
        lambda p: p is None,
    ),
    "kyc.updated": (
        lambda s, ids: s.apply_inbound(inbound("kyc.updated", occurred_at=LATER, customer_id="cus_1",
                                               kyc={"status": "rejected", "risk_rating": "high"}),
                                       create_unknown=False, now=NOW),
        lambda p: p is not None and (p.kyc.status, p.kyc.risk_rating) == ("rejected", "high"),
    ),
    "kyc.deleted": (
        lambda s, ids: s.apply_inbound(inbound("kyc.deleted", occurred_at=LATER, customer_id="cus_1"),
                                       create_unknown=False, now=NOW),
        lambda p: p is not None and p.kyc.status == "not_started",
    ),
    "record_interaction": (
        lambda s, ids: s.record_interaction(**_interaction(started_at=NOW, call_id="new@x", to_outbox=True)),
        lambda p: p is not None and p.recent_interactions[0].call_id == "new@x",
    ),
    "update_interaction_wrapup": (
        lambda s, ids: s.update_interaction_wrapup(ids["interaction"], disposition="sale", recording_id="rec_9"),
        lambda p: p is not None and (p.recent_interactions[0].disposition,
                                     p.recent_interactions[0].recording_id) == ("sale", "rec_9"),
    ),
    "add_interaction_note": (
        lambda s, ids: s.add_interaction_note(ids["interaction"], text="called back", author="agent01", now=NOW),
        lambda p: p is not None and p.recent_interactions[0].notes == "called back",
    ),
    "add_task": (
        lambda s, ids: s.add_task(customer_id="cus_1", kind="kyc_review", title="Review", now=NOW),
        lambda p: p is not None and len(p.open_tasks) == 2,
    ),
    "complete_task": (
        lambda s, ids: s.complete_task(ids["task"], now=NOW),
        lambda p: p is not None and p.open_tasks == (),
    ),
    "cancel_task": (
        lambda s, ids: s.cancel_task(ids["task"], now=NOW),
        lambda p: p is not None and p.open_tasks == (),
    ),
    "add_lead": (
        lambda s, ids: s.add_lead(name="Ada Lovelace", source="campaign", customer_id="cus_1", now=NOW),
        lambda p: p is not None and len(p.leads) == 2,
    ),
    "set_lead_status": (
        lambda s, ids: s.set_lead_status(ids["lead"], "converted", now=NOW),
        lambda p: p is not None and p.leads == (),
    ),
    "set_lead_status linking a customer": (
        lambda s, ids: _link_prospect(s),
        lambda p: p is not None and [lead.name for lead in p.leads] == ["Prospect", "Ada Lovelace"],
    ),
}


@pytest.mark.parametrize("path", list(WRITE_PATHS))
async def test_each_write_path_invalidates_the_profile(path: str, engine: AsyncEngine, store: CrmStore) -> None:
    write, check = WRITE_PATHS[path]
    ids = await _seed(store)
    before, _ = await _read(engine, store)
    cached, statements = await _read(engine, store)
    assert statements == 0 and cached == before and not check(before)

    await write(store, ids)

    after, statements = await _read(engine, store)
    assert statements == 1, "the write left the cached profile in place"
    assert check(after), after


async def test_kyc_expiring_between_two_cached_reads_shows_expired(engine: AsyncEngine, store: CrmStore) -> None:
    review = (NOW + timedelta(hours=1)).isoformat()
    assert await store.apply_inbound(inbound("customer.created", customer=CUSTOMER,
                                             kyc={**KYC, "next_review_at": review}),
                                     create_unknown=False, now=NOW) == "applied"
    with count_statements(engine) as statements:
        before = await store.get_profile("cus_1", now=NOW)
        after = await store.get_profile("cus_1", now=NOW + timedelta(hours=2))
    assert len(statements) == 1  # the second read came from the cache
    assert before is not None and after is not None
    assert (before.kyc.status, after.kyc.status, after.kyc.recorded_status) == ("verified", "expired", "verified")
    assert (before.as_of, after.as_of) == (NOW, NOW + timedelta(hours=2))


async def test_a_corrupt_entry_is_a_miss(engine: AsyncEngine, store: CrmStore, redis_client: Any,
                                         prefix: str) -> None:
    await _seed(store)
    await redis_client.set(prefix + "cus_1", b"\xff not json")
    profile, statements = await _read(engine, store)
    assert statements == 1 and profile is not None and profile.name == "Ada Lovelace"
    _, statements = await _read(engine, store)
    assert statements == 0  # replaced by a good entry


async def test_redis_down_still_pops_and_writes(engine: AsyncEngine, caplog: pytest.LogCaptureFixture) -> None:
    # Nothing listens on a port we just freed: every Redis call fails at once.
    dead = aioredis.Redis(host="127.0.0.1", port=free_tcp_port(), socket_connect_timeout=0.2)
    store = CrmStore(make_sessionmaker(engine), cache=RedisProfileCache(dead))
    try:
        with caplog.at_level(logging.WARNING, logger="crm_sync.cache"):
            await _seed(store)  # every write's invalidation fails, and no write fails for it
            for _ in range(3):
                profile, statements = await _read(engine, store)
                assert statements == 1
                assert profile is not None and profile.name == "Ada Lovelace"
                assert profile.kyc.status == "verified"
        assert any("profile cache" in r.getMessage() for r in caplog.records)
        # Down is said once, not once per screen pop.
        assert sum("unavailable" in r.getMessage() for r in caplog.records) == 1
    finally:
        await dead.aclose()


class _SlowSetCache(MemoryProfileCache):
    """Holds every `set` until the test lets it through, to order a read around a write."""

    def __init__(self) -> None:
        super().__init__()
        self.setting = asyncio.Event()
        self.release = asyncio.Event()

    async def set(self, customer_id: str, value: bytes) -> None:
        self.setting.set()
        await self.release.wait()
        await super().set(customer_id, value)


async def test_a_read_that_raced_a_write_leaves_nothing_stale(engine: AsyncEngine) -> None:
    cache = _SlowSetCache()
    store = CrmStore(make_sessionmaker(engine), cache=cache)
    await _seed(store)
    # The read has its profile from before the write and is about to cache it...
    read = asyncio.create_task(store.get_profile("cus_1", now=NOW))
    await asyncio.wait_for(cache.setting.wait(), 5)
    # ...when the write commits and invalidates; only then does the read's set land.
    renamed = inbound("customer.updated", occurred_at=LATER, customer={"id": "cus_1", "last_name": "King"})
    assert await store.apply_inbound(renamed, create_unknown=False, now=NOW) == "applied"
    cache.release.set()
    old = await read
    assert old is not None and old.name == "Ada Lovelace"
    assert len(cache) == 0  # the read saw the write and dropped what it had just set
    fresh = await store.get_profile("cus_1", now=NOW)
    assert fresh is not None and fresh.name == "Ada King"


async def _backends(admin_dsn: str, database: str, *, terminate: bool = False) -> int:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        if terminate:
            return len(await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                database))
        return int(await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database))
    finally:
        await conn.close()


async def test_a_profile_read_outlives_dropped_connections_and_closes_with_the_engine(
    fresh_postgres_url: str, postgres_url: str
) -> None:
    # On PostgreSQL the profile has a pool of its own, without the per-checkout ping:
    # a connection the server dropped must cost a retry, not a failed screen pop.
    admin_dsn = postgres_url.replace("+asyncpg", "")
    database = fresh_postgres_url.rsplit("/", 1)[1]
    engine = make_engine(fresh_postgres_url)
    await migrate(engine)
    store = CrmStore(make_sessionmaker(engine))
    await _seed(store)
    profile = await store.get_profile("cus_1", now=NOW)
    assert profile is not None and profile.name == "Ada Lovelace"
    assert await _backends(admin_dsn, database, terminate=True) >= 1  # as a database restart would
    for _ in range(2):
        profile = await store.get_profile("cus_1", now=NOW)
        assert profile is not None and profile.name == "Ada Lovelace"
    await engine.dispose()
    # Disposing the hub's engine closed the profile's connections too.
    for _ in range(100):
        if await _backends(admin_dsn, database) == 0:
            break
        await asyncio.sleep(0.02)
    assert await _backends(admin_dsn, database) == 0
