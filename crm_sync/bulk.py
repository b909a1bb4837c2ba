"""Bulk writes of customer bundles: COPY on PostgreSQL, executemany on SQLite.

Owns writing one batch of bundles (the shape `crm_sync.demo` and `crm_sync.importer`
produce: customer, phones, emails, kyc, accounts, and for demo data interactions,
leads, tasks) in one transaction, with the checks only the database can answer: which
ids are already there, and which account numbers another customer holds. Also owns
`prefetch`, which prepares the next batch in a thread while this one is written. Must
never validate or normalise a field (rows arrive finished), never commit part of a
batch (a batch the database refuses is retried in halves down to single bundles, so a
bad row costs only itself), never touch an existing customer unless asked to update
it, and never write a child row whose customer is not inserted or locked in the same
transaction (see `_skip_foreign_key_checks`, which relies on it).
"""

from __future__ import annotations

import asyncio
import json
import operator
from collections.abc import AsyncGenerator, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from crm_sync.schema import Customer

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
        key = tuple(value) if type(value) is list and all(type(v) is str for v in value) else None
        text = self._json_text.get(key) if key is not None else None
        if text is None:
            text = json.dumps(value)
            if key is not None and len(self._json_text) < 10_000:
                self._json_text[key] = text
        return text


_TABLES = {name: _Table(name) for name, _ in TABLES}


def _rows_of(bundles: Sequence[Bundle], key: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for bundle in bundles:
        value = bundle.get(key)
        if value is None:
            continue
        if isinstance(value, dict):
            rows.append(value)
        else:
            rows.extend(value)
    return rows


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
        # COPY through the driver connection, inside the transaction SQLAlchemy began
        # (the existence check above already ran a statement on it).
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.copy_records_to_table(table, records=spec.records(rows), columns=spec.columns)
        return
    await conn.execute(sa.insert(spec.table), [{c: r.get(c) for c in spec.columns} for r in rows])


async def _update_customers(conn: AsyncConnection, customers: list[dict[str, Any]], columns: Sequence[str],
                            now: datetime) -> None:
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


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


async def _write_once(conn: AsyncConnection, bundles: Sequence[Bundle], *, update_columns: Sequence[str] | None,
                      replace: Collection[str], now: datetime) -> BatchResult:
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
        taken = [a["number"] for a in bundle.get("accounts") or () if owners.get(a["number"], customer_id) != customer_id]
        if taken:
            result.rejected.append((i, "accounts", f"account number {taken[0]} belongs to customer {owners[taken[0]]}"))
            continue
        (updates if customer_id in existing else fresh).append(i)
    if updates:
        assert update_columns is not None
        updated = [bundles[i] for i in updates]
        await _update_customers(conn, [b["customer"] for b in updated], update_columns, now)
        for group in replace:
            await _delete_children(conn, REPLACEABLE[group], [b["customer"]["id"] for b in updated])
    new = [bundles[i] for i in fresh]
    replaced = [bundles[i] for i in updates]
    for table, key in TABLES:
        rows = _rows_of(new, key)
        if key in replace:
            rows += _rows_of(replaced, key)
        await _insert(conn, table, rows)
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
                      update_columns: Sequence[str] | None = None, replace: Collection[str] = ()) -> BatchResult:
    """Write `bundles` in one transaction; returns what became of each.

    Customers whose id is already stored are left alone (`existing`), or, with
    `update_columns`, get those columns and `updated_at` set and the groups named in
    `replace` (phones, emails, kyc, accounts) deleted and written anew. A bundle
    whose account number another customer holds is rejected. When the database
    refuses the batch (a constraint no check above foresaw, a concurrent writer), it
    is rolled back and its halves retried, down to single bundles, so only the
    offending ones are rejected, with the database's reason.
    """
    if not bundles:
        return BatchResult()
    try:
        async with sessionmaker() as session, session.begin():
            conn = await session.connection()
            return await _write_once(conn, bundles, update_columns=update_columns, replace=replace, now=now)
    except _REFUSED as err:
        if len(bundles) == 1:
            result = BatchResult()
            result.rejected.append((0, "-", f"the database refused the row: {_first_line(err)}"))
            return result
    result = BatchResult()
    middle = len(bundles) // 2
    for offset, half in ((0, bundles[:middle]), (middle, bundles[middle:])):
        part = await write_batch(sessionmaker, half, now=now, update_columns=update_columns, replace=replace)
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


__all__ = ["REPLACEABLE", "TABLES", "BatchResult", "Bundle", "chunks", "prefetch", "write_batch"]
