"""CrmStore against real databases: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_sync.schema import Customer, CustomerPhone, Interaction, KycRecord, TradingAccount
from crm_sync.store import CrmStore
from cti.db import Base, make_engine, make_sessionmaker, migrate

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
CRM_TABLES = {"customers", "customer_phones", "kyc_records", "trading_accounts", "interactions"}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> CrmStore:
    return CrmStore(make_sessionmaker(engine))


async def _add_customer(
    engine: AsyncEngine,
    customer_id: str,
    first: str,
    last: str,
    phones: list[str],
    *,
    kyc: dict[str, object] | None = None,
    accounts: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> None:
    async with make_sessionmaker(engine)() as session, session.begin():
        session.add(Customer(
            id=customer_id, first_name=first, last_name=last, language="en", country="GB", tier="retail",
            account_manager=None, email=None, marketing_consent=False, created_at=NOW, updated_at=NOW,
        ))
        await session.flush()
        for k, e164 in enumerate(phones):
            session.add(CustomerPhone(id=f"{customer_id}_p{k}", customer_id=customer_id, e164=e164, raw=e164,
                                      kind="mobile"))
        if kyc is not None:
            defaults: dict[str, object] = dict(
                status="verified", verified_at=NOW - timedelta(days=100), risk_rating="low", pep=False,
                sanctions_hit=False, edd_required=False, edd_reasons=[], document_type="passport",
                document_number_masked="*****1234", next_review_at=NOW + timedelta(days=300), updated_at=NOW,
            )
            session.add(KycRecord(customer_id=customer_id, **{**defaults, **kyc}))
        for k, (number, balance) in enumerate(accounts):
            session.add(TradingAccount(id=f"{customer_id}_a{k}", customer_id=customer_id, number=number,
                                       platform="MT5", currency="EUR", balance=Decimal(balance),
                                       equity=Decimal(balance), status="active"))


async def test_migrations_apply_and_are_idempotent(engine: AsyncEngine) -> None:
    await migrate(engine)  # a second run on a migrated database is a no-op
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
        version = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar_one()
    assert CRM_TABLES <= tables
    assert version  # whatever head is now (0001_crm or later)


async def test_migration_matches_the_models(engine: AsyncEngine) -> None:
    """The hand-written revision and crm_sync/schema.py describe the same CRM tables."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    def diff(sync_conn: sa.Connection) -> list[str]:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        changes = [repr(change) for change in compare_metadata(context, Base.metadata)]
        # Other packages' tables are their owners' business; only CRM drift fails here.
        return [c for c in changes if any(f"'{table}'" in c for table in CRM_TABLES)]

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_same_number_in_four_formats_finds_the_customer(engine: AsyncEngine, store: CrmStore) -> None:
    await _add_customer(engine, "cus_a", "Ada", "Lovelace", ["+442079460018"], kyc={"status": "pending"})
    for raw in ("+44 20 7946 0018", "0044 20 7946 0018", "020 7946 0018", "sip:+442079460018@pbx"):
        matches = await store.lookup_by_phone(raw, now=NOW)
        assert [m.customer_id for m in matches] == ["cus_a"], raw
    (match,) = matches
    assert match.name == "Ada Lovelace"
    assert (match.tier, match.language, match.country, match.kyc_status) == ("retail", "en", "GB", "pending")


async def test_unknown_and_garbage_numbers_match_nobody(engine: AsyncEngine, store: CrmStore) -> None:
    await _add_customer(engine, "cus_a", "Ada", "Lovelace", ["+442079460018"])
    assert await store.lookup_by_phone("+442079460019") == []
    assert await store.lookup_by_phone("anonymous") == []
    assert await store.lookup_by_phone("") == []


async def test_shared_number_gives_every_match_once(engine: AsyncEngine, store: CrmStore) -> None:
    home = "+35722123456"
    await _add_customer(engine, "cus_n", "Nikos", "Georgiou", [home, "+35799123456"])
    await _add_customer(engine, "cus_e", "Eleni", "Georgiou", [home, home])  # listed twice: still one match
    matches = await store.lookup_by_phone("22 123456", default_region="CY")
    assert [m.customer_id for m in matches] == ["cus_e", "cus_n"]
    assert all(m.kyc_status == "not_started" for m in matches)  # no KYC record at all
    assert [m.customer_id for m in await store.lookup_by_phone("+357 99 123456")] == ["cus_n"]


async def _record(store: CrmStore, customer_id: str | None, started_at: datetime, **extra: object) -> str:
    fields: dict[str, object] = dict(
        customer_id=customer_id, channel="voice", direction="inbound", caller_number="+442079460018",
        dialled="1000", queue="sales", agent_id="agent01", started_at=started_at,
        answered_at=started_at + timedelta(seconds=5), ended_at=started_at + timedelta(minutes=3),
        outcome="completed", call_id=None,
    )
    fields.update(extra)
    return await store.record_interaction(**fields)  # type: ignore[arg-type]


async def test_profile_has_kyc_edd_accounts_and_last_five_interactions(engine: AsyncEngine, store: CrmStore) -> None:
    await _add_customer(
        engine, "cus_a", "Ada", "Lovelace", ["+442079460018"],
        kyc={"risk_rating": "high", "pep": True, "edd_required": True,
             "edd_reasons": ["unusual_transactions", "shell_companies"]},
        accounts=[("5001234567", "1000.50"), ("5001239999", "25.00")],
    )
    ids = [await _record(store, "cus_a", NOW - timedelta(days=d), call_id=f"c{d}@x") for d in (9, 1, 5, 3, 7, 2, 8)]
    await _record(store, None, NOW)  # an unknown caller: not part of the profile

    profile = await store.get_profile("cus_a", now=NOW)
    assert profile is not None
    assert profile.name == "Ada Lovelace"
    assert [p.e164 for p in profile.phones] == ["+442079460018"]
    assert [(a.number, a.number_masked, a.balance) for a in profile.accounts] == [
        ("5001234567", "******4567", Decimal("1000.50")),
        ("5001239999", "******9999", Decimal("25.00")),
    ]
    assert profile.kyc.status == "verified"
    assert profile.kyc.risk_rating == "high" and profile.kyc.pep and not profile.kyc.sanctions_hit
    assert profile.kyc.edd_required
    # Vocabulary order, with the PEP flag implied as a reason.
    assert profile.kyc.edd_reasons == ("shell_companies", "unusual_transactions", "politically_exposed")
    newest_first = [NOW - timedelta(days=d) for d in (1, 2, 3, 5, 7)]
    assert [i.started_at for i in profile.recent_interactions] == newest_first
    assert all(i.started_at.tzinfo is not None for i in profile.recent_interactions)
    assert ids[1] == profile.recent_interactions[0].id

    data = profile.to_dict()
    assert json.loads(json.dumps(data)) == data  # JSON-ready as it is
    assert data["accounts"][0]["balance"] == "1000.50"
    assert data["kyc"]["edd"] == {"required": True,
                                  "reasons": ["shell_companies", "unusual_transactions", "politically_exposed"]}
    assert data["recent_interactions"][0]["started_at"] == (NOW - timedelta(days=1)).isoformat()
    assert data["kyc"]["document_number_masked"] == "*****1234"
    assert data["as_of"] == NOW.isoformat()

    assert len((await store.get_profile("cus_a", recent=2, now=NOW)).recent_interactions) == 2  # type: ignore[union-attr]
    assert await store.get_profile("cus_nobody") is None


async def test_profile_of_customer_without_kyc_or_accounts(engine: AsyncEngine, store: CrmStore) -> None:
    await _add_customer(engine, "cus_b", "Bob", "Brown", [])
    profile = await store.get_profile("cus_b", now=NOW)
    assert profile is not None
    assert profile.kyc.status == "not_started" and profile.kyc.risk_rating is None
    assert profile.phones == () and profile.accounts == () and profile.recent_interactions == ()


async def test_expired_is_computed_from_next_review(engine: AsyncEngine, store: CrmStore) -> None:
    review = NOW - timedelta(days=1)
    await _add_customer(engine, "cus_a", "Ada", "Lovelace", ["+442079460018"], kyc={"next_review_at": review})
    lapsed = await store.get_profile("cus_a", now=NOW)
    assert lapsed is not None
    assert (lapsed.kyc.status, lapsed.kyc.recorded_status) == ("expired", "verified")
    assert lapsed.kyc.next_review_at == review
    before = await store.get_profile("cus_a", now=review - timedelta(seconds=1))
    assert before is not None and before.kyc.status == "verified"
    assert [m.kyc_status for m in await store.lookup_by_phone("+442079460018", now=NOW)] == ["expired"]


async def test_record_then_list_interactions(engine: AsyncEngine, store: CrmStore) -> None:
    await _add_customer(engine, "cus_a", "Ada", "Lovelace", ["+442079460018"])
    berlin = timezone(timedelta(hours=1))
    started = datetime(2025, 3, 1, 13, 0, tzinfo=berlin)  # stored and returned as UTC
    first = await _record(store, "cus_a", started, call_id="abc123@10.0.0.1", disposition="deposit_query",
                          notes="Asked about SEPA timing.")
    second = await _record(store, None, started + timedelta(minutes=1), caller_number="+15555550100",
                           outcome="abandoned", answered_at=None, agent_id=None, call_id="zzz@10.0.0.2")

    everything = await store.list_interactions()
    assert [i["id"] for i in everything] == [second, first]
    (mine,) = await store.list_interactions("cus_a")
    assert mine == {
        "id": first, "customer_id": "cus_a", "channel": "voice", "direction": "inbound",
        "caller_number": "+442079460018", "dialled": "1000", "queue": "sales", "agent_id": "agent01",
        "started_at": "2025-03-01T12:00:00+00:00", "answered_at": "2025-03-01T12:00:05+00:00",
        "ended_at": "2025-03-01T12:03:00+00:00", "outcome": "completed", "disposition": "deposit_query",
        "notes": "Asked about SEPA timing.", "call_id": "abc123@10.0.0.1",
    }
    assert [i["id"] for i in await store.list_interactions(call_id="zzz@10.0.0.2")] == [second]
    assert await store.list_interactions("cus_a", call_id="zzz@10.0.0.2") == []
    assert len(await store.list_interactions(limit=1)) == 1


async def test_record_interaction_rejects_bad_input(engine: AsyncEngine, store: CrmStore) -> None:
    with pytest.raises(ValueError, match="channel"):
        await _record(store, None, NOW, channel="fax")
    with pytest.raises(ValueError, match="outcome"):
        await _record(store, None, NOW, outcome="great")
    with pytest.raises(Exception, match="timezone-aware"):
        await _record(store, None, datetime(2025, 1, 1, 12, 0))
    assert await store.list_interactions() == []


async def test_count_customers(engine: AsyncEngine, store: CrmStore) -> None:
    assert await store.count_customers() == 0
    await _add_customer(engine, "cus_a", "Ada", "Lovelace", [])
    await _add_customer(engine, "cus_b", "Bob", "Brown", [])
    assert await store.count_customers() == 2


async def test_demo_seeding_is_idempotent_and_varied(engine: AsyncEngine, store: CrmStore) -> None:
    from crm_sync.demo import DEMO_CUSTOMERS_FIXED, HOUSEHOLD_NUMBER, seed_demo_crm

    sessionmaker = make_sessionmaker(engine)
    first = await seed_demo_crm(sessionmaker, now=NOW)
    second = await seed_demo_crm(sessionmaker, now=NOW + timedelta(days=1))
    assert first == second == await store.count_customers()
    assert first >= 200
    async with sessionmaker() as session:
        statuses = set(await session.scalars(sa.select(KycRecord.status).distinct()))
        edd = await session.scalar(sa.select(sa.func.count()).where(KycRecord.edd_required.is_(True)))
        interactions = await session.scalar(sa.select(sa.func.count()).select_from(Interaction))
    assert statuses == {"not_started", "pending", "verified", "rejected", "expired"}
    assert edd and edd > 0
    assert interactions and interactions > 200

    for fixed in DEMO_CUSTOMERS_FIXED:
        matches = await store.lookup_by_phone(fixed.e164, now=NOW)
        assert fixed.customer_id in [m.customer_id for m in matches]
        profile = await store.get_profile(fixed.customer_id, now=NOW)
        assert profile is not None
        assert (profile.name, profile.kyc.status, profile.tier) == (fixed.name, fixed.kyc_status, fixed.tier)
        assert set(fixed.edd_reasons) <= set(profile.kyc.edd_reasons)
    assert len(await store.lookup_by_phone(HOUSEHOLD_NUMBER)) == 2
    lena = await store.get_profile("cus_demo_lena", now=NOW)
    assert lena is not None and len(lena.recent_interactions) == 5 and len(lena.accounts) == 2
