"""CrmStore against real databases: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from crm_sync.inbound import parse_event
from crm_sync.schema import (
    Customer,
    CustomerEmail,
    CustomerPhone,
    Interaction,
    KycRecord,
    Task,
    TradingAccount,
)
from crm_sync.store import CrmStore
from cti.db import Base, make_engine, make_sessionmaker, migrate

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CRM_TABLES = {
    "customers", "customer_phones", "customer_emails", "kyc_records", "trading_accounts", "interactions", "leads",
    "tasks",
}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> CrmStore:
    return CrmStore(make_sessionmaker(engine))


@contextmanager
def count_statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every SQL statement the engine sends while the block runs (BEGIN/COMMIT are not statements here)."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", record)


async def add_customer(
    engine: AsyncEngine,
    customer_id: str,
    first: str,
    last: str,
    phones: list[str],
    *,
    kyc: dict[str, object] | None = None,
    accounts: list[tuple[str, str]] = (),  # type: ignore[assignment]
    emails: list[tuple[str, bool]] = (),  # type: ignore[assignment]
) -> None:
    """A customer written straight into the tables, bypassing the store (and its cache)."""
    primary = next((address for address, is_primary in emails if is_primary), None)
    async with make_sessionmaker(engine)() as session, session.begin():
        session.add(Customer(
            id=customer_id, first_name=first, last_name=last, language="en", country="GB", tier="retail",
            account_manager=None, email=primary, marketing_consent=False, created_at=NOW, updated_at=NOW,
        ))
        await session.flush()
        for k, e164 in enumerate(phones):
            session.add(CustomerPhone(id=f"{customer_id}_p{k}", customer_id=customer_id, e164=e164, raw=e164,
                                      kind="mobile"))
        for k, (address, is_primary) in enumerate(emails):
            session.add(CustomerEmail(id=f"{customer_id}_e{k}", customer_id=customer_id, address=address.lower(),
                                      kind="personal", is_primary=is_primary))
        if kyc is not None:
            defaults: dict[str, object] = {
                "status": "verified", "verified_at": NOW - timedelta(days=100), "risk_rating": "low", "pep": False,
                "sanctions_hit": False, "edd_required": False, "edd_reasons": [], "document_type": "passport",
                "document_number_masked": "*****1234", "next_review_at": NOW + timedelta(days=300), "updated_at": NOW,
            }
            session.add(KycRecord(customer_id=customer_id, **{**defaults, **kyc}))
        for k, (number, balance) in enumerate(accounts):
            session.add(TradingAccount(id=f"{customer_id}_a{k}", customer_id=customer_id, number=number,
                                       platform="MT5", currency="EUR", balance=Decimal(balance),
                                       equity=Decimal(balance), status="active"))


def inbound(kind: str, **body: Any) -> Any:
    return parse_event({"id": body.pop("id", f"evt_{kind}"), "type": kind,
                        "occurred_at": body.pop("occurred_at", "2025-03-01T12:00:00Z"), **body})


async def test_migrations_apply_and_are_idempotent(engine: AsyncEngine) -> None:
    await migrate(engine)  # a second run on a migrated database is a no-op
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
        versions = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalars().all()
    assert CRM_TABLES <= tables
    assert versions  # whatever heads are now (0001_crm or later; one row per branch head)


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
    await add_customer(engine, "cus_a", "Ada", "Lovelace", ["+442079460018"], kyc={"status": "pending"})
    for raw in ("+44 20 7946 0018", "0044 20 7946 0018", "020 7946 0018", "sip:+442079460018@pbx"):
        matches = await store.lookup_by_phone(raw, now=NOW)
        assert [m.customer_id for m in matches] == ["cus_a"], raw
    (match,) = matches
    assert match.name == "Ada Lovelace"
    assert (match.tier, match.language, match.country, match.kyc_status) == ("retail", "en", "GB", "pending")


async def test_unknown_and_garbage_numbers_match_nobody(engine: AsyncEngine, store: CrmStore) -> None:
    await add_customer(engine, "cus_a", "Ada", "Lovelace", ["+442079460018"])
    assert await store.lookup_by_phone("+442079460019") == []
    assert await store.lookup_by_phone("anonymous") == []
    assert await store.lookup_by_phone("") == []


async def test_shared_number_gives_every_match_once(engine: AsyncEngine, store: CrmStore) -> None:
    home = "+35722123456"
    await add_customer(engine, "cus_n", "Nikos", "Georgiou", [home, "+35799123456"])
    await add_customer(engine, "cus_e", "Eleni", "Georgiou", [home, home])  # listed twice: still one match
    matches = await store.lookup_by_phone("22 123456", default_region="CY")
    assert [m.customer_id for m in matches] == ["cus_e", "cus_n"]
    assert all(m.kyc_status == "not_started" for m in matches)  # no KYC record at all
    assert [m.customer_id for m in await store.lookup_by_phone("+357 99 123456")] == ["cus_n"]


async def _record(store: CrmStore, customer_id: str | None, started_at: datetime, **extra: object) -> str:
    fields: dict[str, object] = {
        "customer_id": customer_id, "channel": "voice", "direction": "inbound", "caller_number": "+442079460018",
        "dialled": "1000", "queue": "sales", "agent_id": "agent01", "started_at": started_at,
        "answered_at": started_at + timedelta(seconds=5), "ended_at": started_at + timedelta(minutes=3),
        "outcome": "completed", "call_id": None,
    }
    fields.update(extra)
    return await store.record_interaction(**fields)  # type: ignore[arg-type]


async def test_profile_has_kyc_edd_accounts_and_last_five_interactions(engine: AsyncEngine, store: CrmStore) -> None:
    await add_customer(
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
    await add_customer(engine, "cus_b", "Bob", "Brown", [])
    profile = await store.get_profile("cus_b", now=NOW)
    assert profile is not None
    assert profile.kyc.status == "not_started" and profile.kyc.risk_rating is None
    assert profile.phones == () and profile.accounts == () and profile.recent_interactions == ()


async def test_expired_is_computed_from_next_review(engine: AsyncEngine, store: CrmStore) -> None:
    review = NOW - timedelta(days=1)
    await add_customer(engine, "cus_a", "Ada", "Lovelace", ["+442079460018"], kyc={"next_review_at": review})
    lapsed = await store.get_profile("cus_a", now=NOW)
    assert lapsed is not None
    assert (lapsed.kyc.status, lapsed.kyc.recorded_status) == ("expired", "verified")
    assert lapsed.kyc.next_review_at == review
    before = await store.get_profile("cus_a", now=review - timedelta(seconds=1))
    assert before is not None and before.kyc.status == "verified"
    assert [m.kyc_status for m in await store.lookup_by_phone("+442079460018", now=NOW)] == ["expired"]


async def test_record_then_list_interactions(engine: AsyncEngine, store: CrmStore) -> None:
    await add_customer(engine, "cus_a", "Ada", "Lovelace", ["+442079460018"])
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
        "ivr_path": None, "recording_id": None, "transcript_ref": None,
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
    with pytest.raises(ValueError, match="ivr_path"):
        await _record(store, None, NOW, ivr_path="lang:de")  # a string is not a list of steps
    with pytest.raises(ValueError, match="ivr_path"):
        await _record(store, None, NOW, ivr_path=["lang:de", ""])
    with pytest.raises(ValueError, match="recording_id"):
        await _record(store, None, NOW, recording_id="r" * 41)
    assert await store.list_interactions() == []


async def test_count_customers(engine: AsyncEngine, store: CrmStore) -> None:
    assert await store.count_customers() == 0
    await add_customer(engine, "cus_a", "Ada", "Lovelace", [])
    await add_customer(engine, "cus_b", "Bob", "Brown", [])
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


# --- the new interaction fields -------------------------------------------------------------

async def test_interaction_keeps_ivr_path_recording_and_transcript(engine: AsyncEngine, store: CrmStore) -> None:
    await add_customer(engine, "cus_a", "Ada", "Lovelace", ["+442079460018"])
    first = await _record(store, "cus_a", NOW, ivr_path=["lang:de", "menu:2"], recording_id="rec_1")
    (item,) = await store.list_interactions("cus_a")
    assert (item["id"], item["ivr_path"], item["recording_id"], item["transcript_ref"]) == (
        first, ["lang:de", "menu:2"], "rec_1", None)

    assert await store.update_interaction_wrapup(first, disposition="sale", transcript_ref="s3://t/1.json")
    (item,) = await store.list_interactions("cus_a")
    # What the wrap-up did not mention stays as it was.
    assert (item["disposition"], item["ivr_path"], item["recording_id"], item["transcript_ref"]) == (
        "sale", ["lang:de", "menu:2"], "rec_1", "s3://t/1.json")
    profile = await store.get_profile("cus_a", now=NOW)
    assert profile is not None
    (seen,) = profile.recent_interactions
    assert (seen.ivr_path, seen.recording_id, seen.transcript_ref) == (("lang:de", "menu:2"), "rec_1", "s3://t/1.json")
    assert profile.to_dict()["recent_interactions"] == await store.list_interactions("cus_a")


# --- the whole profile in one statement -----------------------------------------------------

async def _full_customer(engine: AsyncEngine, store: CrmStore) -> dict[str, str]:
    """A customer with something in every section, written in an order the profile must not keep."""
    await add_customer(
        engine, "cus_full", "Ada", "Lovelace", ["+447700900123", "+442079460018"],
        kyc={"risk_rating": "high", "pep": True, "edd_required": True,
             "edd_reasons": ["unusual_transactions", "shell_companies"]},
        accounts=[("5001239999", "25.00"), ("5009999999", "12345678.90"), ("5001234567", "1000.50")],
        emails=[("zeta@work.example", False), ("Ada.Lovelace@Example.com", True), ("alpha@home.example", False)],
    )
    await add_customer(engine, "cus_other", "Bob", "Brown", ["+442079460018"])
    ids: dict[str, str] = {}
    for days in (9, 1, 5, 3, 7, 8):
        ids[f"int_{days}"] = await _record(store, "cus_full", NOW - timedelta(days=days), call_id=f"c{days}@x")
    # Two contacts in the same second: the larger id counts as the newer one.
    same = NOW - timedelta(days=2)
    await _record(store, "cus_full", same, interaction_id="int_same_a", ivr_path=["lang:en", "menu:1"],
                  recording_id="rec_a", transcript_ref="s3://t/a.json")
    await _record(store, "cus_full", same, interaction_id="int_same_b")
    await _record(store, "cus_other", NOW)

    ids["later"] = await store.add_task(customer_id="cus_full", kind="callback", title="Call back about SEPA",
                                        due_at=NOW + timedelta(days=2), owner="agent01", now=NOW)
    ids["undated"] = await store.add_task(customer_id="cus_full", kind="document_request", title="Proof of address",
                                          now=NOW - timedelta(days=3))
    ids["soon"] = await store.add_task(customer_id="cus_full", kind="kyc_review", title="Review PEP status",
                                       due_at=NOW + timedelta(hours=1), interaction_id=ids["int_1"], now=NOW)
    done = await store.add_task(customer_id="cus_full", kind="follow_up", title="Done already", now=NOW)
    cancelled = await store.add_task(customer_id="cus_full", kind="follow_up", title="Not needed", now=NOW)
    assert await store.complete_task(done, now=NOW) and await store.cancel_task(cancelled, now=NOW)
    await store.add_task(customer_id="cus_other", kind="callback", title="Someone else's", now=NOW)

    ids["lead_new"] = await store.add_lead(name="Ada Lovelace", source="inbound_call", customer_id="cus_full",
                                           interest="cTrader account", now=NOW - timedelta(days=2))
    ids["lead_qualified"] = await store.add_lead(name="Ada Lovelace", source="web_form", status="qualified",
                                                 customer_id="cus_full", phone="07700 900123",
                                                 email="Ada.Lovelace@Example.com", owner="agent08",
                                                 now=NOW - timedelta(days=1))
    for status in ("converted", "lost"):
        await store.add_lead(name="Ada Lovelace", source="campaign", status=status, customer_id="cus_full", now=NOW)
    await store.add_lead(name="Bob Brown", source="referral", customer_id="cus_other", now=NOW)
    await store.add_lead(name="A Prospect", source="web_form", now=NOW)
    return ids


async def test_profile_is_one_statement_and_says_what_the_rows_say(engine: AsyncEngine, store: CrmStore) -> None:
    ids = await _full_customer(engine, store)

    with count_statements(engine) as statements:
        profile = await store.get_profile("cus_full", now=NOW)
    assert len(statements) == 1, statements
    assert profile is not None

    data = profile.to_dict()
    assert json.loads(json.dumps(data)) == data  # JSON-ready as it is
    assert {k: data[k] for k in ("customer_id", "name", "email", "tier", "marketing_consent", "created_at")} == {
        "customer_id": "cus_full", "name": "Ada Lovelace", "email": "Ada.Lovelace@Example.com", "tier": "retail",
        "marketing_consent": False, "created_at": NOW.isoformat(),
    }
    assert data["phones"] == [  # by phone row id
        {"e164": "+447700900123", "raw": "+447700900123", "kind": "mobile"},
        {"e164": "+442079460018", "raw": "+442079460018", "kind": "mobile"},
    ]
    assert data["emails"] == [  # primary first, then by address, all lower-cased
        {"address": "ada.lovelace@example.com", "kind": "personal", "is_primary": True},
        {"address": "alpha@home.example", "kind": "personal", "is_primary": False},
        {"address": "zeta@work.example", "kind": "personal", "is_primary": False},
    ]
    assert [(a["number"], a["number_masked"], a["balance"], a["equity"]) for a in data["accounts"]] == [
        ("5001234567", "******4567", "1000.50", "1000.50"),
        ("5001239999", "******9999", "25.00", "25.00"),
        ("5009999999", "******9999", "12345678.90", "12345678.90"),
    ]
    assert [a.balance for a in profile.accounts] == [Decimal("1000.50"), Decimal("25.00"), Decimal("12345678.90")]
    assert data["kyc"] == {
        "status": "verified", "recorded_status": "verified", "verified_at": (NOW - timedelta(days=100)).isoformat(),
        "risk_rating": "high", "pep": True, "sanctions_hit": False,
        "next_review_at": (NOW + timedelta(days=300)).isoformat(), "document_type": "passport",
        "document_number_masked": "*****1234",
        "edd": {"required": True, "reasons": ["shell_companies", "unusual_transactions", "politically_exposed"]},
    }
    assert profile.kyc.verified_at == NOW - timedelta(days=100) and profile.kyc.pep is True

    # Newest first, the same-second pair by id; the same records list_interactions reads through the ORM.
    assert [i["id"] for i in data["recent_interactions"]] == [
        ids["int_1"], "int_same_b", "int_same_a", ids["int_3"], ids["int_5"]]
    assert data["recent_interactions"] == await store.list_interactions("cus_full", limit=5)
    same_a = data["recent_interactions"][2]
    assert (same_a["ivr_path"], same_a["recording_id"], same_a["transcript_ref"]) == (
        ["lang:en", "menu:1"], "rec_a", "s3://t/a.json")
    assert all(i.started_at.tzinfo is not None for i in profile.recent_interactions)

    # Open tasks only, soonest due first, the undated one last.
    assert [t["id"] for t in data["open_tasks"]] == [ids["soon"], ids["later"], ids["undated"]]
    assert data["open_tasks"] == [t.to_dict() for t in await store.open_tasks("cus_full")]
    assert data["open_tasks"][0] == {
        "id": ids["soon"], "customer_id": "cus_full", "interaction_id": ids["int_1"], "kind": "kyc_review",
        "title": "Review PEP status", "status": "open", "owner": None,
        "due_at": (NOW + timedelta(hours=1)).isoformat(), "created_at": NOW.isoformat(), "completed_at": None,
    }
    # Open leads only (not converted, not lost), newest first.
    assert [lead["id"] for lead in data["leads"]] == [ids["lead_qualified"], ids["lead_new"]]
    assert data["leads"][0] == {
        "id": ids["lead_qualified"], "customer_id": "cus_full", "name": "Ada Lovelace",
        "phone_e164": "+447700900123", "email": "ada.lovelace@example.com", "source": "web_form",
        "status": "qualified", "owner": "agent08", "interest": None,
        "created_at": (NOW - timedelta(days=1)).isoformat(), "updated_at": (NOW - timedelta(days=1)).isoformat(),
    }
    assert data["as_of"] == NOW.isoformat()

    with count_statements(engine) as statements:
        short = await store.get_profile("cus_full", recent=2, now=NOW)
        nobody = await store.get_profile("cus_nobody", now=NOW)
    assert len(statements) == 2
    assert short is not None and [i.id for i in short.recent_interactions] == [ids["int_1"], "int_same_b"]
    assert nobody is None


async def test_profile_statement_of_an_empty_customer(engine: AsyncEngine, store: CrmStore) -> None:
    await add_customer(engine, "cus_b", "Bob", "Brown", [])
    with count_statements(engine) as statements:
        profile = await store.get_profile("cus_b", recent=0, now=NOW)
    assert len(statements) == 1
    assert profile is not None
    assert (profile.phones, profile.emails, profile.accounts, profile.recent_interactions, profile.open_tasks,
            profile.leads) == ((), (), (), (), (), ())
    assert profile.kyc.status == "not_started" and profile.email is None


async def test_profile_through_a_sessionmaker_bound_to_a_connection(engine: AsyncEngine) -> None:
    """Not bound to an engine, the store reads the profile through its session: still one statement."""
    await add_customer(engine, "cus_a", "Ada", "Lovelace", ["+442079460018"], kyc={})
    async with engine.connect() as connection:
        store = CrmStore(async_sessionmaker(bind=connection, expire_on_commit=False))
        with count_statements(engine) as statements:
            profile = await store.get_profile("cus_a", now=NOW)
    assert len(statements) == 1
    assert profile is not None and profile.name == "Ada Lovelace" and profile.kyc.status == "verified"


# --- customer_emails follow customers.email ---------------------------------------------------

async def _emails(engine: AsyncEngine, customer_id: str) -> list[tuple[str, bool]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(CustomerEmail.address, CustomerEmail.is_primary)
            .where(CustomerEmail.customer_id == customer_id)
            .order_by(CustomerEmail.is_primary.desc(), CustomerEmail.address)
        )
        return [(row.address, bool(row.is_primary)) for row in rows]


CUSTOMER = {"id": "cus_1", "first_name": "Ada", "last_name": "Lovelace", "language": "en", "country": "GB",
            "tier": "vip", "email": "Ada@Example.COM", "phones": [{"number": "020 7946 0018", "kind": "work"}]}


async def test_inbound_keeps_customer_emails_in_step(engine: AsyncEngine, store: CrmStore) -> None:
    assert await store.apply_inbound(inbound("customer.created", customer=CUSTOMER), create_unknown=False,
                                     now=NOW) == "applied"
    assert await _emails(engine, "cus_1") == [("ada@example.com", True)]
    assert [m.customer_id for m in await store.lookup_by_email("ADA@example.com")] == ["cus_1"]

    async with make_sessionmaker(engine)() as session, session.begin():
        session.add(CustomerEmail(id="eml_work", customer_id="cus_1", address="ada@work.example", kind="work",
                                  is_primary=False))
    # A new primary address replaces the old one; other addresses stay; a copy of the new one is merged.
    changed = inbound("customer.updated", occurred_at="2025-03-02T00:00:00Z",
                      customer={"id": "cus_1", "email": "Ada@Work.Example"})
    assert await store.apply_inbound(changed, create_unknown=False, now=NOW) == "applied"
    assert await _emails(engine, "cus_1") == [("ada@work.example", True)]
    assert await store.lookup_by_email("ada@example.com") == []
    profile = await store.get_profile("cus_1", now=NOW)
    assert profile is not None and profile.email == "Ada@Work.Example"

    # An update that does not mention the email leaves the addresses alone.
    renamed = inbound("customer.updated", occurred_at="2025-03-03T00:00:00Z",
                      customer={"id": "cus_1", "last_name": "King"})
    assert await store.apply_inbound(renamed, create_unknown=False, now=NOW) == "applied"
    assert await _emails(engine, "cus_1") == [("ada@work.example", True)]

    cleared = inbound("customer.updated", occurred_at="2025-03-04T00:00:00Z", customer={"id": "cus_1", "email": None})
    assert await store.apply_inbound(cleared, create_unknown=False, now=NOW) == "applied"
    assert await _emails(engine, "cus_1") == []

    # Created through the unknown-customer policy: the same rule.
    other = inbound("customer.updated", customer={**CUSTOMER, "id": "cus_2", "email": "Two@Example.com"})
    assert await store.apply_inbound(other, create_unknown=True, now=NOW) == "applied"
    assert await _emails(engine, "cus_2") == [("two@example.com", True)]


# --- tasks ------------------------------------------------------------------------------------

async def test_tasks_open_complete_and_cancel(engine: AsyncEngine, store: CrmStore) -> None:
    await add_customer(engine, "cus_a", "Ada", "Lovelace", [])
    later = await store.add_task(customer_id="cus_a", kind="callback", title="  Call back  ",
                                 due_at=NOW + timedelta(days=1), owner="agent01", now=NOW)
    sooner = await store.add_task(customer_id="cus_a", kind="follow_up", title="Send the form",
                                  due_at=NOW + timedelta(hours=2), now=NOW)
    undated = await store.add_task(customer_id="cus_a", kind="document_request", title="ID copy", now=NOW)
    assert [t.id for t in await store.open_tasks("cus_a")] == [sooner, later, undated]
    (first, *_) = await store.open_tasks("cus_a")
    assert (first.title, first.status, first.completed_at) == ("Send the form", "open", None)

    assert await store.complete_task(sooner, now=NOW + timedelta(hours=1))
    assert await store.complete_task(sooner)  # already done: still True, nothing changes
    assert await store.cancel_task(undated, now=NOW)
    assert [t.id for t in await store.open_tasks("cus_a")] == [later]
    with pytest.raises(ValueError, match="cancelled"):
        await store.complete_task(undated)
    with pytest.raises(ValueError, match="done"):
        await store.cancel_task(sooner)
    assert await store.complete_task("tsk_unknown") is False
    assert await store.cancel_task("tsk_unknown") is False
    async with make_sessionmaker(engine)() as session:
        done = await session.get(Task, sooner)
        cancelled = await session.get(Task, undated)
    assert done is not None and done.completed_at == NOW + timedelta(hours=1)
    assert cancelled is not None and (cancelled.status, cancelled.completed_at) == ("cancelled", None)


async def test_tasks_reject_bad_input(engine: AsyncEngine, store: CrmStore) -> None:
    await add_customer(engine, "cus_a", "Ada", "Lovelace", [])
    with pytest.raises(ValueError, match="kind must be one of"):
        await store.add_task(customer_id="cus_a", kind="chat", title="x")
    with pytest.raises(ValueError, match="title"):
        await store.add_task(customer_id="cus_a", kind="callback", title="   ")
    with pytest.raises(ValueError, match="title"):
        await store.add_task(customer_id="cus_a", kind="callback", title="x" * 201)
    with pytest.raises(ValueError, match="due_at must be timezone-aware"):
        await store.add_task(customer_id="cus_a", kind="callback", title="x", due_at=datetime(2025, 3, 1, 12))
    with pytest.raises(ValueError, match="no customer"):
        await store.add_task(customer_id="cus_nobody", kind="callback", title="x")
    assert await store.open_tasks("cus_a") == []


# --- leads ------------------------------------------------------------------------------------

async def test_leads_add_list_and_move_through_statuses(engine: AsyncEngine, store: CrmStore) -> None:
    await add_customer(engine, "cus_a", "Ada", "Lovelace", [])
    prospect = await store.add_lead(name="Grace Hopper", source="web_form", phone="+1 (202) 555-0143",
                                    email=" Grace@Example.com ", owner="agent08", interest="MT5 demo",
                                    default_region="US", now=NOW)
    upsell = await store.add_lead(name="Ada Lovelace", source="inbound_call", customer_id="cus_a", owner="agent01",
                                  now=NOW + timedelta(minutes=1))
    (lead, _) = await store.list_leads()  # newest first
    assert lead.id == upsell
    grace = (await store.list_leads(owner="agent08"))[0]
    assert (grace.phone_e164, grace.email, grace.status, grace.customer_id) == (
        "+12025550143", "grace@example.com", "new", None)
    assert [x.id for x in await store.list_leads(customer_id="cus_a")] == [upsell]
    assert await store.list_leads(status="qualified") == []

    assert await store.set_lead_status(prospect, "qualified", now=NOW + timedelta(hours=1))
    assert [x.id for x in await store.list_leads(status="qualified")] == [prospect]
    assert await store.set_lead_status(prospect, "converted", customer_id="cus_a", now=NOW + timedelta(days=1))
    converted = (await store.list_leads(status="converted"))[0]
    assert (converted.customer_id, converted.updated_at, converted.created_at) == (
        "cus_a", NOW + timedelta(days=1), NOW)
    assert await store.set_lead_status("lead_unknown", "lost") is False
    assert [x.id for x in await store.list_leads(owner="agent01", customer_id="cus_a", status="new")] == [upsell]
    assert len(await store.list_leads(limit=1)) == 1


async def test_leads_reject_bad_input(engine: AsyncEngine, store: CrmStore) -> None:
    with pytest.raises(ValueError, match="source must be one of"):
        await store.add_lead(name="X", source="billboard")
    with pytest.raises(ValueError, match="status must be one of"):
        await store.add_lead(name="X", source="web_form", status="hot")
    with pytest.raises(ValueError, match="name"):
        await store.add_lead(name=" ", source="web_form")
    with pytest.raises(ValueError, match="phone"):
        await store.add_lead(name="X", source="web_form", phone="not a number")
    with pytest.raises(ValueError, match="email"):
        await store.add_lead(name="X", source="web_form", email="nobody")
    with pytest.raises(ValueError, match="no customer"):
        await store.add_lead(name="X", source="web_form", customer_id="cus_nobody")
    with pytest.raises(ValueError, match="status must be one of"):
        await store.list_leads(status="hot")
    lead = await store.add_lead(name="X", source="web_form")
    with pytest.raises(ValueError, match="status must be one of"):
        await store.set_lead_status(lead, "won")
    with pytest.raises(ValueError, match="no customer"):
        await store.set_lead_status(lead, "converted", customer_id="cus_nobody")
    assert [x.status for x in await store.list_leads()] == ["new"]
