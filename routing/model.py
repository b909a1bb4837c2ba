"""The ACD's vocabulary: agent states and their one transition table, queue, agent and
rule configuration, the commands the router emits, and its error.

Owns: `AgentState` and `AGENT_TRANSITIONS`, the only place that says which agent state
may follow which. Must never: import asyncio, do I/O or read a clock.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from routing.expressions import Value


class AgentState(enum.Enum):
    OFFLINE = "offline"
    AVAILABLE = "available"
    RESERVED = "reserved"  # a contact is offered to the agent, not yet accepted
    BUSY = "busy"  # the agent is handling a contact (and may be offered another chat)
    WRAP_UP = "wrap_up"  # after-contact work: no offers until it ends (timed or done)
    AWAY = "away"


_S = AgentState

# Every agent state change goes through this table. AWAY -> AWAY is a change of away
# reason. Logging out is allowed from every logged-in state; logging in always lands in
# AWAY so an agent never gets a contact before saying they are ready.
# The state summarises the agent's load: RESERVED while an offer is pending (at most one
# at a time), else BUSY while they hold accepted contacts, else WRAP_UP, else what they
# asked for (AVAILABLE or AWAY).
AGENT_TRANSITIONS: dict[AgentState, frozenset[AgentState]] = {
    _S.OFFLINE: frozenset({_S.AWAY}),
    # AVAILABLE, AWAY or WRAP_UP -> BUSY: the agent places an outbound call (`outbound_started`).
    _S.AWAY: frozenset({_S.AVAILABLE, _S.AWAY, _S.OFFLINE, _S.BUSY}),
    _S.AVAILABLE: frozenset({_S.RESERVED, _S.AWAY, _S.OFFLINE, _S.BUSY}),
    # out of RESERVED: accepted, or rejected while holding other chats (BUSY); rejected,
    # timed out or withdrawn (AVAILABLE, or the AWAY / OFFLINE asked for meanwhile, or
    # AWAY 'missed'); logged out.
    _S.RESERVED: frozenset({_S.BUSY, _S.AVAILABLE, _S.AWAY, _S.OFFLINE}),
    # out of BUSY: another chat offered (RESERVED); the last contact finished (WRAP_UP,
    # AVAILABLE, or the AWAY / OFFLINE asked for meanwhile); logged out.
    _S.BUSY: frozenset({_S.RESERVED, _S.WRAP_UP, _S.AVAILABLE, _S.AWAY, _S.OFFLINE}),
    _S.WRAP_UP: frozenset({_S.AVAILABLE, _S.AWAY, _S.OFFLINE, _S.BUSY}),
}


class Strategy(enum.Enum):
    """How a queue picks among the eligible agents with room for the contact."""

    LONGEST_IDLE = "longest_idle"
    BEST_PROFICIENCY = "best_proficiency"  # sum of the required skills' levels, then longest idle
    ROUND_ROBIN = "round_robin"  # the next agent after the queue's last pick, in agent order
    LEAST_OCCUPIED = "least_occupied"  # fewest contacts per capacity, then longest idle


class ActionKind(enum.Enum):
    """What happens to a contact past a queue's maximum length or maximum wait."""

    OVERFLOW = "overflow"  # into `to_queue`, keeping its arrival time
    CALLBACK = "callback"  # routing lets go; the shell offers the customer a callback
    DISCONNECT = "disconnect"  # routing lets go; the shell plays `message` and hangs up
    REJECT = "reject"  # routing lets go; the shell refuses the contact (busy)


class RoutingError(Exception):
    """The router was misused (unknown agent, queue or contact; an input that makes no
    sense in the current state). `code` is a stable slug for APIs and logs. The router's
    state is unchanged when this is raised."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueAction:
    kind: ActionKind
    to_queue: str | None = None  # OVERFLOW only
    message: str | None = None  # DISCONNECT: the announcement to play or send


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingStep:
    """From `after_s` seconds in the queue on, agents matching `requirement` qualify too.
    Steps are cumulative (a bullseye): an agent matching an earlier step still does."""

    after_s: float
    requirement: str  # an expression over the agent's skills and attributes


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfig:
    name: str
    # Base requirement, never relaxed: every skill here (level >= 1) and `requirement`.
    required_skills: frozenset[str] = frozenset()
    requirement: str | None = None
    steps: tuple[RoutingStep, ...] = ()  # after_s ascending, the first at 0
    priority: int = 0  # added to every contact's priority
    aging_step_s: float | None = None  # +1 effective priority per this many seconds waited
    strategy: Strategy = Strategy.LONGEST_IDLE
    service_level_s: float = 20.0
    max_length: int | None = None  # waiting contacts; an arrival past it gets `on_full`
    on_full: QueueAction = QueueAction(kind=ActionKind.REJECT)
    max_wait_s: float | None = None  # in this queue; past it (on tick) `on_timeout`
    on_timeout: QueueAction = QueueAction(kind=ActionKind.DISCONNECT)
    reservation_timeout_s: float = 20.0
    wrap_up_s: float = 0.0


def _default_capacity() -> Mapping[str, int]:
    return {"voice": 1}


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentProfile:
    """Not hashable (its mappings are not); compare with ==."""

    agent_id: str
    skills: frozenset[str] = frozenset()  # level 1 unless `proficiency` says otherwise
    proficiency: Mapping[str, int] = field(default_factory=dict)  # skill -> 1..5
    attributes: Mapping[str, Value] = field(default_factory=dict)  # language, languages...
    capacity: Mapping[str, int] = field(default_factory=_default_capacity)  # channel -> contacts
    voice_exclusive: bool = True  # a voice contact is never held together with another

    def level(self, skill: str) -> int:
        if skill in self.proficiency:
            return self.proficiency[skill]
        return 1 if skill in self.skills else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """Applied on arrival: when `when` holds over the contact's attributes, `require`
    (an agent expression; `$attr` takes the contact's value) is added to the contact's
    requirements and `priority` to its priority. `relax_after_s` drops the added
    requirement after that long in routing (None: never, e.g. for compliance)."""

    name: str
    when: str
    require: str | None = None
    priority: int = 0
    relax_after_s: float | None = None


# --- commands: what the router asks its shell to carry out ----------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferContact:
    contact_id: str
    agent_id: str
    queue: str
    # The skills the matched requirements name that the agent has, sorted ("why you").
    matched_skills: tuple[str, ...]
    step: int = 0  # the first routing step of the queue the agent matched
    channel: str = "voice"


@dataclass(frozen=True, slots=True, kw_only=True)
class WithdrawOffer:
    contact_id: str
    agent_id: str
    reason: str  # 'abandoned' | 'agent_logged_out' | 'timeout'


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceAgentState:
    agent_id: str
    state: AgentState
    previous: AgentState
    # 'logged_in' / 'logged_out', or the reason the agent gave for AWAY / OFFLINE;
    # None for changes routing made (offer, accept, reject, withdraw, finish).
    reason: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceQueued:
    contact_id: str
    queue: str


@dataclass(frozen=True, slots=True, kw_only=True)
class OverflowContact:
    """The contact left `from_queue` for `to_queue` (an AnnounceQueued follows)."""

    contact_id: str
    from_queue: str
    to_queue: str
    reason: str  # 'queue_full' | 'max_wait'


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectContact:
    """Routing let go of the contact: refuse it (busy / 'queue full' notice)."""

    contact_id: str
    queue: str
    reason: str  # 'queue_full' | 'max_wait'


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferCallback:
    """Routing let go of the contact: offer the customer a callback instead of waiting."""

    contact_id: str
    queue: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DisconnectContact:
    """Routing let go of the contact: give the customer `message`, then end it."""

    contact_id: str
    queue: str
    reason: str
    message: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StatsChanged:
    """Only with `Router(publish_stats=True)`: the statistics of these queues and agents
    changed during this input; the shell publishes `router.stats.snapshot(now)`."""

    queues: tuple[str, ...]
    agents: tuple[str, ...]


Command = (
    OfferContact
    | WithdrawOffer
    | AnnounceAgentState
    | AnnounceQueued
    | OverflowContact
    | RejectContact
    | OfferCallback
    | DisconnectContact
    | StatsChanged
)
