"""CrmStore: the asyncio/SQL shell around the CRM tables.

Owns every query and write against the CRM tables, and the session boundaries (each
public method is one short transaction). Must never hold business rules of its own
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
    ) -> str:
        """Store one finished (or failed) contact and commit; returns its new id.

        Timestamps must be timezone-aware (ValueError otherwise). `customer_id` may be
        None for a caller nobody identified.
        """
        _check("channel", channel, CHANNELS)
        _check("direction", direction, DIRECTIONS)
        _check("outcome", outcome, OUTCOMES)
        interaction_id = f"int_{uuid.uuid4().hex}"
        async with self._sessionmaker() as session, session.begin():
            session.add(
                Interaction(
                    id=interaction_id,
                    customer_id=customer_id,
                    channel=channel,
                    direction=direction,
                    caller_number=caller_number,
                    dialled=dialled,
                    queue=queue,
                    agent_id=agent_id,
                    started_at=started_at,
                    answered_at=answered_at,
                    ended_at=ended_at,
                    outcome=outcome,
                    disposition=disposition,
                    notes=notes,
                    call_id=call_id,
                )
            )
        return interaction_id

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

    async def count_customers(self) -> int:
        async with self._sessionmaker() as session:
            return int(await session.scalar(sa.select(sa.func.count()).select_from(Customer)) or 0)


__all__ = ["CrmStore"]
