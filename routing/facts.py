"""Routing inputs as data: one frozen dataclass per `Router` input method, and `apply`.

Owns: the facts a routing store logs and replays (`Fact`), and the one place that turns a
fact into the `Router` call it stands for. A store that feeds every replica the same
facts, with the same `now`, in the same order, gets the same state and the same
commands from each: the router is deterministic (no clock, no randomness, and no
iteration over unordered sets that reaches a decision). Must never: import asyncio, do
I/O or read a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from routing.expressions import Value
from routing.model import AgentProfile, AgentState, Command, QueueConfig, Rule
from routing.router import Router


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactArrived:
    contact_id: str
    queue: str
    now: float
    channel: str = "voice"
    priority: int = 0
    requirements: str | None = None
    attributes: Mapping[str, Value] = field(default_factory=dict)
    preferred_agent: str | None = None
    preferred_for_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactAbandoned:
    contact_id: str
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferAccepted:
    contact_id: str
    agent_id: str
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferRejected:
    contact_id: str
    agent_id: str
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactFinished:
    contact_id: str
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentLoggedIn:
    agent_id: str
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentLoggedOut:
    agent_id: str
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStateRequested:
    agent_id: str
    state: AgentState
    now: float
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WrapUpDone:
    agent_id: str
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TimePassed:
    """`Router.tick`: offer expiries, wrap-up ends, maximum waits, widened eligibility."""

    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConfigured:
    """A new agent (`add_agent`, OFFLINE) or a known agent's new profile (`update_agent`)."""

    profile: AgentProfile
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfigured:
    """A new queue (`add_queue`) or a known queue's new configuration (`update_queue`)."""

    queue: QueueConfig
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RulesChanged:
    rules: tuple[Rule, ...]
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundStarted:
    contact_id: str
    agent_id: str
    queue: str
    now: float


Fact = (
    ContactArrived
    | OutboundStarted
    | ContactAbandoned
    | OfferAccepted
    | OfferRejected
    | ContactFinished
    | AgentLoggedIn
    | AgentLoggedOut
    | AgentStateRequested
    | WrapUpDone
    | TimePassed
    | AgentConfigured
    | QueueConfigured
    | RulesChanged
)


def apply(router: Router, fact: Fact) -> list[Command]:
    """Feed the fact to the router; its commands, or the `RoutingError` it raises."""
    match fact:
        case ContactArrived():
            return router.contact_arrived(
                fact.contact_id,
                fact.queue,
                fact.now,
                channel=fact.channel,
                priority=fact.priority,
                requirements=fact.requirements,
                attributes=fact.attributes,
                preferred_agent=fact.preferred_agent,
                preferred_for_s=fact.preferred_for_s,
            )
        case OutboundStarted():
            return router.outbound_started(fact.contact_id, fact.agent_id, fact.queue, fact.now)
        case ContactAbandoned():
            return router.contact_abandoned(fact.contact_id, fact.now)
        case OfferAccepted():
            return router.offer_accepted(fact.contact_id, fact.agent_id, fact.now)
        case OfferRejected():
            return router.offer_rejected(fact.contact_id, fact.agent_id, fact.now)
        case ContactFinished():
            return router.contact_finished(fact.contact_id, fact.now)
        case AgentLoggedIn():
            return router.agent_logged_in(fact.agent_id, fact.now)
        case AgentLoggedOut():
            return router.agent_logged_out(fact.agent_id, fact.now)
        case AgentStateRequested():
            return router.agent_state_requested(fact.agent_id, fact.state, fact.now, fact.reason)
        case WrapUpDone():
            return router.wrap_up_done(fact.agent_id, fact.now)
        case TimePassed():
            return router.tick(fact.now)
        case AgentConfigured():
            if router.has_agent(fact.profile.agent_id):
                return router.update_agent(fact.profile, fact.now)
            router.add_agent(fact.profile)
            return []
        case QueueConfigured():
            if router.has_queue(fact.queue.name):
                return router.update_queue(fact.queue, fact.now)
            router.add_queue(fact.queue)
            return []
        case RulesChanged():
            router.set_rules(fact.rules)
            return []
    raise TypeError(f"not a routing fact: {fact!r}")
