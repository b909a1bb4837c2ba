"""Registrar for agents' phones (RFC 3261 §10): digest-authenticated REGISTER,
several devices per agent, bindings shared through Redis when configured.

Owns the public surface of the package. The policy (`Registrar`, `LockoutPolicy`) is
pure and never does I/O or reads a clock; the stores and `RegistrarService` are the
asyncio shell around it.
"""

from __future__ import annotations

from cti.registrar.bindings import (
    AddBinding,
    Binding,
    BindingChange,
    RefreshBinding,
    RemoveAllBindings,
    RemoveBinding,
)
from cti.registrar.core import (
    AuthFailed,
    Lookups,
    Registrar,
    RegistrarConfig,
    RegistrarDecision,
    RegistrarEvent,
    SourceLockedOut,
    aor_of,
)
from cti.registrar.lockout import LockoutPolicy
from cti.registrar.service import CredentialsLookup, RegistrarService
from cti.registrar.store import BindingStore, InMemoryBindingStore, RedisBindingStore

__all__ = [
    "AddBinding",
    "AuthFailed",
    "Binding",
    "BindingChange",
    "BindingStore",
    "CredentialsLookup",
    "InMemoryBindingStore",
    "LockoutPolicy",
    "Lookups",
    "RedisBindingStore",
    "RefreshBinding",
    "Registrar",
    "RegistrarConfig",
    "RegistrarDecision",
    "RegistrarEvent",
    "RegistrarService",
    "RemoveAllBindings",
    "RemoveBinding",
    "SourceLockedOut",
    "aor_of",
]
