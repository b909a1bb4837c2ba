"""Export of the CRM's customers as the import CSV (docs/crm-import.md).

Owns reading customers and their phones, emails, KYC records and trading accounts page
by page (keyset on the id: constant memory and no OFFSET rescans, whatever the size)
and writing them through `importer.bundle_to_row`, so that what export writes, import
reads back to the same data. Must never write to the database, and never write
anything but masked document numbers (the only kind the hub stores).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from crm_sync.importer import COLUMNS, bundle_to_row
from crm_sync.schema import (
    Customer,
    CustomerEmail,
    CustomerPhone,
    KycRecord,
    TradingAccount,
)

_CHUNK = 500  # ids per IN (...) on SQLite


async def _children(conn: AsyncConnection, table: Any, ids: list[str],
                    order: tuple[Any, ...]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    step = len(ids) if conn.dialect.name == "postgresql" else _CHUNK
    for start in range(0, len(ids), step):
        chunk = ids[start:start + step]
        query = sa.select(table).where(table.c.customer_id.in_(chunk)).order_by(table.c.customer_id, *order)
        for row in (await conn.execute(query)).mappings():
            found[row["customer_id"]].append(dict(row))
    return found


async def export_customers(sessionmaker: async_sessionmaker[AsyncSession], out: TextIO, *, page: int = 5000,
                           progress: Callable[[int], None] | None = None) -> int:
    """Write every customer to `out` as CSV (header first, ordered by id); returns how many.

    Each page is read in one transaction: a customer and its children are consistent
    with each other, though a long export does not see one snapshot of the whole CRM.
    """
    customers = Customer.__table__
    phones, emails = CustomerPhone.__table__, CustomerEmail.__table__
    kyc_records, accounts = KycRecord.__table__, TradingAccount.__table__
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    written = 0
    after: str | None = None
    while True:
        async with sessionmaker() as session, session.begin():
            conn = await session.connection()
            query = sa.select(customers).order_by(customers.c.id).limit(page)
            if after is not None:
                query = query.where(customers.c.id > after)
            heads = [dict(row) for row in (await conn.execute(query)).mappings()]
            if not heads:
                return written
            ids = [h["id"] for h in heads]
            phone_rows = await _children(conn, phones, ids, (phones.c.id,))
            # The primary first: it is the first of the list in the CSV.
            email_rows = await _children(conn, emails, ids, (emails.c.is_primary.desc(), emails.c.id))
            kyc_rows = await _children(conn, kyc_records, ids, ())
            account_rows = await _children(conn, accounts, ids, (accounts.c.id,))
        for head in heads:
            kyc = kyc_rows.get(head["id"])
            writer.writerow(bundle_to_row({
                "customer": head,
                "phones": phone_rows.get(head["id"], []),
                "emails": email_rows.get(head["id"], []),
                "kyc": kyc[0] if kyc else None,
                "accounts": account_rows.get(head["id"], []),
            }))
        written += len(heads)
        after = ids[-1]
        if progress is not None:
            progress(written)


__all__ = ["export_customers"]
