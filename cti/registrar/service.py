"""The registrar's asyncio shell: fetch, decide, store, answer.

Owns the order of the I/O around one REGISTER: read the AOR's live bindings and the
user's HA1 values, ask the pure `Registrar`, apply its changes to the store, hand
its security events to the notifier. Must never take a decision itself; the only
thing it adds is 500 with Retry-After when the store fails (RFC 3261 §10.3 step 7:
a binding update that cannot be committed fails the request).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from cti.registrar.core import Address, AuthFailed, Registrar, RegistrarDecision, RegistrarEvent, SourceLockedOut
from cti.registrar.store import BindingStore
from cti.sip.message import SipRequest, SipResponse, build_error_response

__all__ = ["CredentialsLookup", "RegistrarService"]

log = logging.getLogger(__name__)

# username -> {"MD5": ha1, "SHA-256": ha1} (see cti.sip.digest.ha1_set), or None when
# the user does not exist. A mapping, not one HA1: the HA1 depends on the algorithm.
CredentialsLookup = Callable[[str], Awaitable[Mapping[str, str] | None]]

_STORE_RETRY_AFTER_S = "5"


class RegistrarService:
    def __init__(
        self,
        registrar: Registrar,
        store: BindingStore,
        credentials: CredentialsLookup,
        *,
        on_event: Callable[[RegistrarEvent], None] | None = None,
    ) -> None:
        self.registrar = registrar
        self.store = store
        self.credentials = credentials
        self.on_event = on_event

    async def decide(self, request: SipRequest, source: Address, now: float) -> RegistrarDecision:
        """Decide and commit; the decision says what changed (for callers that care)."""
        needs = self.registrar.lookups(request)
        try:
            bindings = await self.store.lookup(needs.aor, now) if needs.aor else []
            ha1s = await self.credentials(needs.username) if needs.username is not None else None
        except Exception:
            log.exception("registrar: could not read bindings or credentials")
            return RegistrarDecision(response=_unavailable(request))
        decision = self.registrar.decide(request, source=source, now=now, bindings=bindings, ha1s=ha1s)
        for event in decision.events:
            self._notify(event)
        if decision.changes and decision.aor is not None:
            try:
                await self.store.apply(decision.aor, decision.changes, now)
            except Exception:
                log.exception("registrar: could not store bindings of %s", decision.aor)
                return RegistrarDecision(response=_unavailable(request), aor=decision.aor)
        return decision

    async def handle(self, request: SipRequest, source: Address, now: float) -> SipResponse:
        return (await self.decide(request, source, now)).response

    def _notify(self, event: RegistrarEvent) -> None:
        if isinstance(event, AuthFailed):
            log.warning("registrar: authentication failed for %r from %s (%s)", event.username, event.source, event.reason)
        elif isinstance(event, SourceLockedOut):
            log.warning("registrar: %s locked out until %.0f after failures for %r", event.source, event.until, event.username)
        if self.on_event is not None:
            self.on_event(event)


def _unavailable(request: SipRequest) -> SipResponse:
    return build_error_response(request, 500, "registration store unavailable", headers=[("Retry-After", _STORE_RETRY_AFTER_S)])
