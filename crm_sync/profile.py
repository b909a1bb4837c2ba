"""The screen-pop view of a customer: frozen dataclasses and the pure rules that fill them.

Owns what an agent sees about a customer (identity, phones, emails, accounts, KYC and
EDD, recent interactions, open tasks and leads), the effective KYC status, masking and
the JSON shape. Pure: no database, no clock (`now` always comes in as an argument), no
I/O. Must never hold anything the agent must not see: full document numbers never
reach this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from crm_sync.schema import EDD_REASONS, LEAD_STATUSES

# A lead in one of these states is settled: the profile shows only the others.
CLOSED_LEAD_STATUSES = ("converted", "lost")
OPEN_LEAD_STATUSES = tuple(s for s in LEAD_STATUSES if s not in CLOSED_LEAD_STATUSES)


def mask_tail(value: str, visible: int = 4) -> str:
    """'*****1234': everything but the last `visible` characters hidden, length kept."""
    if len(value) <= visible:
        return value
    return "*" * (len(value) - visible) + value[-visible:]


def effective_kyc_status(status: str, next_review_at: datetime | None, now: datetime) -> str:
    """The KYC status to show at `now`.

    A verified record whose review date has passed is 'expired' even though nobody has
    written that yet: the periodic review is what keeps a verification valid. Pending,
    rejected and not-started records keep their status; they are not verified to lapse.
    """
    if status == "verified" and next_review_at is not None and next_review_at <= now:
        return "expired"
    return status


def edd_reasons_in_order(reasons: list[str] | tuple[str, ...], *, pep: bool, sanctions_hit: bool) -> tuple[str, ...]:
    """Stored reasons plus those implied by the PEP and sanctions flags, in vocabulary order.

    Unknown slugs from an external CRM are kept at the end rather than dropped: hiding
    a compliance reason is worse than showing an unfamiliar one.
    """
    wanted = set(reasons)
    if pep:
        wanted.add("politically_exposed")
    if sanctions_hit:
        wanted.add("sanctions_hit")
    known = tuple(r for r in EDD_REASONS if r in wanted)
    unknown = tuple(sorted(wanted.difference(EDD_REASONS)))
    return known + unknown


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def summary_kyc_status(status: str | None, next_review_at: datetime | None, now: datetime) -> str:
    """`effective_kyc_status`, with 'not_started' for a customer without a KYC record."""
    return effective_kyc_status(status, next_review_at, now) if status is not None else "not_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerSummary:
    """One match of a caller lookup: enough to choose between several matches."""

    customer_id: str
    name: str
    tier: str
    language: str
    country: str
    kyc_status: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "name": self.name,
            "tier": self.tier,
            "language": self.language,
            "country": self.country,
            "kyc_status": self.kyc_status,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PhoneView:
    e164: str
    raw: str
    kind: str

    def to_dict(self) -> dict[str, Any]:
        return {"e164": self.e164, "raw": self.raw, "kind": self.kind}


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailView:
    address: str
    kind: str
    is_primary: bool

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "kind": self.kind, "is_primary": self.is_primary}


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskView:
    id: str
    customer_id: str
    interaction_id: str | None
    kind: str
    title: str
    status: str
    owner: str | None
    due_at: datetime | None
    created_at: datetime
    completed_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "customer_id": self.customer_id,
            "interaction_id": self.interaction_id,
            "kind": self.kind,
            "title": self.title,
            "status": self.status,
            "owner": self.owner,
            "due_at": _iso(self.due_at),
            "created_at": _iso(self.created_at),
            "completed_at": _iso(self.completed_at),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadView:
    id: str
    customer_id: str | None
    name: str
    phone_e164: str | None
    email: str | None
    source: str
    status: str
    owner: str | None
    interest: str | None
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "customer_id": self.customer_id,
            "name": self.name,
            "phone_e164": self.phone_e164,
            "email": self.email,
            "source": self.source,
            "status": self.status,
            "owner": self.owner,
            "interest": self.interest,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


def task_order_key(task: TaskView) -> tuple[bool, datetime, datetime, str]:
    """Soonest due first; tasks without a due date after every dated one, oldest first."""
    return (task.due_at is None, task.due_at or task.created_at, task.created_at, task.id)


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountView:
    # Both forms on purpose: which roles see the full number is decided later, per role.
    number: str
    number_masked: str
    platform: str
    currency: str
    balance: Decimal
    equity: Decimal
    status: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "number_masked": self.number_masked,
            "platform": self.platform,
            "currency": self.currency,
            # Strings, not floats: money must survive JSON without binary rounding.
            "balance": str(self.balance),
            "equity": str(self.equity),
            "status": self.status,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class KycView:
    status: str
    recorded_status: str
    verified_at: datetime | None
    risk_rating: str | None
    pep: bool
    sanctions_hit: bool
    edd_required: bool
    edd_reasons: tuple[str, ...]
    document_type: str | None
    document_number_masked: str | None
    next_review_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "recorded_status": self.recorded_status,
            "verified_at": _iso(self.verified_at),
            "risk_rating": self.risk_rating,
            "pep": self.pep,
            "sanctions_hit": self.sanctions_hit,
            "next_review_at": _iso(self.next_review_at),
            "document_type": self.document_type,
            "document_number_masked": self.document_number_masked,
            "edd": {"required": self.edd_required, "reasons": list(self.edd_reasons)},
        }


NO_KYC = KycView(
    status="not_started",
    recorded_status="not_started",
    verified_at=None,
    risk_rating=None,
    pep=False,
    sanctions_hit=False,
    edd_required=False,
    edd_reasons=(),
    document_type=None,
    document_number_masked=None,
    next_review_at=None,
)


def kyc_view(
    *,
    status: str,
    verified_at: datetime | None,
    risk_rating: str | None,
    pep: bool,
    sanctions_hit: bool,
    edd_required: bool,
    edd_reasons: list[str] | tuple[str, ...],
    document_type: str | None,
    document_number_masked: str | None,
    next_review_at: datetime | None,
    now: datetime,
) -> KycView:
    """The KYC block as shown at `now`: effective status, EDD implied by PEP/sanctions."""
    reasons = edd_reasons_in_order(edd_reasons or (), pep=pep, sanctions_hit=sanctions_hit)
    return KycView(
        status=effective_kyc_status(status, next_review_at, now),
        recorded_status=status,
        verified_at=verified_at,
        risk_rating=risk_rating,
        pep=pep,
        sanctions_hit=sanctions_hit,
        # A PEP or a sanctions hit always means enhanced due diligence, whatever was stored.
        edd_required=bool(edd_required or pep or sanctions_hit or reasons),
        edd_reasons=reasons,
        document_type=document_type,
        document_number_masked=document_number_masked,
        next_review_at=next_review_at,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class InteractionView:
    id: str
    customer_id: str | None
    channel: str
    direction: str
    caller_number: str
    dialled: str | None
    queue: str | None
    agent_id: str | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    outcome: str
    disposition: str | None
    notes: str | None
    call_id: str | None
    ivr_path: tuple[str, ...] | None = None
    recording_id: str | None = None
    transcript_ref: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "customer_id": self.customer_id,
            "channel": self.channel,
            "direction": self.direction,
            "caller_number": self.caller_number,
            "dialled": self.dialled,
            "queue": self.queue,
            "agent_id": self.agent_id,
            "started_at": _iso(self.started_at),
            "answered_at": _iso(self.answered_at),
            "ended_at": _iso(self.ended_at),
            "outcome": self.outcome,
            "disposition": self.disposition,
            "notes": self.notes,
            "call_id": self.call_id,
            "ivr_path": list(self.ivr_path) if self.ivr_path is not None else None,
            "recording_id": self.recording_id,
            "transcript_ref": self.transcript_ref,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerProfile:
    """Everything the screen pop shows about one customer, as of `as_of`.

    `to_dict()` gives the JSON-ready shape (timestamps ISO 8601 with offset, UTC;
    money as decimal strings; lists newest/ordered as noted):

        {
          "customer_id": "cus_demo_lena",
          "name": "Lena Hoffmann", "first_name": "Lena", "last_name": "Hoffmann",
          "language": "de", "country": "DE", "tier": "vip",
          "account_manager": "m.keller" | null, "email": "..." | null,
          "marketing_consent": true,
          "created_at": "2021-03-04T09:00:00+00:00",
          "phones": [{"e164": "+4930901820", "raw": "030 901820", "kind": "work"}],
          "emails": [{"address": "lena.hoffmann@example.de", "kind": "personal",
                      "is_primary": true}],
          "accounts": [{"number": "0090000011", "number_masked": "******0011",
                        "platform": "MT5", "currency": "EUR", "balance": "250000.00",
                        "equity": "257310.50", "status": "active"}],
          "kyc": {"status": "verified" | "expired" | ..., "recorded_status": "verified",
                  "verified_at": iso | null, "risk_rating": "low" | "medium" | "high" | null,
                  "pep": false, "sanctions_hit": false, "next_review_at": iso | null,
                  "document_type": "passport" | null,
                  "document_number_masked": "*****1234" | null,
                  "edd": {"required": false, "reasons": ["politically_exposed", ...]}},
          "recent_interactions": [ {interaction, newest first; see list_interactions} ],
          "open_tasks": [{"id": "tsk_...", "customer_id": "...", "interaction_id": null,
                          "kind": "callback", "title": "Call back about SEPA",
                          "status": "open", "owner": "agent01" | null,
                          "due_at": iso | null, "created_at": iso, "completed_at": null}],
          "leads": [{"id": "lead_...", "customer_id": "...", "name": "Lena Hoffmann",
                     "phone_e164": "+4930901820" | null, "email": "..." | null,
                     "source": "inbound_call", "status": "new" | "contacted" | "qualified",
                     "owner": "agent08" | null, "interest": "cTrader account" | null,
                     "created_at": iso, "updated_at": iso}],
          "as_of": "2025-01-01T12:00:00+00:00"
        }

    `kyc.status` is the effective status at `as_of` ('expired' once a verified record's
    review date has passed); `recorded_status` is what the CRM holds. A customer with
    no KYC record gets status 'not_started' and risk_rating null. `emails` lists every
    address (lower-cased), the primary one (the card's `email`) first, then by address.
    `open_tasks` holds only tasks with status 'open', soonest due first and undated
    ones last. `leads` holds the customer's leads that are neither converted nor lost,
    newest first.
    """

    customer_id: str
    first_name: str
    last_name: str
    language: str
    country: str
    tier: str
    account_manager: str | None
    email: str | None
    marketing_consent: bool
    created_at: datetime
    phones: tuple[PhoneView, ...]
    accounts: tuple[AccountView, ...]
    kyc: KycView
    recent_interactions: tuple[InteractionView, ...]
    as_of: datetime
    emails: tuple[EmailView, ...] = ()
    open_tasks: tuple[TaskView, ...] = ()
    leads: tuple[LeadView, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def to_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "name": self.name,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "language": self.language,
            "country": self.country,
            "tier": self.tier,
            "account_manager": self.account_manager,
            "email": self.email,
            "marketing_consent": self.marketing_consent,
            "created_at": _iso(self.created_at),
            "phones": [p.to_dict() for p in self.phones],
            "emails": [e.to_dict() for e in self.emails],
            "accounts": [a.to_dict() for a in self.accounts],
            "kyc": self.kyc.to_dict(),
            "recent_interactions": [i.to_dict() for i in self.recent_interactions],
            "open_tasks": [t.to_dict() for t in self.open_tasks],
            "leads": [lead.to_dict() for lead in self.leads],
            "as_of": _iso(self.as_of),
        }


__all__ = [
    "CLOSED_LEAD_STATUSES",
    "NO_KYC",
    "OPEN_LEAD_STATUSES",
    "AccountView",
    "CustomerProfile",
    "CustomerSummary",
    "EmailView",
    "InteractionView",
    "KycView",
    "LeadView",
    "PhoneView",
    "TaskView",
    "edd_reasons_in_order",
    "effective_kyc_status",
    "kyc_view",
    "mask_tail",
    "summary_kyc_status",
    "task_order_key",
]
