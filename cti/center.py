"""The contact center: joins the call legs, the router, the CRM and the agents' sessions.

Owns: the life of a contact from arrival to its written interaction and the agent's
wrap-up of it (disposition and notes); routing it with the attributes of its CRM
profile and its account manager as preferred agent; carrying out every router command
(offers, withdrawals, state announcements, overflows, rejects, disconnects, callbacks,
statistics); the router's timer (`tick` at `next_deadline`: reservation expiry,
wrap-up end, maximum waits, widening steps); building the screen pop. Every outbound
fact leaves through `_publish`, once, to the bus and to the agents concerned.
Must never: parse SIP or touch sockets (the voice service does), or decide routing
(the pure router does).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from crm_sync.phones import normalize_phone
from crm_sync.profile import CustomerProfile, CustomerSummary
from crm_sync.store import CrmStore
from cti import events as ev
from cti.agents.sessions import SessionRegistry
from cti.bus import EventBus
from cti.calls.agent_leg import AgentLegEnd
from cti.calls.outbound import Trunk
from cti.registrar.bindings import Binding
from cti.routing_contact import (
    OfferReason,
    contact_attributes,
    offer_reason,
    preferred_agent,
    rules_applying,
)
from cti.routing_link import AgentRequest, HubLink, ToAgent
from cti.routing_shared import FactQueue, carried_out_here
from cti.routing_stats import StatsPublisher
from recordings.service import RecordingRefused
from routing import (
    AgentState,
    AnnounceAgentState,
    AnnounceQueued,
    Command,
    DisconnectContact,
    OfferCallback,
    OfferContact,
    OverflowContact,
    RejectContact,
    Router,
    RoutingConfig,
    RoutingError,
    StatsChanged,
    WithdrawOffer,
)
from routing.expressions import Value
from routing.facts import (
    AgentConfigured,
    AgentLoggedIn,
    AgentLoggedOut,
    AgentStateRequested,
    ContactAbandoned,
    ContactArrived,
    ContactFinished,
    Fact,
    OfferAccepted,
    OfferRejected,
    OutboundStarted,
    QueueConfigured,
    RulesChanged,
    TimePassed,
    WrapUpDone,
    apply,
)
from routing.store import Applied, RoutingStore

log = logging.getLogger(__name__)

PROFILE_MASKED_FIELDS = ("number",)  # full account numbers stay out of agents' pops
INTERACTION_WRITE_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)

# The wrap-up codes an agent chooses from; the desktop gets them in `hello`.
DEFAULT_DISPOSITIONS = (
    "resolved",
    "callback_requested",
    "complaint",
    "trade_query",
    "kyc_documents_requested",
    "not_interested",
)
MAX_WRAPUP_NOTES = 4000
# How many handled contacts the center remembers for their wrap-up (oldest forgotten
# first): enough for every agent's last calls, bounded so memory does not grow.
WRAPUP_MEMORY = 1000
# A wrap-up sent right after the call ended waits this long for the interaction's row
# (the write retries with backoff for about 15 s when the database blinks).
WRAPUP_WAIT_S = 20.0
# How long routing waits for the caller's CRM lookup once the hub has answered. The
# lookup starts with the INVITE and is nearly always done by then; a slow or hung CRM
# must not keep the caller out of the queue, so past this the contact is routed as an
# unknown caller (no attributes, no account manager).
IDENTITY_WAIT_S = 1.0
# The callback task's due time: soon, since the customer wanted to talk now.
CALLBACK_DUE_S = 3600.0


class VoiceControl(Protocol):
    def hang_up(self, call_id: str) -> None: ...
    async def phones_of(self, agent_id: str) -> Sequence[Binding]: ...
    def ring_agent(self, call_id: str, agent_id: str, bindings: Sequence[Binding], *, caller_name: str) -> bool: ...
    def stop_ringing(self, call_id: str, why: AgentLegEnd = ...) -> None: ...
    def hold(self, call_id: str, *, held: bool) -> bool: ...
    def transfer_to_queue(self, call_id: str, *, queue: str, number: str) -> bool: ...
    def transfer_to_number(self, call_id: str, number: str) -> bool: ...
    def dial(self, *, agent_id: str, bindings: Sequence[Binding], number: str, customer_name: str) -> str | None: ...
    @property
    def trunk(self) -> Trunk | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerIdentity:
    matches: tuple[CustomerSummary, ...]
    profile: CustomerProfile | None  # when exactly one customer matches


@dataclass(slots=True, kw_only=True)
class Contact:
    contact_id: str
    call_id: str
    channel: str
    caller: str
    caller_e164: str | None
    dialled: str
    queue: str
    started_at: datetime
    identity: asyncio.Task[CallerIdentity]
    queued_at: float | None = None  # monotonic, once the hub answered and routing has it
    answered_at: datetime | None = None
    agent_id: str | None = None  # accepted by
    offered_to: str | None = None
    matched_skills: tuple[str, ...] = ()
    # Fixed when the contact starts, so the recording made during the call and the
    # interaction written at its end name each other without a second write.
    interaction_id: str = field(default_factory=lambda: f"int_{uuid.uuid4().hex}")
    phone_ringing: bool = False  # the offered agent's phone is being rung by the hub
    ended: bool = False
    # Routing: what the router was told at arrival, and why the current offer was made.
    attributes: dict[str, Value] = field(default_factory=dict)
    rules: tuple[str, ...] = ()  # the arrival rules that applied
    preferred_agent: str | None = None  # the account manager offered first
    offer: OfferReason | None = None
    offer_timeout_s: float = 20.0
    # Set when routing let go of the contact (queue full, maximum wait: reject,
    # disconnect or callback): the hub ends the call; the interaction says why.
    released: str | None = None
    routed: bool = False  # its arrival went to routing (shared routing: maybe not applied yet)
    answered_on_phone: bool = False  # the offered agent's phone answered (shared routing)
    direction: str = "inbound"  # "outbound": click-to-dial
    # The interaction's customer when the lookup alone does not say: the one dialled, or
    # the one the agent picked among several sharing the caller's number.
    customer_id: str | None = None
    dial_failure: str | None = None  # click-to-dial: why the customer was not reached (the disposition)


class RecordingControl(Protocol):
    """The recorders (recordings.service.RecordingService), as the center drives them."""

    def call_bridged(self, call_id: str, *, queue: str, agent_id: str | None, interaction_id: str | None) -> str | None: ...
    def segment_ended(self, call_id: str) -> None: ...
    def start(self, call_id: str, *, queue: str, agent_id: str | None, interaction_id: str | None, by: str) -> str: ...
    def stop_on_request(self, call_id: str) -> None: ...
    def pause(self, call_id: str) -> bool: ...
    def resume(self, call_id: str) -> bool: ...
    def status(self, call_id: str, queue: str) -> dict[str, Any]: ...


class CenterError(Exception):
    """An agent's request cannot be carried out; `code` is a stable slug for clients,
    `field` the request field at fault when there is one."""

    def __init__(self, code: str, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field


@dataclass(frozen=True, slots=True, kw_only=True)
class WrapUp:
    """A checked wrap-up: what the agent concluded about one interaction."""

    disposition: str
    notes: str | None  # None: no note (blank text counts as none)


def check_wrapup(disposition: object, notes: object, *, allowed: Sequence[str]) -> WrapUp:
    """The wrap-up an agent sent, checked; CenterError naming the field otherwise. Pure."""
    if disposition is None or disposition == "":
        raise CenterError("missing_field", f"disposition is required: one of {', '.join(allowed)}", field="disposition")
    if not isinstance(disposition, str) or disposition not in allowed:
        raise CenterError("bad_field", f"disposition must be one of {', '.join(allowed)}; got {disposition!r}", field="disposition")
    if notes is not None and not isinstance(notes, str):
        raise CenterError("bad_field", "notes must be a string", field="notes")
    if notes is not None and len(notes) > MAX_WRAPUP_NOTES:
        raise CenterError("bad_field", f"notes are longer than {MAX_WRAPUP_NOTES} characters", field="notes")
    text = notes.strip() if notes is not None else ""
    return WrapUp(disposition=disposition, notes=text or None)


@dataclass(slots=True, kw_only=True)
class _Handled:
    """A contact an agent took, until its wrap-up is no longer wanted."""

    agent_id: str
    contact_id: str
    interaction_id: str
    written: asyncio.Event = field(default_factory=asyncio.Event)
    stored: bool = False  # the interaction's row exists (set with `written`)
    matches: tuple[str, ...] = ()  # the customers sharing the caller's number: what a pick may name


@dataclass
class ContactCenter:
    # Where the routing state lives. In the process (`InProcessStore`): facts are applied
    # to its router at once, as calls. Shared by several hubs (`attach_shared`): facts go
    # through a FactQueue, and results come back once the store has applied them.
    store: RoutingStore
    bus: EventBus
    crm: CrmStore
    sessions: SessionRegistry
    default_region: str = "GB"
    # Not a timer of the center: offers expire at their queue's reservation_timeout_s
    # (the router's tick); the hub gives this figure to queues configured without one.
    offer_timeout_s: float = 20.0
    logout_grace_s: float = 15.0
    sync_to_crm: bool = False  # interactions also go to the external CRM's outbox
    clock: Callable[[], float] = field(default_factory=lambda: asyncio.get_running_loop().time)
    # The routing model the router was built from (rules, the account manager's window);
    # None: no rules, no preferred agent.
    routing: RoutingConfig | None = None
    identity_wait_s: float = IDENTITY_WAIT_S
    stats_interval_s: float = 0.25
    _voice: VoiceControl | None = None
    recordings: RecordingControl | None = None
    _contacts: dict[str, Contact] = field(default_factory=dict)
    _by_call: dict[str, str] = field(default_factory=dict)
    _tick_timer: asyncio.TimerHandle | None = None
    _tick_at: float = 0.0
    _stats: StatsPublisher | None = None
    _logout_timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    _background: set[asyncio.Task[Any]] = field(default_factory=set)
    contacts_handled: dict[str, int] = field(default_factory=dict)
    dispositions: tuple[str, ...] = DEFAULT_DISPOSITIONS
    _handled: OrderedDict[str, _Handled] = field(default_factory=OrderedDict)  # by interaction id
    _last_handled: dict[str, str] = field(default_factory=dict)  # agent -> their latest interaction id
    _facts: FactQueue | None = None  # shared routing: this hub's facts, in order
    # Shared routing: interaction ids of the pops other hubs sent to this hub's agents (by
    # contact), so that the wrap-up of a call another hub held is taken here.
    _popped: OrderedDict[str, str] = field(default_factory=OrderedDict)
    _link: HubLink | None = None  # shared routing: messages to agents on other hubs
    _tick_queued: bool = False  # shared routing: a TimePassed of ours waits in the queue
    # Shared routing: another hub changed the routing configuration (this hub reloads it).
    on_config_changed: Callable[[], None] | None = None

    @property
    def router(self) -> Router:
        """The router to read (never to change: changes are facts, see `_submit`). Read
        it each time: a shared store replaces it when it loads a snapshot."""
        return self.store.router

    @property
    def shared(self) -> bool:
        return self._facts is not None

    def attach_voice(self, voice: VoiceControl) -> None:
        self._voice = voice

    def attach_shared(self, facts: FactQueue, link: HubLink) -> None:
        """Route from a state shared with other hubs: `clock` must then be wall time
        (time.time), the one clock of every hub sharing the store."""
        self._facts = facts
        self._link = link

    # --- voice side ------------------------------------------------------------------

    def call_arrived(self, *, call_id: str, caller: str, dialled: str, queue: str) -> Contact:
        """A caller's INVITE for a served number: the CRM lookup starts at once, in parallel
        with ringing, so that the profile is ready when an agent is offered the call."""
        caller_e164 = normalize_phone(caller, default_region=self.default_region)
        contact = Contact(
            contact_id="ct_" + uuid.uuid4().hex[:16],
            call_id=call_id,
            channel="voice",
            caller=caller,
            caller_e164=caller_e164,
            dialled=dialled,
            queue=queue,
            started_at=_utc_now(),
            identity=asyncio.create_task(self._identify(caller)),
        )
        self._contacts[contact.contact_id] = contact
        self._by_call[call_id] = contact.contact_id
        self._publish(
            ev.CallOffered(
                occurred_at=contact.started_at,
                call_id=call_id,
                caller=caller,
                caller_e164=caller_e164,
                dialled=dialled,
                queue=queue,
            )
        )
        return contact

    def call_answered_by_hub(self, call_id: str) -> None:
        """The hub answered the caller; the contact now waits for an agent."""
        contact = self._contact_of_call(call_id)
        if contact is None or contact.ended:
            return
        contact.queued_at = self.clock()
        self._spawn(self._route_arrival(contact))

    async def _route_arrival(self, contact: Contact) -> None:
        identity = await self._identity_within(contact, self.identity_wait_s)
        if contact.ended:
            return
        profile = identity.profile if identity is not None else None
        contact.attributes = contact_attributes(profile)
        rules = self.routing.rules if self.routing is not None else ()
        contact.rules = rules_applying(rules, contact.attributes)
        window = self.routing.preferred_agent_s if self.routing is not None else 0.0
        manager = profile.account_manager if profile is not None else None
        if manager is not None and self.router.has_agent(manager) and self.router.has_queue(contact.queue):
            contact.preferred_agent = preferred_agent(
                account_manager=manager,
                queue=self.router.queue(contact.queue),
                profile=self.router.profile(manager),
                state=self.router.agent_state(manager),
                rules=rules,
                attributes=contact.attributes,
                window_s=window,
            )
        def unroutable(err: RoutingError) -> None:
            log.error("contact %s of call %s cannot be routed: %s", contact.contact_id, contact.call_id, err)

        contact.routed = True
        self._submit(
            ContactArrived(
                contact_id=contact.contact_id, queue=contact.queue, now=self.clock(), attributes=contact.attributes,
                preferred_agent=contact.preferred_agent, preferred_for_s=window,
            ),
            failed=unroutable,
        )

    async def _identity_within(self, contact: Contact, wait_s: float) -> CallerIdentity | None:
        try:
            return await asyncio.wait_for(asyncio.shield(contact.identity), wait_s)
        except TimeoutError:
            log.warning("CRM lookup of call %s took over %.1f s: routed as an unknown caller", contact.call_id, wait_s)
        except Exception:
            log.exception("CRM lookup failed; routing the caller as unknown")
        return None

    async def call_ended(self, call_id: str, *, ended_by: str) -> None:
        """The caller's leg is over, whoever ended it: settle routing and write the interaction."""
        contact = self._contact_of_call(call_id)
        if contact is None or contact.ended:
            return
        contact.ended = True
        now = self.clock()
        agent = contact.agent_id
        disposition = None
        if contact.released is not None:
            outcome = "missed"  # routing let go of it (queue full, waited too long)
            disposition = contact.released
        elif agent is not None:
            # A click-to-dial whose customer never answered has an agent but no talk.
            outcome = "completed" if contact.answered_at is not None else "failed"
            if contact.dial_failure is not None:
                disposition = contact.dial_failure
            self._submit(ContactFinished(contact_id=contact.contact_id, now=now), failed=self._unknown_finished)
            self.contacts_handled[agent] = self.contacts_handled.get(agent, 0) + 1
            if self.recordings is not None:
                self.recordings.segment_ended(call_id)
        else:
            outcome = "abandoned" if ended_by == "caller" else "failed"
            # Only a contact routing holds was abandoned in a queue; one still waiting
            # for its CRM lookup never reached routing. (Shared routing: the arrival may
            # still wait in this hub's queue of facts, ahead of the abandon.)
            routed = contact.routed if self.shared else self.router.queue_of(contact.contact_id) is not None
            if contact.queued_at is not None and routed:
                abandoned = ev.ContactAbandoned(
                    occurred_at=_utc_now(),
                    contact_id=contact.contact_id,
                    queue=contact.queue,
                    waited_s=round(now - contact.queued_at, 3),
                )
                self._submit(
                    ContactAbandoned(contact_id=contact.contact_id, now=now),
                    then=lambda: self._publish(abandoned),
                    failed=(lambda err: self._abandon_refused(contact.contact_id, err)) if self.shared else None,
                )
        ended_at = _utc_now()
        self._publish(
            ev.CallEnded(occurred_at=ended_at, call_id=call_id, ended_by=ended_by, outcome=outcome, agent_id=agent)
        )
        await self._record_interaction(contact, outcome=outcome, ended_at=ended_at, disposition=disposition)
        self._contacts.pop(contact.contact_id, None)
        self._by_call.pop(call_id, None)

    # --- agents ----------------------------------------------------------------------

    def agent_connected(self, username: str) -> None:
        timer = self._logout_timers.pop(username, None)
        if timer is not None:
            timer.cancel()
        if self.router.agent_state(username) == AgentState.OFFLINE:
            self._submit(
                AgentLoggedIn(agent_id=username, now=self.clock()),
                then=lambda: self._publish(ev.AgentLoggedIn(occurred_at=_utc_now(), agent_id=username)),
            )

    def agent_disconnected(self, username: str) -> None:
        """The agent's last websocket closed: log them out after a grace period, so that a
        reload or a network blip does not cost them their state or an offered call."""
        if self.sessions.connected(username):
            return
        loop = asyncio.get_running_loop()
        old = self._logout_timers.pop(username, None)
        if old is not None:
            old.cancel()
        self._logout_timers[username] = loop.call_later(self.logout_grace_s, self.log_out, username)

    def log_out(self, username: str) -> None:
        self._logout_timers.pop(username, None)
        state = self.router.agent_state(username)
        if state == AgentState.OFFLINE:
            return
        if state == AgentState.BUSY:
            # Never cut a customer off: the logout takes effect when the call ends.
            self._submit(
                AgentStateRequested(agent_id=username, state=AgentState.OFFLINE, now=self.clock(), reason="logged_out")
            )
            return
        self._submit(
            AgentLoggedOut(agent_id=username, now=self.clock()),
            then=lambda: self._publish(ev.AgentLoggedOut(occurred_at=_utc_now(), agent_id=username)),
        )

    def set_state(self, username: str, state: str, reason: str | None = None) -> None:
        try:
            wanted = AgentState(state)
        except ValueError:
            raise CenterError("bad_state", f"state must be available, away or offline; got {state!r}") from None
        if wanted not in (AgentState.AVAILABLE, AgentState.AWAY, AgentState.OFFLINE):
            raise CenterError("bad_state", f"an agent cannot ask for {state!r}")
        if wanted == AgentState.OFFLINE:
            self.log_out(username)
            return
        self._route(
            AgentStateRequested(agent_id=username, state=wanted, now=self.clock(), reason=reason), username, "set_state"
        )

    def accept(self, username: str, contact_id: str) -> None:
        """The agent takes the offered contact from the desktop (no phone rung)."""
        if self.shared and contact_id not in self._contacts:
            # The call is held by another hub: the router (in log order) checks that the
            # offer is this agent's; the hub holding the call connects it once applied.
            self._route(OfferAccepted(contact_id=contact_id, agent_id=username, now=self.clock()), username, "accept")
            return
        contact = self._owned_offer(username, contact_id)
        if contact.phone_ringing:
            raise CenterError("answer_on_phone", "your phone is ringing: answer the call on it")
        self._accepted(username, contact)

    def reject(self, username: str, contact_id: str) -> None:
        if self.shared and contact_id not in self._contacts:
            self._route(OfferRejected(contact_id=contact_id, agent_id=username, now=self.clock()), username, "reject")
            return
        contact = self._owned_offer(username, contact_id)
        if contact.phone_ringing and self._voice is not None:
            self._voice.stop_ringing(contact.call_id, AgentLegEnd.DECLINED)
        self._rejected(username, contact)

    def agent_phone_answered(self, call_id: str) -> None:
        """The offered agent answered on their phone: that is the accept."""
        contact = self._contact_of_call(call_id)
        if contact is None or contact.offered_to is None or contact.agent_id is not None:
            return
        contact.answered_on_phone = True
        self._accepted(contact.offered_to, contact)

    def agent_phone_failed(self, call_id: str, end: AgentLegEnd) -> None:
        """The agent's phone was busy, declined, or could not be reached: next agent."""
        contact = self._contact_of_call(call_id)
        if contact is None or contact.offered_to is None or contact.agent_id is not None:
            return
        log.info("phone of %s: %s for contact %s", contact.offered_to, end.value, contact.contact_id)
        self._to_agent(contact.offered_to, {"type": "offer_withdrawn", "contact_id": contact.contact_id, "reason": f"phone_{end.value}"})
        self._rejected(contact.offered_to, contact)

    def dtmf_received(self, call_id: str, digit: str, duration_ms: int) -> None:
        contact = self._contact_of_call(call_id)
        agent = contact.agent_id if contact is not None else None
        self._publish(
            ev.CallDtmfReceived(occurred_at=_utc_now(), call_id=call_id, digit=digit, duration_ms=duration_ms, agent_id=agent)
        )

    def hold_changed(self, call_id: str, *, held: bool) -> None:
        contact = self._contact_of_call(call_id)
        agent = contact.agent_id if contact is not None else None
        kind = ev.CallHeld if held else ev.CallResumed
        self._publish(kind(occurred_at=_utc_now(), call_id=call_id, agent_id=agent))

    def transferred(self, call_id: str, *, to_queue: str, to_number: str) -> bool:
        """Blind transfer: the agent's part of the contact ends (and is written to the CRM),
        and the caller waits in `to_queue` as a new contact of the same call."""
        contact = self._contact_of_call(call_id)
        if contact is None or contact.agent_id is None or contact.ended:
            return False
        agent = contact.agent_id
        now = self.clock()
        self._submit(ContactFinished(contact_id=contact.contact_id, now=now), failed=self._unknown_finished)
        self.contacts_handled[agent] = self.contacts_handled.get(agent, 0) + 1
        if self.recordings is not None:
            self.recordings.segment_ended(call_id)  # the next agent's part is a recording of its own
        self._publish(ev.CallTransferred(occurred_at=_utc_now(), call_id=call_id, agent_id=agent, to_queue=to_queue, to_number=to_number))
        segment = dataclasses.replace(contact)  # the agent's part, as it stood
        self._spawn(self._record_interaction(
            segment, outcome="completed", ended_at=_utc_now(), disposition=f"transferred to {to_queue or to_number}"
        ))
        if not to_queue:
            # An outside number answered: the contact center's part of the call is over
            # (the caller and the number talk through the hub until either hangs up).
            contact.ended = True
            self._contacts.pop(contact.contact_id, None)
            self._by_call.pop(call_id, None)
            return True
        # The same caller, a new contact in the new queue.
        del self._contacts[contact.contact_id]
        contact.contact_id = "ct_" + uuid.uuid4().hex[:16]
        contact.interaction_id = f"int_{uuid.uuid4().hex}"
        contact.queue = to_queue
        contact.agent_id = None
        contact.offered_to = None
        contact.answered_at = None
        contact.phone_ringing = False
        contact.offer = None
        contact.preferred_agent = None
        contact.started_at = _utc_now()
        contact.queued_at = now
        self._contacts[contact.contact_id] = contact
        self._by_call[call_id] = contact.contact_id
        # The same customer: the same attributes, so the same rules apply in the new queue.
        contact.routed = True
        self._submit(ContactArrived(contact_id=contact.contact_id, queue=to_queue, now=now, attributes=contact.attributes))
        return True

    def _accepted(self, username: str, contact: Contact) -> None:
        fact = OfferAccepted(contact_id=contact.contact_id, agent_id=username, now=self.clock())
        self._route(fact, username, "accept")
        if not self.shared:  # shared: `_fact_applied` connects it once the store applied it
            self._took(username, contact)

    def _took(self, username: str, contact: Contact) -> None:
        """Routing accepted the agent's taking of the contact: it is theirs now."""
        contact.agent_id = username
        contact.phone_ringing = False
        contact.answered_at = _utc_now()
        self._remember_handled(username, contact)
        self._publish(
            ev.ContactAssigned(occurred_at=contact.answered_at, contact_id=contact.contact_id, queue=contact.queue, agent_id=username)
        )
        self._publish(ev.CallAnswered(occurred_at=contact.answered_at, call_id=contact.call_id, agent_id=username))
        if self.recordings is not None:
            self.recordings.call_bridged(
                contact.call_id, queue=contact.queue, agent_id=username, interaction_id=contact.interaction_id
            )

    def _rejected(self, username: str, contact: Contact) -> None:
        contact.offered_to = None
        contact.phone_ringing = False
        self._route(OfferRejected(contact_id=contact.contact_id, agent_id=username, now=self.clock()), username, "reject")

    def recording(self, username: str, contact_id: str, action: str) -> dict[str, Any]:
        """The agent starts, stops, pauses or resumes the recording of their call (PCI
        pause before a card number; start on an on-demand queue). Returns the status."""
        contact = self._contacts.get(contact_id)
        if contact is None and self.shared and self.router.agent_for(contact_id) == username:
            raise CenterError("on_another_hub", "this call is held by another hub: its recording cannot be controlled from here")
        if contact is None or contact.agent_id != username or contact.ended:
            raise CenterError("not_your_contact", f"contact {contact_id} is not connected to you")
        if self.recordings is None:
            raise CenterError("no_recorder", "recording is not available on this hub")
        try:
            if action == "start":
                self.recordings.start(
                    contact.call_id, queue=contact.queue, agent_id=username,
                    interaction_id=contact.interaction_id, by=username,
                )
            elif action == "stop":
                self.recordings.stop_on_request(contact.call_id)
            elif action == "pause":
                self.recordings.pause(contact.call_id)
            elif action == "resume":
                self.recordings.resume(contact.call_id)
            else:
                raise CenterError("bad_action", f"unknown recording action {action!r}: start, stop, pause or resume")
        except RecordingRefused as refused:
            raise CenterError(refused.code, refused.detail) from None
        return self.recordings.status(contact.call_id, contact.queue)

    def hang_up(self, username: str, contact_id: str) -> None:
        if self._forwarded(username, contact_id, "hangup"):
            return
        contact = self._contacts.get(contact_id)
        if contact is None or contact.agent_id != username:
            raise CenterError("not_your_contact", f"contact {contact_id} is not connected to you")
        if self._voice is None:
            raise CenterError("no_voice", "the voice service is not running")
        self._voice.hang_up(contact.call_id)

    def hold(self, username: str, contact_id: str, *, held: bool) -> None:
        """Hold or resume from the desktop; the `call.held` / `call.resumed` event follows."""
        if self._forwarded(username, contact_id, "hold" if held else "unhold"):
            return
        contact = self._contacts.get(contact_id)
        if contact is None or contact.agent_id != username or contact.ended:
            raise CenterError("not_your_contact", f"contact {contact_id} is not connected to you")
        if self._voice is None:
            raise CenterError("no_voice", "the voice service is not running")
        if not self._voice.hold(contact.call_id, held=held):
            state = "on hold" if held else "not on hold"
            raise CenterError("bad_state", f"the call is already {state}, or its phone has not answered")

    def transfer(self, username: str, contact_id: str, queue: str) -> None:
        """Blind transfer from the desktop to another queue (the caller waits there, with
        music); the `call.transferred` event follows, as for a REFER from the phone."""
        if self._forwarded(username, contact_id, "transfer", queue=queue):
            return
        contact = self._contacts.get(contact_id)
        if contact is None or contact.agent_id != username or contact.ended:
            raise CenterError("not_your_contact", f"contact {contact_id} is not connected to you")
        if not self.router.has_queue(queue):
            raise CenterError("unknown_queue", f"there is no queue {queue!r}", field="queue")
        if queue == contact.queue:
            raise CenterError("bad_field", f"the caller is already in queue {queue}", field="queue")
        if self._voice is None:
            raise CenterError("no_voice", "the voice service is not running")
        if not self._voice.transfer_to_queue(contact.call_id, queue=queue, number=""):
            raise CenterError("bad_state", "the call cannot be transferred now (its phone has not answered)")

    def _forwarded(self, username: str, contact_id: str, request: str, **args: Any) -> bool:
        """Shared routing: a request about a call another hub holds goes to that hub (the
        replica says whether the call is this agent's); its answer, when it is an error,
        comes back to the agent's desktop as an `error` message."""
        if self._link is None or contact_id in self._contacts:
            return False
        if self.router.agent_for(contact_id) != username or not self.router.is_accepted(contact_id):
            raise CenterError("not_your_contact", f"contact {contact_id} is not connected to you")
        self._link.to_hubs(username, request, contact_id, **args)
        return True

    def request_from_other_hub(self, request: AgentRequest) -> None:
        """An agent on another hub asks about a call this hub holds."""
        if request.contact_id not in self._contacts:
            return  # held by another hub (or gone): that one answers
        agent, contact_id = request.agent_id, request.contact_id
        try:
            if request.request == "hangup":
                self.hang_up(agent, contact_id)
            elif request.request in ("hold", "unhold"):
                self.hold(agent, contact_id, held=request.request == "hold")
            elif request.request == "transfer" and "number" in request.args:
                self.transfer_to_number(agent, contact_id, str(request.args["number"]))
            elif request.request == "transfer":
                self.transfer(agent, contact_id, str(request.args.get("queue", "")))
            else:
                log.warning("unknown request %r from another hub", request.request)
        except CenterError as err:
            answer = {"type": "error", "error": err.code, "detail": err.detail, "request": request.request}
            if err.field is not None:
                answer["field"] = err.field
            self._to_agent(agent, answer)

    # --- outbound: transfer to a number, click-to-dial --------------------------------

    @property
    def outbound_ready(self) -> bool:
        """A trunk is configured: click-to-dial and transfers to numbers are offered."""
        return self._voice is not None and self._voice.trunk is not None

    def outside_number(self, call_id: str, number: str) -> str | None:
        """A REFER from the agent's phone names `number`: its E.164 form when the call is
        connected to an agent and it is a phone number, else None (the REFER fails)."""
        contact = self._contact_of_call(call_id)
        if contact is None or contact.agent_id is None or contact.ended:
            return None
        return normalize_phone(number, default_region=self.default_region)

    def transfer_to_number(self, username: str, contact_id: str, number: object) -> str:
        """Transfer from the desktop to an outside number through the trunk; returns its
        E.164 form. The caller hears music while it rings; `call.transferred` follows
        when it answers (the agent's leg ends then), `transfer_failed` when it does not
        (the caller is back with the agent)."""
        if not isinstance(number, str) or not number.strip():
            raise CenterError("missing_field", "number is required: the phone number to transfer to", field="number")
        e164 = normalize_phone(number, default_region=self.default_region)
        if e164 is None:
            raise CenterError("bad_field", f"number {number!r} is not a phone number", field="number")
        if self._forwarded(username, contact_id, "transfer", number=e164):
            return e164
        contact = self._contacts.get(contact_id)
        if contact is None or contact.agent_id != username or contact.ended:
            raise CenterError("not_your_contact", f"contact {contact_id} is not connected to you")
        if self._voice is None:
            raise CenterError("no_voice", "the voice service is not running")
        if self._voice.trunk is None:
            raise CenterError("no_trunk", NO_TRUNK)
        if not self._voice.transfer_to_number(contact.call_id, e164):
            raise CenterError("bad_state", "the call cannot be transferred now (its phone has not answered, or a transfer is ringing)")
        return e164

    def transfer_failed(self, call_id: str, *, number: str, failure: str, status: int) -> None:
        contact = self._contact_of_call(call_id)
        if contact is None or contact.agent_id is None:
            return
        self._to_agent(contact.agent_id, {
            "type": "transfer_failed", "contact_id": contact.contact_id, "call_id": call_id, "number": number,
            "failure": failure, "status": status,
        })

    async def dial(self, username: str, customer_id: object, phone: object = None) -> dict[str, Any]:
        """Click-to-dial: the hub rings the agent's phone, then calls the customer's number
        (one of the card's: `phone`, or the first) through the trunk and bridges them.
        The agent is busy for routing until the call ends, then wraps up as after an
        inbound call. Returns the contact as the desktop tracks it; CenterError otherwise."""
        if not isinstance(customer_id, str) or not customer_id:
            raise CenterError("missing_field", "customer_id is required", field="customer_id")
        if phone is not None and not isinstance(phone, str):
            raise CenterError("bad_field", "phone must be one of the customer's numbers", field="phone")
        voice = self._voice
        if voice is None:
            raise CenterError("no_voice", "the voice service is not running")
        if voice.trunk is None:
            raise CenterError("no_trunk", NO_TRUNK)
        state = self.router.agent_state(username) if self.router.has_agent(username) else AgentState.OFFLINE
        if state == AgentState.OFFLINE:
            raise CenterError("not_logged_in", "log in to the desktop (set a state) before dialling")
        if state in (AgentState.RESERVED, AgentState.BUSY):
            raise CenterError("agent_busy", f"you are {state.value}: finish the call in hand first")
        queue = outbound_queue(self.router, username)
        if queue is None:
            raise CenterError("no_queue", f"{username} serves no queue to account the call to")
        profile = await self.crm.get_profile(customer_id)
        if profile is None:
            raise CenterError("unknown_customer", f"there is no customer {customer_id!r}", field="customer_id")
        number = dial_number(
            profile.customer_id, [p.e164 for p in profile.phones], phone, default_region=self.default_region
        )
        bindings = await voice.phones_of(username)
        if not bindings:
            raise CenterError("no_phone", "click-to-dial rings your SIP phone first: register one")
        contact_id = "ct_" + uuid.uuid4().hex[:16]
        await self._outbound_started(OutboundStarted(contact_id=contact_id, agent_id=username, queue=queue, now=self.clock()))
        call_id = voice.dial(agent_id=username, bindings=bindings, number=number, customer_name=profile.name)
        if call_id is None:
            self._submit(ContactFinished(contact_id=contact_id, now=self.clock()), failed=self._unknown_finished)
            raise CenterError("no_media", "no RTP port is free for the call; try again")
        identity = CallerIdentity(matches=(), profile=profile)
        contact = Contact(
            contact_id=contact_id, call_id=call_id, channel="voice", caller=number, caller_e164=number,
            dialled=number, queue=queue, started_at=_utc_now(), identity=asyncio.create_task(_known(identity)),
            agent_id=username, direction="outbound", customer_id=profile.customer_id, routed=True,
        )
        self._contacts[contact_id] = contact
        self._by_call[call_id] = contact_id
        self._remember_handled(username, contact)
        return {
            "contact_id": contact_id, "call_id": call_id, "interaction_id": contact.interaction_id,
            "customer_id": profile.customer_id, "name": profile.name, "number": number, "queue": queue,
        }

    async def _outbound_started(self, fact: OutboundStarted) -> None:
        """Routing takes the agent as busy before anything rings (shared routing: once the
        store applied it, since another hub may have offered them a call meanwhile)."""
        if self._facts is None:
            try:
                self._submit(fact)
            except RoutingError as err:
                raise CenterError(getattr(err, "code", "routing_error"), str(err)) from None
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def refused(err: RoutingError) -> None:
            if not done.done():
                done.set_exception(CenterError(err.code, str(err)))

        self._submit(fact, then=lambda: None if done.done() else done.set_result(None), failed=refused)
        await done

    def dial_ringing(self, call_id: str) -> None:
        self._dial_progress(call_id, "ringing")

    def dial_answered(self, call_id: str) -> None:
        contact = self._contact_of_call(call_id)
        if contact is None or contact.agent_id is None:
            return
        contact.answered_at = _utc_now()
        self._publish(ev.CallAnswered(occurred_at=contact.answered_at, call_id=call_id, agent_id=contact.agent_id))

    def dial_failed(self, call_id: str, *, side: str, failure: str, status: int) -> None:
        contact = self._contact_of_call(call_id)
        if contact is not None:
            contact.dial_failure = f"{side}_{failure}"  # e.g. customer_busy, agent_no_answer
        self._dial_progress(call_id, "failed", side=side, failure=failure, status=status)

    def _dial_progress(self, call_id: str, stage: str, **details: Any) -> None:
        contact = self._contact_of_call(call_id)
        if contact is None or contact.agent_id is None:
            return
        self._to_agent(contact.agent_id, {
            "type": "dial_progress", "contact_id": contact.contact_id, "call_id": call_id, "stage": stage, **details,
        })

    # --- the customer an agent picked -------------------------------------------------

    async def pick_customer(
        self, username: str, *, customer_id: object, contact_id: object = None, interaction_id: object = None
    ) -> dict[str, Any]:
        """Several customers share the caller's number and the agent says which one is on
        the line: the interaction is stored with that customer (its row is updated when
        it is already written). Only one of the customers the pop offered may be picked:
        the number is the evidence the hub has, and an interaction is a compliance
        record, so it never names a customer the call gives no ground for."""
        if not isinstance(customer_id, str) or not customer_id:
            raise CenterError("missing_field", "customer_id is required: one of the pop's matches", field="customer_id")
        if interaction_id is None and contact_id is None:
            raise CenterError("missing_field", "contact_id (or interaction_id) is required", field="contact_id")
        for name, value in (("contact_id", contact_id), ("interaction_id", interaction_id)):
            if value is not None and (not isinstance(value, str) or not value):
                raise CenterError("bad_field", f"{name} must be a non-empty string", field=name)
        contact = self._contacts.get(contact_id) if isinstance(contact_id, str) else None
        if contact is None and isinstance(interaction_id, str):
            contact = next((c for c in self._contacts.values() if c.interaction_id == interaction_id), None)
        if contact is not None and not contact.ended and username in (contact.offered_to, contact.agent_id):
            matches = _match_ids(await _identity_or_unknown(contact.identity))
            _check_pick(customer_id, matches)
            contact.customer_id = customer_id  # written with the interaction at the call's end
            return {"contact_id": contact.contact_id, "interaction_id": contact.interaction_id,
                    "customer_id": customer_id, "stored": False}
        handled = self._handled_by(
            username, interaction_id=interaction_id if isinstance(interaction_id, str) else None,
            contact_id=contact_id if isinstance(contact_id, str) else None,
        )
        _check_pick(customer_id, handled.matches)
        await _stored(handled)
        try:
            found = await self.crm.update_interaction_customer(
                handled.interaction_id, customer_id=customer_id, to_outbox=self.sync_to_crm
            )
        except Exception:
            log.exception("storing the picked customer of %s failed", handled.interaction_id)
            raise CenterError("crm_unavailable", "the CRM could not store the customer; try again") from None
        if not found:
            raise CenterError("no_such_interaction", f"interaction {handled.interaction_id} is not in the CRM",
                              field="interaction_id")
        return {"contact_id": handled.contact_id, "interaction_id": handled.interaction_id,
                "customer_id": customer_id, "stored": True}

    # --- wrap-up ---------------------------------------------------------------------

    async def wrap_up(
        self,
        username: str,
        *,
        interaction_id: str | None = None,
        contact_id: str | None = None,
        disposition: object = None,
        notes: object = None,
    ) -> dict[str, Any]:
        """The agent's disposition and notes for a contact they handled, stored on its
        interaction in the CRM (the disposition replaces an earlier one; a note is added
        to those already there). Returns what was stored; CenterError naming the field."""
        handled = self._handled_by(username, interaction_id=interaction_id, contact_id=contact_id)
        wrap = check_wrapup(disposition, notes, allowed=self.dispositions)
        contact = self._contacts.get(handled.contact_id)
        if contact is not None and not contact.ended:
            raise CenterError("call_in_progress", "wrap up after the call has ended")
        await _stored(handled)
        try:
            found = await self.crm.update_interaction_wrapup(
                handled.interaction_id, disposition=wrap.disposition, to_outbox=self.sync_to_crm
            )
            if found and wrap.notes is not None:
                await self.crm.add_interaction_note(
                    handled.interaction_id, text=wrap.notes, author=username, to_outbox=self.sync_to_crm
                )
        except Exception:
            log.exception("wrap-up of interaction %s by %s failed", handled.interaction_id, username)
            raise CenterError("crm_unavailable", "the CRM could not store the wrap-up; try again") from None
        if not found:
            raise CenterError("no_such_interaction", f"interaction {handled.interaction_id} is not in the CRM",
                              field="interaction_id")
        if self._last_handled.get(username) == handled.interaction_id and self.router.agent_state(username) == AgentState.WRAP_UP:
            self._route(WrapUpDone(agent_id=username, now=self.clock()), username, "wrap_up")  # the after-call work is done
        return {
            "interaction_id": handled.interaction_id,
            "contact_id": handled.contact_id,
            "disposition": wrap.disposition,
            "note_added": wrap.notes is not None,
        }

    def _handled_by(self, username: str, *, interaction_id: str | None, contact_id: str | None) -> _Handled:
        if interaction_id is None and contact_id is None:
            raise CenterError("missing_field", "interaction_id (or contact_id) is required", field="interaction_id")
        for name, value in (("interaction_id", interaction_id), ("contact_id", contact_id)):
            if value is not None and (not isinstance(value, str) or not value):
                raise CenterError("bad_field", f"{name} must be a non-empty string", field=name)
        if interaction_id is not None:
            handled = self._handled.get(interaction_id)
            name, value = "interaction_id", interaction_id
        else:
            handled = next((h for h in reversed(self._handled.values()) if h.contact_id == contact_id), None)
            name, value = "contact_id", contact_id or ""
        # Someone else's interaction answers like an unknown one: ids are not for probing.
        if handled is None or handled.agent_id != username:
            raise CenterError("no_such_interaction", f"{value} is not a contact you handled recently", field=name)
        return handled

    def _remember_handled(self, username: str, contact: Contact) -> None:
        identity = contact.identity
        known = identity.done() and not identity.cancelled() and identity.exception() is None
        self._handled[contact.interaction_id] = _Handled(
            agent_id=username, contact_id=contact.contact_id, interaction_id=contact.interaction_id,
            matches=_match_ids(identity.result()) if known else (),
        )
        self._last_handled[username] = contact.interaction_id
        while len(self._handled) > WRAPUP_MEMORY:
            self._handled.popitem(last=False)

    def _interaction_settled(self, interaction_id: str, *, stored: bool) -> None:
        handled = self._handled.get(interaction_id)
        if handled is not None:
            handled.stored = stored
            handled.written.set()

    def agent_status(self, username: str) -> dict[str, Any]:
        contact_id = self.router.contact_of(username)
        return {
            "agent_id": username,
            "state": self.router.agent_state(username).value,
            "contact_id": contact_id,
        }

    # --- routing commands ------------------------------------------------------------

    def _submit(
        self,
        fact: Fact,
        *,
        then: Callable[[], None] | None = None,
        failed: Callable[[RoutingError], None] | None = None,
    ) -> None:
        """The one way a change reaches routing. In the process: the fact is applied at
        once, its commands carried out, then `then` runs; a RoutingError goes to `failed`,
        or is raised when there is none. Shared: the fact joins this hub's queue, and the
        same happens once the store has applied it (a RoutingError without `failed` is
        logged)."""
        if self._facts is None:
            try:
                commands = apply(self.router, fact)
            except RoutingError as err:
                if failed is None:
                    raise
                failed(err)
                return
            self._execute(commands)
            if then is not None:
                then()
            return

        def done(commands: list[Command]) -> None:
            self._execute_shared(commands, mine=True)
            self._fact_applied(fact)
            if then is not None:
                then()

        self._facts.put(fact, done=done, failed=failed)

    def _route(self, fact: Fact, username: str, request: str) -> None:
        """An agent's request: a RoutingError is a CenterError for them (in the process,
        raised at once; shared, sent to their desktop as an `error` once known)."""
        if self._facts is None:
            try:
                self._submit(fact)
            except RoutingError as err:
                raise CenterError(getattr(err, "code", "routing_error"), str(err)) from None
            return

        def refused(err: RoutingError) -> None:
            self._to_agent(username, {"type": "error", "error": err.code, "detail": str(err), "request": request})

        self._submit(fact, failed=refused)

    def _unknown_finished(self, err: RoutingError) -> None:
        # Routing already let go of it; the call record still counts.
        log.warning("routing did not know a finished contact: %s", err)

    def _abandon_refused(self, contact_id: str, err: RoutingError) -> None:
        """Shared routing: the caller hung up while an accept of the call was still on its
        way; the router has the contact with the agent, so it is finished instead."""
        if err.code != "already_assigned":
            log.warning("routing refused the abandon of %s: %s", contact_id, err)
            return
        self._submit(ContactFinished(contact_id=contact_id, now=self.clock()), failed=self._unknown_finished)

    async def routed(self) -> None:
        """Wait until every routing fact this hub produced so far is applied (at once in
        the process; shared, when the store has it). For answers that report the
        state after a change (the wallboard's set-state)."""
        if self._facts is not None:
            await self._facts.drained()

    # --- shared routing: what other hubs did ------------------------------------------

    def routing_applied(self, applied: Applied) -> None:
        """Shared routing: the store applied a fact to this hub's replica. This hub's own
        facts are carried out when the queue hands them back; another hub's are carried
        out here, for the contacts whose calls this hub holds."""
        if applied.mine:
            return
        if applied.error is None:
            self._execute_shared(list(applied.commands), mine=False)
            self._fact_applied(applied.fact)
            if isinstance(applied.fact, AgentConfigured | QueueConfigured | RulesChanged) and self.on_config_changed:
                self.on_config_changed()
        self._schedule_tick()  # the replica's next deadline may have moved

    def from_other_hub(self, envelope: ToAgent) -> None:
        """A message for an agent from another hub: delivered (and journalled) here when
        the agent has a session on this hub."""
        if not self.sessions.serves(envelope.agent_id):
            return
        message = envelope.message
        raw = message.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if message.get("type") == "screen_pop" and isinstance(message.get("interaction_id"), str):
            self._popped[str(message.get("contact_id"))] = message["interaction_id"]
            while len(self._popped) > WRAPUP_MEMORY:
                self._popped.popitem(last=False)
        elif message.get("type") == "interaction.recorded" and isinstance(data.get("interaction_id"), str):
            self._interaction_settled(data["interaction_id"], stored=True)  # the wrap-up may go ahead
        self._spawn(self.sessions.send(envelope.agent_id, message))

    def _execute_shared(self, commands: list[Command], *, mine: bool) -> None:
        holds = self._contacts.__contains__
        self._execute([c for c in commands if carried_out_here(c, holds=holds, mine=mine)])

    def _fact_applied(self, fact: Fact) -> None:
        """Shared routing: what the hub holding a call does once an agent's answer to its
        offer is applied, whichever hub the agent spoke to."""
        match fact:
            case OfferAccepted(contact_id=contact_id, agent_id=agent_id):
                contact = self._contacts.get(contact_id)
                if contact is None and contact_id in self._popped and self.sessions.serves(agent_id):
                    # Another hub holds the call; its wrap-up comes to this one.
                    self._handled[self._popped[contact_id]] = _Handled(
                        agent_id=agent_id, contact_id=contact_id, interaction_id=self._popped[contact_id]
                    )
                    self._last_handled[agent_id] = self._popped[contact_id]
                    while len(self._handled) > WRAPUP_MEMORY:
                        self._handled.popitem(last=False)
                if contact is None or contact.agent_id is not None or contact.ended:
                    return
                if contact.phone_ringing and not contact.answered_on_phone and self._voice is not None:
                    # Accepted on a desktop served by another hub while the phone rang: the
                    # hub holds the caller's media, as for any desktop accept.
                    self._voice.stop_ringing(contact.call_id, AgentLegEnd.CANCELLED)
                self._took(agent_id, contact)
            case OfferRejected(contact_id=contact_id, agent_id=agent_id):
                contact = self._contacts.get(contact_id)
                if contact is None or contact.offered_to != agent_id:
                    return
                if contact.phone_ringing and self._voice is not None:
                    self._voice.stop_ringing(contact.call_id, AgentLegEnd.DECLINED)
                contact.offered_to = None
                contact.phone_ringing = False
            case _:
                pass

    def apply_routing_change(self, change: Callable[[float], list[Command]], config: RoutingConfig) -> None:
        """A new routing configuration goes live (the routing API): `change` carries it
        to the router at the center's time; the router's commands (offers it made
        possible...) are carried out like any others."""
        commands = change(self.clock())
        self.routing = config
        self._execute(commands)

    async def apply_routing_facts(self, facts: Sequence[Fact], config: RoutingConfig) -> None:
        """Shared routing: a new configuration goes live as facts (queues, agents, rules),
        applied at the same point of the log by every hub's replica."""
        self.routing = config
        for fact in facts:
            self._submit(fact)
        await self.routed()

    def _execute(self, commands: list[Any]) -> None:
        for command in commands:
            match command:
                case OfferContact():
                    self._offer(command)
                case WithdrawOffer(contact_id=contact_id, agent_id=agent_id, reason=reason):
                    contact = self._contacts.get(contact_id)
                    if contact is not None and contact.offered_to == agent_id:
                        contact.offered_to = None
                        if contact.phone_ringing and self._voice is not None:
                            why = AgentLegEnd.NO_ANSWER if reason == "timeout" else AgentLegEnd.CANCELLED
                            self._voice.stop_ringing(contact.call_id, why)
                        contact.phone_ringing = False
                    if reason == "timeout":
                        log.info("offer of %s to %s timed out", contact_id, agent_id)
                    self._to_agent(agent_id, {"type": "offer_withdrawn", "contact_id": contact_id, "reason": reason})
                case AnnounceAgentState(agent_id=agent_id, state=state, previous=previous, reason=reason):
                    self._publish(
                        ev.AgentStateChanged(
                            occurred_at=_utc_now(), agent_id=agent_id, state=state.value, previous=previous.value, reason=reason
                        )
                    )
                case AnnounceQueued(contact_id=contact_id, queue=queue):
                    self._publish(ev.ContactQueued(occurred_at=_utc_now(), contact_id=contact_id, queue=queue))
                case OverflowContact(contact_id=contact_id, from_queue=from_queue, to_queue=to_queue, reason=reason):
                    contact = self._contacts.get(contact_id)
                    if contact is not None:
                        contact.queue = to_queue
                    self._publish(
                        ev.ContactOverflowed(
                            occurred_at=_utc_now(), contact_id=contact_id, from_queue=from_queue, to_queue=to_queue, reason=reason
                        )
                    )
                case RejectContact(contact_id=contact_id, queue=queue, reason=reason):
                    self._publish(ev.ContactRejected(occurred_at=_utc_now(), contact_id=contact_id, queue=queue, reason=reason))
                    self._let_go(contact_id, f"rejected: {reason}")
                case DisconnectContact(contact_id=contact_id, queue=queue, reason=reason, message=message):
                    # The voice service plays sound files, not text: a configured message
                    # is logged (there is no speech synthesis to say it), then the call ends.
                    if message:
                        log.info("contact %s disconnected (%s); its message, not spoken: %r", contact_id, reason, message)
                    self._publish(
                        ev.ContactDisconnected(
                            occurred_at=_utc_now(), contact_id=contact_id, queue=queue, reason=reason,
                            message=message, message_played=False,
                        )
                    )
                    self._let_go(contact_id, f"disconnected: {reason}")
                case OfferCallback(contact_id=contact_id, queue=queue, reason=reason):
                    contact = self._contacts.get(contact_id)
                    if contact is not None:
                        contact.released = "callback_requested"
                        self._spawn(self._schedule_callback(contact, queue, reason))
                case StatsChanged(queues=queues, agents=agents):
                    if self._stats is None:
                        self._stats = StatsPublisher(
                            lambda: self.router.stats, lambda e: self._publish(e, to_agents=False),
                            clock=self.clock, interval_s=self.stats_interval_s,
                        )
                    self._stats.changed(queues, agents)
                case _:
                    log.warning("unknown routing command %r", command)
        self._schedule_tick()

    def _schedule_tick(self) -> None:
        """One loop timer for the router's next deadline (reservation expiry, wrap-up
        end, maximum wait, widening step, preferred window, relaxing rule). Shared: every
        hub keeps one for its replica; the first TimePassed logged does the work, the
        others find nothing due."""
        if self._tick_queued:
            return  # rescheduled once our TimePassed is applied
        deadline = self.router.next_deadline()
        if deadline is None:
            if self._tick_timer is not None:
                self._tick_timer.cancel()
                self._tick_timer = None
            return
        if self._tick_timer is not None:
            if self._tick_at <= deadline:
                return  # the earlier tick schedules the next one
            self._tick_timer.cancel()
        self._tick_at = deadline
        # at least a millisecond: a deadline the clock has just reached must not spin
        delay = max(deadline - self.clock(), 0.001)
        self._tick_timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _tick(self) -> None:
        self._tick_timer = None
        if self._facts is not None:
            self._tick_queued = True

            def settled(*_: object) -> None:
                self._tick_queued = False
                self._schedule_tick()

            self._submit(TimePassed(now=self.clock()), then=settled, failed=settled)
            return
        try:
            commands = self.router.tick(self.clock())
        except RoutingError:
            log.exception("routing tick failed")
            commands = []
        self._execute(commands)

    def _let_go(self, contact_id: str, why: str) -> None:
        """Routing released a waiting contact: end its call (the interaction says why)."""
        contact = self._contacts.get(contact_id)
        if contact is None:
            return
        contact.released = why
        if self._voice is not None and not contact.ended:
            self._voice.hang_up(contact.call_id)

    async def _schedule_callback(self, contact: Contact, queue: str, reason: str) -> None:
        """The customer is called back instead of waiting on: a callback task in the CRM
        for the customer (the agent's work list shows it), then the call ends."""
        identity = await _identity_or_unknown(contact.identity)
        customer_id = identity.profile.customer_id if identity.profile is not None else None
        task_id = None
        if customer_id is not None:
            try:
                task_id = await self.crm.add_task(
                    customer_id=customer_id,
                    kind="callback",
                    title=f"Call back: waited in {queue} ({reason.replace('_', ' ')}) from {contact.caller_e164 or contact.caller}",
                    due_at=datetime.fromtimestamp(datetime.now(UTC).timestamp() + CALLBACK_DUE_S, UTC),
                )
            except Exception:
                log.exception("callback task for %s (contact %s) could not be stored", customer_id, contact.contact_id)
        else:
            log.warning("callback for contact %s from %s: the caller is not a known customer; no task", contact.contact_id, contact.caller)
        self._publish(
            ev.ContactCallbackScheduled(
                occurred_at=_utc_now(), contact_id=contact.contact_id, queue=queue, reason=reason,
                customer_id=customer_id, task_id=task_id,
            )
        )
        self._let_go(contact.contact_id, "callback_requested")

    def _offer(self, offer: OfferContact) -> None:
        contact = self._contacts.get(offer.contact_id)
        if contact is None:
            log.error("router offered unknown contact %s", offer.contact_id)
            return
        contact.offered_to = offer.agent_id
        contact.matched_skills = offer.matched_skills
        preferred = contact.preferred_agent == offer.agent_id
        queue = self.router.queue(offer.queue)
        contact.offer = offer_reason(
            queue, matched_skills=offer.matched_skills, step=offer.step, preferred=preferred, rules=contact.rules
        )
        # The router withdraws the offer at the queue's reservation timeout (on tick):
        # that is the one offer timeout, and the pop shows the agent the same figure.
        contact.offer_timeout_s = queue.reservation_timeout_s
        self._publish(
            ev.ContactOffered(
                occurred_at=_utc_now(),
                contact_id=offer.contact_id,
                queue=offer.queue,
                agent_id=offer.agent_id,
                matched_skills=offer.matched_skills,
                step=offer.step,
                preferred_agent=preferred,
            )
        )
        self._spawn(self._pop_and_ring(contact, offer.agent_id))

    def _owned_offer(self, username: str, contact_id: str) -> Contact:
        contact = self._contacts.get(contact_id)
        if contact is None or contact.offered_to != username or contact.agent_id is not None:
            raise CenterError("no_such_offer", f"contact {contact_id} is not offered to you")
        return contact

    # --- the screen pop --------------------------------------------------------------

    async def _pop_and_ring(self, contact: Contact, agent_id: str) -> None:
        """The pop goes out the moment the offer is made; then the agent's phone rings
        (when one is registered), showing the customer's name."""
        identity = await _identity_or_unknown(contact.identity)
        await self._send_to_agent(agent_id, screen_pop(contact, identity, offer_timeout_s=contact.offer_timeout_s))
        if self._voice is None or contact.ended or contact.offered_to != agent_id:
            return
        phones = await self._voice.phones_of(agent_id)
        if not phones or contact.ended or contact.offered_to != agent_id or contact.agent_id is not None:
            return
        contact.phone_ringing = self._voice.ring_agent(contact.call_id, agent_id, phones, caller_name=_caller_name(identity))

    async def _identify(self, caller: str) -> CallerIdentity:
        matches = await self.crm.lookup_by_phone(caller, default_region=self.default_region)
        profile = None
        if len(matches) == 1:
            profile = await self.crm.get_profile(matches[0].customer_id)
        return CallerIdentity(matches=tuple(matches), profile=profile)

    async def _record_interaction(
        self, contact: Contact, *, outcome: str, ended_at: datetime, disposition: str | None = None
    ) -> None:
        identity = await _identity_or_unknown(contact.identity)
        customer_id = identity.profile.customer_id if identity.profile is not None else None
        customer_id = contact.customer_id or customer_id
        record: dict[str, Any] = {
            "customer_id": customer_id,
            "channel": contact.channel,
            "direction": contact.direction,
            "caller_number": contact.caller_e164 or contact.caller,
            "dialled": contact.dialled,
            "queue": contact.queue,
            "agent_id": contact.agent_id,
            "started_at": contact.started_at,
            "answered_at": contact.answered_at,
            "ended_at": ended_at,
            "outcome": outcome,
            "call_id": contact.call_id,
            "disposition": disposition,
        }
        interaction_id = None
        # A database that blinks (failover, restart) must not cost the record: retry with
        # backoff. The id is fixed first, so a retry after a commit whose answer was lost
        # finds the row instead of writing it twice. With a CRM configured, the outbox
        # message commits together with the interaction, or neither does.
        record["interaction_id"] = contact.interaction_id
        record["to_outbox"] = self.sync_to_crm
        for attempt, delay in enumerate(INTERACTION_WRITE_BACKOFF_S, start=1):
            try:
                interaction_id = await self.crm.record_interaction(**record)
                break
            except Exception as exc:  # noqa: BLE001 - any failure of the store is worth a retry
                log.warning("writing the interaction of call %s failed (attempt %d): %s", contact.call_id, attempt, exc)
                await asyncio.sleep(delay)
        self._interaction_settled(contact.interaction_id, stored=interaction_id is not None)
        if interaction_id is None:
            log.error("interaction of call %s NOT written; the record: %r", contact.call_id, record)
            return
        self._publish(
            ev.InteractionRecorded(
                occurred_at=_utc_now(),
                interaction_id=interaction_id,
                customer_id=customer_id,
                channel=contact.channel,
                outcome=outcome,
                agent_id=contact.agent_id,
            )
        )

    # --- the one exit for outbound facts ---------------------------------------------

    def publish(self, event: ev.Event) -> None:
        """For services beside the center (the recorders): their facts leave the same way."""
        self._publish(event)

    def _publish(self, event: ev.Event, *, to_agents: bool = True) -> None:
        """`to_agents` False: the bus only (statistics are for wallboards, not desktops)."""
        if not self.bus.publish_nowait(event):  # in-process: no task per event
            self._spawn(self.bus.publish(event))
        for username in _agents_concerned(event) if to_agents else ():
            self._to_agent(username, event.to_wire())

    def _to_agent(self, username: str, message: dict[str, Any]) -> None:
        """A message for an agent's desktop. Shared routing: the agent's websocket may be
        on another hub, so it also goes to the others (in order, through the link)."""
        if self._link is not None:
            self._link.to_agent(username, message)
            if not self.sessions.serves(username):
                return
        self._spawn(self.sessions.send(username, message))

    async def _send_to_agent(self, username: str, message: dict[str, Any]) -> None:
        if self._link is not None:
            self._link.to_agent(username, message)
            if not self.sessions.serves(username):
                return
        await self.sessions.send(username, message)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)

    def _contact_of_call(self, call_id: str) -> Contact | None:
        contact_id = self._by_call.get(call_id)
        return self._contacts.get(contact_id) if contact_id else None

    def contact(self, contact_id: str) -> Contact | None:
        return self._contacts.get(contact_id)

    @property
    def active_contacts(self) -> int:
        return len(self._contacts)

    async def drain(self) -> None:
        """Wait for pending publications and writes (used at shutdown)."""
        if self.shared:
            # The routing state outlives this hub: its agents (their sockets closed at
            # shutdown) are logged out now, or the other hubs would offer them calls.
            for username in list(self._logout_timers):
                self._logout_timers[username].cancel()
                try:
                    self.log_out(username)
                except Exception:  # a broken replica must not stop the shutdown
                    log.exception("logging %s out of the shared routing state failed", username)
        for timer in [*self._logout_timers.values(), *([self._tick_timer] if self._tick_timer else [])]:
            timer.cancel()
        self._tick_timer = None
        if self._stats is not None:
            self._stats.close()
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)


def screen_pop(contact: Contact, identity: CallerIdentity, *, offer_timeout_s: float) -> dict[str, Any]:
    """The `screen_pop` websocket message (see docs/websocket.md)."""
    customer = None
    if identity.profile is not None:
        customer = identity.profile.to_dict()
        for account in customer.get("accounts", []):
            for name in PROFILE_MASKED_FIELDS:
                account.pop(name, None)
    return {
        "type": "screen_pop",
        "contact_id": contact.contact_id,
        "interaction_id": contact.interaction_id,  # what the agent's wrap-up names
        "call_id": contact.call_id,
        "channel": contact.channel,
        "caller": contact.caller,
        "caller_e164": contact.caller_e164,
        "dialled": contact.dialled,
        "queue": contact.queue,
        "known_caller": customer is not None,
        "caller_name": _caller_name(identity),
        "customer": customer,
        "matches": [m.to_dict() for m in identity.matches] if len(identity.matches) > 1 else [],
        # Why the router chose this agent: the queue, its strategy, the skills that
        # matched, the widening step reached, the rules that applied, and whether the
        # agent is the customer's account manager offered first.
        "why_you": (
            contact.offer.to_dict() if contact.offer is not None
            else {"queue": contact.queue, "matched_skills": list(contact.matched_skills)}
        ),
        "offer_timeout_s": offer_timeout_s,
        "started_at": contact.started_at.isoformat(),
    }


NO_TRUNK = "no outbound SIP trunk is configured: set CTIHUB_SIP_TRUNK (--sip-trunk) to the carrier's gateway"


def outbound_queue(router: Router, agent_id: str) -> str | None:
    """The queue an agent's outbound call counts in (statistics, wrap-up time): the first,
    by name, whose required skills the agent has. Pure."""
    profile = router.profile(agent_id)
    for name in sorted(router.queues()):
        if all(profile.level(skill) >= 1 for skill in router.queue(name).required_skills):
            return name
    return None


def dial_number(customer_id: str, numbers: Sequence[str], phone: str | None, *, default_region: str) -> str:
    """The E.164 number to dial: `phone` when it is one of the customer's `numbers` (never
    a number typed in), else their first. CenterError naming `phone` otherwise. Pure."""
    numbers = [n for n in numbers if n]
    if not numbers:
        raise CenterError("bad_field", f"customer {customer_id} has no phone number", field="phone")
    if phone is None:
        chosen = numbers[0]
    else:
        wanted = normalize_phone(phone, default_region=default_region)
        if wanted is None:
            raise CenterError("bad_field", f"phone {phone!r} is not a phone number", field="phone")
        if wanted not in numbers:
            raise CenterError("bad_field", f"phone {phone!r} is not one of the customer's numbers", field="phone")
        chosen = wanted
    e164 = normalize_phone(chosen, default_region=default_region)
    if e164 is None:
        raise CenterError("bad_field", f"the customer's number {chosen!r} cannot be dialled", field="phone")
    return e164


def _match_ids(identity: CallerIdentity) -> tuple[str, ...]:
    return tuple(m.customer_id for m in identity.matches)


async def _stored(handled: _Handled) -> None:
    """Wait (a while) for the handled call's interaction to be written: what the agent
    adds after the call (wrap-up, the picked customer) updates that row."""
    try:
        await asyncio.wait_for(handled.written.wait(), WRAPUP_WAIT_S)
    except TimeoutError:
        raise CenterError("interaction_not_written", "the call's interaction is not stored yet; try again") from None
    if not handled.stored:
        raise CenterError("interaction_not_written", "the call's interaction could not be stored in the CRM")


def _check_pick(customer_id: str, matches: Sequence[str]) -> None:
    if len(matches) < 2:
        raise CenterError("nothing_to_pick", "only calls whose number several customers share offer a choice",
                          field="customer_id")
    if customer_id not in matches:
        raise CenterError("bad_field", f"customer {customer_id!r} is not one of the customers the pop offered",
                          field="customer_id")


async def _known(identity: CallerIdentity) -> CallerIdentity:
    return identity


def _caller_name(identity: CallerIdentity) -> str:
    if identity.profile is not None:
        return identity.profile.name
    if len(identity.matches) > 1:
        return f"{len(identity.matches)} customers share this number"
    return "unknown caller"


async def _identity_or_unknown(task: asyncio.Task[CallerIdentity]) -> CallerIdentity:
    # A CRM that fails must not stop the call: the pop then says "unknown caller".
    try:
        return await asyncio.shield(task)
    except Exception:
        log.exception("CRM lookup failed; treating the caller as unknown")
        return CallerIdentity(matches=(), profile=None)


def _agents_concerned(event: ev.Event) -> tuple[str, ...]:
    agent = getattr(event, "agent_id", None)
    return (agent,) if isinstance(agent, str) else ()


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", exc_info=task.exception())


def _utc_now() -> datetime:
    return datetime.now(UTC)
