"""The ACD's vocabulary: agent states and their one transition table, queue and agent
configuration, the commands the router emits, and its error.

Owns: `AgentState` and `AGENT_TRANSITIONS`, the only place that says which agent state
may follow which. Must never: import asyncio, do I/O or read a clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class AgentState(enum.Enum):
    OFFLINE = "offline"
    AVAILABLE = "available"
    RESERVED = "reserved"  # a contact is offered to the agent, not yet accepted
    BUSY = "busy"  # the agent is handling a contact
    AWAY = "away"


_S = AgentState

# Every agent state change goes through this table. AWAY -> AWAY is a change of away
# reason. Logging out is allowed from every logged-in state; logging in always lands in
# AWAY so an agent never gets a contact before saying they are ready.
AGENT_TRANSITIONS: dict[AgentState, frozenset[AgentState]] = {
    _S.OFFLINE: frozenset({_S.AWAY}),
    _S.AWAY: frozenset({_S.AVAILABLE, _S.AWAY, _S.OFFLINE}),
    _S.AVAILABLE: frozenset({_S.RESERVED, _S.AWAY, _S.OFFLINE}),
    # out of RESERVED: accepted (BUSY), rejected or withdrawn (AVAILABLE, or the AWAY /
    # OFFLINE the agent asked for meanwhile), logged out.
    _S.RESERVED: frozenset({_S.BUSY, _S.AVAILABLE, _S.AWAY, _S.OFFLINE}),
    _S.BUSY: frozenset({_S.AVAILABLE, _S.AWAY, _S.OFFLINE}),
}


class RoutingError(Exception):
    """The router was misused (unknown agent, queue or contact; an input that makes no
    sense in the current state). `code` is a stable slug for APIs and logs. The router's
    state is unchanged when this is raised."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfig:
    name: str
    required_skills: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentProfile:
    agent_id: str
    skills: frozenset[str] = frozenset()


# --- commands: what the router asks its shell to carry out ----------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferContact:
    contact_id: str
    agent_id: str
    queue: str
    matched_skills: tuple[str, ...]  # the queue's required skills, sorted


@dataclass(frozen=True, slots=True, kw_only=True)
class WithdrawOffer:
    contact_id: str
    agent_id: str
    reason: str  # 'abandoned' | 'agent_logged_out'


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


Command = OfferContact | WithdrawOffer | AnnounceAgentState | AnnounceQueued
