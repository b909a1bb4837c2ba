"""Tables of the directory: users, agents, queues, dialled numbers.

Passwords are stored only as argon2 hashes. Skills and languages are JSON lists so that
the same schema serves SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cti.db import Base


class User(Base):
    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))  # agent, supervisor, qa, admin
    password_hash: Mapped[str] = mapped_column(String(200))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Goes up when every session issued so far must end (new password, disabled);
    # a session remembers the epoch it was issued under.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Agent(Base):
    __tablename__ = "agents"

    username: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.username", ondelete="CASCADE"), primary_key=True
    )
    skills: Mapped[list[str]] = mapped_column(JSON, default=list)
    languages: Mapped[list[str]] = mapped_column(JSON, default=list)
    extension: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Digest HA1 per algorithm ({"MD5": ..., "SHA-256": ...}) for the agent's phones;
    # HA1 binds the realm, so the realm it was made for is kept beside it.
    sip_realm: Mapped[str | None] = mapped_column(String(128), nullable=True)
    sip_ha1: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)


class Queue(Base):
    __tablename__ = "queues"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    required_skills: Mapped[list[str]] = mapped_column(JSON, default=list)


class DialledNumber(Base):
    __tablename__ = "dialled_numbers"

    number: Mapped[str] = mapped_column(String(64), primary_key=True)
    queue: Mapped[str] = mapped_column(String(64), ForeignKey("queues.name", ondelete="CASCADE"))
    description: Mapped[str] = mapped_column(String(200), default="")
