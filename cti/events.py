"""The canonical event model: typed, versioned facts that feed the bus, the websockets,
statistics and the CRM sync.

Each event is a frozen, slotted, keyword-only dataclass named as a past-tense fact; its
topic derives from the class name (`CallOffered` -> `call.offered`). This module is
pure: no I/O, no clock; the time of an event is given by whoever creates it.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar, cast, dataclass_transform

SCHEMA_VERSION = 1

_registry: dict[str, type[Event]] = {}


def topic_of(class_name: str) -> str:
    """`CallOffered` -> `call.offered`, `AgentStateChanged` -> `agent.state_changed`."""
    words = re.findall(r"[A-Z][a-z0-9]*", class_name)
    if len(words) < 2:
        raise ValueError(f"event class name {class_name!r} needs a noun and a verb")
    return words[0].lower() + "." + "_".join(w.lower() for w in words[1:])


def _new_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Common envelope: every event has an id and the moment it happened (UTC)."""

    topic: ClassVar[str] = ""
    version: ClassVar[int] = SCHEMA_VERSION

    occurred_at: datetime
    event_id: str = field(default_factory=_new_id)

    def payload(self) -> dict[str, Any]:
        """The event's own fields, JSON-ready (the envelope fields excluded)."""
        return {
            f.name: _jsonable(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in ("occurred_at", "event_id")
        }

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.topic,
            "version": self.version,
            "id": self.event_id,
            "occurred_at": self.occurred_at.isoformat().replace("+00:00", "Z"),
            "data": self.payload(),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


_E = TypeVar("_E", bound=type[Event])


@dataclass_transform(kw_only_default=True, frozen_default=True)
def event(cls: _E) -> _E:
    """Declare an event: make it a frozen, slotted, keyword-only dataclass, derive its
    topic from its name and register it for `from_wire`."""
    made = dataclass(frozen=True, slots=True, kw_only=True)(cls)
    made.topic = topic_of(made.__name__)
    _registry[made.topic] = made
    return cast(_E, made)


class UnknownEventError(ValueError):
    pass


def event_types() -> dict[str, type[Event]]:
    """Every registered event class by topic."""
    return dict(_registry)


def from_wire(message: dict[str, Any]) -> Event:
    """Rebuild an event from its wire form (the inverse of `Event.to_wire`)."""
    topic = message.get("type")
    cls = _registry.get(str(topic))
    if cls is None:
        raise UnknownEventError(f"unknown event type {topic!r}")
    data = dict(message.get("data") or {})
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in ("occurred_at", "event_id"):
            continue
        if f.name in data:
            value = data[f.name]
            kwargs[f.name] = tuple(value) if isinstance(value, list) else value
    occurred = datetime.fromisoformat(str(message["occurred_at"]))
    return cls(occurred_at=occurred, event_id=str(message["id"]), **kwargs)


# --- calls ---------------------------------------------------------------------------


@event
class CallOffered(Event):
    """A caller's INVITE for a known dialled number reached the hub."""

    call_id: str
    caller: str  # the number as the caller's From gave it
    caller_e164: str | None  # normalized, when it parses as a phone number
    dialled: str
    queue: str


@event
class CallAnswered(Event):
    """An agent took the call."""

    call_id: str
    agent_id: str


@event
class CallEnded(Event):
    """The call is over; `outcome` is `completed`, `abandoned` or `failed`."""

    call_id: str
    ended_by: str  # "caller", "agent" or "hub"
    outcome: str
    agent_id: str | None = None


@event
class CallDtmfReceived(Event):
    """The caller pressed a key (RFC 4733 telephone-event, or SIP INFO); in order, once each."""

    call_id: str
    digit: str
    duration_ms: int
    agent_id: str | None = None


@event
class CallHeld(Event):
    """The agent put the caller on hold (the caller hears music)."""

    call_id: str
    agent_id: str | None = None


@event
class CallResumed(Event):
    """The agent took the caller off hold."""

    call_id: str
    agent_id: str | None = None


@event
class CallTransferred(Event):
    """The agent transferred the caller to another queue (blind transfer by REFER)."""

    call_id: str
    agent_id: str
    to_queue: str
    to_number: str


# --- contacts in the ACD -------------------------------------------------------------


@event
class ContactQueued(Event):
    """The contact entered its queue and waits for an agent."""

    contact_id: str
    queue: str
    channel: str = "voice"


@event
class ContactOffered(Event):
    """Routing reserved an agent for the contact; the screen pop goes out with this."""

    contact_id: str
    queue: str
    agent_id: str
    matched_skills: tuple[str, ...] = ()
    step: int = 0  # the queue's widening step the agent matched
    preferred_agent: bool = False  # offered as the customer's account manager


@event
class ContactAssigned(Event):
    """The offered agent accepted the contact."""

    contact_id: str
    queue: str
    agent_id: str


@event
class ContactAbandoned(Event):
    """The customer left before an agent took the contact."""

    contact_id: str
    queue: str
    waited_s: float


@event
class ContactOverflowed(Event):
    """The contact left its queue for another (the queue was full, or it waited the
    queue's maximum); a contact.queued for the new queue follows."""

    contact_id: str
    from_queue: str
    to_queue: str
    reason: str  # "queue_full" or "max_wait"


@event
class ContactRejected(Event):
    """Routing refused the contact (the queue was full, or it waited the maximum and
    the queue's action is reject); the hub ends the call."""

    contact_id: str
    queue: str
    reason: str


@event
class ContactDisconnected(Event):
    """Routing let go of the contact with the queue's message (disconnect action); the
    hub ends the call. `message_played` says whether the caller heard the message."""

    contact_id: str
    queue: str
    reason: str
    message: str | None = None
    message_played: bool = False


@event
class ContactCallbackScheduled(Event):
    """Instead of waiting longer, the customer gets a callback: a callback task was
    opened in the CRM (`task_id`; None for a caller the CRM does not know), and the
    hub ends the call."""

    contact_id: str
    queue: str
    reason: str
    customer_id: str | None = None
    task_id: str | None = None


# --- real-time statistics --------------------------------------------------------------


@event
class QueueStatsChanged(Event):
    """A queue's real-time statistics after a change (coalesced: a few per second at
    most). Upper-case names are Amazon Connect's where the meaning is the same; the
    windowed ones cover the last `window_s` seconds; times are in seconds."""

    queue: str
    CONTACTS_IN_QUEUE: int
    OLDEST_CONTACT_AGE: float
    AGENTS_ONLINE: int
    AGENTS_AVAILABLE: int
    AGENTS_ON_CONTACT: int
    AGENTS_AFTER_CONTACT_WORK: int
    AGENTS_NON_PRODUCTIVE: int
    CONTACTS_ANSWERED: int
    CONTACTS_ABANDONED: int
    CONTACTS_HANDLED: int
    SERVICE_LEVEL: float | None = None  # percent answered within service_level_threshold_s
    AVG_QUEUE_ANSWER_TIME: float | None = None
    ABANDONMENT_RATE: float | None = None  # percent
    AVG_HANDLE_TIME: float | None = None
    service_level_threshold_s: float = 20.0
    window_s: float = 900.0


@event
class AgentStatsChanged(Event):
    """An agent's real-time statistics after a change (coalesced like the queues')."""

    agent_id: str
    state: str
    reason: str | None = None
    time_in_state_s: float = 0.0
    contacts: int = 0
    AGENT_OCCUPANCY: float = 0.0  # contacts held / capacity, 0..1
    CONTACTS_HANDLED: int = 0
    missed_in_a_row: int = 0


# --- agents --------------------------------------------------------------------------


@event
class AgentLoggedIn(Event):
    """The agent opened their desktop; they start away until they choose available."""

    agent_id: str


@event
class AgentLoggedOut(Event):
    """The agent logged out, or their desktop stayed disconnected past the grace period."""

    agent_id: str


@event
class AgentStateChanged(Event):
    """The agent's routing state changed (offline, available, reserved, busy, away)."""

    agent_id: str
    state: str
    previous: str
    reason: str | None = None


# --- CRM -----------------------------------------------------------------------------


@event
class InteractionRecorded(Event):
    """An interaction row was written to the CRM store."""

    interaction_id: str
    customer_id: str | None
    channel: str
    outcome: str
    agent_id: str | None = None


# --- recordings ------------------------------------------------------------------------


@event
class RecordingStarted(Event):
    """The hub started recording a bridged call (by the queue's policy, or the agent asked)."""

    call_id: str
    recording_id: str
    queue: str
    agent_id: str | None = None
    started_by: str = "policy"  # "policy", or the username who asked


@event
class RecordingPaused(Event):
    """Recording paused (PCI: a card number is being read out); the file gets silence."""

    call_id: str
    recording_id: str
    agent_id: str | None = None


@event
class RecordingResumed(Event):
    """Recording resumed after a pause."""

    call_id: str
    recording_id: str
    agent_id: str | None = None


@event
class RecordingStored(Event):
    """The recording is closed, hashed and linked into the chain."""

    call_id: str
    recording_id: str
    interaction_id: str | None
    duration_ms: int
    sha256: str
    agent_id: str | None = None
