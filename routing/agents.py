"""The router's bookkeeping for one agent: what they asked for, what they hold, what
they declined, and the per-queue facts routing derives from their profile.

Owns: `AgentRecord` (the router's private, mutable view of an agent), the lookup that
expressions read an agent through, and the room checks (capacity, voice exclusivity).
Must never: change an agent's state (only the router does, through
`model.AGENT_TRANSITIONS`), import asyncio, do I/O or read a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from routing.expressions import Value
from routing.model import AgentProfile, AgentState
from routing.queueing import ContactRecord

_S = AgentState


def agent_lookup(profile: AgentProfile) -> Callable[[str], Value]:
    """What an expression reads for a name: the attribute if the agent has one by that
    name, else the skill level (0 without the skill). Flattened into one dict once per
    profile, because it is read for every candidate of every decision."""
    values: dict[str, Value] = {s: 1 for s in profile.skills}
    values.update(profile.proficiency)
    values.update(profile.attributes)
    get = values.get
    return lambda name: get(name, 0)


@dataclass(slots=True)
class AgentRecord:
    profile: AgentProfile
    order: int  # tie-break between agents idle since the same moment
    state: AgentState = _S.OFFLINE
    since: float = 0.0
    reason: str | None = None
    wants: AgentState = _S.OFFLINE  # what the agent asked for: AVAILABLE, AWAY or OFFLINE
    wants_reason: str | None = None
    idle_since: float = 0.0
    offered: str | None = None  # the one pending offer
    handling: list[str] = field(default_factory=list)  # accepted contacts, oldest first
    wrap_until: float | None = None
    wrap_of: tuple[str, float] | None = None  # (queue, accepted at) of the contact wrapped up
    missed: int = 0  # rejects and timeouts in a row
    declined: set[str] = field(default_factory=set)
    # Derived from the profile and the queues' configuration, refreshed when either
    # changes: the expression lookup, the queues whose base requirement the agent meets
    # (`member_of`, for statistics), and of those, the first routing step they match
    # (`first_step`, for routing; a queue without steps counts as step 0).
    # `profile_key` changes with every new profile (never reused): requirement verdicts
    # are remembered under it. `score`: per best-proficiency queue, the agent's levels
    # over the skills the queue and their first step name.
    lookup: Callable[[str], Value] = field(default=lambda name: 0)
    profile_key: int = 0
    member_of: set[str] = field(default_factory=set)
    first_step: dict[str, int] = field(default_factory=dict)
    score: dict[str, int] = field(default_factory=dict)
    # Where the free-agent index holds the agent now: queue -> (rank key, channels,
    # profile key).
    listed: dict[str, tuple[tuple[float, ...], tuple[str, ...], int]] = field(default_factory=dict)

    @property
    def agent_id(self) -> str:
        return self.profile.agent_id

    @property
    def load(self) -> int:
        return len(self.handling) + (self.offered is not None)


def held_by_channel(agent: AgentRecord, contacts: Mapping[str, ContactRecord]) -> dict[str, int]:
    """Contacts held (accepted, then the offer) per channel."""
    held: dict[str, int] = {}
    for cid in (*agent.handling, *([agent.offered] if agent.offered is not None else [])):
        channel = contacts[cid].channel
        held[channel] = held.get(channel, 0) + 1
    return held


def has_room(agent: AgentRecord, channel: str, contacts: Mapping[str, ContactRecord]) -> bool:
    capacity = agent.profile.capacity
    if not agent.handling and agent.offered is None:
        return capacity.get(channel, 0) > 0  # the common case, without building `held`
    held = held_by_channel(agent, contacts)
    if held.get(channel, 0) >= capacity.get(channel, 0):
        return False
    return not (agent.profile.voice_exclusive and held and (channel == "voice" or "voice" in held))
