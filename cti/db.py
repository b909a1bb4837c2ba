"""Durable storage plumbing: the declarative base, engines and schema migration.

Every table of every package hangs off `Base.metadata`; the schema itself only ever
changes through the Alembic revisions in `cti/migrations/versions`.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import MetaData, event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine, AsyncSession
from sqlalchemy.orm import DeclarativeBase

# Stable constraint names so that migrations on SQLite (batch mode) and PostgreSQL agree.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _enable_sqlite_foreign_keys(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def make_engine(url: str) -> AsyncEngine:
    """An async engine for `url` (sqlite+aiosqlite:// or postgresql+asyncpg://).

    A server's connections are pinged as they leave the pool (a restarted PostgreSQL
    leaves dead ones behind). A SQLite file has no server to lose, so there the ping
    would be a round trip to the driver's thread before every statement for nothing.
    """
    engine = create_async_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _enable_sqlite_foreign_keys)
    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def _alembic_config(url: str) -> "object":
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _upgrade_sync(connection: object, url: str) -> None:
    from alembic import command

    config = _alembic_config(url)
    config.attributes["connection"] = connection  # type: ignore[attr-defined]
    # "heads": packages add revisions on their own branches; merge revisions join them.
    command.upgrade(config, "heads")  # type: ignore[arg-type]


async def migrate(engine: AsyncEngine) -> None:
    """Bring the database schema to the newest revision (idempotent)."""
    url = engine.url.render_as_string(hide_password=False)
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade_sync, url)




__all__ = ["Base", "make_engine", "make_sessionmaker", "migrate"]
