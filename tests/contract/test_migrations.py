"""The Alembic revisions build exactly the schema the ORM models describe.

A model change without its revision (or a revision that drifts from the model) would
work in tests that create tables from the models and fail on a real upgrade; this
compares the migrated database with the models on both backends.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import crm_sync.sync_schema  # noqa: F401  (registers the tables on Base.metadata)
import recordings.schema  # noqa: F401
import cti.directory.schema  # noqa: F401
from cti.db import Base, make_engine, migrate


def _diff(connection: Any) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": False, "compare_server_default": False}
    )
    diffs = compare_metadata(context, Base.metadata)
    # alembic's own bookkeeping table is not a model.
    return [d for d in diffs if not (d[0] == "remove_table" and d[1].name == "alembic_version")]


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        await migrate(engine)
        async with engine.connect() as connection:
            diffs = await connection.run_sync(_diff)
    finally:
        await engine.dispose()
    assert diffs == []
