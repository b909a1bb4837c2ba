"""Bulk writes of customer bundles: COPY on PostgreSQL, executemany on SQLite.

Owns writing one batch of bundles (the shape `crm_sync.demo` and `crm_sync.importer`
produce: customer, phones, emails, kyc, accounts, and for demo data interactions,
leads, tasks) in one transaction, with the checks only the database can answer: which
ids are already there, and which account numbers another customer holds; and, when
asked (the import), the kyc_history row of every KYC record the batch creates, changes
or deletes, in the same transaction. Also owns `prefetch`, which prepares the next batch
in a thread while this one is written, and the cheaper timestamp codec of the engines
that COPY (`cheap_timestamps`). Must never validate or normalise a field (rows arrive
finished), never commit part of a batch (a batch the database refuses is retried in
halves down to single bundles, so a bad row costs only itself), never touch an
existing customer unless asked to update it, and never write a child row whose customer
is not inserted or locked in the same transaction (see `_skip_foreign_key_checks`,
which relies on it).
"""

from __future__ import annotations

import asyncio
import json
import operator
import struct
from collections.abc import AsyncGenerator, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)

from crm_sync.schema import Customer
from crm_sync.sync_schema import KycHistory

Bundle = dict[str, Any]
T = TypeVar("T")

# Parents before children, for the foreign keys.
TABLES: tuple[tuple[str, str], ...] = (
    ("customers", "customer"),
    ("customer_phones", "phones"),
    ("customer_emails", "emails"),
    ("kyc_records", "kyc"),
    ("trading_accounts", "accounts"),
    ("interactions", "interactions"),
    ("leads", "leads"),
    ("tasks", "tasks"),
)
# The groups an update may replace, and the table each lives in.
REPLACEABLE = {"phones": "customer_phones", "emails": "customer_emails", "kyc": "kyc_records",
               "accounts": "trading_accounts"}
_CHUNK = 500  # ids per IN (...) on SQLite, well under its bound-parameter limit


@dataclass(frozen=True, slots=True)
class History:
    """Where a batch's KYC changes come from: each bundle's kyc_history event id is
    `prefix` followed by its `numbers` entry (say 'import:customers.csv:' and the
    bundle's line in the file)."""

    prefix: str
    numbers: Sequence[int]

    def part(self, start: int, stop: int) -> History:
        return History(self.prefix, self.numbers[start:stop])


@dataclass(slots=True)
class BatchResult:
    """What became of each bundle of a batch, by its position in the batch."""

    inserted: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    existing: list[int] = field(default_factory=list)  # already there, left alone
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (position, column, reason)

    def extend(self, other: BatchResult, offset: int) -> None:
        self.inserted += [offset + i for i in other.inserted]
        self.updated += [offset + i for i in other.updated]
        self.existing += [offset + i for i in other.existing]
        self.rejected += [(offset + i, c, r) for i, c, r in other.rejected]


class _Table:
    """Column order and the per-row conversion a table's COPY needs."""

    def __init__(self, name: str) -> None:
        table = Customer.metadata.tables[name]
        self.name = name
        self.table = table
        self.columns = tuple(c.name for c in table.columns)
        self._get = operator.itemgetter(*self.columns)
        # asyncpg's binary COPY takes json as text; the same few lists (EDD reasons,
        # IVR paths) recur, so their text is worked out once.
        self._json = tuple(i for i, c in enumerate(table.columns) if isinstance(c.type, sa.JSON))
        self._json_text: dict[tuple[Any, ...], str] = {}

    def records(self, rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
        get = self._get
        if not self._json:
            return [get(r) for r in rows]
        out = []
        for r in rows:
            record = get(r)
            for i in self._json:
                if record[i] is not None:
                    record = (*record[:i], self._json_of(record[i]), *record[i + 1:])
            out.append(record)
        return out

    def _json_of(self, value: Any) -> str:
        if type(value) is list and not value:
            return "[]"  # most records' EDD reasons
        key = tuple(value) if type(value) is list and all(type(v) is str for v in value) else None
        text = self._json_text.get(key) if key is not None else None
        if text is None:
            text = json.dumps(value)
            if key is not None and len(self._json_text) < 10_000:
                self._json_text[key] = text
        return text


_TABLES = {name: _Table(name) for name, _ in TABLES}

# --- timestamps on the wire ------------------------------------------------------------

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_INT64 = struct.Struct("!q")
_INFINITY, _MINUS_INFINITY = 2**63 - 1, -(2**63)


def _timestamptz_to_wire(value: datetime | date) -> bytes:
    if type(value) is not datetime or value.tzinfo is None:
        # What asyncpg's own codec does with these: local time, infinities for the extremes.
        if value == datetime.max:
            return _INT64.pack(_INFINITY)
        if value == datetime.min:
            return _INT64.pack(_MINUS_INFINITY)
        if type(value) is date:
            value = datetime(value.year, value.month, value.day)
        value = value.astimezone(UTC)  # type: ignore[union-attr]
    return _INT64.pack((value - _PG_EPOCH) // _MICROSECOND)


def _timestamptz_from_wire(data: bytes) -> datetime:
    (microseconds,) = _INT64.unpack(data)
    if microseconds == _INFINITY:
        return datetime.max.replace(tzinfo=UTC)
    if microseconds == _MINUS_INFINITY:
        return datetime.min.replace(tzinfo=UTC)
    return _PG_EPOCH + timedelta(microseconds=microseconds)


def cheap_timestamps(engine: AsyncEngine) -> None:
    """Give `engine`'s PostgreSQL connections a timestamptz codec a quarter the cost
    of asyncpg's own, for engines that COPY a lot of them (import, demo data).

    asyncpg's binary encoder compares each value with its infinities and converts it
    to UTC before subtracting the epoch: about 1 us a value, four or five per
    customer, a tenth of the importer's write path. This one subtracts an aware epoch
    (the offset is applied by the subtraction itself) and packs the microseconds.
    Values and meaning are the same (naive and date values are local time, as there);
    a contract test holds the two codecs together.
    """
    if engine.dialect.name != "postgresql":
        return

    def install(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.run_async(lambda driver: driver.set_type_codec(
            "timestamptz", schema="pg_catalog", encoder=_timestamptz_to_wire, decoder=_timestamptz_from_wire,
            format="binary"))

    sa.event.listen(engine.sync_engine, "connect", install)


# The bundle keys that hold one row (or None) rather than a list of rows.
_SINGLE = frozenset({"customer", "kyc"})


def _rows_of(bundles: Sequence[Bundle], key: str) -> list[dict[str, Any]]:
    if key in _SINGLE:
        return [row for bundle in bundles if (row := bundle.get(key)) is not None]
    return [row for bundle in bundles for row in bundle.get(key) or ()]


async def _existing_ids(conn: AsyncConnection, ids: list[str], *, lock: bool) -> set[str]:
    if conn.dialect.name == "postgresql":
        # Locked when they are to be updated: nobody may delete them before we commit,
        # which is what lets `_skip_foreign_key_checks` leave the checks out.
        lock_clause = " FOR UPDATE" if lock else ""
        result = await conn.execute(sa.text(f"SELECT id FROM customers WHERE id = ANY(:ids){lock_clause}"),
                                    {"ids": ids})
        return {row[0] for row in result}
    found: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        found.update((await conn.execute(sa.select(Customer.id).where(Customer.id.in_(chunk)))).scalars())
    return found


async def _account_owners(conn: AsyncConnection, numbers: list[str]) -> dict[str, str]:
    if not numbers:
        return {}
    if conn.dialect.name == "postgresql":
        result = await conn.execute(
            sa.text("SELECT number, customer_id FROM trading_accounts WHERE number = ANY(:numbers)"),
            {"numbers": numbers},
        )
        return {row[0]: row[1] for row in result}
    table = _TABLES["trading_accounts"].table
    owners: dict[str, str] = {}
    for start in range(0, len(numbers), _CHUNK):
        chunk = numbers[start:start + _CHUNK]
        result = await conn.execute(sa.select(table.c.number, table.c.customer_id).where(table.c.number.in_(chunk)))
        owners.update({row[0]: row[1] for row in result})
    return owners


async def _delete_children(conn: AsyncConnection, table: str, customer_ids: list[str]) -> None:
    target = _TABLES[table].table
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text(f"DELETE FROM {table} WHERE customer_id = ANY(:ids)"), {"ids": customer_ids})
        return
    for start in range(0, len(customer_ids), _CHUNK):
        chunk = customer_ids[start:start + _CHUNK]
        await conn.execute(sa.delete(target).where(target.c.customer_id.in_(chunk)))


async def _insert(conn: AsyncConnection, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    spec = _TABLES[table]
    if conn.dialect.name == "postgresql":
        await _copy(conn, table, spec, rows)
        return
    await conn.execute(sa.insert(spec.table), [{c: r.get(c) for c in spec.columns} for r in rows])


async def _copy(conn: AsyncConnection, target: str, spec: _Table, rows: list[dict[str, Any]]) -> None:
    # COPY through the driver connection, inside the transaction SQLAlchemy began
    # (the existence check already ran a statement on it).
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    await driver.copy_records_to_table(target, records=spec.records(rows), columns=spec.columns)


async def _update_customers(conn: AsyncConnection, customers: list[dict[str, Any]], columns: Sequence[str],
                            now: datetime) -> None:
    if conn.dialect.name == "postgresql":
        # One COPY into a scratch copy of the table and one UPDATE ... FROM it: an
        # UPDATE per customer (executemany) cost the importer three times its COPY.
        await conn.execute(sa.text("CREATE TEMP TABLE customer_updates (LIKE customers) ON COMMIT DROP"))
        await _copy(conn, "customer_updates", _TABLES["customers"], customers)
        assignments = "".join(f"{c} = u.{c}, " for c in columns)
        await conn.execute(sa.text(f"UPDATE customers AS c SET {assignments}updated_at = :now "
                                   "FROM customer_updates AS u WHERE c.id = u.id"), {"now": now})
        return
    table = _TABLES["customers"].table
    values: dict[str, Any] = {c: sa.bindparam(f"v_{c}") for c in columns}
    values["updated_at"] = sa.bindparam("v_updated_at")
    statement = sa.update(table).where(table.c.id == sa.bindparam("v_id")).values(values)
    params = [{"v_id": c["id"], "v_updated_at": now, **{f"v_{k}": c[k] for k in columns}} for c in customers]
    await conn.execute(statement, params)


_MAY_SKIP_CHECKS: dict[str, bool] = {}


async def _skip_foreign_key_checks(conn: AsyncConnection) -> None:
    """On PostgreSQL, when the user may, skip foreign-key checks for this transaction.

    They are half of what COPY costs the server here (one locking lookup of the
    customer per phone, email, account...), and this writer makes them redundant:
    every child row it writes belongs to a customer inserted in the same transaction
    or locked by it (`_existing_ids(lock=True)`), so no parent can be missing at
    commit. `SET LOCAL session_replication_role = replica` is what pg_restore does
    for the same reason; it needs a superuser (or a grant on the parameter), and
    anyone else simply gets the checks. Unique and check constraints still apply.
    """
    if conn.dialect.name != "postgresql":
        return
    key = conn.engine.url.render_as_string(hide_password=True)
    allowed = _MAY_SKIP_CHECKS.get(key)
    if allowed is None:
        allowed = bool(await conn.scalar(sa.text("SELECT current_setting('is_superuser') = 'on'")))
        _MAY_SKIP_CHECKS[key] = allowed
    if allowed:
        await conn.execute(sa.text("SET LOCAL session_replication_role = replica"))


# --- the KYC history --------------------------------------------------------------------

KYC_FIELDS = ("status", "verified_at", "risk_rating", "pep", "sanctions_hit", "edd_required", "edd_reasons",
              "document_type", "document_number_masked", "next_review_at")
"""What a KYC record says; `updated_at` is when, not what."""

_HISTORY = Customer.metadata.tables[KycHistory.__tablename__]


def kyc_snapshot(kyc: Mapping[str, Any]) -> dict[str, Any]:
    """A KYC record as kyc_history keeps it after a change: the shape `CrmStore` writes
    for webhook changes (times as ISO 8601 UTC, masked document number only)."""
    verified_at, next_review_at = kyc["verified_at"], kyc["next_review_at"]
    return {
        "status": kyc["status"], "risk_rating": kyc["risk_rating"],
        "verified_at": verified_at.isoformat() if verified_at else None,
        "next_review_at": next_review_at.isoformat() if next_review_at else None,
        "pep": bool(kyc["pep"]), "sanctions_hit": bool(kyc["sanctions_hit"]),
        "edd_required": bool(kyc["edd_required"]), "edd_reasons": list(kyc["edd_reasons"] or ()),
        "document_type": kyc["document_type"], "document_number_masked": kyc["document_number_masked"],
    }


def _iso_sql(column: str) -> str:
    # datetime.isoformat() of a UTC time, in SQL: fractions only when there are some.
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (f"CASE WHEN date_trunc('second', {column}) = {column} "
            f"THEN to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"') "
            f"ELSE to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"') END")


# On PostgreSQL the history rows are made by the server from the KYC rows the batch has
# just written: the snapshot costs the importer's process nothing (its CPU is what bounds
# the import), and it is, by construction, what was stored. `kyc_snapshot` is the same
# document made in Python (SQLite, and the tests that hold the two together).
_PG_HISTORY = sa.text(f"""
INSERT INTO kyc_history (customer_id, change, status, risk_rating, snapshot, event_id, changed_at, recorded_at)
SELECT h.customer_id, h.change, k.status, k.risk_rating,
       CASE WHEN k.customer_id IS NULL THEN NULL ELSE json_build_object(
           'status', k.status, 'risk_rating', k.risk_rating,
           'verified_at', {_iso_sql("k.verified_at")}, 'next_review_at', {_iso_sql("k.next_review_at")},
           'pep', k.pep, 'sanctions_hit', k.sanctions_hit, 'edd_required', k.edd_required,
           'edd_reasons', COALESCE(k.edd_reasons, '[]'::json), 'document_type', k.document_type,
           'document_number_masked', k.document_number_masked) END,
       :prefix || h.number, :changed_at, :recorded_at
FROM (SELECT e.item->>0 AS customer_id, e.item->>1 AS change, e.item->>2 AS number, e.n
      FROM json_array_elements(CAST(:changes AS json)) WITH ORDINALITY AS e(item, n)) AS h
LEFT JOIN kyc_records k ON k.customer_id = h.customer_id
ORDER BY h.n
""")


async def _take_kyc(conn: AsyncConnection, customer_ids: list[str]) -> dict[str, Any]:
    """Delete the KYC records of `customer_ids`; returns what they said (row mappings), by customer."""
    table = _TABLES["kyc_records"].table
    taken: dict[str, Any] = {}
    if conn.dialect.name == "postgresql":
        statement = sa.text(f"DELETE FROM kyc_records WHERE customer_id = ANY(:ids) "
                            f"RETURNING {', '.join(table.c.keys())}").columns(*table.c)
        result = await conn.execute(statement, {"ids": customer_ids})
        return {row["customer_id"]: row for row in result.mappings()}
    for start in range(0, len(customer_ids), _CHUNK):
        chunk = customer_ids[start:start + _CHUNK]
        result = await conn.execute(sa.delete(table).where(table.c.customer_id.in_(chunk)).returning(*table.c))
        taken.update({row.customer_id: row for row in result.mappings()})
    return taken


def _kyc_change(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str | None:
    """What replacing the KYC record `before` by `after` is, for the history; None: nothing."""
    if before is None:
        return None if after is None else "created"
    if after is None:
        return "deleted"
    return None if all(before[f] == after[f] for f in KYC_FIELDS) else "updated"


async def _write_history(conn: AsyncConnection, bundles: Sequence[Bundle], changes: list[tuple[int, str]],
                         history: History, now: datetime) -> None:
    """One kyc_history row per (bundle position, change), after the batch's KYC rows."""
    if not changes:
        return
    if conn.dialect.name == "postgresql":
        # One JSON text rather than three arrays: asyncpg encodes an array element by
        # element, which cost more than the statement.
        numbers = history.numbers
        await conn.execute(_PG_HISTORY, {
            "changes": json.dumps([(bundles[i]["customer"]["id"], change, numbers[i]) for i, change in changes]),
            "prefix": history.prefix, "changed_at": now, "recorded_at": now,
        })
        return
    rows = []
    for i, change in changes:
        kyc = bundles[i].get("kyc") if change != "deleted" else None
        rows.append({
            "customer_id": bundles[i]["customer"]["id"], "change": change,
            "status": kyc["status"] if kyc else None, "risk_rating": kyc["risk_rating"] if kyc else None,
            "snapshot": kyc_snapshot(kyc) if kyc else None, "event_id": f"{history.prefix}{history.numbers[i]}",
            "changed_at": now, "recorded_at": now,
        })
    await conn.execute(sa.insert(_HISTORY), rows)


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


async def _write_once(conn: AsyncConnection, bundles: Sequence[Bundle], *, update_columns: Sequence[str] | None,
                      replace: Collection[str], now: datetime, history: History | None) -> BatchResult:
    result = BatchResult()
    ids = [b["customer"]["id"] for b in bundles]
    updating = update_columns is not None
    existing = await _existing_ids(conn, ids, lock=updating)
    await _skip_foreign_key_checks(conn)
    candidates = [i for i, b in enumerate(bundles) if b["customer"]["id"] not in existing or updating]
    owners = await _account_owners(conn, [a["number"] for i in candidates for a in bundles[i].get("accounts") or ()])
    fresh: list[int] = []
    updates: list[int] = []
    for i, bundle in enumerate(bundles):
        customer_id = bundle["customer"]["id"]
        if customer_id in existing and not updating:
            result.existing.append(i)
            continue
        if owners:  # none at all is the rule for new customers: no need to look
            taken = [a["number"] for a in bundle.get("accounts") or ()
                     if owners.get(a["number"], customer_id) != customer_id]
            if taken:
                result.rejected.append((i, "accounts",
                                        f"account number {taken[0]} belongs to customer {owners[taken[0]]}"))
                continue
        (updates if customer_id in existing else fresh).append(i)
    changes: list[tuple[int, str]] = []
    if history is not None:
        changes = [(i, "created") for i in fresh if bundles[i].get("kyc") is not None]
    if updates:
        assert update_columns is not None
        updated = [bundles[i] for i in updates]
        updated_ids = [b["customer"]["id"] for b in updated]
        await _update_customers(conn, [b["customer"] for b in updated], update_columns, now)
        for group in replace:
            if group == "kyc" and history is not None:
                before = await _take_kyc(conn, updated_ids)
                for i in updates:
                    change = _kyc_change(before.get(bundles[i]["customer"]["id"]), bundles[i].get("kyc"))
                    if change is not None:
                        changes.append((i, change))
            else:
                await _delete_children(conn, REPLACEABLE[group], updated_ids)
    new = [bundles[i] for i in fresh]
    replaced = [bundles[i] for i in updates]
    for table, key in TABLES:
        rows = _rows_of(new, key)
        if key in replace:
            rows += _rows_of(replaced, key)
        await _insert(conn, table, rows)
    if history is not None:
        await _write_history(conn, bundles, sorted(changes), history, now)
    result.inserted, result.updated = fresh, updates
    return result


def _driver_errors() -> tuple[type[BaseException], ...]:
    # COPY goes around SQLAlchemy, so asyncpg's own exceptions arrive unwrapped.
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        return ()
    return (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError)


_REFUSED: tuple[type[BaseException], ...] = (sa.exc.IntegrityError, sa.exc.DataError, *_driver_errors())


async def write_batch(sessionmaker: async_sessionmaker[AsyncSession], bundles: Sequence[Bundle], *, now: datetime,
                      update_columns: Sequence[str] | None = None, replace: Collection[str] = (),
                      history: History | None = None) -> BatchResult:
    """Write `bundles` in one transaction; returns what became of each.

    Customers whose id is already stored are left alone (`existing`), or, with
    `update_columns`, get those columns and `updated_at` set and the groups named in
    `replace` (phones, emails, kyc, accounts) deleted and written anew. A bundle
    whose account number another customer holds is rejected. When the database
    refuses the batch (a constraint no check above foresaw, a concurrent writer), it
    is rolled back and its halves retried, down to single bundles, so only the
    offending ones are rejected, with the database's reason.

    With `history` (where the bundles come from), every KYC record the batch creates,
    changes or deletes gets its kyc_history row in the same transaction ('created',
    'updated', 'deleted', at `now`); a KYC record replaced by an identical one is no
    change and gets none.
    """
    if not bundles:
        return BatchResult()
    try:
        async with sessionmaker() as session, session.begin():
            conn = await session.connection()
            return await _write_once(conn, bundles, update_columns=update_columns, replace=replace, now=now,
                                     history=history)
    except _REFUSED as err:
        if len(bundles) == 1:
            result = BatchResult()
            result.rejected.append((0, "-", f"the database refused the row: {_first_line(err)}"))
            return result
    result = BatchResult()
    middle = len(bundles) // 2
    for offset, half in ((0, bundles[:middle]), (middle, bundles[middle:])):
        part = await write_batch(sessionmaker, half, now=now, update_columns=update_columns, replace=replace,
                                 history=None if history is None else history.part(offset, offset + len(half)))
        result.extend(part, offset)
    return result


async def prefetch(batches: Iterator[T]) -> AsyncGenerator[T, None]:
    """Yield `batches`, computing the next one in a worker thread while the caller
    works on this one.

    The batch being written spends most of its time waiting for the database, which
    runs on its own core; preparing the next one meanwhile (parsing, validation,
    generation) keeps both cores busy without a process pool and without pickling.
    Exceptions raised by the iterator come out here, in order.
    """
    sentinel = object()

    def step() -> Any:
        return next(batches, sentinel)

    loop = asyncio.get_running_loop()
    pending = loop.run_in_executor(None, step)
    try:
        while True:
            item = await pending
            if item is sentinel:
                return
            # One step in flight at a time: a generator must not run in two threads.
            pending = loop.run_in_executor(None, step)
            yield item
    finally:
        if not pending.done():
            # The consumer stopped early: let the step in flight finish before the
            # iterator (say, an open file) is closed under it.
            await asyncio.wait([pending])


def chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    """Lists of up to `size` consecutive items."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


__all__ = ["KYC_FIELDS", "REPLACEABLE", "TABLES", "BatchResult", "Bundle", "History", "cheap_timestamps", "chunks",
           "kyc_snapshot", "prefetch", "write_batch"]
