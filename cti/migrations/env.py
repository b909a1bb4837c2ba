"""Alembic environment: runs on the connection that `cti.db.migrate` hands over."""

from alembic import context

import cti.schema  # noqa: F401  (registers every table on Base.metadata)
from cti.db import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through cti.db.migrate(), which passes a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
