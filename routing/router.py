"""The ACD's decision core: which agent gets which contact, and when.

Owns: agents' routing states (through `model.AGENT_TRANSITIONS` only), the waiting
contacts of every queue, offers and assignments. Facts go in as method calls with the
time `now` (seconds, any monotonic origin); the commands to carry out come back as a
list, in order. Must never: import asyncio, do I/O, read a clock, or change state when
it raises `RoutingError` (every input is validated before anything changes).

Policy (first slice):
- An agent is eligible for a queue when their skills include all its required skills;
  an agent handles one contact at a time.
- Contacts are offered oldest first (arrival time, then arrival order). A contact put
  back by a reject or a logout keeps its arrival time, so it returns to its original
  place: the front of its queue unless an older contact is still waiting there (which
  only happens when every available eligible agent declined that older contact).
- A contact goes to the longest-idle eligible AVAILABLE agent (idle since the moment
  they last became AVAILABLE; ties go to the agent added first). An agent who becomes
  available gets the oldest waiting contact across the queues they are eligible for.
- An agent who rejected a contact is not offered it again while they stay AVAILABLE;
  the decline is forgotten the next time they become AVAILABLE through any other state
  change (a withdrawn offer, a finished contact, back from AWAY).
- Logging in lands in AWAY with reason 'logged_in': an agent asks for AVAILABLE when
  ready.
- While RESERVED or BUSY, a request for AWAY or OFFLINE is remembered and applied when
  the offer or contact ends (reject, withdraw, finish) instead of going AVAILABLE; a
  request for AVAILABLE then cancels the remembered request. Logging out is immediate.
- Logging out while RESERVED withdraws the offer and re-routes the contact; while BUSY
  the contact is released from routing (the call service owns ending it, and must not
  report it finished afterwards).
- Every agent state change emits AnnounceAgentState; an offer emits AnnounceAgentState
  (AVAILABLE -> RESERVED) then OfferContact; a withdrawal emits WithdrawOffer before the
  agent's AnnounceAgentState. Every arrival emits AnnounceQueued (first), even when the
  contact is offered at once; a contact put back after a reject or logout does not.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from routing.model import (
    AGENT_TRANSITIONS,
    AgentProfile,
    AgentState,
    AnnounceAgentState,
    AnnounceQueued,
    Command,
    OfferContact,
    QueueConfig,
    RoutingError,
    WithdrawOffer,
)

_S = AgentState


@dataclass(slots=True)
class _Agent:
    profile: AgentProfile
    order: int  # tie-break between agents idle since the same moment
    state: AgentState = _S.OFFLINE
    since: float = 0.0
    reason: str | None = None
    idle_since: float | None = None  # set while AVAILABLE
    contact: str | None = None  # offered (RESERVED) or handled (BUSY)
    pending: tuple[AgentState, str | None] | None = None


@dataclass(slots=True, eq=False)  # identity: list.remove must find this very contact
class _Contact:
    contact_id: str
    queue: str
    arrived: float
    seq: int
    declined: set[str] = field(default_factory=set)
    agent: str | None = None
    accepted: bool = False

    @property
    def key(self) -> tuple[float, int]:
        return (self.arrived, self.seq)


class Router:
    def __init__(self, queues: Iterable[QueueConfig], agents: Iterable[AgentProfile]) -> None:
        self._queues: dict[str, QueueConfig] = {}
        self._waiting: dict[str, list[_Contact]] = {}  # per queue, sorted by key
        self._agents: dict[str, _Agent] = {}
        self._contacts: dict[str, _Contact] = {}
        self._seq = 0
        for q in queues:
            self.add_queue(q)
        for a in agents:
            self.add_agent(a)

    # --- configuration --------------------------------------------------------------

    def add_agent(self, profile: AgentProfile) -> None:
        """Add an agent, OFFLINE (since 0.0) until they log in."""
        if profile.agent_id in self._agents:
            raise RoutingError("duplicate_agent", f"agent {profile.agent_id!r} already exists")
        self._agents[profile.agent_id] = _Agent(profile=profile, order=len(self._agents))

    def add_queue(self, q: QueueConfig) -> None:
        if q.name in self._queues:
            raise RoutingError("duplicate_queue", f"queue {q.name!r} already exists")
        self._queues[q.name] = q
        self._waiting[q.name] = []

    # --- inputs ---------------------------------------------------------------------

    def agent_logged_in(self, agent_id: str, now: float) -> list[Command]:
        agent = self._agent(agent_id)
        if agent.state is not _S.OFFLINE:
            raise RoutingError("already_logged_in", f"agent {agent_id!r} is {agent.state.value}")
        out: list[Command] = []
        self._change(agent, _S.AWAY, now, "logged_in", out)
        return out

    def agent_logged_out(self, agent_id: str, now: float) -> list[Command]:
        """Any state -> OFFLINE; logging out an OFFLINE agent does nothing."""
        agent = self._agent(agent_id)
        if agent.state is _S.OFFLINE:
            return []
        out: list[Command] = []
        self._go_offline(agent, now, "logged_out", out)
        self._dispatch(now, out)
        return out

    def agent_state_requested(
        self, agent_id: str, state: AgentState, now: float, reason: str | None = None
    ) -> list[Command]:
        agent = self._agent(agent_id)
        if state in (_S.RESERVED, _S.BUSY):
            raise RoutingError("illegal_request", f"an agent cannot ask to be {state.value}")
        if agent.state is _S.OFFLINE:
            if state is _S.OFFLINE:
                return []
            raise RoutingError("not_logged_in", f"agent {agent_id!r} is offline")
        if agent.state in (_S.RESERVED, _S.BUSY):
            agent.pending = None if state is _S.AVAILABLE else (state, reason)
            return []
        out: list[Command] = []
        if state is _S.OFFLINE:
            self._go_offline(agent, now, reason, out)
        elif state is _S.AWAY:
            if agent.state is not _S.AWAY or agent.reason != reason:
                self._change(agent, _S.AWAY, now, reason, out)
        elif agent.state is not _S.AVAILABLE:
            self._make_available(agent, now, out, forget_declines=True)
            self._dispatch(now, out)
        return out

    def contact_arrived(self, contact_id: str, queue: str, now: float) -> list[Command]:
        if queue not in self._queues:
            raise RoutingError("unknown_queue", f"no queue {queue!r}")
        if contact_id in self._contacts:
            raise RoutingError("duplicate_contact", f"contact {contact_id!r} is already routed")
        self._seq += 1
        contact = _Contact(contact_id=contact_id, queue=queue, arrived=now, seq=self._seq)
        self._contacts[contact_id] = contact
        self._enqueue(contact)
        out: list[Command] = [AnnounceQueued(contact_id=contact_id, queue=queue)]
        self._dispatch(now, out)
        return out

    def contact_abandoned(self, contact_id: str, now: float) -> list[Command]:
        """Waiting: removed. Offered: the offer is withdrawn and the agent released.
        An accepted contact cannot be abandoned (it finishes)."""
        contact = self._contact(contact_id)
        if contact.accepted:
            raise RoutingError("already_assigned", f"contact {contact_id!r} is with an agent; finish it")
        del self._contacts[contact_id]
        if contact.agent is None:
            self._waiting[contact.queue].remove(contact)
            return []
        agent = self._agents[contact.agent]
        out: list[Command] = [WithdrawOffer(contact_id=contact_id, agent_id=agent.profile.agent_id, reason="abandoned")]
        self._release(agent, now, out, forget_declines=True)
        self._dispatch(now, out)
        return out

    def offer_accepted(self, contact_id: str, agent_id: str, now: float) -> list[Command]:
        contact, agent = self._offer(contact_id, agent_id)
        contact.accepted = True
        out: list[Command] = []
        self._change(agent, _S.BUSY, now, None, out)
        return out

    def offer_rejected(self, contact_id: str, agent_id: str, now: float) -> list[Command]:
        contact, agent = self._offer(contact_id, agent_id)
        contact.declined.add(agent_id)
        contact.agent = None
        self._enqueue(contact)
        out: list[Command] = []
        self._release(agent, now, out, forget_declines=False)
        self._dispatch(now, out)
        return out

    def contact_finished(self, contact_id: str, now: float) -> list[Command]:
        contact = self._contact(contact_id)
        if not contact.accepted or contact.agent is None:
            raise RoutingError("not_assigned", f"contact {contact_id!r} is not with an agent")
        del self._contacts[contact_id]
        out: list[Command] = []
        self._release(self._agents[contact.agent], now, out, forget_declines=True)
        self._dispatch(now, out)
        return out

    # --- queries --------------------------------------------------------------------

    def agent_state(self, agent_id: str) -> AgentState:
        return self._agent(agent_id).state

    def state_since(self, agent_id: str) -> float:
        return self._agent(agent_id).since

    def agent_reason(self, agent_id: str) -> str | None:
        return self._agent(agent_id).reason

    def waiting(self, queue: str) -> list[str]:
        """Waiting contact ids, in the order they will be offered."""
        if queue not in self._queues:
            raise RoutingError("unknown_queue", f"no queue {queue!r}")
        return [c.contact_id for c in self._waiting[queue]]

    def contact_of(self, agent_id: str) -> str | None:
        """The contact offered to (RESERVED) or handled by (BUSY) the agent."""
        return self._agent(agent_id).contact

    def agent_for(self, contact_id: str) -> str | None:
        """The agent the contact is offered to or handled by; None while it waits, and
        for contacts routing no longer knows (finished, abandoned, never seen)."""
        contact = self._contacts.get(contact_id)
        return contact.agent if contact else None

    def queue_of(self, contact_id: str) -> str | None:
        contact = self._contacts.get(contact_id)
        return contact.queue if contact else None

    def snapshot(self) -> dict[str, Any]:
        return {
            "queues": {
                name: {
                    "waiting": len(waiting),
                    "longest_wait_since": waiting[0].arrived if waiting else None,
                }
                for name, waiting in self._waiting.items()
            },
            "agents": {
                agent_id: {
                    "state": a.state.value,
                    "since": a.since,
                    "reason": a.reason,
                    "contact": a.contact,
                }
                for agent_id, a in self._agents.items()
            },
        }

    # --- internals ------------------------------------------------------------------

    def _agent(self, agent_id: str) -> _Agent:
        agent = self._agents.get(agent_id)
        if agent is None:
            raise RoutingError("unknown_agent", f"no agent {agent_id!r}")
        return agent

    def _contact(self, contact_id: str) -> _Contact:
        contact = self._contacts.get(contact_id)
        if contact is None:
            raise RoutingError("unknown_contact", f"no contact {contact_id!r}")
        return contact

    def _offer(self, contact_id: str, agent_id: str) -> tuple[_Contact, _Agent]:
        contact = self._contact(contact_id)
        agent = self._agent(agent_id)
        if contact.agent != agent_id or contact.accepted:
            raise RoutingError("no_such_offer", f"contact {contact_id!r} is not offered to {agent_id!r}")
        return contact, agent

    def _change(self, agent: _Agent, to: AgentState, now: float, reason: str | None, out: list[Command]) -> None:
        if to not in AGENT_TRANSITIONS[agent.state]:
            # Inputs are validated first, so reaching this is a bug in the router.
            raise RoutingError("illegal_transition", f"agent {agent.state.value} -> {to.value}")
        previous = agent.state
        agent.state, agent.since, agent.reason = to, now, reason
        agent.idle_since = now if to is _S.AVAILABLE else None
        out.append(
            AnnounceAgentState(agent_id=agent.profile.agent_id, state=to, previous=previous, reason=reason)
        )

    def _make_available(self, agent: _Agent, now: float, out: list[Command], *, forget_declines: bool) -> None:
        if forget_declines:
            for contact in self._contacts.values():
                contact.declined.discard(agent.profile.agent_id)
        self._change(agent, _S.AVAILABLE, now, None, out)

    def _release(self, agent: _Agent, now: float, out: list[Command], *, forget_declines: bool) -> None:
        """The agent's offer or contact is over: AVAILABLE, or what they asked for meanwhile."""
        agent.contact = None
        pending, agent.pending = agent.pending, None
        if pending is None:
            self._make_available(agent, now, out, forget_declines=forget_declines)
        else:
            self._change(agent, pending[0], now, pending[1], out)

    def _go_offline(self, agent: _Agent, now: float, reason: str | None, out: list[Command]) -> None:
        if agent.contact is not None:
            contact = self._contacts[agent.contact]
            if contact.accepted:
                del self._contacts[contact.contact_id]
            else:
                out.append(
                    WithdrawOffer(
                        contact_id=contact.contact_id, agent_id=agent.profile.agent_id, reason="agent_logged_out"
                    )
                )
                contact.agent = None
                self._enqueue(contact)
        agent.contact = None
        agent.pending = None
        self._change(agent, _S.OFFLINE, now, reason, out)

    def _enqueue(self, contact: _Contact) -> None:
        waiting = self._waiting[contact.queue]
        waiting.insert(bisect.bisect([c.key for c in waiting], contact.key), contact)

    def _dispatch(self, now: float, out: list[Command]) -> None:
        """Offer waiting contacts, oldest first, to the longest-idle eligible agents.

        One pass is enough: an offer only removes agents from the pool, so a contact
        that found no agent earlier in the pass cannot find one later in it."""
        idle = [a for a in self._agents.values() if a.state is _S.AVAILABLE]
        if not idle:
            return
        idle.sort(key=lambda a: (a.idle_since, a.order))
        waiting = sorted((c for q in self._waiting.values() for c in q), key=lambda c: c.key)
        for contact in waiting:
            required = self._queues[contact.queue].required_skills
            agent = next(
                (a for a in idle if required <= a.profile.skills and a.profile.agent_id not in contact.declined),
                None,
            )
            if agent is None:
                continue
            idle.remove(agent)
            self._waiting[contact.queue].remove(contact)
            contact.agent = agent.profile.agent_id
            agent.contact = contact.contact_id
            self._change(agent, _S.RESERVED, now, None, out)
            out.append(
                OfferContact(
                    contact_id=contact.contact_id,
                    agent_id=agent.profile.agent_id,
                    queue=contact.queue,
                    matched_skills=tuple(sorted(required)),
                )
            )
            if not idle:
                return
