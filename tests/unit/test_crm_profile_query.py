"""Decoding the one-statement profile document: pure, no database.

The same profile arrives in PostgreSQL's dialect (ISO timestamps with an offset,
true/false) and SQLite's (naive UTC text, 1/0); both must decode to the same thing.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from crm_sync.profile_query import FORMAT_VERSION, covers, decode_profile, load_document

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _interaction(n: int, started: str, **extra: Any) -> dict[str, Any]:
    return {"id": f"int_{n}", "customer_id": "cus_1", "channel": "voice", "direction": "inbound",
            "caller_number": "+442079460018", "dialled": "1000", "queue": "sales", "agent_id": "agent01",
            "started_at": started, "answered_at": None, "ended_at": None, "outcome": "completed",
            "disposition": None, "notes": None, "call_id": None, "ivr_path": None, "recording_id": None,
            "transcript_ref": None, **extra}


def _task(task_id: str, due: str | None, created: str) -> dict[str, Any]:
    return {"id": task_id, "customer_id": "cus_1", "interaction_id": None, "kind": "callback", "title": "Call",
            "status": "open", "owner": None, "due_at": due, "created_at": created, "completed_at": None}


def _lead(lead_id: str, created: str) -> dict[str, Any]:
    return {"id": lead_id, "customer_id": "cus_1", "name": "Ada", "phone_e164": None, "email": None,
            "source": "web_form", "status": "new", "owner": None, "interest": None, "created_at": created,
            "updated_at": created}


def postgres_document() -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION, "recent": 5,
        "customer": {"id": "cus_1", "first_name": "Ada", "last_name": "Lovelace", "language": "en",
                     "country": "GB", "tier": "vip", "account_manager": None, "email": "Ada@Example.com",
                     "marketing_consent": True, "created_at": "2021-03-04T10:00:00+01:00"},
        "kyc": {"status": "verified", "verified_at": "2024-06-01T00:00:00+00:00", "risk_rating": "medium",
                "pep": False, "sanctions_hit": True, "edd_required": False, "edd_reasons": ["shell_companies"],
                "document_type": "passport", "document_number_masked": "*****1234",
                "next_review_at": "2025-03-01T13:00:00+00:00"},
        "phones": [{"id": "ph_2", "e164": "+447700900123", "raw": "07700 900123", "kind": "mobile"},
                   {"id": "ph_1", "e164": "+442079460018", "raw": "020 7946 0018", "kind": "work"}],
        "emails": [{"address": "b@example.com", "kind": "work", "is_primary": False},
                   {"address": "ada@example.com", "kind": "personal", "is_primary": True}],
        "accounts": [{"number": "5009", "platform": "MT5", "currency": "EUR", "balance": "12345678.90",
                      "equity": "0.10", "status": "active"},
                     {"number": "5001234567", "platform": "cTrader", "currency": "USD", "balance": "25.00",
                      "equity": "-3.50", "status": "dormant"}],
        "interactions": [
            _interaction(1, "2025-02-27T12:00:00+00:00"),
            _interaction(3, "2025-02-28T13:00:00+01:00", ivr_path=["lang:en", "menu:2"], recording_id="rec_3"),
            _interaction(2, "2025-02-28T12:00:00+00:00"),
        ],
        "tasks": [_task("t_undated", None, "2025-02-01T00:00:00+00:00"),
                  _task("t_later", "2025-03-05T00:00:00+00:00", "2025-02-01T00:00:00+00:00"),
                  _task("t_soon", "2025-03-01T15:00:00+00:00", "2025-02-02T00:00:00+00:00")],
        "leads": [_lead("l_old", "2025-01-01T00:00:00+00:00"), _lead("l_new", "2025-02-01T00:00:00+00:00")],
    }


def _sqlite_time(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    parsed = datetime.fromisoformat(value).astimezone(UTC)
    return parsed.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


TIME_KEYS = {"created_at", "verified_at", "next_review_at", "started_at", "answered_at", "ended_at", "due_at",
             "completed_at", "updated_at"}
BOOL_KEYS = {"marketing_consent", "pep", "sanctions_hit", "edd_required", "is_primary"}


def sqlite_document() -> dict[str, Any]:
    """The same document as SQLite writes it: naive UTC text, 1/0 for booleans."""

    def convert(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (_sqlite_time(v) if k in TIME_KEYS else int(v) if k in BOOL_KEYS else convert(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [convert(item) for item in node]
        return node

    return convert(postgres_document())  # type: ignore[no-any-return]


def test_both_dialects_decode_to_the_same_profile() -> None:
    pg = decode_profile(postgres_document(), recent=5, now=NOW)
    lite = decode_profile(sqlite_document(), recent=5, now=NOW)
    assert pg == lite
    assert pg.created_at == datetime(2021, 3, 4, 9, 0, tzinfo=UTC)  # +01:00 read as UTC
    assert pg.marketing_consent is True and pg.kyc.sanctions_hit is True and pg.kyc.pep is False
    assert all(t.tzinfo is UTC or t.utcoffset() == timedelta(0) for t in (pg.created_at, pg.as_of))


def test_money_stays_exact() -> None:
    profile = decode_profile(postgres_document(), recent=5, now=NOW)
    assert [(a.balance, a.equity) for a in profile.accounts] == [
        (Decimal("25.00"), Decimal("-3.50")), (Decimal("12345678.90"), Decimal("0.10"))]
    assert [a["balance"] for a in profile.to_dict()["accounts"]] == ["25.00", "12345678.90"]
    assert [a.number_masked for a in profile.accounts] == ["******4567", "5009"]


def test_every_list_comes_out_in_its_order_whatever_order_it_came_in() -> None:
    document = postgres_document()
    rng = random.Random(4)
    for key in ("phones", "emails", "accounts", "interactions", "tasks", "leads"):
        rng.shuffle(document[key])
    profile = decode_profile(document, recent=5, now=NOW)
    assert [p.e164 for p in profile.phones] == ["+442079460018", "+447700900123"]  # by row id
    assert [(e.address, e.is_primary) for e in profile.emails] == [("ada@example.com", True),
                                                                  ("b@example.com", False)]
    assert [a.number for a in profile.accounts] == ["5001234567", "5009"]
    # int_3 started 12:00 UTC on the 28th, like int_2: the larger id is the newer one.
    assert [i.id for i in profile.recent_interactions] == ["int_3", "int_2", "int_1"]
    assert profile.recent_interactions[0].ivr_path == ("lang:en", "menu:2")
    assert [t.id for t in profile.open_tasks] == ["t_soon", "t_later", "t_undated"]
    assert [lead.id for lead in profile.leads] == ["l_new", "l_old"]


def test_recent_cuts_the_interactions() -> None:
    assert [i.id for i in decode_profile(postgres_document(), recent=2, now=NOW).recent_interactions] == [
        "int_3", "int_2"]
    assert decode_profile(postgres_document(), recent=0, now=NOW).recent_interactions == ()


def test_the_kyc_status_is_worked_out_at_read_time() -> None:
    document = postgres_document()  # review due at 13:00 UTC
    before = decode_profile(document, recent=5, now=NOW)
    after = decode_profile(document, recent=5, now=NOW + timedelta(hours=1))
    assert (before.kyc.status, after.kyc.status, after.kyc.recorded_status) == ("verified", "expired", "verified")
    assert (before.as_of, after.as_of) == (NOW, NOW + timedelta(hours=1))
    # A sanctions hit implies EDD, and its reason, whatever was stored.
    assert after.kyc.edd_required and after.kyc.edd_reasons == ("shell_companies", "sanctions_hit")


def test_no_kyc_record_means_not_started() -> None:
    document = postgres_document()
    document["kyc"] = None
    profile = decode_profile(document, recent=5, now=NOW)
    assert (profile.kyc.status, profile.kyc.risk_rating) == ("not_started", None)


def test_to_dict_is_json_ready_and_has_every_section() -> None:
    data = decode_profile(sqlite_document(), recent=5, now=NOW).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert {"emails", "open_tasks", "leads", "phones", "accounts", "recent_interactions", "kyc"} <= set(data)
    assert data["open_tasks"][0]["due_at"] == "2025-03-01T15:00:00+00:00"
    assert data["recent_interactions"][0]["ivr_path"] == ["lang:en", "menu:2"]


def test_covers_knows_when_a_document_is_enough() -> None:
    document = postgres_document()  # asked for 5, the customer has 3
    assert covers(document, 5) and covers(document, 50)
    document["interactions"] = [_interaction(n, f"2025-02-0{n}T00:00:00+00:00") for n in range(1, 6)]
    assert covers(document, 5) and covers(document, 2)
    assert not covers(document, 6)  # there may be a sixth


@pytest.mark.parametrize("raw", [b'{"v": 0, "recent": 5}', b"[1, 2]", b'"text"'])
def test_other_documents_are_not_loaded(raw: bytes) -> None:
    assert load_document(raw) is None


def test_load_document_reads_bytes_and_text() -> None:
    raw = json.dumps(postgres_document())
    assert load_document(raw) == load_document(raw.encode()) == postgres_document()
    with pytest.raises(ValueError):
        load_document(b"\xff not json")
