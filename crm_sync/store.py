"""CrmStore: the asyncio/SQL shell around the CRM tables.

Owns every query and write against the CRM tables, the session boundaries (each
public method is one short transaction) and keeping the profile cache honest: every
write that changes what a profile shows invalidates that customer's entry after its
transaction commits. The `*_with_outbox`, wrap-up and note writes add their message
for the external CRM to the same transaction (see `outbox`), and `apply_inbound`
applies a validated webhook event (see `inbound`) with its KYC history. Must never hold
business rules of its own (those live in the pure `profile` and `phones` modules),
never read the wall clock except as the default for a `now` it was not given, and never
issue queries per row (no N+1): a profile is one statement whatever the customer holds
(see `profile_query`), and none at all when the cache has it.
"""

from __future__ import annotations

import functools
import uuid
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_only

from crm_sync import outbox as _outbox
from crm_sync.cache import DEFAULT_TTL_S, FillGuard, GuardedCache, ProfileCache
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
    CustomerProfile,
    CustomerSummary,
    InteractionView,
    LeadView,
    TaskView,
    summary_kyc_status,
)
from crm_sync.profile_query import (
    DEFAULT_RECENT,
    covers,
    decode_profile,
    load_document,
    profile_statement,
)
from crm_sync.schema import (
    CHANNELS,
    DIRECTIONS,
    LEAD_SOURCES,
    LEAD_STATUSES,
    OUTCOMES,
    TASK_KINDS,
    Customer,
    CustomerEmail,
    CustomerPhone,
    Interaction,
    KycRecord,
    Lead,
    Task,
    TradingAccount,
)
from crm_sync.sync_schema import KycHistory


def _utcnow() -> datetime:
    return datetime.now(UTC)


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
        ivr_path=tuple(row.ivr_path) if row.ivr_path is not None else None,
        recording_id=row.recording_id,
        transcript_ref=row.transcript_ref,
    )


def _task_view(row: Task) -> TaskView:
    return TaskView(
        id=row.id, customer_id=row.customer_id, interaction_id=row.interaction_id, kind=row.kind, title=row.title,
        status=row.status, owner=row.owner, due_at=row.due_at, created_at=row.created_at,
        completed_at=row.completed_at,
    )


def _lead_view(row: Lead) -> LeadView:
    return LeadView(
        id=row.id, customer_id=row.customer_id, name=row.name, phone_e164=row.phone_e164, email=row.email,
        source=row.source, status=row.status, owner=row.owner, interest=row.interest, created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _document(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    data = load_document(raw)
    if data is None:
        raise RuntimeError("the profile statement returned a document of an unknown format")
    return data


def _cached_document(raw: bytes) -> dict[str, Any] | None:
    # A corrupt or old-format entry is a miss, not an error: the database has the truth.
    try:
        return load_document(raw)
    except (ValueError, UnicodeDecodeError):
        return None


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    # Checked here as well as by the database so the caller gets a readable error
    # instead of a backend-specific IntegrityError.
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _text(name: str, value: str | None, max_len: int, *, required: bool = False) -> str | None:
    if value is None or not value.strip():
        if required:
            raise ValueError(f"{name} must be a non-empty string")
        return None
    if len(value.strip()) > max_len:
        raise ValueError(f"{name} must be at most {max_len} characters")
    return value.strip()


def _aware(name: str, value: datetime | None) -> datetime | None:
    # UtcDateTime refuses naive values too, but only at flush, wrapped in a StatementError.
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} must be timezone-aware; got a naive datetime")
    return value


def _ivr_path(value: Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(step, str) and step for step in value):
        raise ValueError("ivr_path must be a list of non-empty strings")
    return list(value)


def email_key(raw: str) -> str | None:
    """The form addresses are stored and looked up in: trimmed, lower-cased; None if not one."""
    text = raw.strip()
    if text.lower().startswith("mailto:"):
        text = text[len("mailto:"):].strip()
    if "@" not in text or len(text) > 254:
        return None
    return text.lower()


_AnySelect = sa.Select[*tuple[Any, ...]]

_SUMMARY_COLUMNS = (
    Customer.id.label("id"),
    Customer.first_name.label("first_name"),
    Customer.last_name.label("last_name"),
    Customer.tier.label("tier"),
    Customer.language.label("language"),
    Customer.country.label("country"),
    KycRecord.status.label("kyc_status"),
    KycRecord.next_review_at.label("next_review_at"),
)


def _summaries_query(*, join: Any = None, on: Any = None, where: Any) -> _AnySelect:
    """Customers matching `where` (through `join`, if given) with their KYC, as summary columns."""
    query = sa.select(*_SUMMARY_COLUMNS)
    if join is not None:
        query = query.select_from(Customer).join(join, on)
    return query.outerjoin(KycRecord, KycRecord.customer_id == Customer.id).where(where)


@functools.cache
def _phone_lookup() -> _AnySelect:
    """Every call's caller lookup (the number as `e164`), built once: building the
    statement cost more CPU than running it. The same number listed twice on one
    customer (mobile and work) is one match."""
    query = _summaries_query(join=CustomerPhone, on=CustomerPhone.customer_id == Customer.id,
                             where=CustomerPhone.e164 == sa.bindparam("e164")).distinct()
    return query.order_by(Customer.last_name, Customer.first_name, Customer.id)


# Every call's interaction row: one statement, compiled once.
_INSERT_INTERACTION = sa.insert(Interaction)


def _summary(row: Any, now: datetime) -> CustomerSummary:
    return CustomerSummary(
        customer_id=row.id,
        name=f"{row.first_name} {row.last_name}".strip(),
        tier=row.tier,
        language=row.language,
        country=row.country,
        kyc_status=summary_kyc_status(row.kyc_status, row.next_review_at, now),
    )


_DIRECT_READERS: weakref.WeakKeyDictionary[sa.Engine, AsyncEngine] = weakref.WeakKeyDictionary()


def _direct_reader(bind: AsyncEngine) -> AsyncEngine:
    """The engine the screen pop's reads (the caller lookups and the profile statement)
    run on, for a PostgreSQL `bind`: the same database, its own pool, no pre-ping,
    autocommit.

    The hub's engine pings every connection it hands out (`pool_pre_ping`): on
    PostgreSQL that is BEGIN, a ping and ROLLBACK, three round trips before the
    statement's one, which measured as most of the screen pop's CPU and tail (see
    docs/benchmarks.md). Here a connection that died in the pool costs one retry
    instead (`CrmStore._read_direct`). One per engine, shared by its stores, disposed
    with it; its statements are reported as `bind`'s (logging, metrics, tests that
    count statements).
    """
    engine = bind.sync_engine
    reader = _DIRECT_READERS.get(engine)
    if reader is not None:
        return reader
    reader = create_async_engine(engine.url, pool_pre_ping=False, isolation_level="AUTOCOMMIT")
    # Weak: the readers' table must not keep the engine it is keyed by alive.
    engine_ref = weakref.ref(engine)

    def before(*args: Any) -> None:
        target = engine_ref()
        if target is not None:
            target.dispatch.before_cursor_execute(*args)

    def after(*args: Any) -> None:
        target = engine_ref()
        if target is not None:
            target.dispatch.after_cursor_execute(*args)

    def disposed(_engine: sa.Engine) -> None:
        # AsyncEngine.dispose runs Engine.dispose in a greenlet: awaiting here is allowed.
        await_only(reader.dispose())

    sa.event.listen(reader.sync_engine, "before_cursor_execute", before)
    sa.event.listen(reader.sync_engine, "after_cursor_execute", after)
    sa.event.listen(engine, "engine_disposed", disposed)
    _DIRECT_READERS[engine] = reader
    return reader


class CrmStore:
    """Customer lookup, screen-pop profiles, the interaction history, tasks and leads.

    With a `cache`, profiles are served from it when present and every write that
    changes what a profile shows invalidates the customer's entry after it commits; a
    cache that fails is logged and bypassed, never an error for the caller.
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *, cache: ProfileCache | None = None) -> None:
        self._sessionmaker = sessionmaker
        # After a failed invalidation, only the entries' TTL bounds their staleness: the
        # guard distrusts the cache that long (both shipped caches expose `ttl_s`).
        self._cache = (
            GuardedCache(cache, distrust_s=float(getattr(cache, "ttl_s", DEFAULT_TTL_S))) if cache is not None else None
        )
        self._fills = FillGuard()
        self._reader: AsyncEngine | None = None

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """The CRM's database (the profile-access audit is written beside it)."""
        return self._sessionmaker

    async def _changed(self, *customer_ids: str | None) -> None:
        """Drop the cached profiles of customers whose data a committed write changed."""
        ids = tuple(dict.fromkeys(c for c in customer_ids if c is not None))
        if self._cache is None or not ids:
            return
        self._fills.void(*ids)
        await self._cache.invalidate(*ids)

    # --- lookup -------------------------------------------------------------------------

    async def _summaries(
        self, query: _AnySelect, now: datetime | None, params: dict[str, Any] | None = None
    ) -> list[CustomerSummary]:
        now = now or _utcnow()
        rows = await self._read_direct(query, params)
        return [_summary(row, now) for row in rows]

    @staticmethod
    def _by_name(query: _AnySelect) -> _AnySelect:
        return query.order_by(Customer.last_name, Customer.first_name, Customer.id)

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
        return await self._summaries(_phone_lookup(), now, {"e164": e164})

    async def lookup_by_email(self, address: str, *, now: datetime | None = None) -> list[CustomerSummary]:
        """Customers with `address` among their emails (any case, 'mailto:' allowed), by name."""
        key = email_key(address)
        if key is None:
            return []
        query = _summaries_query(join=CustomerEmail, on=CustomerEmail.customer_id == Customer.id,
                                 where=CustomerEmail.address == key).distinct()
        return await self._summaries(self._by_name(query), now)

    async def lookup_by_account(self, number: str, *, now: datetime | None = None) -> list[CustomerSummary]:
        """The customer holding trading account `number` (exact), as a list of at most one."""
        number = number.strip()
        if not number:
            return []
        query = _summaries_query(join=TradingAccount, on=TradingAccount.customer_id == Customer.id,
                                 where=TradingAccount.number == number)
        return await self._summaries(self._by_name(query), now)

    async def lookup_by_id(self, customer_id: str, *, now: datetime | None = None) -> list[CustomerSummary]:
        """The customer with id `customer_id`, as a list of at most one."""
        customer_id = customer_id.strip()
        if not customer_id:
            return []
        return await self._summaries(_summaries_query(where=Customer.id == customer_id), now)

    async def find_customers(
        self, query: str, *, default_region: str = "GB", limit: int = 20, now: datetime | None = None
    ) -> list[CustomerSummary]:
        """Customers an agent's search box means, sorted by name, at most `limit`.

        The query's shape decides: with an '@' it is an email address; otherwise a
        customer id if one matches exactly, else a trading-account number if one matches
        exactly, else a phone number in any common format (read in `default_region`).
        Id, account and phone are tried in one statement, the first kind that matches wins.
        """
        text = query.strip()
        if not text or limit <= 0:
            return []
        if "@" in text:
            return (await self.lookup_by_email(text, now=now))[:limit]
        branches = [
            _summaries_query(where=Customer.id == text).add_columns(sa.literal_column("1", sa.Integer).label("pri")),
            _summaries_query(join=TradingAccount, on=TradingAccount.customer_id == Customer.id,
                             where=TradingAccount.number == text)
            .add_columns(sa.literal_column("2", sa.Integer).label("pri")),
        ]
        e164 = normalize_phone(text, default_region)
        if e164 is not None:
            branches.append(
                _summaries_query(join=CustomerPhone, on=CustomerPhone.customer_id == Customer.id,
                                 where=CustomerPhone.e164 == e164)
                .add_columns(sa.literal_column("3", sa.Integer).label("pri")).distinct()
            )
        matches = sa.union_all(*branches).subquery()
        statement = (
            sa.select(matches)
            .order_by(matches.c.pri, matches.c.last_name, matches.c.first_name, matches.c.id)
            .limit(limit)
        )
        now = now or _utcnow()
        rows = await self._read_direct(statement)
        best = min((row.pri for row in rows), default=None)
        return [_summary(row, now) for row in rows if row.pri == best]

    # --- the screen-pop profile -----------------------------------------------------------

    async def get_profile(
        self, customer_id: str, *, recent: int = DEFAULT_RECENT, now: datetime | None = None
    ) -> CustomerProfile | None:
        """The screen-pop profile of `customer_id` as of `now`, or None if unknown.

        One SQL statement (see `profile_query`), or none when the cache holds the
        customer; see `CustomerProfile` for the dict shape. The KYC status and `as_of`
        are worked out for `now` on every read, cached or not.
        """
        now = now or _utcnow()
        recent = max(recent, 0)
        data = await self._profile_document(customer_id, recent)
        return None if data is None else decode_profile(data, recent=recent, now=now)

    async def _profile_document(self, customer_id: str, recent: int) -> dict[str, Any] | None:
        if self._cache is None:
            return _document(await self._read_profile(customer_id, recent))
        found = await self._cache.lookup(customer_id)
        if found.value is not None:
            data = _cached_document(found.value)
            if data is not None and covers(data, recent):
                return data
        # Cached entries hold at least the screen pop's five, so a smaller ask hits later.
        ticket = self._fills.begin(customer_id)
        try:
            raw = await self._read_profile(customer_id, max(recent, DEFAULT_RECENT))
            if raw is not None and self._fills.valid(customer_id, ticket):
                # A shared cache also refuses the fill if another process invalidated
                # the customer since the lookup (see `FencedProfileCache`).
                await self._cache.fill(customer_id, raw, found.fence)
                if not self._fills.valid(customer_id, ticket):
                    # A write committed while the entry was on its way; its delete may
                    # have reached the cache before our set did.
                    await self._cache.invalidate(customer_id)
        finally:
            self._fills.end(customer_id, ticket)
        return _document(raw)

    async def _read_profile(self, customer_id: str, recent: int) -> bytes | None:
        """The profile document of `customer_id` straight from the database, or None."""
        params = {"customer_id": customer_id, "recent": recent}
        bind = self._sessionmaker.kw.get("bind")
        if isinstance(bind, AsyncEngine) and bind.dialect.name == "postgresql":
            rows = await self._read_direct(profile_statement("postgresql"), params)
            text = rows[0][0] if rows else None
        else:
            async with self._one_read() as connection:
                text = (await connection.execute(profile_statement(connection.dialect.name), params)).scalar()
        return None if text is None else str(text).encode()

    async def _read_direct(self, statement: Any, params: dict[str, Any] | None = None) -> Sequence[sa.Row[Any]]:
        """The rows of one read-only statement of the screen pop's path: on PostgreSQL
        through `_direct_reader`'s pool (no pre-ping), elsewhere through `_one_read`."""
        bind = self._sessionmaker.kw.get("bind")
        if not isinstance(bind, AsyncEngine) or bind.dialect.name != "postgresql":
            async with self._one_read() as connection:
                return (await connection.execute(statement, params)).all()
        reader = _direct_reader(bind)
        try:
            return await self._direct_rows(reader, statement, params)
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            # A connection that died in the pool (the database restarted): the pool
            # has dropped them all, so a second try gets a new one.
            return await self._direct_rows(reader, statement, params)

    @staticmethod
    async def _direct_rows(reader: AsyncEngine, statement: Any, params: dict[str, Any] | None) -> Sequence[sa.Row[Any]]:
        async with reader.connect() as connection:
            return (await connection.execute(statement, params)).all()

    @asynccontextmanager
    async def _one_read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one read-only statement where `_direct_reader` does not
        apply (SQLite; a sessionmaker bound to something else than an engine).

        Straight from the engine, skipping the ORM session, in autocommit: one statement
        reads one consistent snapshot by itself, and skipping BEGIN/ROLLBACK saves two
        round trips on the screen pop's path. A sessionmaker bound to something else (a
        connection, per-class binds) goes through a session instead.
        """
        if self._reader is None:
            bind = self._sessionmaker.kw.get("bind")
            if isinstance(bind, AsyncEngine):
                # SQLite's driver begins no transaction for a SELECT, so a plain
                # connection reads like autocommit; switching to AUTOCOMMIT and back
                # would cost four more trips to aiosqlite's thread per read.
                autocommit = bind.dialect.name != "sqlite"
                self._reader = bind.execution_options(isolation_level="AUTOCOMMIT") if autocommit else bind
        if self._reader is not None:
            async with self._reader.connect() as connection:
                yield connection
        else:
            async with self._sessionmaker() as session:
                yield await session.connection()

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
        ivr_path: Sequence[str] | None = None,
        recording_id: str | None = None,
        transcript_ref: str | None = None,
        to_outbox: bool = False,
        interaction_id: str | None = None,
        now: datetime | None = None,
    ) -> str:
        """Store one finished (or failed) contact and commit; returns its id.

        Timestamps must be timezone-aware (ValueError otherwise). `customer_id` may be
        None for a caller nobody identified. `ivr_path` is the IVR's choices in order
        (e.g. ["lang:de", "menu:2"]); `recording_id` and `transcript_ref` point at the
        call's recording and transcript, when there are any. With `to_outbox`, an
        'interaction.created' message for the external CRM is written in the same
        transaction: both are committed or neither is. Give `interaction_id` to make a
        retried call safe: when a row with that id is already there (the first try
        committed but its answer was lost), its id comes back and nothing new is
        written, in either table.
        """
        return await self._write_interaction(
            {"customer_id": customer_id, "channel": channel, "direction": direction, "caller_number": caller_number,
             "dialled": dialled, "queue": queue, "agent_id": agent_id, "started_at": started_at,
             "answered_at": answered_at, "ended_at": ended_at, "outcome": outcome, "call_id": call_id,
             "disposition": disposition, "notes": notes, "ivr_path": _ivr_path(ivr_path),
             "recording_id": _text("recording_id", recording_id, 40),
             "transcript_ref": _text("transcript_ref", transcript_ref, 255)},
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
        bind = self._sessionmaker.kw.get("bind")
        try:
            if not outbox and isinstance(bind, AsyncEngine):
                # One INSERT on a connection, without the ORM's unit of work: written at
                # the end of every call, where the session's flush was most of the cost.
                async with bind.begin() as connection:
                    await connection.execute(_INSERT_INTERACTION, {"id": interaction_id, **fields})
            else:
                await self._write_interaction_row(Interaction(id=interaction_id, **fields), outbox=outbox, now=now)
        except sa.exc.IntegrityError:
            if chosen and await self._interaction_exists(interaction_id):
                # The first try committed; its invalidation may never have run.
                await self._changed(fields["customer_id"])
                return interaction_id
            raise
        await self._changed(fields["customer_id"])
        return interaction_id

    async def _write_interaction_row(self, row: Interaction, *, outbox: bool, now: datetime | None) -> None:
        """The interaction through the ORM, with its outbox message in the same transaction."""
        async with self._sessionmaker() as session, session.begin():
            session.add(row)
            if outbox:
                # Flushed first so a bad row fails before the message exists at all.
                await session.flush()
                _outbox.enqueue(
                    session, kind="interaction.created", idempotency_key=f"interaction.created:{row.id}",
                    stream=row.id, payload=_interaction_view(row).to_dict(), now=now or _utcnow(),
                )

    async def _interaction_exists(self, interaction_id: str) -> bool:
        async with self._sessionmaker() as session:
            return await session.get(Interaction, interaction_id) is not None

    async def update_interaction_wrapup(
        self,
        interaction_id: str,
        *,
        disposition: str | None,
        notes: str | None = None,
        ivr_path: Sequence[str] | None = None,
        recording_id: str | None = None,
        transcript_ref: str | None = None,
        to_outbox: bool = True,
        now: datetime | None = None,
    ) -> bool:
        """Set the wrap-up disposition (and notes, IVR path, recording and transcript
        references, each when given) and, with `to_outbox` (a hub with an external CRM),
        queue an 'interaction.updated' message carrying the whole record; False if unknown."""
        changes: dict[str, Any] = {"disposition": disposition}
        if notes is not None:
            changes["notes"] = notes
        if ivr_path is not None:
            changes["ivr_path"] = _ivr_path(ivr_path)
        if recording_id is not None:
            changes["recording_id"] = _text("recording_id", recording_id, 40)
        if transcript_ref is not None:
            changes["transcript_ref"] = _text("transcript_ref", transcript_ref, 255)
        async with self._sessionmaker() as session, session.begin():
            row = await session.get(Interaction, interaction_id, with_for_update=True)
            if row is None:
                return False
            for name, value in changes.items():
                setattr(row, name, value)
            await session.flush()
            if to_outbox:
                _outbox.enqueue(
                    session, kind="interaction.updated",
                    idempotency_key=f"interaction.updated:{interaction_id}:{uuid.uuid4().hex}",
                    stream=interaction_id, payload=_interaction_view(row).to_dict(), now=now or _utcnow(),
                )
            customer_id = row.customer_id
        await self._changed(customer_id)
        return True

    async def update_interaction_customer(
        self, interaction_id: str, *, customer_id: str, to_outbox: bool = True, now: datetime | None = None
    ) -> bool:
        """Name the interaction's customer (the agent picked them among several sharing
        the caller's number) and, with `to_outbox`, queue an 'interaction.updated'
        message; False if the interaction is unknown. Both customers' cached profiles
        are invalidated: the interaction moves from one history to the other."""
        async with self._sessionmaker() as session, session.begin():
            row = await session.get(Interaction, interaction_id, with_for_update=True)
            if row is None:
                return False
            before, row.customer_id = row.customer_id, customer_id
            await session.flush()
            if to_outbox:
                _outbox.enqueue(
                    session, kind="interaction.updated",
                    idempotency_key=f"interaction.updated:{interaction_id}:{uuid.uuid4().hex}",
                    stream=interaction_id, payload=_interaction_view(row).to_dict(), now=now or _utcnow(),
                )
        await self._changed(before, customer_id)
        return True

    async def add_interaction_note(
        self, interaction_id: str, *, text: str, author: str, to_outbox: bool = True, now: datetime | None = None
    ) -> str | None:
        """Append a note to the interaction and, with `to_outbox`, queue a 'note.added'
        message; returns the note's id, or None if the interaction is unknown."""
        if not text.strip():
            raise ValueError("a note needs some text")
        now = now or _utcnow()
        note_id = f"note_{uuid.uuid4().hex}"
        async with self._sessionmaker() as session, session.begin():
            row = await session.get(Interaction, interaction_id, with_for_update=True)
            if row is None:
                return None
            row.notes = f"{row.notes}\n{text}" if row.notes else text
            if to_outbox:
                _outbox.enqueue(
                    session, kind="note.added", idempotency_key=f"note.added:{note_id}", stream=interaction_id,
                    payload={"note_id": note_id, "interaction_id": interaction_id, "customer_id": row.customer_id,
                             "author": author, "text": text, "created_at": now.isoformat()},
                    now=now,
                )
            customer_id = row.customer_id
        await self._changed(customer_id)
        return note_id

    async def list_interactions(
        self, customer_id: str | None = None, *, call_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Interactions newest first, filtered by customer and/or call id (both ANDed).

        Each item has the shape of `InteractionView.to_dict()`: id, customer_id,
        channel, direction, caller_number, dialled, queue, agent_id, started_at,
        answered_at, ended_at (ISO 8601 UTC or null), outcome, disposition, notes, call_id,
        ivr_path (list of strings or null), recording_id, transcript_ref.
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

    # --- tasks: what someone owes a customer --------------------------------------------

    async def add_task(
        self,
        *,
        customer_id: str,
        kind: str,
        title: str,
        due_at: datetime | None = None,
        owner: str | None = None,
        interaction_id: str | None = None,
        task_id: str | None = None,
        now: datetime | None = None,
    ) -> str:
        """Open a task for `customer_id` and commit; returns its id.

        `kind` is one of TASK_KINDS; `due_at` (timezone-aware) may be None for "when
        possible"; `interaction_id` links the contact that caused it. ValueError for a bad
        kind, an empty or overlong title, a naive `due_at` or an unknown customer.
        """
        _check("kind", kind, TASK_KINDS)
        clean_title = _text("title", title, 200, required=True)
        _aware("due_at", due_at)
        now = _aware("now", now) or _utcnow()
        task_id = task_id or f"tsk_{uuid.uuid4().hex}"
        async with self._sessionmaker() as session, session.begin():
            if await session.get(Customer, customer_id) is None:
                raise ValueError(f"no customer {customer_id!r}")
            session.add(Task(
                id=task_id, customer_id=customer_id, interaction_id=interaction_id, kind=kind, title=clean_title,
                status="open", owner=_text("owner", owner, 64), due_at=due_at, created_at=now, completed_at=None,
            ))
        await self._changed(customer_id)
        return task_id

    async def complete_task(self, task_id: str, *, now: datetime | None = None) -> bool:
        """Mark an open task done at `now`; True if it is done (already or now), False if unknown.

        ValueError if it was cancelled: a cancelled task is not quietly revived as done.
        """
        return await self._close_task(task_id, "done", now=now)

    async def cancel_task(self, task_id: str, *, now: datetime | None = None) -> bool:
        """Cancel an open task; True if it is cancelled (already or now), False if unknown.

        ValueError if it was done already.
        """
        return await self._close_task(task_id, "cancelled", now=now)

    async def _close_task(self, task_id: str, status: str, *, now: datetime | None) -> bool:
        now = _aware("now", now) or _utcnow()
        async with self._sessionmaker() as session, session.begin():
            row = await session.get(Task, task_id, with_for_update=True)
            if row is None:
                return False
            if row.status == status:
                return True
            if row.status != "open":
                raise ValueError(f"task {task_id!r} is {row.status}; only an open task can become {status}")
            row.status = status
            # completed_at says when it was done; a cancelled task was never completed.
            row.completed_at = now if status == "done" else None
            customer_id = row.customer_id
        await self._changed(customer_id)
        return True

    async def open_tasks(self, customer_id: str) -> list[TaskView]:
        """The customer's open tasks, soonest due first, undated ones last (oldest first)."""
        query = (
            sa.select(Task)
            .where(Task.customer_id == customer_id, Task.status == "open")
            .order_by(Task.due_at.asc().nulls_last(), Task.created_at, Task.id)
        )
        async with self._sessionmaker() as session:
            rows = (await session.scalars(query)).all()
        return [_task_view(row) for row in rows]

    # --- leads: prospects and existing customers' new interests -------------------------

    async def add_lead(
        self,
        *,
        name: str,
        source: str,
        status: str = "new",
        customer_id: str | None = None,
        phone: str | None = None,
        email: str | None = None,
        owner: str | None = None,
        interest: str | None = None,
        default_region: str = "GB",
        lead_id: str | None = None,
        now: datetime | None = None,
    ) -> str:
        """Record a lead and commit; returns its id.

        `phone` is read in any common format (national ones in `default_region`) and
        stored as E.164. ValueError for a source or status outside LEAD_SOURCES /
        LEAD_STATUSES, an empty name, a phone that is not a number, an email that is
        not an address, or an unknown `customer_id`.
        """
        _check("source", source, LEAD_SOURCES)
        _check("status", status, LEAD_STATUSES)
        clean_name = _text("name", name, 200, required=True)
        e164 = None
        if phone is not None and phone.strip():
            e164 = normalize_phone(phone, default_region)
            if e164 is None:
                raise ValueError("phone is not a phone number")
        address = None
        if email is not None and email.strip():
            address = email_key(email)
            if address is None:
                raise ValueError("email is not an email address")
        now = _aware("now", now) or _utcnow()
        lead_id = lead_id or f"lead_{uuid.uuid4().hex}"
        async with self._sessionmaker() as session, session.begin():
            if customer_id is not None and await session.get(Customer, customer_id) is None:
                raise ValueError(f"no customer {customer_id!r}")
            session.add(Lead(
                id=lead_id, customer_id=customer_id, name=clean_name, phone_e164=e164, email=address, source=source,
                status=status, owner=_text("owner", owner, 64), interest=_text("interest", interest, 200),
                created_at=now, updated_at=now,
            ))
        await self._changed(customer_id)
        return lead_id

    async def list_leads(
        self,
        *,
        owner: str | None = None,
        customer_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[LeadView]:
        """Leads newest first, filtered by owner, customer and/or status (all ANDed)."""
        query = sa.select(Lead)
        if owner is not None:
            query = query.where(Lead.owner == owner)
        if customer_id is not None:
            query = query.where(Lead.customer_id == customer_id)
        if status is not None:
            _check("status", status, LEAD_STATUSES)
            query = query.where(Lead.status == status)
        query = query.order_by(Lead.created_at.desc(), Lead.id.desc()).limit(max(limit, 0))
        async with self._sessionmaker() as session:
            rows = (await session.scalars(query)).all()
        return [_lead_view(row) for row in rows]

    async def set_lead_status(
        self, lead_id: str, status: str, *, customer_id: str | None = None, now: datetime | None = None
    ) -> bool:
        """Move a lead to `status` (any of LEAD_STATUSES); False if the lead is unknown.

        Give `customer_id` to link the lead to a customer at the same time, typically
        when it converts. ValueError for an unknown status or customer.
        """
        _check("status", status, LEAD_STATUSES)
        now = _aware("now", now) or _utcnow()
        async with self._sessionmaker() as session, session.begin():
            row = await session.get(Lead, lead_id, with_for_update=True)
            if row is None:
                return False
            if customer_id is not None and await session.get(Customer, customer_id) is None:
                raise ValueError(f"no customer {customer_id!r}")
            before = row.customer_id
            row.status = status
            if customer_id is not None:
                row.customer_id = customer_id
            row.updated_at = now
            after = row.customer_id
        await self._changed(before, after)
        return True

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
            outcome = await self._apply_inbound(session, event, create_unknown=create_unknown, now=now)
        if outcome == "applied":
            await self._changed(event.customer_id)
        return outcome

    async def _apply_inbound(
        self, session: AsyncSession, event: InboundEvent, *, create_unknown: bool, now: datetime
    ) -> str:
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
            # The event's fields win over the defaults (a created event may carry any of them).
            defaults: dict[str, Any] = {"account_manager": None, "email": None, "marketing_consent": False}
            customer = Customer(
                id=event.customer_id, created_at=event.occurred_at, updated_at=event.occurred_at,
                **{**defaults, **event.fields},
            )
            session.add(customer)
            await session.flush()
        elif customer.updated_at > event.occurred_at:
            return "stale"
        else:
            for name, value in event.fields.items():
                setattr(customer, name, value)
            customer.updated_at = event.occurred_at
        if event.created or "email" in event.fields:
            await self._sync_primary_email(session, event.customer_id, customer.email)
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

    @staticmethod
    async def _sync_primary_email(session: AsyncSession, customer_id: str, email: str | None) -> None:
        """Keep customer_emails in step with customers.email: exactly one primary row
        holding it lower-cased, or none when it is null (or not an address at all).
        Other addresses stay as they are, except a copy of the new primary address,
        which the primary row replaces."""
        key = email_key(email) if email is not None else None
        rows = (await session.scalars(
            sa.select(CustomerEmail).where(CustomerEmail.customer_id == customer_id).order_by(CustomerEmail.id)
        )).all()
        primary: CustomerEmail | None = None
        for row in rows:
            if row.is_primary and primary is None and key is not None:
                primary = row
            elif row.is_primary or row.address == key:
                await session.delete(row)
        if key is None:
            return
        if primary is not None:
            primary.address = key
        else:
            session.add(CustomerEmail(id=f"eml_{uuid.uuid4().hex[:24]}", customer_id=customer_id, address=key,
                                      kind="personal", is_primary=True))
        await session.flush()

    async def _apply_kyc(self, session: AsyncSession, event: KycChanged, *, now: datetime) -> str:
        kyc = await session.get(KycRecord, event.customer_id, with_for_update=True)
        change = "updated"
        if kyc is None:
            missing = missing_for_create(event.fields, KYC_REQUIRED, "kyc")
            if missing is not None:
                raise InvalidField(missing, "is required to create a KYC record the hub does not have")
            defaults: dict[str, Any] = {
                "verified_at": None, "pep": False, "sanctions_hit": False, "edd_required": False, "edd_reasons": [],
                "document_type": None, "document_number_masked": None, "next_review_at": None,
            }
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
