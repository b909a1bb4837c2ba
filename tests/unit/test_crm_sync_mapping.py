"""The connector's field mapping and the inbound event format: pure, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from crm_sync.connector import load_mapping
from crm_sync.inbound import CustomerChanged, CustomerDeleted, InvalidField, KycChanged, KycDeleted, parse_event
from crm_sync.mapping import MappingError, UnmappableMessage, parse_mapping
from crm_sync.sync_schema import OUTBOX_KINDS

INTERACTION = {
    "id": "int_1", "customer_id": "cus_1", "channel": "voice", "direction": "inbound",
    "caller_number": "+442079460018", "dialled": "1000", "queue": "sales", "agent_id": None,
    "started_at": "2025-03-01T12:00:00+00:00", "answered_at": None, "ended_at": "2025-03-01T12:03:00+00:00",
    "outcome": "completed", "disposition": "sale", "notes": None, "call_id": "c1@x",
}


def test_the_shipped_mapping_covers_every_kind_and_nests_fields() -> None:
    mapping = load_mapping()
    assert set(mapping.kinds) == set(OUTBOX_KINDS)
    request = mapping.render("interaction.created", INTERACTION)
    assert (request.method, request.path) == ("POST", "/activities")
    body = request.body
    assert body["external_id"] == "int_1"
    assert body["type"] == "call"  # translated value
    assert body["subject"] == "Contact center interaction"  # constant
    assert body["contact"] == {"phone": "+442079460018", "dialled": "1000"}  # nested path
    assert body["owner"] == "unassigned"  # default for a null
    assert "answered_at" not in body and "notes" not in body  # nulls left out
    assert body["source"] == {"system": "ctihub", "call_id": "c1@x"}
    update = mapping.render("interaction.updated", INTERACTION)
    assert (update.method, update.path) == ("PATCH", "/activities/int_1")


def test_path_values_are_escaped() -> None:
    mapping = parse_mapping("kinds: {note.added: {path: '/a/{interaction_id}/n', body: {t: text}}}")
    request = mapping.render("note.added", {"interaction_id": "x/../y?z", "text": "hi"})
    assert request.path == "/a/x%2F..%2Fy%3Fz/n"
    with pytest.raises(UnmappableMessage):
        mapping.render("note.added", {"text": "no id"})


def test_required_and_unknown_kinds_are_unmappable() -> None:
    mapping = parse_mapping("""
kinds:
  interaction.created:
    path: /x
    body:
      customer.ref: {from: customer_id, required: true}
      kind: {from: channel, values: {voice: phone}}
""")
    assert mapping.render("interaction.created", {"customer_id": "c", "channel": "sms"}).body == {
        "customer": {"ref": "c"}, "kind": "sms"}  # an unlisted value passes unchanged
    with pytest.raises(UnmappableMessage, match="customer_id"):
        mapping.render("interaction.created", {"channel": "voice"})
    with pytest.raises(UnmappableMessage, match="note.added"):
        mapping.render("note.added", {})


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[1, 2]", "file"),
        ("kinds: {a: {path: x}}", "kinds.a.path"),
        ("kinds: {a: {path: /x, method: DELETE}}", "kinds.a.method"),
        ("kinds: {a: {path: /x, body: {f: 3}}}", "kinds.a.body.f"),
        ("kinds: {a: {path: /x, body: {f: {from: a, const: 1}}}}", "kinds.a.body.f"),
        ("kinds: {a: {path: /x, body: {f: {form: a}}}}", "kinds.a.body.f"),
        ("kinds: {a: {path: /x, body: {f: a, f.g: b}}}", "kinds.a.body.f.g"),
        ("kinds: {a: {path: /x, body: {'f..g': a}}}", "kinds.a.body.f..g"),
        ("kinds: {a: {path: /x, body: {f: {from: a, required: yes please}}}}", "kinds.a.body.f.required"),
        ("version: 2\nkinds: {a: {path: /x}}", "version"),
        ("kinds: {}", "kinds"),
        ("kinds: [", "file"),
    ],
)
def test_a_wrong_mapping_file_names_the_place(text: str, where: str) -> None:
    with pytest.raises(MappingError) as error:
        parse_mapping(text)
    assert error.value.where == where


# --- inbound events ---------------------------------------------------------------

def _body(**extra: Any) -> dict[str, Any]:
    return {"id": "evt_1", "occurred_at": "2025-03-01T12:00:00Z", **extra}


CUSTOMER = {"id": "cus_1", "first_name": "Ada", "last_name": "Lovelace", "language": "en", "country": "cy",
            "tier": "vip", "phones": [{"number": "22 123456"}, {"number": "+44 20 7946 0018", "kind": "work"}]}


def test_customer_created_is_parsed_with_phones_read_in_its_country() -> None:
    event = parse_event(_body(type="customer.created", customer=CUSTOMER))
    assert isinstance(event, CustomerChanged) and event.created
    assert event.fields["country"] == "CY"
    assert [(p.e164, p.kind) for p in event.phones or ()] == [("+35722123456", "mobile"),
                                                               ("+442079460018", "work")]
    assert event.kyc is None


def test_partial_update_carries_only_what_changed() -> None:
    event = parse_event(_body(type="customer.updated", customer={"id": "cus_1", "email": None},
                              kyc={"status": "verified", "document_number": "AB123456789"}))
    assert isinstance(event, CustomerChanged) and not event.created
    assert dict(event.fields) == {"email": None}
    assert event.phones is None
    assert event.kyc is not None
    assert dict(event.kyc.fields) == {"status": "verified", "document_number_masked": "*******6789"}


def test_deletes_and_kyc_events() -> None:
    assert isinstance(parse_event(_body(type="customer.deleted", customer_id="cus_1")), CustomerDeleted)
    assert isinstance(parse_event(_body(type="kyc.deleted", customer_id="cus_1")), KycDeleted)
    kyc = parse_event(_body(type="kyc.created", customer_id="cus_1",
                            kyc={"status": "pending", "risk_rating": "high", "edd_reasons": ["pep", "pep", "x"],
                                 "verified_at": None, "next_review_at": "2026-01-01T00:00:00+02:00"}))
    assert isinstance(kyc, KycChanged) and kyc.created
    assert kyc.fields["edd_reasons"] == ["pep", "x"]
    assert kyc.fields["next_review_at"].utcoffset().total_seconds() == 7200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"type": "kyc.updated"}, "id"),
        (_body(type="kyc.renamed"), "type"),
        (_body(type="kyc.updated", occurred_at="2025-03-01T12:00:00"), "occurred_at"),  # no offset
        (_body(type="kyc.updated", occurred_at="yesterday"), "occurred_at"),
        (_body(type="kyc.updated", customer_id="cus_1"), "kyc"),
        (_body(type="kyc.updated", customer_id="cus_1", kyc={"status": "approved"}), "kyc.status"),
        (_body(type="kyc.updated", customer_id="cus_1", kyc={"pep": "yes"}), "kyc.pep"),
        (_body(type="kyc.updated", customer_id="cus_1", kyc={"edd_reasons": ["ok", 3]}), "kyc.edd_reasons[1]"),
        (_body(type="kyc.updated", customer_id="cus_1", kyc={"verified_at": "2025-01-01"}), "kyc.verified_at"),
        (_body(type="kyc.created", customer_id="cus_1", kyc={"status": "pending"}), "kyc.risk_rating"),
        (_body(type="kyc.updated", kyc={"status": "pending"}), "customer_id"),
        (_body(type="customer.created", customer={**CUSTOMER, "tier": "gold"}), "customer.tier"),
        (_body(type="customer.created", customer={k: v for k, v in CUSTOMER.items() if k != "last_name"}),
         "customer.last_name"),
        (_body(type="customer.updated", customer={"id": "c", "country": "CYP"}), "customer.country"),
        (_body(type="customer.updated", customer={"id": "c", "first_name": "x" * 101}), "customer.first_name"),
        (_body(type="customer.updated", customer={"id": "c", "phones": [{"number": "call me"}]}),
         "customer.phones[0].number"),
        (_body(type="customer.updated", customer={"id": "c", "phones": [{"number": "+442079460018", "kind": "fax"}]}),
         "customer.phones[0].kind"),
        (_body(type="customer.updated", customer={"id": "c", "phones": "+44"}), "customer.phones"),
        (_body(type="customer.updated", customer={"first_name": "x"}), "customer.id"),
        (_body(type="customer.updated", customer={"id": "c", "marketing_consent": 1}), "customer.marketing_consent"),
    ],
)
def test_malformed_events_name_the_field(body: Any, field: str) -> None:
    with pytest.raises(InvalidField) as error:
        parse_event(body)
    assert error.value.field == field
    # Messages describe the rule, never the value (it may be personal data).
    assert "x" * 101 not in str(error.value)
