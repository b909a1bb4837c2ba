"""Inbound CRM events: the webhook body format and its validation into typed changes.

Owns the JSON contract the external CRM posts to the hub (documented below) and the
checks that turn it into `CustomerChanged`, `CustomerDeleted`, `KycChanged` and
`KycDeleted`, or an `InvalidField` that names the first offending field. Pure: no I/O,
no clock, no database. Must never let a full identity-document number through (only
its masked tail survives parsing), and never echo field values in error messages
(they may be personal data that then lands in logs).

The body, one event per request:

    {"id": "evt_123",                       # unique per event; resends reuse it
     "type": "customer.created" | "customer.updated" | "customer.deleted"
             | "kyc.created" | "kyc.updated" | "kyc.deleted",
     "occurred_at": "2025-03-01T12:00:00Z", # when it changed in the CRM
     "customer": {...},                     # customer.created / customer.updated
     "customer_id": "cus_1",                # customer.deleted and kyc.*
     "kyc": {...}}                          # kyc.created / kyc.updated; optional
                                            # on customer.created / .updated

`customer`: id, first_name, last_name, language, country (ISO 3166 alpha-2), tier,
account_manager, email, marketing_consent, phones ([{"number", "kind"}]; international
format, or national in the customer's country). `kyc`: status, risk_rating,
verified_at, next_review_at, pep, sanctions_hit, edd_required, edd_reasons,
document_type, document_number_masked (or document_number, masked on arrival).
A *.created event must carry every required field; an *.updated event carries the
id and whichever fields changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crm_sync.phones import normalize_phone
from crm_sync.profile import mask_tail
from crm_sync.schema import KYC_STATUSES, PHONE_KINDS, RISK_RATINGS, TIERS

EVENT_TYPES = (
    "customer.created", "customer.updated", "customer.deleted",
    "kyc.created", "kyc.updated", "kyc.deleted",
)
CUSTOMER_REQUIRED = ("first_name", "last_name", "language", "country", "tier")
KYC_REQUIRED = ("status", "risk_rating")


class InvalidField(ValueError):
    """The body is not a valid event; `field` is a dotted path like 'kyc.status'."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


@dataclass(frozen=True, slots=True, kw_only=True)
class Phone:
    e164: str
    raw: str
    kind: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KycChanged:
    event_id: str
    occurred_at: datetime
    customer_id: str
    created: bool
    # Only the columns the event carried, already validated; absent = unchanged.
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerChanged:
    event_id: str
    occurred_at: datetime
    customer_id: str
    created: bool
    fields: Mapping[str, Any]
    phones: tuple[Phone, ...] | None  # None: phones unchanged; (): customer has none
    kyc: KycChanged | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerDeleted:
    event_id: str
    occurred_at: datetime
    customer_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KycDeleted:
    event_id: str
    occurred_at: datetime
    customer_id: str


InboundEvent = CustomerChanged | CustomerDeleted | KycChanged | KycDeleted


# --- field checkers: (value, field path) -> clean value, or InvalidField ---------------

def _string(max_len: int, *, nullable: bool = False) -> Callable[[Any, str], Any]:
    def check(value: Any, field: str) -> Any:
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value.strip():
            raise InvalidField(field, "must be a non-empty string" + (" or null" if nullable else ""))
        if len(value) > max_len:
            raise InvalidField(field, f"must be at most {max_len} characters")
        return value.strip()
    return check


def _choice(values: tuple[str, ...]) -> Callable[[Any, str], Any]:
    def check(value: Any, field: str) -> Any:
        if value not in values:
            raise InvalidField(field, f"must be one of {', '.join(values)}")
        return value
    return check


def _boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidField(field, "must be true or false")
    return value


def _country(value: Any, field: str) -> str:
    if not isinstance(value, str) or len(value) != 2 or not value.isalpha() or not value.isascii():
        raise InvalidField(field, "must be an ISO 3166 alpha-2 country code")
    return value.upper()


def parse_timestamp(value: Any, field: str, *, nullable: bool = False) -> datetime | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise InvalidField(field, "must be an ISO 8601 timestamp with an offset")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise InvalidField(field, "must be an ISO 8601 timestamp with an offset") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        # A local time means something different on every machine that reads it.
        raise InvalidField(field, "must carry a UTC offset (e.g. Z or +02:00)")
    return parsed


def _timestamp_or_null(value: Any, field: str) -> datetime | None:
    return parse_timestamp(value, field, nullable=True)


def _reasons(value: Any, field: str) -> list[str]:
    if not isinstance(value, list):
        raise InvalidField(field, "must be a list of strings")
    for k, item in enumerate(value):
        if not isinstance(item, str) or not item or len(item) > 64:
            raise InvalidField(f"{field}[{k}]", "must be a non-empty string of at most 64 characters")
    # Unknown slugs are kept: hiding a compliance reason is worse than an odd one.
    return list(dict.fromkeys(value))


_CUSTOMER_FIELDS: dict[str, Callable[[Any, str], Any]] = {
    "first_name": _string(100),
    "last_name": _string(100),
    "language": _string(8),
    "country": _country,
    "tier": _choice(TIERS),
    "account_manager": _string(64, nullable=True),
    "email": _string(254, nullable=True),
    "marketing_consent": _boolean,
}

_KYC_FIELDS: dict[str, Callable[[Any, str], Any]] = {
    "status": _choice(KYC_STATUSES),
    "risk_rating": _choice(RISK_RATINGS),
    "verified_at": _timestamp_or_null,
    "next_review_at": _timestamp_or_null,
    "pep": _boolean,
    "sanctions_hit": _boolean,
    "edd_required": _boolean,
    "edd_reasons": _reasons,
    "document_type": _string(32, nullable=True),
    "document_number_masked": _string(64, nullable=True),
}


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidField(field, "must be a JSON object")
    return value


def _fields(
    body: dict[str, Any], prefix: str, checkers: dict[str, Callable[[Any, str], Any]],
    required: tuple[str, ...], *, created: bool,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, check in checkers.items():
        if name in body:
            out[name] = check(body[name], f"{prefix}.{name}")
        elif created and name in required:
            raise InvalidField(f"{prefix}.{name}", "is required")
    return out


def _kyc(body: Any, *, event_id: str, occurred_at: datetime, customer_id: str, created: bool) -> KycChanged:
    kyc = _object(body, "kyc")
    fields = _fields(kyc, "kyc", _KYC_FIELDS, KYC_REQUIRED, created=created)
    if "document_number" in kyc:
        # The full number is masked here and dropped: it must never be stored or logged.
        full = _string(64, nullable=True)(kyc["document_number"], "kyc.document_number")
        fields["document_number_masked"] = mask_tail(full) if full is not None else None
    return KycChanged(event_id=event_id, occurred_at=occurred_at, customer_id=customer_id, created=created,
                      fields=fields)


def _phones(value: Any, region: str) -> tuple[Phone, ...]:
    if not isinstance(value, list):
        raise InvalidField("customer.phones", "must be a list")
    phones = []
    for k, item in enumerate(value):
        entry = _object(item, f"customer.phones[{k}]")
        raw = _string(64)(entry.get("number"), f"customer.phones[{k}].number")
        e164 = normalize_phone(raw, region)
        if e164 is None:
            raise InvalidField(f"customer.phones[{k}].number", "is not a phone number")
        kind = _choice(PHONE_KINDS)(entry.get("kind", "mobile"), f"customer.phones[{k}].kind")
        phones.append(Phone(e164=e164, raw=raw, kind=kind))
    return tuple(phones)


def parse_event(body: Any, *, default_region: str = "GB") -> InboundEvent:
    """Validate a decoded JSON body into one inbound event, or raise `InvalidField`.

    `default_region` reads national phone numbers when the event does not carry the
    customer's country.
    """
    event = _object(body, "body")
    event_id = _string(200)(event.get("id"), "id")
    kind = _choice(EVENT_TYPES)(event.get("type"), "type")
    occurred_at = parse_timestamp(event.get("occurred_at"), "occurred_at")
    assert occurred_at is not None
    if kind in ("customer.created", "customer.updated"):
        created = kind == "customer.created"
        customer = _object(event.get("customer"), "customer")
        customer_id = _string(40)(customer.get("id"), "customer.id")
        fields = _fields(customer, "customer", _CUSTOMER_FIELDS, CUSTOMER_REQUIRED, created=created)
        phones = None
        if "phones" in customer:
            phones = _phones(customer["phones"], fields.get("country", default_region))
        elif created:
            phones = ()
        kyc = None
        if event.get("kyc") is not None:
            kyc = _kyc(event["kyc"], event_id=event_id, occurred_at=occurred_at, customer_id=customer_id,
                       created=False)
        return CustomerChanged(event_id=event_id, occurred_at=occurred_at, customer_id=customer_id,
                               created=created, fields=fields, phones=phones, kyc=kyc)
    customer_id = _string(40)(event.get("customer_id"), "customer_id")
    if kind == "customer.deleted":
        return CustomerDeleted(event_id=event_id, occurred_at=occurred_at, customer_id=customer_id)
    if kind == "kyc.deleted":
        return KycDeleted(event_id=event_id, occurred_at=occurred_at, customer_id=customer_id)
    return _kyc(event.get("kyc"), event_id=event_id, occurred_at=occurred_at, customer_id=customer_id,
                created=kind == "kyc.created")


def missing_for_create(fields: Mapping[str, Any], required: tuple[str, ...], prefix: str) -> str | None:
    """The first required field absent from a partial update that has to create a row."""
    for name in required:
        if name not in fields:
            return f"{prefix}.{name}"
    return None


__all__ = [
    "CUSTOMER_REQUIRED", "CustomerChanged", "CustomerDeleted", "EVENT_TYPES", "InboundEvent", "InvalidField",
    "KYC_REQUIRED", "KycChanged", "KycDeleted", "Phone", "missing_for_create", "parse_event", "parse_timestamp",
]
