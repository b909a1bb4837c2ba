"""Customer lookup by every key the hub sees, on SQLite and PostgreSQL: one indexed query each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_sync.store import CrmStore
from cti.db import make_engine, make_sessionmaker, migrate
from tests.contract.test_crm_store import NOW, add_customer, count_statements


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> CrmStore:
    return CrmStore(make_sessionmaker(engine))


@pytest.fixture
async def people(engine: AsyncEngine) -> None:
    """Two Georgious share a household line and a family address; Ada has two addresses."""
    await add_customer(engine, "cus_ada", "Ada", "Lovelace", ["+442079460018"], kyc={"status": "pending"},
                       accounts=[("5001234567", "10.00")],
                       emails=[("Ada@Example.com", True), ("ada.work@example.org", False)])
    await add_customer(engine, "cus_nikos", "Nikos", "Georgiou", ["+35722123456", "+35799123456"],
                       emails=[("family@georgiou.example", True)], accounts=[("7000001", "1.00")])
    await add_customer(engine, "cus_eleni", "Eleni", "Georgiou", ["+35722123456"],
                       emails=[("eleni@georgiou.example", True), ("FAMILY@georgiou.example", False)])
    # An id made of digits that is also someone's national phone number and nobody's account.
    await add_customer(engine, "02079460018", "Digit", "Person", [])


def _ids(matches: list[Any]) -> list[str]:
    return [m.customer_id for m in matches]


async def test_lookup_by_email_any_case_any_address(people: None, store: CrmStore) -> None:
    assert _ids(await store.lookup_by_email("ada@example.com")) == ["cus_ada"]
    assert _ids(await store.lookup_by_email("  ADA@EXAMPLE.COM ")) == ["cus_ada"]
    assert _ids(await store.lookup_by_email("mailto:Ada.Work@Example.org")) == ["cus_ada"]  # a secondary address
    # A shared address finds both, sorted by name (last, then first).
    matches = await store.lookup_by_email("family@georgiou.example", now=NOW)
    assert _ids(matches) == ["cus_eleni", "cus_nikos"]
    assert [m.name for m in matches] == ["Eleni Georgiou", "Nikos Georgiou"]
    assert await store.lookup_by_email("nobody@example.com") == []
    assert await store.lookup_by_email("not an address") == []
    assert await store.lookup_by_email("") == []


async def test_lookup_by_account_and_by_id(people: None, store: CrmStore) -> None:
    (ada,) = await store.lookup_by_account(" 5001234567 ", now=NOW)
    assert (ada.customer_id, ada.name, ada.kyc_status) == ("cus_ada", "Ada Lovelace", "pending")
    assert await store.lookup_by_account("500123456") == []  # exact numbers only
    assert await store.lookup_by_account("") == []
    (nikos,) = await store.lookup_by_id("cus_nikos", now=NOW)
    assert (nikos.name, nikos.kyc_status, nikos.tier) == ("Nikos Georgiou", "not_started", "retail")
    assert await store.lookup_by_id("cus_nobody") == []
    assert await store.lookup_by_id("") == []


async def test_find_customers_reads_the_query_shape(people: None, store: CrmStore) -> None:
    assert _ids(await store.find_customers("Family@Georgiou.example")) == ["cus_eleni", "cus_nikos"]
    assert _ids(await store.find_customers("cus_ada")) == ["cus_ada"]
    assert _ids(await store.find_customers("5001234567")) == ["cus_ada"]
    for raw in ("+357 22 123456", "0035722123456", "tel:+35722123456"):
        assert _ids(await store.find_customers(raw)) == ["cus_eleni", "cus_nikos"], raw
    assert _ids(await store.find_customers("22 123456", default_region="CY")) == ["cus_eleni", "cus_nikos"]
    assert _ids(await store.find_customers("99 123456", default_region="CY")) == ["cus_nikos"]
    # '7000001' is an account number and could be read as a phone number: the account wins.
    assert _ids(await store.find_customers("7000001", default_region="CY")) == ["cus_nikos"]
    # An exact customer id wins over the phone number the same digits spell.
    assert _ids(await store.find_customers("02079460018")) == ["02079460018"]
    assert _ids(await store.find_customers("020 7946 0018")) == ["cus_ada"]
    assert _ids(await store.find_customers("+357 22 123456", limit=1)) == ["cus_eleni"]
    for nothing in ("", "   ", "cus_nobody", "Lovelace", "nobody@example.com"):
        assert await store.find_customers(nothing) == [], nothing
    assert await store.find_customers("cus_ada", limit=0) == []


async def test_each_lookup_is_one_statement(people: None, engine: AsyncEngine, store: CrmStore) -> None:
    calls = [
        store.lookup_by_phone("+35722123456"),
        store.lookup_by_email("family@georgiou.example"),
        store.lookup_by_account("5001234567"),
        store.lookup_by_id("cus_ada"),
        store.find_customers("+35722123456"),
        store.find_customers("ada@example.com"),
        store.find_customers("5001234567"),
    ]
    for call in calls:
        with count_statements(engine) as statements:
            assert await call
        assert len(statements) == 1, statements


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_every_lookup_and_the_profile_can_use_an_index(people: None, engine: AsyncEngine,
                                                             store: CrmStore) -> None:
    """With sequential scans priced out, no statement of the screen-pop path falls back to one.

    PostgreSQL only: its planner is the one the latency budget is about.
    """
    assert engine.dialect.name == "postgresql"
    await store.add_task(customer_id="cus_ada", kind="callback", title="Call back", now=NOW)
    await store.add_lead(name="Ada", source="web_form", customer_id="cus_ada", now=NOW)
    captured: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        captured.append((statement, parameters))

    sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        await store.lookup_by_phone("+35722123456")
        await store.lookup_by_email("family@georgiou.example")
        await store.lookup_by_account("5001234567")
        await store.lookup_by_id("cus_ada")
        await store.find_customers("+35722123456")
        await store.get_profile("cus_ada")
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert len(captured) == 6

    async with make_sessionmaker(engine)() as session:
        connection = await session.connection()
        await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        for statement, parameters in captured:
            plan = "\n".join(row[0] for row in await connection.exec_driver_sql("EXPLAIN " + statement, parameters))
            assert "Seq Scan" not in plan, plan
        profile_plan = plan
    for index in ("pk_customers", "pk_kyc_records", "ix_customer_phones_customer_id",
                  "ix_customer_emails_customer_id", "ix_trading_accounts_customer_id",
                  "ix_interactions_customer_id_started_at", "ix_tasks_customer_id_status_due_at",
                  "ix_leads_customer_id"):
        assert index in profile_plan, (index, profile_plan)


async def _terminate_backends(admin_dsn: str, database: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        return len(await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database))
    finally:
        await conn.close()


async def test_phone_lookup_skips_the_pinged_pool_and_outlives_dropped_connections(
    fresh_postgres_url: str, postgres_url: str
) -> None:
    # On PostgreSQL the lookup shares the profile's pool without the per-checkout ping
    # (one round trip, not four): a connection the server dropped must cost a retry,
    # never a caller the hub fails to identify.
    engine = make_engine(fresh_postgres_url)
    await migrate(engine)
    try:
        await add_customer(engine, "cus_ada", "Ada", "Lovelace", ["+442079460018"], kyc={"status": "pending"})
        store = CrmStore(make_sessionmaker(engine))
        checkouts: list[object] = []
        sa.event.listen(engine.sync_engine.pool, "checkout", lambda *args: checkouts.append(args))
        assert _ids(await store.lookup_by_phone("020 7946 0018")) == ["cus_ada"]
        assert checkouts == []  # not the engine's own (pre-pinged) pool
        database = fresh_postgres_url.rsplit("/", 1)[1]
        assert await _terminate_backends(postgres_url.replace("+asyncpg", ""), database) >= 1  # as a restart would
        for _ in range(2):
            (ada,) = await store.lookup_by_phone("+44 20 7946 0018", now=NOW)
            assert (ada.customer_id, ada.kyc_status) == ("cus_ada", "pending")
    finally:
        await engine.dispose()
