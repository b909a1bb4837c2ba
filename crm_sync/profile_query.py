"""The whole screen-pop profile in one SQL statement, and the raw data it returns.

Owns the single SELECT that reads a profile (customer, KYC, phones, emails, trading
accounts, the last N interactions, open tasks, open leads) as one JSON document in one
round trip, on PostgreSQL and SQLite, and the decoding of that document into a
`CustomerProfile`. The document is what `ProfileCache` stores, so it must never depend
on the clock: the effective KYC status and `as_of` are worked out at decode time, from
the `now` the caller gives. Must never issue a second statement per profile, and never
let SQL float arithmetic near money (balances travel as exact decimal strings).

The document (FORMAT_VERSION 1; a cached document of another version is a miss):

    {"v": 1, "recent": <how many interactions were asked for>,
     "customer": {id, first_name, last_name, language, country, tier, account_manager,
                  email, marketing_consent, created_at},
     "kyc": null | {status, verified_at, risk_rating, pep, sanctions_hit, edd_required,
                    edd_reasons, document_type, document_number_masked, next_review_at},
     "phones": [...], "emails": [...], "accounts": [...], "interactions": [...],
     "tasks": [...open ones...], "leads": [...open ones...]}

Timestamps are ISO 8601 text (PostgreSQL writes an offset; SQLite stores naive UTC),
booleans are true/false or 1/0, money is a decimal string with the column's scale.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import aggregate_order_by

from crm_sync.profile import (
    NO_KYC,
    OPEN_LEAD_STATUSES,
    AccountView,
    CustomerProfile,
    EmailView,
    InteractionView,
    LeadView,
    PhoneView,
    TaskView,
    kyc_view,
    mask_tail,
    task_order_key,
)
from crm_sync.schema import (
    Customer,
    CustomerEmail,
    CustomerPhone,
    Interaction,
    KycRecord,
    Lead,
    Task,
    TradingAccount,
)

FORMAT_VERSION = 1
# What a cached profile holds unless a caller asked for more: the screen pop's five.
DEFAULT_RECENT = 5

Expr = sa.ColumnElement[Any]


@dataclass(frozen=True, slots=True)
class _JsonSql:
    """The few SQL pieces that differ between dialects."""

    obj: Callable[..., Expr]  # json object from key, value, key, value...
    agg: Callable[[Expr, Sequence[Expr]], Expr]  # json array of one object per row, ordered
    embed: Callable[[Expr], Expr]  # a JSON value (column or subquery) nested as JSON, not text
    money: Callable[[Expr], Expr]  # exact decimal text
    text: Callable[[Expr], Expr]  # the final document as text


def _dialect_json(dialect: str) -> _JsonSql:
    if dialect == "postgresql":
        return _JsonSql(
            obj=sa.func.json_build_object,
            agg=lambda row, order: sa.func.coalesce(
                sa.func.json_agg(aggregate_order_by(row, *order)), sa.literal_column("'[]'::json")
            ),
            embed=lambda value: value,
            # numeric(18, 2)::text keeps the scale ('25.00'); a JSON number would not survive float parsing.
            money=lambda value: sa.cast(value, sa.Text),
            text=lambda value: sa.cast(value, sa.Text),
        )
    if dialect == "sqlite":
        return _JsonSql(
            obj=sa.func.json_object,
            # No ORDER BY inside aggregates before SQLite 3.44: rows come in the derived
            # table's order, which SQLite keeps in practice; `decode_profile` sorts again.
            agg=lambda row, order: sa.func.json_group_array(row),
            # Values out of a subquery or a text column lose their JSON subtype and would
            # be nested as strings; json() gives it back.
            embed=sa.func.json,
            # SQLite keeps NUMERIC as REAL; print it at the column's scale (2).
            money=lambda value: sa.func.printf(sa.literal_column("'%.2f'"), value),
            text=lambda value: value,
        )
    raise NotImplementedError(f"no one-statement profile for the {dialect} dialect")


def _object(j: _JsonSql, fields: Sequence[tuple[str, Expr]]) -> Expr:
    args: list[Expr] = []
    for key, value in fields:
        # Keys are inlined, never bound: PostgreSQL cannot type a bare parameter here.
        args += [sa.literal_column(f"'{key}'"), value]
    return j.obj(*args)


Columns = sa.ColumnCollection[str, sa.ColumnElement[Any]]


def _section(
    j: _JsonSql,
    table: sa.FromClause,
    columns: Sequence[str],
    where: Sequence[Expr],
    order: Callable[[Columns], Sequence[Expr]],
    *,
    limit: Expr | None = None,
    json_columns: tuple[str, ...] = (),
    money_columns: tuple[str, ...] = (),
) -> Expr:
    """(SELECT the rows of `table` matching `where`, in `order`, as a JSON array).

    The rows are picked and ordered in a derived table (an index range scan, with the
    LIMIT), then aggregated; `order` is applied to both, so each dialect keeps it.
    """
    picked = sa.select(*(table.c[name] for name in columns)).where(*where).order_by(*order(table.c))
    if limit is not None:
        picked = picked.limit(limit)
    derived = picked.subquery()

    def value(name: str) -> Expr:
        column: Expr = derived.c[name]
        if name in json_columns:
            return j.embed(column)
        if name in money_columns:
            return j.money(column)
        return column

    row = _object(j, [(name, value(name)) for name in columns])
    return j.embed(sa.select(j.agg(row, order(derived.c))).scalar_subquery())


_CUSTOMER = ("id", "first_name", "last_name", "language", "country", "tier", "account_manager", "email",
             "marketing_consent", "created_at")
_KYC = ("status", "verified_at", "risk_rating", "pep", "sanctions_hit", "edd_required", "edd_reasons",
        "document_type", "document_number_masked", "next_review_at")
_PHONE = ("id", "e164", "raw", "kind")
_EMAIL = ("address", "kind", "is_primary")
_ACCOUNT = ("number", "platform", "currency", "balance", "equity", "status")
_INTERACTION = ("id", "customer_id", "channel", "direction", "caller_number", "dialled", "queue", "agent_id",
                "started_at", "answered_at", "ended_at", "outcome", "disposition", "notes", "call_id",
                "ivr_path", "recording_id", "transcript_ref")
_TASK = ("id", "customer_id", "interaction_id", "kind", "title", "status", "owner", "due_at", "created_at",
         "completed_at")
_LEAD = ("id", "customer_id", "name", "phone_e164", "email", "source", "status", "owner", "interest",
         "created_at", "updated_at")


@cache
def profile_statement(dialect: str) -> sa.Select[Any]:
    """The one statement; parameters `customer_id` and `recent`; one text column or no row.

    Built once per dialect so SQLAlchemy's compiled cache and the driver's prepared
    statements are reused. Every section filters on the customer id directly (bound,
    not correlated), so each is one probe of its own index:
    customer_phones/customer_emails/trading_accounts/leads by customer_id,
    interactions by (customer_id, started_at) read backwards, tasks by
    (customer_id, status, due_at), customers and kyc_records by primary key.
    """
    j = _dialect_json(dialect)
    customer_id = sa.bindparam("customer_id", type_=sa.String)
    recent = sa.bindparam("recent", type_=sa.Integer)
    customers = Customer.__table__
    kyc = KycRecord.__table__
    document = _object(j, [
        ("v", sa.literal_column(str(FORMAT_VERSION))),
        ("recent", sa.cast(recent, sa.Integer)),
        ("customer", _object(j, [(name, customers.c[name]) for name in _CUSTOMER])),
        ("kyc", j.embed(
            sa.select(_object(j, [(name, j.embed(kyc.c[name]) if name == "edd_reasons" else kyc.c[name])
                                  for name in _KYC]))
            .where(kyc.c.customer_id == customer_id)
            .scalar_subquery()
        )),
        ("phones", _section(j, CustomerPhone.__table__, _PHONE, [CustomerPhone.__table__.c.customer_id == customer_id],
                            lambda c: [c.id])),
        ("emails", _section(j, CustomerEmail.__table__, _EMAIL,
                            [CustomerEmail.__table__.c.customer_id == customer_id],
                            lambda c: [c.is_primary.desc(), c.address])),
        ("accounts", _section(j, TradingAccount.__table__, _ACCOUNT,
                              [TradingAccount.__table__.c.customer_id == customer_id],
                              lambda c: [c.number], money_columns=("balance", "equity"))),
        ("interactions", _section(j, Interaction.__table__, _INTERACTION,
                                  [Interaction.__table__.c.customer_id == customer_id],
                                  lambda c: [c.started_at.desc(), c.id.desc()], limit=recent,
                                  json_columns=("ivr_path",))),
        ("tasks", _section(j, Task.__table__, _TASK,
                           [Task.__table__.c.customer_id == customer_id,
                            Task.__table__.c.status == sa.literal_column("'open'")],
                           lambda c: [c.due_at.asc().nulls_last(), c.created_at, c.id])),
        ("leads", _section(j, Lead.__table__, _LEAD,
                           [Lead.__table__.c.customer_id == customer_id,
                            Lead.__table__.c.status.in_([sa.literal_column(f"'{s}'") for s in OPEN_LEAD_STATUSES])],
                           lambda c: [c.created_at.desc(), c.id.desc()])),
    ])
    return sa.select(j.text(document)).select_from(customers).where(customers.c.id == customer_id)


# --- decoding: pure ---------------------------------------------------------------------

def load_document(raw: bytes | str) -> dict[str, Any] | None:
    """The decoded document, or None when it is not one of this format version."""
    data = json.loads(raw)
    if not isinstance(data, dict) or data.get("v") != FORMAT_VERSION:
        return None
    return data


def covers(data: Mapping[str, Any], recent: int) -> bool:
    """Whether a document holds everything a profile with `recent` interactions needs."""
    fetched = int(data["recent"])
    # Fewer interactions than were asked for means the customer has no more.
    return recent <= fetched or len(data["interactions"]) < fetched


def _ts(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        # SQLite keeps UtcDateTime values as naive UTC text.
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _ts_required(value: Any) -> datetime:
    parsed = _ts(value)
    if parsed is None:
        raise ValueError("a required timestamp is null in the profile document")
    return parsed


def _interaction(row: Mapping[str, Any]) -> InteractionView:
    path = row["ivr_path"]
    return InteractionView(
        id=row["id"], customer_id=row["customer_id"], channel=row["channel"], direction=row["direction"],
        caller_number=row["caller_number"], dialled=row["dialled"], queue=row["queue"], agent_id=row["agent_id"],
        started_at=_ts_required(row["started_at"]), answered_at=_ts(row["answered_at"]),
        ended_at=_ts(row["ended_at"]), outcome=row["outcome"], disposition=row["disposition"], notes=row["notes"],
        call_id=row["call_id"], ivr_path=tuple(path) if path is not None else None,
        recording_id=row["recording_id"], transcript_ref=row["transcript_ref"],
    )


def _task(row: Mapping[str, Any]) -> TaskView:
    return TaskView(
        id=row["id"], customer_id=row["customer_id"], interaction_id=row["interaction_id"], kind=row["kind"],
        title=row["title"], status=row["status"], owner=row["owner"], due_at=_ts(row["due_at"]),
        created_at=_ts_required(row["created_at"]), completed_at=_ts(row["completed_at"]),
    )


def _lead(row: Mapping[str, Any]) -> LeadView:
    return LeadView(
        id=row["id"], customer_id=row["customer_id"], name=row["name"], phone_e164=row["phone_e164"],
        email=row["email"], source=row["source"], status=row["status"], owner=row["owner"],
        interest=row["interest"], created_at=_ts_required(row["created_at"]),
        updated_at=_ts_required(row["updated_at"]),
    )


def decode_profile(data: Mapping[str, Any], *, recent: int, now: datetime) -> CustomerProfile:
    """The profile a document describes, as shown at `now`, with at most `recent` interactions.

    Lists are sorted here as well as in SQL: SQLite does not promise the order of
    json_group_array, and the order is part of what the agent reads.
    """
    customer = data["customer"]
    kyc = data["kyc"]
    interactions = sorted((_interaction(r) for r in data["interactions"]),
                          key=lambda i: (i.started_at, i.id), reverse=True)
    leads = sorted((_lead(r) for r in data["leads"]), key=lambda lead: (lead.created_at, lead.id), reverse=True)
    return CustomerProfile(
        customer_id=customer["id"],
        first_name=customer["first_name"],
        last_name=customer["last_name"],
        language=customer["language"],
        country=customer["country"],
        tier=customer["tier"],
        account_manager=customer["account_manager"],
        email=customer["email"],
        marketing_consent=bool(customer["marketing_consent"]),
        created_at=_ts_required(customer["created_at"]),
        phones=tuple(PhoneView(e164=p["e164"], raw=p["raw"], kind=p["kind"])
                     for p in sorted(data["phones"], key=lambda p: str(p["id"]))),
        emails=tuple(sorted((EmailView(address=e["address"], kind=e["kind"], is_primary=bool(e["is_primary"]))
                             for e in data["emails"]), key=lambda e: (not e.is_primary, e.address))),
        accounts=tuple(
            AccountView(
                number=a["number"], number_masked=mask_tail(a["number"]), platform=a["platform"],
                currency=a["currency"], balance=Decimal(str(a["balance"])), equity=Decimal(str(a["equity"])),
                status=a["status"],
            )
            for a in sorted(data["accounts"], key=lambda a: str(a["number"]))
        ),
        kyc=NO_KYC if kyc is None else kyc_view(
            status=kyc["status"],
            verified_at=_ts(kyc["verified_at"]),
            risk_rating=kyc["risk_rating"],
            pep=bool(kyc["pep"]),
            sanctions_hit=bool(kyc["sanctions_hit"]),
            edd_required=bool(kyc["edd_required"]),
            edd_reasons=list(kyc["edd_reasons"] or ()),
            document_type=kyc["document_type"],
            document_number_masked=kyc["document_number_masked"],
            next_review_at=_ts(kyc["next_review_at"]),
            now=now,
        ),
        recent_interactions=tuple(interactions[: max(recent, 0)]),
        open_tasks=tuple(sorted((_task(r) for r in data["tasks"]), key=task_order_key)),
        leads=tuple(leads),
        as_of=now,
    )


__all__ = ["DEFAULT_RECENT", "FORMAT_VERSION", "covers", "decode_profile", "load_document", "profile_statement"]
