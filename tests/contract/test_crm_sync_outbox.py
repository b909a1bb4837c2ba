"""The outbox and the sync writes of CrmStore on real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from crm_sync.inbound import InvalidField, parse_event
from crm_sync.outbox import OutboxStore, enqueue
from crm_sync.schema import Customer, CustomerPhone, Interaction, KycRecord
from crm_sync.store import CrmStore
from crm_sync.sync_schema import OutboxMessage
from cti.db import Base, make_engine, make_sessionmaker, migrate

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
SYNC_TABLES = {"crm_outbox", "kyc_history"}


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
def outbox(engine: AsyncEngine) -> OutboxStore:
    return OutboxStore(make_sessionmaker(engine))


def _fields(**extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = dict(
        customer_id=None, channel="voice", direction="inbound", caller_number="+442079460018", dialled="1000",
        queue="sales", agent_id="agent01", started_at=NOW, answered_at=NOW + timedelta(seconds=5),
        ended_at=NOW + timedelta(minutes=3), outcome="completed", call_id="c1@x",
    )
    fields.update(extra)
    return fields


async def _count(engine: AsyncEngine, table: type[Base]) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def test_migration_creates_the_sync_tables_as_modelled(engine: AsyncEngine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    def diff(sync_conn: sa.Connection) -> tuple[set[str], list[str]]:
        tables = set(sa.inspect(sync_conn).get_table_names())
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        changes = [repr(c) for c in compare_metadata(context, Base.metadata)]
        return tables, [c for c in changes if any(f"'{t}'" in c for t in SYNC_TABLES)]

    async with engine.connect() as conn:
        tables, changes = await conn.run_sync(diff)
    assert SYNC_TABLES <= tables
    assert changes == []


async def test_interaction_and_its_message_commit_together(engine: AsyncEngine, store: CrmStore,
                                                           outbox: OutboxStore) -> None:
    interaction_id = await store.record_interaction_with_outbox(**_fields(disposition="sale"), now=NOW)
    (message,) = await outbox.list_all()
    assert message.kind == "interaction.created"
    assert message.idempotency_key == f"interaction.created:{interaction_id}"
    assert message.stream == interaction_id
    assert (message.state, message.attempts, message.next_attempt_at) == ("pending", 0, NOW)
    assert message.payload["id"] == interaction_id
    assert message.payload["disposition"] == "sale"
    assert message.payload["started_at"] == NOW.isoformat()
    assert (await store.list_interactions(call_id="c1@x"))[0]["id"] == interaction_id


async def test_the_old_method_writes_no_message(engine: AsyncEngine, store: CrmStore, outbox: OutboxStore) -> None:
    await store.record_interaction(**_fields())
    assert await _count(engine, Interaction) == 1
    assert await outbox.list_all() == []


async def test_a_failing_interaction_leaves_no_message(engine: AsyncEngine, store: CrmStore) -> None:
    with pytest.raises(sa.exc.IntegrityError):
        await store.record_interaction_with_outbox(**_fields(customer_id="cus_nobody"))  # foreign key
    assert await _count(engine, Interaction) == 0
    assert await _count(engine, OutboxMessage) == 0


async def test_a_failing_message_leaves_no_interaction(engine: AsyncEngine, store: CrmStore) -> None:
    async with make_sessionmaker(engine)() as session, session.begin():
        enqueue(session, kind="interaction.created", idempotency_key="interaction.created:int_fixed",
                stream="other", payload={}, now=NOW)
    with pytest.raises(sa.exc.IntegrityError):
        await store.record_interaction_with_outbox(**_fields(), interaction_id="int_fixed")
    assert await _count(engine, Interaction) == 0
    assert await _count(engine, OutboxMessage) == 1


async def test_a_retried_write_with_the_same_id_writes_nothing_twice(engine: AsyncEngine, store: CrmStore) -> None:
    first = await store.record_interaction_with_outbox(**_fields(), interaction_id="int_once")
    again = await store.record_interaction_with_outbox(**_fields(), interaction_id="int_once")
    assert first == again == "int_once"
    assert await _count(engine, Interaction) == 1
    assert await _count(engine, OutboxMessage) == 1


async def test_wrapup_and_notes_queue_messages_on_the_interaction_stream(
    store: CrmStore, outbox: OutboxStore
) -> None:
    interaction_id = await store.record_interaction_with_outbox(**_fields(), now=NOW)
    assert await store.update_interaction_wrapup(interaction_id, disposition="callback", notes="ring at 5",
                                                 now=NOW) is True
    note_id = await store.add_interaction_note(interaction_id, text="called back", author="agent01", now=NOW)
    assert note_id is not None
    assert await store.update_interaction_wrapup("int_unknown", disposition="x") is False
    assert await store.add_interaction_note("int_unknown", text="x", author="a") is None
    created, updated, note = await outbox.list_all()
    assert [m.kind for m in (created, updated, note)] == ["interaction.created", "interaction.updated", "note.added"]
    assert {m.stream for m in (created, updated, note)} == {interaction_id}
    assert updated.payload["disposition"] == "callback" and updated.payload["notes"] == "ring at 5"
    assert note.payload == {"note_id": note_id, "interaction_id": interaction_id, "customer_id": None,
                            "author": "agent01", "text": "called back", "created_at": NOW.isoformat()}
    assert (await store.list_interactions(call_id="c1@x"))[0]["notes"] == "ring at 5\ncalled back"


async def test_claim_leases_due_messages_once_and_in_stream_order(store: CrmStore, outbox: OutboxStore) -> None:
    a = await store.record_interaction_with_outbox(**_fields(call_id="a"), now=NOW)
    b = await store.record_interaction_with_outbox(**_fields(call_id="b"), now=NOW + timedelta(seconds=1))
    await store.update_interaction_wrapup(a, disposition="sale", now=NOW)

    assert await outbox.claim(now=NOW - timedelta(seconds=1), lease_s=60) == []  # nothing due yet
    first = await outbox.claim(now=NOW + timedelta(seconds=2), lease_s=60)
    # a's update waits behind a's create; b is a stream of its own.
    assert [(m.kind, m.stream) for m in first] == [("interaction.created", a), ("interaction.created", b)]
    assert all(m.state == "delivering" and m.attempts == 1 and m.claim_token for m in first)
    assert await outbox.claim(now=NOW + timedelta(seconds=2), lease_s=60) == []  # leased

    assert await outbox.mark_delivered(first[0].id, now=NOW) is True
    (update,) = await outbox.claim(now=NOW + timedelta(seconds=2), lease_s=60)
    assert update.kind == "interaction.updated"
    assert await outbox.mark_delivered(update.id, now=NOW) is True

    # b's worker died: its lease runs out and the message is taken again.
    (again,) = await outbox.claim(now=NOW + timedelta(seconds=63), lease_s=60)
    assert (again.id, again.attempts) == (first[1].id, 2)
    # The dead worker's late verdict no longer counts; the new holder's does.
    assert await outbox.reschedule(first[1].id, first[1].claim_token or "", at=NOW, error="late") is False
    assert again.claim_token is not None
    assert await outbox.dead_letter(again.id, again.claim_token, error="HTTP 400") is True
    counts = await outbox.counts()
    assert counts == {"pending": 0, "delivering": 0, "delivered": 2, "dead": 1}


async def test_a_dead_predecessor_does_not_block_its_stream_forever(store: CrmStore, outbox: OutboxStore) -> None:
    a = await store.record_interaction_with_outbox(**_fields(), now=NOW)
    await store.update_interaction_wrapup(a, disposition="sale", now=NOW)
    (created,) = await outbox.claim(now=NOW, lease_s=60)
    await outbox.dead_letter(created.id, created.claim_token or "", error="HTTP 422")
    (update,) = await outbox.claim(now=NOW, lease_s=60)
    assert update.kind == "interaction.updated"


async def test_replay_brings_dead_letters_back_with_the_same_key(store: CrmStore, outbox: OutboxStore) -> None:
    for n in range(3):
        await store.record_interaction_with_outbox(**_fields(call_id=f"c{n}"), now=NOW)
    for message in await outbox.claim(now=NOW, lease_s=60):
        await outbox.dead_letter(message.id, message.claim_token or "", error="HTTP 400: bad")
    dead = await outbox.list_dead()
    assert len(dead) == 3 and all(m.last_error == "HTTP 400: bad" and m.attempts == 1 for m in dead)

    later = NOW + timedelta(hours=1)
    assert await outbox.replay(dead[0].id, now=later) is True
    assert await outbox.replay(dead[0].id, now=later) is False  # no longer dead
    replayed = await outbox.get(dead[0].id)
    assert replayed is not None
    assert (replayed.state, replayed.attempts, replayed.next_attempt_at) == ("pending", 0, later)
    assert replayed.idempotency_key == dead[0].idempotency_key
    assert await outbox.replay_all(now=later) == 2
    assert await outbox.list_dead() == []
    assert await outbox.next_due_at() == later


async def test_next_due_and_purge(store: CrmStore, outbox: OutboxStore) -> None:
    assert await outbox.next_due_at() is None
    await store.record_interaction_with_outbox(**_fields(), now=NOW)
    assert await outbox.next_due_at() == NOW
    (message,) = await outbox.claim(now=NOW, lease_s=30)
    assert await outbox.next_due_at() == NOW + timedelta(seconds=30)  # the lease's end
    await outbox.mark_delivered(message.id, now=NOW)
    assert await outbox.next_due_at() is None
    assert await outbox.purge_delivered(before=NOW) == 0
    assert await outbox.purge_delivered(before=NOW + timedelta(days=1)) == 1


async def test_concurrent_claims_never_share_a_message(store: CrmStore, outbox: OutboxStore,
                                                       engine: AsyncEngine) -> None:
    for n in range(30):
        await store.record_interaction_with_outbox(**_fields(call_id=f"c{n}"), now=NOW)
    batches = await asyncio.gather(*(outbox.claim(now=NOW, lease_s=60, limit=7) for _ in range(6)))
    ids = [m.id for batch in batches for m in batch]
    assert len(ids) == len(set(ids)) == 30


# --- inbound events ---------------------------------------------------------------

def _event(kind: str, **body: Any) -> Any:
    return parse_event({"id": body.pop("id", f"evt_{kind}"), "type": kind,
                        "occurred_at": body.pop("occurred_at", "2025-03-01T12:00:00Z"), **body})


CUSTOMER = {"id": "cus_1", "first_name": "Ada", "last_name": "Lovelace", "language": "en", "country": "GB",
            "tier": "vip", "phones": [{"number": "020 7946 0018", "kind": "work"}]}


async def test_inbound_customer_lifecycle_with_kyc_history(engine: AsyncEngine, store: CrmStore) -> None:
    created = _event("customer.created", customer=CUSTOMER,
                     kyc={"status": "pending", "risk_rating": "medium", "document_number": "X1234567"})
    # Created with a KYC record the hub did not have: both land, and history says so.
    assert await store.apply_inbound(created, create_unknown=False, now=NOW) == "applied"
    (match,) = await store.lookup_by_phone("+442079460018", now=NOW)
    assert (match.customer_id, match.tier, match.kyc_status) == ("cus_1", "vip", "pending")

    verified = _event("kyc.updated", occurred_at="2025-03-02T09:00:00+00:00", customer_id="cus_1",
                      kyc={"status": "verified", "verified_at": "2025-03-02T09:00:00Z",
                           "next_review_at": "2026-03-02T00:00:00Z"})
    assert await store.apply_inbound(verified, create_unknown=False, now=NOW) == "applied"
    older = _event("kyc.updated", occurred_at="2025-03-01T13:00:00Z", customer_id="cus_1",
                   kyc={"status": "rejected"})
    assert await store.apply_inbound(older, create_unknown=False, now=NOW) == "stale"

    profile = await store.get_profile("cus_1", now=NOW + timedelta(days=2))
    assert profile is not None
    assert profile.kyc.status == "verified"
    assert profile.kyc.document_number_masked == "****4567"
    history = await store.kyc_history("cus_1")
    assert [(h["change"], h["status"]) for h in history] == [("created", "pending"), ("updated", "verified")]
    assert history[1]["snapshot"]["risk_rating"] == "medium"

    renamed = _event("customer.updated", occurred_at="2025-03-03T00:00:00Z",
                     customer={"id": "cus_1", "last_name": "King", "phones": []})
    assert await store.apply_inbound(renamed, create_unknown=False, now=NOW) == "applied"
    assert await store.lookup_by_phone("+442079460018") == []
    profile = await store.get_profile("cus_1", now=NOW)
    assert profile is not None and profile.name == "Ada King" and profile.tier == "vip"

    await store.record_interaction(**_fields(customer_id="cus_1"))
    deleted = _event("customer.deleted", occurred_at="2025-03-04T00:00:00Z", customer_id="cus_1")
    assert await store.apply_inbound(deleted, create_unknown=False, now=NOW) == "applied"
    assert await store.get_profile("cus_1") is None
    assert await _count(engine, KycRecord) == 0 and await _count(engine, CustomerPhone) == 0
    # The interaction stays on record, unlinked; the KYC history outlives the mirror row.
    assert (await store.list_interactions(call_id="c1@x"))[0]["customer_id"] is None
    assert [h["change"] for h in await store.kyc_history("cus_1")] == ["created", "updated", "deleted"]
    assert await store.apply_inbound(deleted, create_unknown=False, now=NOW) == "absent"


async def test_inbound_update_for_an_unknown_customer_follows_the_policy(engine: AsyncEngine,
                                                                          store: CrmStore) -> None:
    partial = _event("customer.updated", customer={"id": "cus_2", "email": "x@example.com"})
    assert await store.apply_inbound(partial, create_unknown=False, now=NOW) == "unknown_customer"
    with pytest.raises(InvalidField) as error:
        await store.apply_inbound(partial, create_unknown=True, now=NOW)
    assert error.value.field == "customer.first_name"
    full = _event("customer.updated", customer={**CUSTOMER, "id": "cus_2"})
    assert await store.apply_inbound(full, create_unknown=True, now=NOW) == "applied"
    assert await _count(engine, Customer) == 1
    kyc = _event("kyc.updated", customer_id="cus_nobody", kyc={"status": "verified", "risk_rating": "low"})
    assert await store.apply_inbound(kyc, create_unknown=True, now=NOW) == "unknown_customer"
    kyc_partial = _event("kyc.updated", customer_id="cus_2", kyc={"status": "verified"})
    with pytest.raises(InvalidField) as error:
        await store.apply_inbound(kyc_partial, create_unknown=True, now=NOW)
    assert error.value.field == "kyc.risk_rating"
    assert await _count(engine, KycRecord) == 0
