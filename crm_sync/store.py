"""CrmStore: the asyncio/SQL shell around the CRM tables.

Owns every query and write against the CRM tables, and the session boundaries (each
public method is one short transaction). The `*_with_outbox`, wrap-up and note writes
add their message for the external CRM to the same transaction (see `outbox`), and
`apply_inbound` applies a validated webhook event (see `inbound`) with its KYC history. Must never hold business rules of its own
(those live in the pure `profile` and `phones` modules), never read the wall clock
except as the default for a `now` it was not given, and never issue queries per row
(no N+1): a profile costs a fixed four SELECTs whatever the customer holds.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_sync import outbox as _outbox
from crm_sync.inbound import (
    CUSTOMER_REQUIRED,
    KYC_REQUIRED,
    CustomerChanged,
    CustomerDeleted,
    InboundEvent,
    InvalidField,
    KycChanged,
    KycDeleted,
    missing_for_create,
)
from crm_sync.phones import normalize_phone
from crm_sync.profile import (
    NO_KYC,
    AccountView,
    CustomerProfile,
    CustomerSummary,
    InteractionView,
    PhoneView,
    effective_kyc_status,
    kyc_view,
    mask_tail,
)
from crm_sync.schema import (
    CHANNELS,
    DIRECTIONS,
    OUTCOMES,
    Customer,
    CustomerPhone,
    Interaction,
    KycRecord,
    TradingAccount,
)
from crm_sync.sync_schema import KycHistory


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _interaction_view(row: Interaction) -> InteractionView:
    return InteractionView(
        id=row.id,
        customer_id=row.customer_id,
        channel=row.channel,
        direction=row.direction,
        caller_number=row.caller_number,
        dialled=row.dialled,
        queue=row.queue,
        agent_id=row.agent_id,
        started_at=row.started_at,
        answered_at=row.answered_at,
        ended_at=row.ended_at,
        outcome=row.outcome,
        disposition=row.disposition,
        notes=row.notes,
        call_id=row.call_id,
    )


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    # Checked here as well as by the database so the caller gets a readable error
    # instead of a backend-specific IntegrityError.
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


class CrmStore:
    """Customer lookup, screen-pop profiles and the interaction history."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    async def lookup_by_phone(
        self, raw: str, *, default_region: str = "GB", now: datetime | None = None
    ) -> list[CustomerSummary]:
        """Customers reachable at `raw` (any format), sorted by name; [] if none or unparsable.

        Several matches are normal (a household line): the caller decides what to pop.
        `kyc_status` is the effective status at `now` (default: the current time).
        """
        e164 = normalize_phone(raw, default_region)
        if e164 is None:
            return []
        now = now or _utcnow()
        query = (
            sa.select(
                Customer.id,
                Customer.first_name,
                Customer.last_name,
                Customer.tier,
                Customer.language,
                Customer.country,
                KycRecord.status,
                KycRecord.next_review_at,
            )
            .join(CustomerPhone, CustomerPhone.customer_id == Customer.id)
            .outerjoin(KycRecord, KycRecord.customer_id == Customer.id)
            .where(CustomerPhone.e164 == e164)
            # The same number listed twice on one customer (mobile and work) is one match.
            .distinct()
            .order_by(Customer.last_name, Customer.first_name, Customer.id)
        )
        async with self._sessionmaker() as session:
            rows = (await session.execute(query)).all()
        return [
            CustomerSummary(
                customer_id=row.id,
                name=f"{row.first_name} {row.last_name}".strip(),
                tier=row.tier,
                language=row.language,
                country=row.country,
                kyc_status=(
                    effective_kyc_status(row.status, row.next_review_at, now)
                    if row.status is not None
                    else "not_started"
                ),
            )
            for row in rows
        ]

    async def get_profile(
        self, customer_id: str, *, recent: int = 5, now: datetime | None = None
    ) -> CustomerProfile | None:
        """The screen-pop profile of `customer_id` as of `now`, or None if unknown.

        Four SELECTs in one transaction (customer with KYC, phones, accounts, the last
        `recent` interactions newest first); see `CustomerProfile` for the dict shape.
        """
        now = now or _utcnow()
        async with self._sessionmaker() as session, session.begin():
            head = (
                await session.execute(
                    sa.select(Customer, KycRecord)
                    .outerjoin(KycRecord, KycRecord.customer_id == Customer.id)
                    .where(Customer.id == customer_id)
                )
            ).first()
            if head is None:
                return None
            customer, kyc = head
            phones = (
                await session.scalars(
                    sa.select(CustomerPhone)
                    .where(CustomerPhone.customer_id == customer_id)
                    .order_by(CustomerPhone.id)
                )
            ).all()
            accounts = (
                await session.scalars(
                    sa.select(TradingAccount)
                    .where(TradingAccount.customer_id == customer_id)
                    .order_by(TradingAccount.number)
                )
            ).all()
            interactions = (
                await session.scalars(
                    sa.select(Interaction)
                    .where(Interaction.customer_id == customer_id)
                    .order_by(Interaction.started_at.desc(), Interaction.id.desc())
                    .limit(max(recent, 0))
                )
            ).all()
        return CustomerProfile(
            customer_id=customer.id,
            first_name=customer.first_name,
            last_name=customer.last_name,
            language=customer.language,
            country=customer.country,
            tier=customer.tier,
            account_manager=customer.account_manager,
            email=customer.email,
            marketing_consent=bool(customer.marketing_consent),
            created_at=customer.created_at,
            phones=tuple(PhoneView(e164=p.e164, raw=p.raw, kind=p.kind) for p in phones),
            accounts=tuple(
                AccountView(
                    number=a.number,
                    number_masked=mask_tail(a.number),
                    platform=a.platform,
                    currency=a.currency,
                    balance=a.balance,
                    equity=a.equity,
                    status=a.status,
                )
                for a in accounts
            ),
            kyc=(
                NO_KYC
                if kyc is None
                else kyc_view(
                    status=kyc.status,
                    verified_at=kyc.verified_at,
                    risk_rating=kyc.risk_rating,
                    pep=bool(kyc.pep),
                    sanctions_hit=bool(kyc.sanctions_hit),
                    edd_required=bool(kyc.edd_required),
                    edd_reasons=list(kyc.edd_reasons or ()),
                    document_type=kyc.document_type,
                    document_number_masked=kyc.document_number_masked,
                    next_review_at=kyc.next_review_at,
                    now=now,
                )
            ),
            recent_interactions=tuple(_interaction_view(i) for i in interactions),
            as_of=now,
        )

    async def record_interaction(
        self,
        *,
        customer_id: str | None,
        channel: str,
        direction: str,
        caller_number: str,
        dialled: str | None,
        queue: str | None,
        agent_id: str | None,
        started_at: datetime,
        answered_at: datetime | None,
        ended_at: datetime | None,
        outcome: str,
        call_id: str | None,
        disposition: str | None = None,
        notes: str | None = None,
        to_outbox: bool = False,
        interaction_id: str | None = None,
        now: datetime | None = None,
    ) -> str:
        """Store one finished (or failed) contact and commit; returns its id.

        Timestamps must be timezone-aware (ValueError otherwise). `customer_id` may be
        None for a caller nobody identified. With `to_outbox`, an 'interaction.created'
        message for the external CRM is written in the same transaction: both are
        committed or neither is. Give `interaction_id` to make a retried call safe: when
        a row with that id is already there (the first try committed but its answer was
        lost), its id comes back and nothing new is written, in either table.
        """
        return await self._write_interaction(
            dict(customer_id=customer_id, channel=channel, direction=direction, caller_number=caller_number,
                 dialled=dialled, queue=queue, agent_id=agent_id, started_at=started_at, answered_at=answered_at,
                 ended_at=ended_at, outcome=outcome, call_id=call_id, disposition=disposition, notes=notes),
            outbox=to_outbox, interaction_id=interaction_id, now=now,
        )

    async def record_interaction_with_outbox(self, **fields: Any) -> str:
        """`record_interaction(..., to_outbox=True)`."""
        return await self.record_interaction(**fields, to_outbox=True)

    async def _write_interaction(
        self, fields: dict[str, Any], *, outbox: bool, interaction_id: str | None, now: datetime | None
    ) -> str:
        _check("channel", fields["channel"], CHANNELS)
        _check("direction", fields["direction"], DIRECTIONS)
        _check("outcome", fields["outcome"], OUTCOMES)
        chosen = interaction_id is not None
        interaction_id = interaction_id or f"int_{uuid.uuid4().hex}"
        row = Interaction(id=interaction_id, **fields)
        try:
            async with self._sessionmaker() as session, session.begin():
                session.add(row)
                if outbox:
                    # Flushed first so a bad row fails before the message exists at all.
                    await session.flush()
                    _outbox.enqueue(
                        session, kind="interaction.created", idempotency_key=f"interaction.created:{interaction_id}",
                        stream=interaction_id, payload=_interaction_view(row).to_dict(), now=now or _utcnow(),
                    )
        except sa.exc.IntegrityError:
            if chosen and await self._interaction_exists(interaction_id):
                return interaction_id
            raise
        return interaction_id

    async def _interaction_exists(self, interaction_id: str) -> bool:
        async with self._sessionmaker() as session:
            return await session.get(Interaction, interaction_id) is not None

    async def update_interaction_wrapup(
        self, interaction_id: str, *, disposition: str | None, notes: str | None = None, now: datetime | None = None
    ) -> bool:
        """Set the wrap-up disposition (and notes, when given) and queue an
        'interaction.updated' message carrying the whole record; False if unknown."""
        async with self._sessionmaker() as session, session.begin():
            row = await session.get(Interaction, interaction_id, with_for_update=True)
            if row is None:
                return False
            row.disposition = disposition
            if notes is not None:
                row.notes = notes
            await session.flush()
            _outbox.enqueue(
                session, kind="interaction.updated",
                idempotency_key=f"interaction.updated:{interaction_id}:{uuid.uuid4().hex}",
                stream=interaction_id, payload=_interaction_view(row).to_dict(), now=now or _utcnow(),
            )
        return True

    async def add_interaction_note(
        self, interaction_id: str, *, text: str, author: str, now: datetime | None = None
    ) -> str | None:
        """Append a note to the interaction and queue a 'note.added' message; returns the
        note's id, or None if the interaction is unknown."""
        if not text.strip():
            raise ValueError("a note needs some text")
        now = now or _utcnow()
        note_id = f"note_{uuid.uuid4().hex}"
        async with self._sessionmaker() as session, session.begin():
            row = await session.get(Interaction, interaction_id, with_for_update=True)
            if row is None:
                return None
            row.notes = f"{row.notes}\n{text}" if row.notes else text
            _outbox.enqueue(
                session, kind="note.added", idempotency_key=f"note.added:{note_id}", stream=interaction_id,
                payload={"note_id": note_id, "interaction_id": interaction_id, "customer_id": row.customer_id,
                         "author": author, "text": text, "created_at": now.isoformat()},
                now=now,
            )
        return note_id

    async def list_interactions(
        self, customer_id: str | None = None, *, call_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Interactions newest first, filtered by customer and/or call id (both ANDed).

        Each item has the shape of `InteractionView.to_dict()`: id, customer_id,
        channel, direction, caller_number, dialled, queue, agent_id, started_at,
        answered_at, ended_at (ISO 8601 UTC or null), outcome, disposition, notes, call_id.
        """
        query = sa.select(Interaction)
        if customer_id is not None:
            query = query.where(Interaction.customer_id == customer_id)
        if call_id is not None:
            query = query.where(Interaction.call_id == call_id)
        query = query.order_by(Interaction.started_at.desc(), Interaction.id.desc()).limit(max(limit, 0))
        async with self._sessionmaker() as session:
            rows = (await session.scalars(query)).all()
        return [_interaction_view(row).to_dict() for row in rows]

    # --- inbound sync: events from the external CRM (validated by `inbound`) ---------

    async def apply_inbound(self, event: InboundEvent, *, create_unknown: bool, now: datetime | None = None) -> str:
        """Apply one validated CRM event in one transaction; returns what happened:

        'applied'; 'stale' (the row already reflects a later change: events can arrive
        out of order, and the newest wins); 'absent' (a delete of something we never
        had); 'unknown_customer' (an update for a customer we do not have, with
        `create_unknown` False, or any KYC event for an unknown customer: a KYC record
        cannot exist without its customer). Raises `InvalidField` when an update has to
        create a row but lacks a required field.
        """
        now = now or _utcnow()
        async with self._sessionmaker() as session, session.begin():
            if isinstance(event, CustomerChanged):
                return await self._apply_customer(session, event, create_unknown=create_unknown, now=now)
            if isinstance(event, KycChanged):
                customer = await session.get(Customer, event.customer_id, with_for_update=True)
                if customer is None:
                    return "unknown_customer"
                return await self._apply_kyc(session, event, now=now)
            if isinstance(event, KycDeleted):
                kyc = await session.get(KycRecord, event.customer_id, with_for_update=True)
                if kyc is None:
                    return "absent"
                if kyc.updated_at > event.occurred_at:
                    return "stale"
                await session.delete(kyc)
                self._kyc_history(session, event.customer_id, "deleted", None, event.event_id, event.occurred_at, now)
                return "applied"
            assert isinstance(event, CustomerDeleted)
            customer = await session.get(Customer, event.customer_id, with_for_update=True)
            if customer is None:
                return "absent"
            if customer.updated_at > event.occurred_at:
                return "stale"
            had_kyc = await session.get(KycRecord, event.customer_id) is not None
            # Core DELETE so the database's ON DELETE rules (cascade phones, KYC and
            # accounts; keep interactions, customer unset) do the work in one statement.
            await session.execute(sa.delete(Customer).where(Customer.id == event.customer_id))
            if had_kyc:
                self._kyc_history(session, event.customer_id, "deleted", None, event.event_id, event.occurred_at, now)
            return "applied"

    async def _apply_customer(
        self, session: AsyncSession, event: CustomerChanged, *, create_unknown: bool, now: datetime
    ) -> str:
        customer = await session.get(Customer, event.customer_id, with_for_update=True)
        if customer is None:
            if not event.created and not create_unknown:
                return "unknown_customer"
            missing = missing_for_create(event.fields, CUSTOMER_REQUIRED, "customer")
            if missing is not None:
                raise InvalidField(missing, "is required to create a customer the hub does not know")
            customer = Customer(
                id=event.customer_id, account_manager=None, email=None, marketing_consent=False,
                created_at=event.occurred_at, updated_at=event.occurred_at, **event.fields,
            )
            session.add(customer)
            await session.flush()
        elif customer.updated_at > event.occurred_at:
            return "stale"
        else:
            for name, value in event.fields.items():
                setattr(customer, name, value)
            customer.updated_at = event.occurred_at
        if event.phones is not None:
            await session.execute(sa.delete(CustomerPhone).where(CustomerPhone.customer_id == event.customer_id))
            seen: set[tuple[str, str]] = set()
            for phone in event.phones:
                if (phone.e164, phone.kind) in seen:
                    continue
                seen.add((phone.e164, phone.kind))
                session.add(CustomerPhone(id=f"ph_{uuid.uuid4().hex[:24]}", customer_id=event.customer_id,
                                          e164=phone.e164, raw=phone.raw, kind=phone.kind))
        if event.kyc is not None:
            await session.flush()
            await self._apply_kyc(session, event.kyc, now=now)
        return "applied"

    async def _apply_kyc(self, session: AsyncSession, event: KycChanged, *, now: datetime) -> str:
        kyc = await session.get(KycRecord, event.customer_id, with_for_update=True)
        change = "updated"
        if kyc is None:
            missing = missing_for_create(event.fields, KYC_REQUIRED, "kyc")
            if missing is not None:
                raise InvalidField(missing, "is required to create a KYC record the hub does not have")
            defaults: dict[str, Any] = dict(
                verified_at=None, pep=False, sanctions_hit=False, edd_required=False, edd_reasons=[],
                document_type=None, document_number_masked=None, next_review_at=None,
            )
            kyc = KycRecord(customer_id=event.customer_id, **{**defaults, **event.fields}, updated_at=event.occurred_at)
            session.add(kyc)
            change = "created"
        elif kyc.updated_at > event.occurred_at:
            return "stale"
        else:
            for name, value in event.fields.items():
                setattr(kyc, name, value)
            kyc.updated_at = event.occurred_at
        self._kyc_history(session, event.customer_id, change, kyc, event.event_id, event.occurred_at, now)
        return "applied"

    @staticmethod
    def _kyc_history(
        session: AsyncSession, customer_id: str, change: str, kyc: KycRecord | None, event_id: str,
        changed_at: datetime, now: datetime,
    ) -> None:
        snapshot = None
        if kyc is not None:
            snapshot = {
                "status": kyc.status, "risk_rating": kyc.risk_rating,
                "verified_at": kyc.verified_at.isoformat() if kyc.verified_at else None,
                "next_review_at": kyc.next_review_at.isoformat() if kyc.next_review_at else None,
                "pep": bool(kyc.pep), "sanctions_hit": bool(kyc.sanctions_hit),
                "edd_required": bool(kyc.edd_required), "edd_reasons": list(kyc.edd_reasons or ()),
                "document_type": kyc.document_type, "document_number_masked": kyc.document_number_masked,
            }
        session.add(KycHistory(
            customer_id=customer_id, change=change, status=kyc.status if kyc else None,
            risk_rating=kyc.risk_rating if kyc else None, snapshot=snapshot, event_id=event_id,
            changed_at=changed_at, recorded_at=now,
        ))

    async def kyc_history(self, customer_id: str) -> list[dict[str, Any]]:
        """The KYC changes of one customer, oldest first: change, status, risk_rating,
        snapshot, event_id, changed_at and recorded_at (ISO 8601 UTC)."""
        async with self._sessionmaker() as session:
            rows = (
                await session.scalars(
                    sa.select(KycHistory)
                    .where(KycHistory.customer_id == customer_id)
                    .order_by(KycHistory.changed_at, KycHistory.id)
                )
            ).all()
        return [
            {"change": r.change, "status": r.status, "risk_rating": r.risk_rating, "snapshot": r.snapshot,
             "event_id": r.event_id, "changed_at": r.changed_at.isoformat(), "recorded_at": r.recorded_at.isoformat()}
            for r in rows
        ]

    async def count_customers(self) -> int:
        async with self._sessionmaker() as session:
            return int(await session.scalar(sa.select(sa.func.count()).select_from(Customer)) or 0)


__all__ = ["CrmStore"]
