"""Registrations as data: a binding of an address-of-record to one device's contact.

Owns the `Binding` record, the changes the registrar asks a store to make, how a
list of changes applies to a list of bindings (one function, shared by the pure
registrar and every store, so they cannot disagree), the contact comparison key
(RFC 3261 §19.1.4, simplified) and the JSON form stores keep. Must never do I/O or
read a clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cti.sip.uri import SipUri

__all__ = [
    "AddBinding",
    "Binding",
    "BindingChange",
    "RefreshBinding",
    "RemoveAllBindings",
    "RemoveBinding",
    "apply_changes",
    "binding_from_json",
    "binding_to_json",
    "contact_key",
]

Params = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Binding:
    """One device of an agent: where to send requests for `aor`, until `expires_at`.

    `contact` is the Contact URI exactly as the phone sent it (escaped headers and
    unknown parameters included, RFC 4475 regescrt/cparam01/cparam02). `received` is
    the address the REGISTER came from: behind NAT that, not the Contact host, is
    where the phone can be reached (RFC 5626-lite; both are kept).
    """

    aor: str
    contact: str
    key: str
    params: Params = ()
    expires_at: float
    call_id: str
    cseq: int
    received: tuple[str, int]
    transport: str = "UDP"
    username: str = ""
    registered_at: float

    def expires_in(self, now: float) -> int:
        return max(0, int(round(self.expires_at - now)))

    def param(self, name: str) -> str | None:
        key = name.lower()
        for pname, value in self.params:
            if pname.lower() == key:
                return "" if value is None else value
        return None

    @property
    def q(self) -> float | None:
        value = self.param("q")
        try:
            return float(value) if value else None
        except ValueError:
            return None

    @property
    def instance_id(self) -> str | None:
        """The phone's RFC 5626 +sip.instance, quotes and angle brackets removed."""
        value = self.param("+sip.instance")
        return value.strip('"<>') if value else None


@dataclass(frozen=True, slots=True, kw_only=True)
class AddBinding:
    binding: Binding


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshBinding:
    binding: Binding


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveBinding:
    aor: str
    key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveAllBindings:
    aor: str


BindingChange = AddBinding | RefreshBinding | RemoveBinding | RemoveAllBindings


def apply_changes(
    bindings: Iterable[Binding], changes: Iterable[BindingChange], now: float
) -> list[Binding]:
    """The unexpired bindings after `changes`, in first-registered order."""
    by_key = {b.key: b for b in bindings}
    for change in changes:
        if isinstance(change, (AddBinding, RefreshBinding)):
            by_key[change.binding.key] = change.binding
        elif isinstance(change, RemoveBinding):
            by_key.pop(change.key, None)
        else:
            by_key.clear()
    live = [b for b in by_key.values() if b.expires_at > now]
    return sorted(live, key=lambda b: (b.registered_at, b.key))


def contact_key(uri: SipUri) -> str:
    """A string equal for Contact URIs that RFC 3261 §19.1.4 calls equal (near enough).

    Scheme and host are case-insensitive, parameters unordered with case-insensitive
    names, user and password case-sensitive; escapes are already decoded by the parser.
    Not implemented: the rule that a parameter present in only one URI is ignored
    unless it is user/ttl/method/maddr/transport (a phone re-sends the same URI anyway).
    """
    if not uri.is_sip:
        return str(uri)
    params = sorted((n.lower(), (v or "").lower()) for n, v in uri.params)
    headers = sorted((n.lower(), v) for n, v in uri.headers)
    return json.dumps(
        [uri.scheme, uri.user, uri.password, uri.host.lower(), uri.port, params, headers],
        separators=(",", ":"),
    )


def binding_to_json(binding: Binding) -> str:
    return json.dumps(
        {
            "aor": binding.aor,
            "contact": binding.contact,
            "key": binding.key,
            "params": [list(p) for p in binding.params],
            "expires_at": binding.expires_at,
            "call_id": binding.call_id,
            "cseq": binding.cseq,
            "received": list(binding.received),
            "transport": binding.transport,
            "username": binding.username,
            "registered_at": binding.registered_at,
        },
        separators=(",", ":"),
    )


def binding_from_json(text: str | bytes) -> Binding:
    data: dict[str, Any] = json.loads(text)
    host, port = data["received"]
    return Binding(
        aor=str(data["aor"]),
        contact=str(data["contact"]),
        key=str(data["key"]),
        params=tuple((str(n), None if v is None else str(v)) for n, v in data["params"]),
        expires_at=float(data["expires_at"]),
        call_id=str(data["call_id"]),
        cseq=int(data["cseq"]),
        received=(str(host), int(port)),
        transport=str(data["transport"]),
        username=str(data["username"]),
        registered_at=float(data["registered_at"]),
    )
