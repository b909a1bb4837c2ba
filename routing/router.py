"""The ACD's decision core: which agent gets which contact, and when.

Owns: agents' routing states (through `model.AGENT_TRANSITIONS` only), the waiting
contacts of every queue, offers (reservations) and assignments, queue limits, and the
statistics feed. Facts go in as method calls with the time `now` (seconds, any monotonic
origin); the commands to carry out come back as a list, in order. Must never: import
asyncio, do I/O, read a clock, or change state when it raises `RoutingError` (every
input is validated before anything changes).

Policy:
- Eligibility of an agent for a contact: the queue's base requirement (every
  `required_skills` at level >= 1 and `requirement`), the contact's own requirements
  (given on arrival and added by rules; a rule's may relax after a while), and the
  queue's routing steps: step j counts from `after_s` seconds in the queue on, and the
  agent must match some step reached so far (the first such step is reported). The
  agent must have room on the contact's channel (`capacity`; with `voice_exclusive`, a
  voice contact is never held together with another contact), must not be RESERVED
  (one pending offer at a time), in WRAP_UP, or asking to leave, and must not have
  declined the contact (see below). While a preferred agent's window runs, only they
  qualify; their reject or timeout ends the window.
- Order of contacts: effective priority (queue priority + contact priority + rules +
  one per `aging_step_s` waited since arrival) descending, then arrival ascending. A
  contact put back by a reject, a timeout or a logout keeps its arrival time. Contacts
  are matched in that order, each to the best eligible agent by its queue's strategy;
  one pass is enough because an offer only takes room away.
- Longest idle: agents without contacts first, by the time they last became
  AVAILABLE (or, holding chats, last took or freed one); ties go to the agent added first.
- An agent who rejected (or let time out) a contact is not offered it again while they
  stay available; the decline is forgotten the next time they become AVAILABLE through
  any other change (a withdrawn offer, a finished contact, back from AWAY, wrap-up end).
  `max_missed_offers` rejects or timeouts in a row put the agent AWAY, reason 'missed'.
- Logging in lands in AWAY with reason 'logged_in'. While RESERVED or BUSY a request for
  AWAY or OFFLINE is remembered and applied when the agent holds nothing any more (after
  wrap-up); a request for AVAILABLE cancels it. In WRAP_UP a request applies at once
  and ends the wrap-up. Logging out is immediate: an offer is withdrawn and re-routed,
  accepted contacts are released (the call service ends them).
- The last contact of an agent finishing starts WRAP_UP when its queue has `wrap_up_s`;
  it ends on `tick` after that long, or on `wrap_up_done`.
- Queue limits: an arrival into a queue with `max_length` contacts waiting, or (on
  `tick`) a contact waiting `max_wait_s` in its queue, gets the queue's action: overflow
  into another queue (OverflowContact, then AnnounceQueued; a loop ends in RejectContact),
  or routing lets go with RejectContact / OfferCallback / DisconnectContact.
- Commands: every agent state change emits AnnounceAgentState; an offer emits it
  (-> RESERVED) then OfferContact; a withdrawal emits WithdrawOffer before the agent's
  AnnounceAgentState. Every admitted arrival emits AnnounceQueued first; a contact put
  back does not. With `publish_stats`, an input that changed statistics ends with one
  StatsChanged.
- Time-driven changes (reservation expiry, wrap-up end, maximum wait, routing steps,
  preferred windows, relaxing rules) happen on `tick(now)`; `next_deadline()` says when
  the next one is due. Any input re-matches at its own `now`.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from routing.expressions import Expr, Name, ParseError, Value, bind, evaluate, names, parse
from routing.model import (
    AGENT_TRANSITIONS,
    ActionKind,
    AgentProfile,
    AgentState,
    AnnounceAgentState,
    AnnounceQueued,
    Command,
    DisconnectContact,
    OfferCallback,
    OfferContact,
    OverflowContact,
    QueueAction,
    QueueConfig,
    RejectContact,
    RoutingError,
    Rule,
    StatsChanged,
    Strategy,
    WithdrawOffer,
)
from routing.stats import RoutingStats

_S = AgentState


@dataclass(slots=True)
class _Agent:
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


@dataclass(slots=True)
class _Contact:
    contact_id: str
    queue: str
    channel: str
    arrived: float  # first arrival: order, aging, preferred window
    entered: float  # into the current queue: steps, maximum wait, answer time
    seq: int
    priority: int  # the contact's own, rules included (the queue's is added when ordering)
    requirements: list[tuple[Expr, float | None]]  # (agent expression, relaxed at)
    preferred_agent: str | None = None
    prefer_until: float = 0.0
    declined: set[str] = field(default_factory=set)
    agent: str | None = None
    accepted: bool = False
    expires: float | None = None  # of the pending offer
    accepted_at: float | None = None

    @property
    def key(self) -> tuple[float, int]:
        return (self.arrived, self.seq)


@dataclass(frozen=True, slots=True)
class _CompiledQueue:
    base: tuple[Expr, ...]
    steps: tuple[tuple[float, Expr], ...]


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    rule: Rule
    when: Expr
    require: Expr | None


def _compile(text: str, what: str) -> Expr:
    try:
        return parse(text)
    except ParseError as err:
        raise RoutingError("bad_expression", f"{what}: {err}") from None


class Router:
    def __init__(
        self,
        queues: Iterable[QueueConfig],
        agents: Iterable[AgentProfile],
        *,
        rules: Iterable[Rule] = (),
        max_missed_offers: int | None = 3,
        publish_stats: bool = False,
        stats_window_s: float = 900.0,
    ) -> None:
        self._queues: dict[str, QueueConfig] = {}
        self._compiled: dict[str, _CompiledQueue] = {}
        # per queue, per contact priority: contact ids sorted by (arrival, seq)
        self._waiting: dict[str, dict[int, list[str]]] = {}
        self._agents: dict[str, _Agent] = {}
        self._contacts: dict[str, _Contact] = {}
        self._free: set[str] = set()  # agents an offer could go to now
        self._offers: set[str] = set()  # contacts offered, not yet accepted
        self._wrapping: set[str] = set()  # agents in WRAP_UP
        self._last_pick: dict[str, int] = {}  # round robin: queue -> order of its last agent
        self._rules: list[_CompiledRule] = []
        self._seq = 0
        self._now = 0.0
        self.max_missed_offers = max_missed_offers
        self.publish_stats = publish_stats
        self.stats = RoutingStats(window_s=stats_window_s)
        for q in queues:
            self.add_queue(q)
        for a in agents:
            self.add_agent(a)
        self.set_rules(rules)
        self.stats.take_changes()

    # --- configuration --------------------------------------------------------------

    def add_agent(self, profile: AgentProfile) -> None:
        """Add an agent, OFFLINE (since 0.0) until they log in."""
        if profile.agent_id in self._agents:
            raise RoutingError("duplicate_agent", f"agent {profile.agent_id!r} already exists")
        self._check_profile(profile)
        agent = _Agent(profile=profile, order=len(self._agents))
        self._agents[profile.agent_id] = agent
        self.stats.agent_configured(profile.agent_id, self._member_of(agent), sum(profile.capacity.values()))

    def add_queue(self, q: QueueConfig) -> None:
        if q.name in self._queues:
            raise RoutingError("duplicate_queue", f"queue {q.name!r} already exists")
        compiled = self._check_queue(q)
        self._queues[q.name] = q
        self._compiled[q.name] = compiled
        self._waiting[q.name] = {}
        self.stats.queue_configured(q.name, q.service_level_s)
        self._restaff()

    def update_agent(self, profile: AgentProfile, now: float) -> list[Command]:
        """New skills, attributes or capacity, in effect at once. Capacity may not drop
        below what the agent holds now (`capacity_in_use`)."""
        agent = self._agent(profile.agent_id)
        self._check_profile(profile)
        held = self._held_by_channel(agent)
        for channel, count in held.items():
            if profile.capacity.get(channel, 0) < count:
                raise RoutingError("capacity_in_use", f"agent {profile.agent_id!r} holds {count} {channel} contacts")
        self._now = now
        agent.profile = profile
        self.stats.agent_configured(profile.agent_id, self._member_of(agent), sum(profile.capacity.values()))
        self._refresh(agent)
        out: list[Command] = []
        self._dispatch(now, out)
        return self._done(out)

    def update_queue(self, q: QueueConfig, now: float) -> list[Command]:
        """A new configuration for an existing queue; waiting contacts stay and are
        re-matched under it (limits apply to later arrivals and ticks)."""
        if q.name not in self._queues:
            raise RoutingError("unknown_queue", f"no queue {q.name!r}")
        compiled = self._check_queue(q)
        self._now = now
        self._queues[q.name] = q
        self._compiled[q.name] = compiled
        self.stats.queue_configured(q.name, q.service_level_s)
        self._restaff()
        out: list[Command] = []
        self._dispatch(now, out)
        return self._done(out)

    def set_rules(self, rules: Iterable[Rule]) -> None:
        """Replace the arrival rules; they apply to contacts arriving from now on."""
        compiled = []
        for rule in rules:
            when = _compile(rule.when, f"rule {rule.name!r} when")
            require = _compile(rule.require, f"rule {rule.name!r} require") if rule.require else None
            compiled.append(_CompiledRule(rule=rule, when=when, require=require))
        self._rules = compiled

    # --- inputs ---------------------------------------------------------------------

    def agent_logged_in(self, agent_id: str, now: float) -> list[Command]:
        agent = self._agent(agent_id)
        if agent.state is not _S.OFFLINE:
            raise RoutingError("already_logged_in", f"agent {agent_id!r} is {agent.state.value}")
        self._now = now
        out: list[Command] = []
        agent.wants, agent.wants_reason, agent.missed = _S.AWAY, "logged_in", 0
        self._settle(agent, now, out, forget=False)
        return self._done(out)

    def agent_logged_out(self, agent_id: str, now: float) -> list[Command]:
        """Any state -> OFFLINE; logging out an OFFLINE agent does nothing."""
        agent = self._agent(agent_id)
        if agent.state is _S.OFFLINE:
            return []
        self._now = now
        out: list[Command] = []
        self._go_offline(agent, now, "logged_out", out)
        self._dispatch(now, out)
        return self._done(out)

    def agent_state_requested(
        self, agent_id: str, state: AgentState, now: float, reason: str | None = None
    ) -> list[Command]:
        agent = self._agent(agent_id)
        if state not in (_S.AVAILABLE, _S.AWAY, _S.OFFLINE):
            raise RoutingError("illegal_request", f"an agent cannot ask to be {state.value}")
        if agent.state is _S.OFFLINE:
            if state is _S.OFFLINE:
                return []
            raise RoutingError("not_logged_in", f"agent {agent_id!r} is offline")
        self._now = now
        out: list[Command] = []
        holding = agent.offered is not None or bool(agent.handling)
        if state is _S.OFFLINE and not holding:
            self._go_offline(agent, now, reason, out)
        else:
            agent.wants, agent.wants_reason = state, (None if state is _S.AVAILABLE else reason)
            if not holding and agent.wrap_until is not None:
                self._end_wrap(agent, now)
            self._settle(agent, now, out, forget=True)
        self._dispatch(now, out)
        return self._done(out)

    def wrap_up_done(self, agent_id: str, now: float) -> list[Command]:
        """The agent finished their after-contact work early."""
        agent = self._agent(agent_id)
        if agent.state is not _S.WRAP_UP:
            raise RoutingError("not_in_wrap_up", f"agent {agent_id!r} is {agent.state.value}")
        self._now = now
        out: list[Command] = []
        self._end_wrap(agent, now)
        self._settle(agent, now, out, forget=True)
        self._dispatch(now, out)
        return self._done(out)

    def contact_arrived(
        self,
        contact_id: str,
        queue: str,
        now: float,
        *,
        channel: str = "voice",
        priority: int = 0,
        requirements: str | None = None,
        attributes: Mapping[str, Value] | None = None,
        preferred_agent: str | None = None,
        preferred_for_s: float = 0.0,
    ) -> list[Command]:
        """A contact to route. `requirements` is an agent expression of its own;
        `attributes` (edd, kyc_status, tier, language...) feed the rules. A preferred
        agent routing does not know is ignored."""
        if queue not in self._queues:
            raise RoutingError("unknown_queue", f"no queue {queue!r}")
        if contact_id in self._contacts:
            raise RoutingError("duplicate_contact", f"contact {contact_id!r} is already routed")
        reqs: list[tuple[Expr, float | None]] = []
        if requirements:
            reqs.append((_compile(requirements, "requirements"), None))
        attrs = dict(attributes or {})
        for rule in self._rules:
            if not evaluate(rule.when, attrs.get):
                continue
            if rule.require is not None:
                bound = bind(rule.require, attrs)
                if bound is None:
                    continue  # names an attribute the contact lacks: the rule does not apply
                relax = rule.rule.relax_after_s
                reqs.append((bound, None if relax is None else now + relax))
            priority += rule.rule.priority
        self._now = now
        self._seq += 1
        contact = _Contact(
            contact_id=contact_id,
            queue=queue,
            channel=channel,
            arrived=now,
            entered=now,
            seq=self._seq,
            priority=priority,
            requirements=reqs,
        )
        if preferred_agent is not None and preferred_agent in self._agents and preferred_for_s > 0:
            contact.preferred_agent, contact.prefer_until = preferred_agent, now + preferred_for_s
        self._contacts[contact_id] = contact
        out: list[Command] = []
        q = self._queues[queue]
        if q.max_length is not None and self._count(queue) >= q.max_length:
            self._act(contact, q.on_full, "queue_full", now, out, {queue})
        else:
            self._enqueue(contact)
            out.append(AnnounceQueued(contact_id=contact_id, queue=queue))
        self._dispatch(now, out)
        return self._done(out)

    def contact_abandoned(self, contact_id: str, now: float) -> list[Command]:
        """Waiting: removed. Offered: the offer is withdrawn and the agent released.
        An accepted contact cannot be abandoned (it finishes)."""
        contact = self._contact(contact_id)
        if contact.accepted:
            raise RoutingError("already_assigned", f"contact {contact_id!r} is with an agent; finish it")
        self._now = now
        self.stats.contact_abandoned(contact.queue, now - contact.entered, now)
        if contact.agent is None:
            self._unqueue(contact)
            del self._contacts[contact_id]
            return self._done([])
        del self._contacts[contact_id]
        agent = self._agents[contact.agent]
        out: list[Command] = [WithdrawOffer(contact_id=contact_id, agent_id=agent.profile.agent_id, reason="abandoned")]
        self._offers.discard(contact_id)
        agent.offered = None
        self._settle(agent, now, out, forget=True)
        self._dispatch(now, out)
        return self._done(out)

    def offer_accepted(self, contact_id: str, agent_id: str, now: float) -> list[Command]:
        contact, agent = self._offer(contact_id, agent_id)
        self._now = now
        contact.accepted, contact.accepted_at, contact.expires = True, now, None
        self._offers.discard(contact_id)
        agent.offered = None
        agent.handling.append(contact_id)
        agent.missed = 0
        agent.idle_since = now
        self.stats.contact_answered(contact.queue, now - contact.entered, now)
        out: list[Command] = []
        self._settle(agent, now, out, forget=False)
        self._dispatch(now, out)
        return self._done(out)

    def offer_rejected(self, contact_id: str, agent_id: str, now: float) -> list[Command]:
        contact, agent = self._offer(contact_id, agent_id)
        self._now = now
        out: list[Command] = []
        self._decline(contact, agent, now, out, timeout=False)
        self._dispatch(now, out)
        return self._done(out)

    def contact_finished(self, contact_id: str, now: float) -> list[Command]:
        contact = self._contact(contact_id)
        if not contact.accepted or contact.agent is None:
            raise RoutingError("not_assigned", f"contact {contact_id!r} is not with an agent")
        self._now = now
        del self._contacts[contact_id]
        agent = self._agents[contact.agent]
        agent.handling.remove(contact_id)
        agent.idle_since = now
        accepted_at = contact.accepted_at if contact.accepted_at is not None else now
        wrap_s = self._queues[contact.queue].wrap_up_s
        if wrap_s > 0 and agent.offered is None and not agent.handling:
            agent.wrap_until, agent.wrap_of = now + wrap_s, (contact.queue, accepted_at)
            self._wrapping.add(agent.profile.agent_id)
        else:
            self.stats.contact_handled(contact.queue, agent.profile.agent_id, now - accepted_at, now)
        out: list[Command] = []
        self._settle(agent, now, out, forget=True)
        self._dispatch(now, out)
        return self._done(out)

    def tick(self, now: float) -> list[Command]:
        """Time passed: expire offers, end wrap-ups, apply maximum waits, then re-match
        (routing steps, preferred windows and rules may have widened)."""
        self._now = now
        out: list[Command] = []
        expired = sorted(
            (c for c in (self._contacts[cid] for cid in self._offers) if c.expires is not None and c.expires <= now),
            key=lambda c: (c.expires, c.seq),
        )
        for contact in expired:
            agent = self._agents[contact.agent or ""]
            out.append(WithdrawOffer(contact_id=contact.contact_id, agent_id=agent.profile.agent_id, reason="timeout"))
            self._decline(contact, agent, now, out, timeout=True)
        for agent_id in sorted(self._wrapping, key=lambda a: self._agents[a].order):
            agent = self._agents[agent_id]
            if agent.wrap_until is not None and agent.wrap_until <= now:
                self._end_wrap(agent, now)
                self._settle(agent, now, out, forget=True)
        overdue: list[_Contact] = []
        for name, q in self._queues.items():
            if q.max_wait_s is None:
                continue
            for cid in self._queued(name):
                contact = self._contacts[cid]
                if now - contact.entered >= q.max_wait_s:
                    overdue.append(contact)
        for contact in sorted(overdue, key=lambda c: c.key):
            self._unqueue(contact)
            self._act(contact, self._queues[contact.queue].on_timeout, "max_wait", now, out, set())
        self._dispatch(now, out)
        return self._done(out)

    # --- queries --------------------------------------------------------------------

    def agent_state(self, agent_id: str) -> AgentState:
        return self._agent(agent_id).state

    def state_since(self, agent_id: str) -> float:
        return self._agent(agent_id).since

    def agent_reason(self, agent_id: str) -> str | None:
        return self._agent(agent_id).reason

    def waiting(self, queue: str) -> list[str]:
        """Waiting contact ids, in the order they will be offered (as of the last input)."""
        if queue not in self._queues:
            raise RoutingError("unknown_queue", f"no queue {queue!r}")
        return list(self._ordered(self._now, [queue]))

    def contact_of(self, agent_id: str) -> str | None:
        """The contact offered to (RESERVED) or handled by (BUSY) the agent; with several
        chats, the pending offer, else the oldest accepted one."""
        agent = self._agent(agent_id)
        if agent.offered is not None:
            return agent.offered
        return agent.handling[0] if agent.handling else None

    def contacts_of(self, agent_id: str) -> tuple[str, ...]:
        """Every contact the agent holds: accepted ones, oldest first, then the offer."""
        agent = self._agent(agent_id)
        return (*agent.handling, *([agent.offered] if agent.offered else []))

    def agent_for(self, contact_id: str) -> str | None:
        """The agent the contact is offered to or handled by; None while it waits, and
        for contacts routing no longer knows (finished, abandoned, never seen)."""
        contact = self._contacts.get(contact_id)
        return contact.agent if contact else None

    def queue_of(self, contact_id: str) -> str | None:
        contact = self._contacts.get(contact_id)
        return contact.queue if contact else None

    def is_accepted(self, contact_id: str) -> bool:
        contact = self._contacts.get(contact_id)
        return contact is not None and contact.accepted

    def offer_expires_at(self, contact_id: str) -> float | None:
        contact = self._contacts.get(contact_id)
        return contact.expires if contact else None

    def channel_of(self, contact_id: str) -> str | None:
        contact = self._contacts.get(contact_id)
        return contact.channel if contact else None

    def eligible(self, contact_id: str, agent_id: str, now: float) -> int | None:
        """The routing step by which the agent qualifies for the waiting or offered
        contact at `now` (ignoring whether they are free), or None."""
        return self._match(self._contact(contact_id), self._agent(agent_id), now)

    def next_deadline(self) -> float | None:
        """The earliest time at which `tick` has something to do: an offer expiring, a
        wrap-up ending, a maximum wait, a routing step, preferred window or rule
        relaxing. The shell calls `tick` then (or simply every second)."""
        times: list[float] = [c.expires for c in map(self._contacts.__getitem__, self._offers) if c.expires is not None]
        times += [a.wrap_until for a in map(self._agents.__getitem__, self._wrapping) if a.wrap_until is not None]
        for name, q in self._queues.items():
            for cid in self._queued(name):
                c = self._contacts[cid]
                if q.max_wait_s is not None:
                    times.append(c.entered + q.max_wait_s)
                times += [c.entered + s for s, _ in self._compiled[name].steps if c.entered + s > self._now]
                if c.prefer_until > self._now:
                    times.append(c.prefer_until)
                times += [t for _, t in c.requirements if t is not None and t > self._now]
        return min(times) if times else None

    def snapshot(self) -> dict[str, Any]:
        return {
            "queues": {
                name: {
                    "waiting": self._count(name),
                    "longest_wait_since": min((self._contacts[c].arrived for c in self._queued(name)), default=None),
                }
                for name in self._queues
            },
            "agents": {
                agent_id: {
                    "state": a.state.value,
                    "since": a.since,
                    "reason": a.reason,
                    "contact": self.contact_of(agent_id),
                }
                for agent_id, a in self._agents.items()
            },
        }

    def dump(self) -> dict[str, Any]:
        """The whole routing state, JSON-ready (for checks, debugging, and the shape a
        shared store will need)."""
        return {
            "now": self._now,
            "seq": self._seq,
            "last_pick": dict(self._last_pick),
            "agents": {
                agent_id: {
                    "state": a.state.value,
                    "since": a.since,
                    "reason": a.reason,
                    "wants": a.wants.value,
                    "wants_reason": a.wants_reason,
                    "idle_since": a.idle_since,
                    "offered": a.offered,
                    "handling": list(a.handling),
                    "wrap_until": a.wrap_until,
                    "missed": a.missed,
                    "declined": sorted(a.declined),
                }
                for agent_id, a in self._agents.items()
            },
            "contacts": {
                cid: {
                    "queue": c.queue,
                    "channel": c.channel,
                    "arrived": c.arrived,
                    "entered": c.entered,
                    "priority": c.priority,
                    "agent": c.agent,
                    "accepted": c.accepted,
                    "expires": c.expires,
                    "preferred_agent": c.preferred_agent,
                    "prefer_until": c.prefer_until,
                    "declined": sorted(c.declined),
                    "requirements": len(c.requirements),
                }
                for cid, c in self._contacts.items()
            },
            "waiting": {name: {str(p): list(ids) for p, ids in b.items()} for name, b in self._waiting.items()},
        }

    # --- validation -------------------------------------------------------------------

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

    def _check_profile(self, profile: AgentProfile) -> None:
        for skill, level in profile.proficiency.items():
            if not 1 <= level <= 5:
                raise RoutingError("bad_proficiency", f"agent {profile.agent_id!r}: {skill} level {level} not in 1..5")
        for channel, cap in profile.capacity.items():
            if cap < 0:
                raise RoutingError("bad_capacity", f"agent {profile.agent_id!r}: {channel} capacity {cap}")

    def _check_queue(self, q: QueueConfig) -> _CompiledQueue:
        base: list[Expr] = [Name(name=s) for s in sorted(q.required_skills)]
        if q.requirement:
            base.append(_compile(q.requirement, f"queue {q.name!r} requirement"))
        steps = tuple((s.after_s, _compile(s.requirement, f"queue {q.name!r} step {i}")) for i, s in enumerate(q.steps))
        if steps and (steps[0][0] != 0 or any(a[0] > b[0] for a, b in zip(steps, steps[1:]))):
            raise RoutingError("bad_queue", f"queue {q.name!r}: steps must start at 0 and go up")
        for action in (q.on_full, q.on_timeout):
            if action.kind is ActionKind.OVERFLOW and not action.to_queue:
                raise RoutingError("bad_queue", f"queue {q.name!r}: overflow needs to_queue")
        return _CompiledQueue(base=tuple(base), steps=steps)

    # --- agents -----------------------------------------------------------------------

    def _lookup(self, agent: _Agent) -> Any:
        profile = agent.profile
        attrs = profile.attributes

        def lookup(name: str) -> Value:
            return attrs[name] if name in attrs else profile.level(name)

        return lookup

    def _member_of(self, agent: _Agent) -> frozenset[str]:
        lookup = self._lookup(agent)
        return frozenset(n for n, c in self._compiled.items() if all(evaluate(e, lookup) for e in c.base))

    def _restaff(self) -> None:
        for agent in self._agents.values():
            p = agent.profile
            self.stats.agent_configured(p.agent_id, self._member_of(agent), sum(p.capacity.values()))

    def _held_by_channel(self, agent: _Agent) -> dict[str, int]:
        held: dict[str, int] = {}
        for cid in self.contacts_of(agent.profile.agent_id):
            channel = self._contacts[cid].channel
            held[channel] = held.get(channel, 0) + 1
        return held

    def _has_room(self, agent: _Agent, channel: str) -> bool:
        held = self._held_by_channel(agent)
        if held.get(channel, 0) >= agent.profile.capacity.get(channel, 0):
            return False
        if agent.profile.voice_exclusive and held and (channel == "voice" or "voice" in held):
            return False
        return True

    def _refresh(self, agent: _Agent) -> None:
        """Keep `_free` exact: logged in, asking for nothing else, no offer pending, not
        wrapping up, and room on some channel."""
        agent_id = agent.profile.agent_id
        free = (
            agent.state in (_S.AVAILABLE, _S.BUSY)
            and agent.wants is _S.AVAILABLE
            and agent.offered is None
            and agent.wrap_until is None
            and any(self._has_room(agent, ch) for ch in agent.profile.capacity)
        )
        if free:
            self._free.add(agent_id)
        else:
            self._free.discard(agent_id)

    def _settle(self, agent: _Agent, now: float, out: list[Command], *, forget: bool) -> None:
        """Bring the agent's state in line with what they hold and what they asked for."""
        if agent.offered is not None:
            to, reason = _S.RESERVED, None
        elif agent.handling:
            to, reason = _S.BUSY, None
        elif agent.wrap_until is not None:
            to, reason = _S.WRAP_UP, None
        else:
            to, reason = agent.wants, agent.wants_reason
        if to is not agent.state or (to is _S.AWAY and reason != agent.reason):
            if to not in AGENT_TRANSITIONS[agent.state]:
                # Inputs are validated first, so reaching this is a bug in the router.
                raise RoutingError("illegal_transition", f"agent {agent.state.value} -> {to.value}")
            previous = agent.state
            agent.state, agent.since, agent.reason = to, now, reason
            if to is _S.AVAILABLE:
                agent.idle_since = now
                if forget:
                    for cid in agent.declined:
                        contact = self._contacts.get(cid)
                        if contact is not None:
                            contact.declined.discard(agent.profile.agent_id)
                    agent.declined.clear()
            self.stats.agent_state_changed(agent.profile.agent_id, to, reason, now)
            out.append(AnnounceAgentState(agent_id=agent.profile.agent_id, state=to, previous=previous, reason=reason))
        self._refresh(agent)
        self.stats.agent_load_changed(
            agent.profile.agent_id, len(agent.handling) + (agent.offered is not None), missed=agent.missed
        )

    def _end_wrap(self, agent: _Agent, now: float) -> None:
        if agent.wrap_of is not None:
            queue, accepted_at = agent.wrap_of
            self.stats.contact_handled(queue, agent.profile.agent_id, now - accepted_at, now)
        agent.wrap_until = agent.wrap_of = None
        self._wrapping.discard(agent.profile.agent_id)

    def _go_offline(self, agent: _Agent, now: float, reason: str | None, out: list[Command]) -> None:
        agent_id = agent.profile.agent_id
        if agent.offered is not None:
            contact = self._contacts[agent.offered]
            out.append(WithdrawOffer(contact_id=contact.contact_id, agent_id=agent_id, reason="agent_logged_out"))
            self._offers.discard(contact.contact_id)
            contact.agent = contact.expires = None
            self._enqueue(contact)
        for cid in agent.handling:
            del self._contacts[cid]  # the call service owns ending it
        agent.offered, agent.handling = None, []
        if agent.wrap_until is not None:
            self._end_wrap(agent, now)
        agent.wants, agent.wants_reason = _S.OFFLINE, reason
        self._settle(agent, now, out, forget=False)

    def _decline(self, contact: _Contact, agent: _Agent, now: float, out: list[Command], *, timeout: bool) -> None:
        """A reject or an offer timeout: the contact goes back to its place, the agent
        is released (or put AWAY 'missed')."""
        agent_id = agent.profile.agent_id
        contact.declined.add(agent_id)
        agent.declined.add(contact.contact_id)
        if contact.preferred_agent == agent_id:
            contact.prefer_until = min(contact.prefer_until, now)
        contact.agent = contact.expires = None
        self._offers.discard(contact.contact_id)
        self._enqueue(contact)
        agent.offered = None
        agent.missed += 1
        if self.max_missed_offers is not None and agent.missed >= self.max_missed_offers:
            agent.missed = 0
            if agent.wants is _S.AVAILABLE:
                agent.wants, agent.wants_reason = _S.AWAY, "missed"
        self._settle(agent, now, out, forget=False)

    # --- queues -------------------------------------------------------------------------

    def _queued(self, queue: str) -> Iterator[str]:
        for ids in self._waiting[queue].values():
            yield from ids

    def _count(self, queue: str) -> int:
        return sum(len(ids) for ids in self._waiting[queue].values())

    def _enqueue(self, contact: _Contact) -> None:
        bucket = self._waiting[contact.queue].setdefault(contact.priority, [])
        at = bisect.bisect(bucket, contact.key, key=lambda cid: self._contacts[cid].key)
        bucket.insert(at, contact.contact_id)
        self.stats.contact_queued(contact.queue, contact.contact_id, contact.entered)

    def _unqueue(self, contact: _Contact) -> None:
        buckets = self._waiting[contact.queue]
        bucket = buckets[contact.priority]
        at = bisect.bisect_left(bucket, contact.key, key=lambda cid: self._contacts[cid].key)
        if at >= len(bucket) or bucket[at] != contact.contact_id:
            raise RoutingError("corrupt_queue", f"contact {contact.contact_id!r} is not where it should be")
        del bucket[at]
        if not bucket:
            del buckets[contact.priority]
        self.stats.contact_dequeued(contact.queue, contact.contact_id)

    def _act(
        self, contact: _Contact, action: QueueAction, reason: str, now: float, out: list[Command], visited: set[str]
    ) -> None:
        """Apply a queue's limit action to a contact that is in no queue's list."""
        cid, queue = contact.contact_id, contact.queue
        target = action.to_queue
        if action.kind is ActionKind.OVERFLOW and target in self._queues and target not in visited:
            out.append(OverflowContact(contact_id=cid, from_queue=queue, to_queue=target, reason=reason))
            visited.add(target)
            contact.queue, contact.entered = target, now
            q = self._queues[target]
            if q.max_length is not None and self._count(target) >= q.max_length:
                self._act(contact, q.on_full, "queue_full", now, out, visited)
            else:
                self._enqueue(contact)
                out.append(AnnounceQueued(contact_id=cid, queue=target))
            return
        del self._contacts[cid]
        if action.kind is ActionKind.CALLBACK:
            out.append(OfferCallback(contact_id=cid, queue=queue, reason=reason))
        elif action.kind is ActionKind.DISCONNECT:
            out.append(DisconnectContact(contact_id=cid, queue=queue, reason=reason, message=action.message))
        else:  # REJECT, or an overflow with nowhere (new) to go
            out.append(RejectContact(contact_id=cid, queue=queue, reason=reason))

    def _effective_priority(self, contact: _Contact, now: float) -> int:
        q = self._queues[contact.queue]
        aging = 0
        if q.aging_step_s:
            aging = max(0, math.floor((now - contact.arrived) / q.aging_step_s))
        return q.priority + contact.priority + aging

    def _ordered(self, now: float, queues: Iterable[str] | None = None) -> Iterator[str]:
        """Waiting contacts by (effective priority desc, arrival asc), merging the
        per-(queue, priority) lists: within one list the head always comes first, since
        it is the oldest and so the most aged. The lists must not change meanwhile."""
        heap: list[tuple[int, float, int, str, int, int]] = []
        for name in self._queues if queues is None else queues:
            for prio, ids in self._waiting[name].items():
                if ids:
                    head = self._contacts[ids[0]]
                    heap.append((-self._effective_priority(head, now), head.arrived, head.seq, name, prio, 0))
        heapq.heapify(heap)
        while heap:
            _, _, _, name, prio, i = heapq.heappop(heap)
            ids = self._waiting[name][prio]
            yield ids[i]
            if i + 1 < len(ids):
                nxt = self._contacts[ids[i + 1]]
                heapq.heappush(heap, (-self._effective_priority(nxt, now), nxt.arrived, nxt.seq, name, prio, i + 1))

    # --- matching -----------------------------------------------------------------------

    def _match(self, contact: _Contact, agent: _Agent, now: float) -> int | None:
        agent_id = agent.profile.agent_id
        if agent_id in contact.declined:
            return None
        if contact.preferred_agent is not None and now < contact.prefer_until and agent_id != contact.preferred_agent:
            return None
        lookup = self._lookup(agent)
        compiled = self._compiled[contact.queue]
        if not all(evaluate(e, lookup) for e in compiled.base):
            return None
        for expr, relaxed_at in contact.requirements:
            if (relaxed_at is None or now < relaxed_at) and not evaluate(expr, lookup):
                return None
        if not compiled.steps:
            return 0
        waited = now - contact.entered
        for j, (after_s, expr) in enumerate(compiled.steps):
            if after_s > waited:
                break
            if evaluate(expr, lookup):
                return j
        return None

    def _skills_named(self, contact: _Contact, step: int, now: float) -> set[str]:
        compiled = self._compiled[contact.queue]
        exprs = [*compiled.base, *(e for e, t in contact.requirements if t is None or now < t)]
        if compiled.steps:
            exprs.append(compiled.steps[step][1])
        return {n for e in exprs for n in names(e)}

    def _rank(self, contact: _Contact, agent: _Agent, step: int, now: float) -> tuple[float, ...]:
        """Lower is better, by the contact's queue's strategy; unique per agent."""
        strategy = self._queues[contact.queue].strategy
        p = agent.profile
        load = len(agent.handling) + (agent.offered is not None)
        idle = (float(load > 0), agent.idle_since, float(agent.order))
        if strategy is Strategy.BEST_PROFICIENCY:
            score = sum(p.level(s) for s in self._skills_named(contact, step, now) if s not in p.attributes)
            return (-float(score), *idle)
        if strategy is Strategy.LEAST_OCCUPIED:
            total = sum(p.capacity.values()) or 1
            return (load / total, agent.idle_since, float(agent.order))
        if strategy is Strategy.ROUND_ROBIN:
            last = self._last_pick.get(contact.queue, -1)
            return (float((agent.order - last - 1) % len(self._agents)),)
        return idle

    def _dispatch(self, now: float, out: list[Command]) -> None:
        """Offer waiting contacts, best first, each to the best free eligible agent.

        One pass is enough: an offer only takes room away, so a contact that found no
        agent earlier in the pass cannot find one later in it."""
        if not self._free:
            return
        candidates = set(self._free)
        offered: list[_Contact] = []
        for cid in self._ordered(now):
            contact = self._contacts[cid]
            best: tuple[tuple[float, ...], _Agent, int] | None = None
            for agent_id in candidates:
                agent = self._agents[agent_id]
                if not self._has_room(agent, contact.channel):
                    continue
                step = self._match(contact, agent, now)
                if step is None:
                    continue
                rank = self._rank(contact, agent, step, now)
                if best is None or rank < best[0]:
                    best = (rank, agent, step)
            if best is None:
                continue
            _, agent, step = best
            self._make_offer(contact, agent, step, now, out)
            offered.append(contact)
            candidates.discard(agent.profile.agent_id)  # one pending offer per agent
            if not candidates:
                break
        for contact in offered:
            self._unqueue(contact)

    def _make_offer(self, contact: _Contact, agent: _Agent, step: int, now: float, out: list[Command]) -> None:
        agent_id = agent.profile.agent_id
        contact.agent = agent_id
        contact.expires = now + self._queues[contact.queue].reservation_timeout_s
        self._offers.add(contact.contact_id)
        agent.offered = contact.contact_id
        self._last_pick[contact.queue] = agent.order
        self._settle(agent, now, out, forget=False)
        p = agent.profile
        matched = sorted(s for s in self._skills_named(contact, step, now) if s not in p.attributes and p.level(s) > 0)
        out.append(
            OfferContact(
                contact_id=contact.contact_id,
                agent_id=agent_id,
                queue=contact.queue,
                matched_skills=tuple(matched),
                step=step,
                channel=contact.channel,
            )
        )

    def _done(self, out: list[Command]) -> list[Command]:
        if self.publish_stats:
            queues, agents = self.stats.take_changes()
            if queues or agents:
                out.append(StatsChanged(queues=queues, agents=agents))
        else:
            self.stats.take_changes()
        return out
