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

How decisions stay fast (the policy above is what they compute; this is only how):
after every input no waiting contact is eligible for any free agent, so the next input
only has to look at what changed since. Contacts that arrived, were put back or whose
eligibility widened with time (see `timers`) are matched against the free agents of
their queue, which `freeagents` keeps per queue and channel in the order of the queue's
strategy: the walk stops at the first eligible agent (for best proficiency, once no
agent further down can catch up with what the contact's own requirements add). Agents
that became free (or changed) are matched against the waiting contacts of the queues
they qualify for, best first, and only as far as needed. Each agent's standing per
queue (base requirement, first step matched, proficiency score) is kept, not
re-evaluated per contact, and a contact's own requirements are compiled once per text
and their verdict remembered per agent profile (`requirements`). The order and the
choices are exactly those of one full pass over every waiting contact that ranks every
free agent (tests/unit/test_routing_oracle.py holds the router to that).

Determinism: the same inputs with the same `now`, in the same order, give the same
state and commands, in any process (no clock, no randomness, and no decision depends
on the iteration order of a set): what lets `redis_store` keep replicas in step.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from routing.agents import AgentRecord, agent_lookup, has_room, held_by_channel
from routing.expressions import (
    Expr,
    ParseError,
    Predicate,
    Value,
    bind,
    compile_predicate,
)
from routing.freeagents import FreeAgents, standing_key
from routing.matching import (
    CompiledQueue,
    compile_expression,
    compile_queue,
    contact_names,
    match,
    rank,
    skills_named,
    standing,
    step_score,
)
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
from routing.queueing import (
    ContactRecord,
    Head,
    ListKey,
    WaitingLists,
    effective_priority,
)
from routing.requirements import Requirement, Requirements
from routing.stats import RoutingStats
from routing.timers import Timers

_S = AgentState
# A walk that has found nobody eligible after this many agents narrows by requirements.
_NARROW_AFTER = 16
# Changed agents are ranked directly, not found by walking the queue's free agents,
# while there are fewer than 1/_RANK_DIRECTLY of them.
_RANK_DIRECTLY = 8


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    rule: Rule
    when: Predicate
    require: Expr | None


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
        self._compiled: dict[str, CompiledQueue] = {}
        self._agents: dict[str, AgentRecord] = {}
        self._contacts: dict[str, ContactRecord] = {}
        self._waiting = WaitingLists(self._contacts)
        self._timers = Timers(self._contacts, self._agents)
        self._free: set[str] = set()  # agents an offer could go to now
        self._index = FreeAgents()  # per queue and channel: the free agents, best first
        self._by_order: list[AgentRecord] = []
        self._by_profile: dict[int, AgentRecord] = {}  # by AgentRecord.profile_key
        self._reqs = Requirements()
        self._profiles = 0  # AgentRecord.profile_key source
        # Per skill, the highest level any agent has ever had in it: a bound on what a
        # contact's own requirements can add to a best-proficiency score.
        self._max_level: dict[str, int] = {}
        # What changed since the last match: only these can make a new pair.
        self._dirty_agents: set[str] = set()
        self._dirty_contacts: set[str] = set()
        self._full = False  # re-match every waiting contact (a queue changed, time went back)
        self._last_pick: dict[str, int] = {}  # round robin: queue -> order of its last agent
        self._rules: list[_CompiledRule] = []
        self._seq = 0
        self._stamp = 0  # ContactRecord.version source
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
        agent = AgentRecord(profile=profile, order=len(self._agents))
        self._set_profile(agent, profile)
        self._agents[profile.agent_id] = agent
        self._by_order.append(agent)
        self._derive(agent, self._queues)
        self.stats.agent_configured(profile.agent_id, frozenset(agent.member_of), sum(profile.capacity.values()))

    def add_queue(self, q: QueueConfig) -> None:
        if q.name in self._queues:
            raise RoutingError("duplicate_queue", f"queue {q.name!r} already exists")
        compiled = compile_queue(q)
        self._queues[q.name] = q
        self._compiled[q.name] = compiled
        self._waiting.add_queue(q.name)
        self.stats.queue_configured(q.name, q.service_level_s)
        self._restaff(q.name)

    def update_agent(self, profile: AgentProfile, now: float) -> list[Command]:
        """New skills, attributes or capacity, in effect at once. Capacity may not drop
        below what the agent holds now (`capacity_in_use`)."""
        agent = self._agent(profile.agent_id)
        self._check_profile(profile)
        held = held_by_channel(agent, self._contacts)
        for channel, count in held.items():
            if profile.capacity.get(channel, 0) < count:
                raise RoutingError("capacity_in_use", f"agent {profile.agent_id!r} holds {count} {channel} contacts")
        self._set_now(now)
        self._set_profile(agent, profile)
        self._derive(agent, self._queues)
        self.stats.agent_configured(profile.agent_id, frozenset(agent.member_of), sum(profile.capacity.values()))
        self._refresh(agent)
        out: list[Command] = []
        self._dispatch(now, out)
        return self._done(out)

    def update_queue(self, q: QueueConfig, now: float) -> list[Command]:
        """A new configuration for an existing queue; waiting contacts stay and are
        re-matched under it (limits apply to later arrivals and ticks)."""
        if q.name not in self._queues:
            raise RoutingError("unknown_queue", f"no queue {q.name!r}")
        compiled = compile_queue(q)
        self._set_now(now)
        self._queues[q.name] = q
        self._compiled[q.name] = compiled
        self._waiting.forget_heads(q.name)  # its priority or aging may have changed
        self.stats.queue_configured(q.name, q.service_level_s)
        self._restaff(q.name)
        self._rebuild_timers()  # its steps and maximum wait may have changed
        self._full = True
        out: list[Command] = []
        self._dispatch(now, out)
        return self._done(out)

    def set_rules(self, rules: Iterable[Rule]) -> None:
        """Replace the arrival rules; they apply to contacts arriving from now on."""
        compiled = []
        for rule in rules:
            when = compile_expression(rule.when, f"rule {rule.name!r} when")
            require = compile_expression(rule.require, f"rule {rule.name!r} require") if rule.require else None
            compiled.append(_CompiledRule(rule=rule, when=compile_predicate(when), require=require))
        self._rules = compiled

    # --- inputs ---------------------------------------------------------------------

    def agent_logged_in(self, agent_id: str, now: float) -> list[Command]:
        agent = self._agent(agent_id)
        if agent.state is not _S.OFFLINE:
            raise RoutingError("already_logged_in", f"agent {agent_id!r} is {agent.state.value}")
        self._set_now(now)
        out: list[Command] = []
        agent.wants, agent.wants_reason, agent.missed = _S.AWAY, "logged_in", 0
        self._settle(agent, now, out, forget=False)
        return self._done(out)

    def agent_logged_out(self, agent_id: str, now: float) -> list[Command]:
        """Any state -> OFFLINE; logging out an OFFLINE agent does nothing."""
        agent = self._agent(agent_id)
        if agent.state is _S.OFFLINE:
            return []
        self._set_now(now)
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
        self._set_now(now)
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
        self._set_now(now)
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
        reqs: list[tuple[Requirement, float | None]] = []
        sig: list[str] = []  # see ContactRecord.sig
        if requirements:
            try:
                req = self._reqs.of(self._reqs.parse(requirements))
            except ParseError as err:
                raise RoutingError("bad_expression", f"requirements: {err}") from None
            reqs.append((req, None))
            sig.append(req.text)
        attrs = dict(attributes or {})
        for rule in self._rules:
            if not rule.when(attrs.get):
                continue
            if rule.require is not None:
                bound = bind(rule.require, attrs)
                if bound is None:
                    continue  # names an attribute the contact lacks: the rule does not apply
                relax = rule.rule.relax_after_s
                req = self._reqs.of(bound)
                reqs.append((req, None if relax is None else now + relax))
                sig.append(req.text + ("" if relax is None else f" @{relax!r}"))
            priority += rule.rule.priority
        self._set_now(now)
        self._seq += 1
        contact = ContactRecord(
            contact_id=contact_id,
            queue=queue,
            channel=channel,
            arrived=now,
            entered=now,
            seq=self._seq,
            priority=priority,
            requirements=reqs,
            sig=tuple(sorted(sig)),
        )
        if preferred_agent is not None and preferred_agent in self._agents and preferred_for_s > 0:
            contact.preferred_agent, contact.prefer_until = preferred_agent, now + preferred_for_s
        self._contacts[contact_id] = contact
        out: list[Command] = []
        q = self._queues[queue]
        if q.max_length is not None and self._waiting.count(queue) >= q.max_length:
            self._act(contact, q.on_full, "queue_full", now, out, {queue})
        else:
            self._enqueue(contact)
            out.append(AnnounceQueued(contact_id=contact_id, queue=queue))
        self._dispatch(now, out)
        return self._done(out)

    def outbound_started(self, contact_id: str, agent_id: str, queue: str, now: float) -> list[Command]:
        """The agent places an outbound call: a voice contact accepted by them at once,
        so they are BUSY (no offers) until it finishes, then wrap up as after any
        contact of `queue`. Refused while an offer is pending or they hold a contact."""
        if queue not in self._queues:
            raise RoutingError("unknown_queue", f"no queue {queue!r}")
        if contact_id in self._contacts:
            raise RoutingError("duplicate_contact", f"contact {contact_id!r} is already routed")
        agent = self._agent(agent_id)
        if agent.state is _S.OFFLINE:
            raise RoutingError("not_logged_in", f"agent {agent_id!r} is offline")
        if agent.offered is not None or agent.handling:
            raise RoutingError("agent_busy", f"agent {agent_id!r} is offered or holds a contact")
        self._set_now(now)
        self._seq += 1
        contact = ContactRecord(
            contact_id=contact_id, queue=queue, channel="voice", arrived=now, entered=now, seq=self._seq,
            priority=0, requirements=[], agent=agent_id, accepted=True, accepted_at=now,
        )
        self._contacts[contact_id] = contact
        if agent.wrap_until is not None:
            self._end_wrap(agent, now)
        agent.handling.append(contact_id)
        agent.idle_since = now
        out: list[Command] = []
        self._settle(agent, now, out, forget=False)
        self._dispatch(now, out)
        return self._done(out)

    def contact_abandoned(self, contact_id: str, now: float) -> list[Command]:
        """Waiting: removed. Offered: the offer is withdrawn and the agent released.
        An accepted contact cannot be abandoned (it finishes)."""
        contact = self._contact(contact_id)
        if contact.accepted:
            raise RoutingError("already_assigned", f"contact {contact_id!r} is with an agent; finish it")
        self._set_now(now)
        self.stats.contact_abandoned(contact.queue, now - contact.entered, now)
        if contact.agent is None:
            self._unqueue(contact)
            del self._contacts[contact_id]
            return self._done([])
        del self._contacts[contact_id]
        agent = self._agents[contact.agent]
        out: list[Command] = [WithdrawOffer(contact_id=contact_id, agent_id=agent.profile.agent_id, reason="abandoned")]
        agent.offered = None
        self._settle(agent, now, out, forget=True)
        self._dispatch(now, out)
        return self._done(out)

    def offer_accepted(self, contact_id: str, agent_id: str, now: float) -> list[Command]:
        contact, agent = self._offer(contact_id, agent_id)
        self._set_now(now)
        contact.accepted, contact.accepted_at, contact.expires = True, now, None
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
        self._set_now(now)
        out: list[Command] = []
        self._decline(contact, agent, now, out, timeout=False)
        self._dispatch(now, out)
        return self._done(out)

    def contact_finished(self, contact_id: str, now: float) -> list[Command]:
        contact = self._contact(contact_id)
        if not contact.accepted or contact.agent is None:
            raise RoutingError("not_assigned", f"contact {contact_id!r} is not with an agent")
        self._set_now(now)
        del self._contacts[contact_id]
        agent = self._agents[contact.agent]
        agent.handling.remove(contact_id)
        agent.idle_since = now
        accepted_at = contact.accepted_at if contact.accepted_at is not None else now
        wrap_s = self._queues[contact.queue].wrap_up_s
        if wrap_s > 0 and agent.offered is None and not agent.handling:
            agent.wrap_until, agent.wrap_of = now + wrap_s, (contact.queue, accepted_at)
            self._timers.wrap_started(agent)
        else:
            self.stats.contact_handled(contact.queue, agent.profile.agent_id, now - accepted_at, now)
        out: list[Command] = []
        self._settle(agent, now, out, forget=True)
        self._dispatch(now, out)
        return self._done(out)

    def tick(self, now: float) -> list[Command]:
        """Time passed: expire offers, end wrap-ups, apply maximum waits, then re-match
        (routing steps, preferred windows and rules may have widened)."""
        self._set_now(now)
        out: list[Command] = []
        for contact in self._timers.expired_offers(now):
            agent = self._agents[contact.agent or ""]
            out.append(WithdrawOffer(contact_id=contact.contact_id, agent_id=agent.profile.agent_id, reason="timeout"))
            self._decline(contact, agent, now, out, timeout=True)
        for agent in self._timers.ended_wraps(now):
            self._end_wrap(agent, now)
            self._settle(agent, now, out, forget=True)
        for contact in sorted(self._timers.overdue(now, self._queues), key=lambda c: c.key):
            self._unqueue(contact)
            self._act(contact, self._queues[contact.queue].on_timeout, "max_wait", now, out, set())
        self._dispatch(now, out)
        return self._done(out)

    # --- queries --------------------------------------------------------------------

    def has_agent(self, agent_id: str) -> bool:
        return agent_id in self._agents

    def has_queue(self, name: str) -> bool:
        return name in self._queues

    def profile(self, agent_id: str) -> AgentProfile:
        return self._agent(agent_id).profile

    def queue(self, name: str) -> QueueConfig:
        if name not in self._queues:
            raise RoutingError("unknown_queue", f"no queue {name!r}")
        return self._queues[name]

    def queues(self) -> list[str]:
        return list(self._queues)

    def agents(self) -> list[str]:
        return list(self._agents)

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
        return list(self._waiting.ordered(self._queues, self._now, [queue]))

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
        contact = self._contact(contact_id)
        return match(self._compiled[contact.queue], contact, self._agent(agent_id), now)

    def next_deadline(self) -> float | None:
        """The earliest time at which `tick` has something to do: an offer expiring, a
        wrap-up ending, a maximum wait, a routing step, preferred window or rule
        relaxing. The shell calls `tick` then (or simply every second)."""
        return self._timers.next_deadline(self._now)

    def snapshot(self) -> dict[str, Any]:
        return {
            "queues": {
                name: {
                    "waiting": self._waiting.count(name),
                    "longest_wait_since": min(
                        (self._contacts[c].arrived for c in self._waiting.queued(name)), default=None
                    ),
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
        shared store will need). Indexes and timers are derived, so not in it."""
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
            "waiting": {
                name: {str(p): ids for p, ids in self._waiting.by_priority(name).items()} for name in self._queues
            },
        }

    # --- validation -------------------------------------------------------------------

    def _agent(self, agent_id: str) -> AgentRecord:
        agent = self._agents.get(agent_id)
        if agent is None:
            raise RoutingError("unknown_agent", f"no agent {agent_id!r}")
        return agent

    def _contact(self, contact_id: str) -> ContactRecord:
        contact = self._contacts.get(contact_id)
        if contact is None:
            raise RoutingError("unknown_contact", f"no contact {contact_id!r}")
        return contact

    def _offer(self, contact_id: str, agent_id: str) -> tuple[ContactRecord, AgentRecord]:
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

    # --- time and indexes ---------------------------------------------------------------

    def _set_now(self, now: float) -> None:
        if now < self._now:
            # Time went back (the shell's clock is monotonic, so only a caller's test
            # does this): eligibility changes already consumed may come due again.
            self._rebuild_timers()
            self._full = True
        self._now = now

    def _rebuild_timers(self) -> None:
        self._timers.clear_waiting()
        for name in self._queues:
            for cid in self._waiting.queued(name):
                self._record_waiting(self._contacts[cid])

    def _record_waiting(self, contact: ContactRecord) -> None:
        q = self._queues[contact.queue]
        self._timers.contact_waiting(contact, self._compiled[contact.queue].step_times, q.max_wait_s)

    def _set_profile(self, agent: AgentRecord, profile: AgentProfile) -> None:
        self._profiles += 1
        self._by_profile.pop(agent.profile_key, None)
        agent.profile, agent.profile_key, agent.lookup = profile, self._profiles, agent_lookup(profile)
        self._by_profile[agent.profile_key] = agent
        levels = self._max_level
        for skill in (*profile.skills, *profile.proficiency):
            if skill not in profile.attributes and profile.level(skill) > levels.get(skill, 0):
                levels[skill] = profile.level(skill)

    def _derive(self, agent: AgentRecord, queues: Iterable[str]) -> None:
        """Recompute the agent's standing in `queues` (membership, first step, score)."""
        for name in queues:
            compiled = self._compiled[name]
            member, step = standing(compiled, agent.lookup)
            if member:
                agent.member_of.add(name)
            else:
                agent.member_of.discard(name)
            if step is None:
                agent.first_step.pop(name, None)
                agent.score.pop(name, None)
            else:
                agent.first_step[name] = step
                if self._queues[name].strategy is Strategy.BEST_PROFICIENCY:
                    agent.score[name] = step_score(compiled, step, agent.profile)
                else:
                    agent.score.pop(name, None)

    def _restaff(self, queue: str) -> None:
        # The queue's strategy may have changed, and with it the shape of every key in
        # its lists: rebuild them rather than mix old and new keys.
        self._index.drop_queue(queue)
        for agent in self._agents.values():
            agent.listed.pop(queue, None)
            self._derive(agent, (queue,))
            p = agent.profile
            self.stats.agent_configured(p.agent_id, frozenset(agent.member_of), sum(p.capacity.values()))
            self._refresh(agent)

    def _refresh(self, agent: AgentRecord) -> None:
        """Keep `_free` and the free-agent index exact: logged in, asking for nothing
        else, no offer pending, not wrapping up, and room on some channel; listed in
        every queue they have a step in, under the channels they have room on, by their
        current rank key. A free agent is marked for matching, since any call here may
        have given them room or forgotten declines."""
        agent_id = agent.profile.agent_id
        channels: tuple[str, ...] = ()
        if (
            agent.state in (_S.AVAILABLE, _S.BUSY)
            and agent.wants is _S.AVAILABLE
            and agent.offered is None
            and agent.wrap_until is None
        ):
            channels = tuple(ch for ch in agent.profile.capacity if has_room(agent, ch, self._contacts))
        listed = agent.listed
        index = self._index
        if channels:
            queues = self._queues
            pk = agent.profile_key
            wanted = {
                name: (standing_key(queues[name].strategy, agent, agent.score.get(name, 0)), channels, pk)
                for name in agent.first_step
            }
        else:
            wanted = {}
        if wanted != listed:
            for name, entry in listed.items():
                if wanted.get(name) != entry:
                    key, chans, old_pk = entry
                    for ch in chans:
                        index.remove(name, ch, key, old_pk)
            for name, entry in wanted.items():
                if listed.get(name) != entry:
                    key, chans, new_pk = entry
                    for ch in chans:
                        index.add(name, ch, key, new_pk)
            agent.listed = wanted
        if channels:
            self._free.add(agent_id)
            self._dirty_agents.add(agent_id)
        else:
            self._free.discard(agent_id)

    # --- agents -----------------------------------------------------------------------

    def _settle(self, agent: AgentRecord, now: float, out: list[Command], *, forget: bool) -> None:
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
        self.stats.agent_load_changed(agent.profile.agent_id, agent.load, missed=agent.missed)

    def _end_wrap(self, agent: AgentRecord, now: float) -> None:
        if agent.wrap_of is not None:
            queue, accepted_at = agent.wrap_of
            self.stats.contact_handled(queue, agent.profile.agent_id, now - accepted_at, now)
        agent.wrap_until = agent.wrap_of = None

    def _go_offline(self, agent: AgentRecord, now: float, reason: str | None, out: list[Command]) -> None:
        agent_id = agent.profile.agent_id
        if agent.offered is not None:
            contact = self._contacts[agent.offered]
            out.append(WithdrawOffer(contact_id=contact.contact_id, agent_id=agent_id, reason="agent_logged_out"))
            contact.agent = contact.expires = None
            self._enqueue(contact)
        for cid in agent.handling:
            del self._contacts[cid]  # the call service owns ending it
        agent.offered, agent.handling = None, []
        if agent.wrap_until is not None:
            self._end_wrap(agent, now)
        agent.wants, agent.wants_reason = _S.OFFLINE, reason
        self._settle(agent, now, out, forget=False)

    def _decline(
        self, contact: ContactRecord, agent: AgentRecord, now: float, out: list[Command], *, timeout: bool
    ) -> None:
        """A reject or an offer timeout: the contact goes back to its place, the agent
        is released (or put AWAY 'missed')."""
        agent_id = agent.profile.agent_id
        contact.declined.add(agent_id)
        agent.declined.add(contact.contact_id)
        if contact.preferred_agent == agent_id:
            contact.prefer_until = min(contact.prefer_until, now)
        contact.agent = contact.expires = None
        self._enqueue(contact)
        agent.offered = None
        agent.missed += 1
        if self.max_missed_offers is not None and agent.missed >= self.max_missed_offers:
            agent.missed = 0
            if agent.wants is _S.AVAILABLE:
                agent.wants, agent.wants_reason = _S.AWAY, "missed"
        self._settle(agent, now, out, forget=False)

    # --- queues -------------------------------------------------------------------------

    def _enqueue(self, contact: ContactRecord) -> None:
        self._stamp += 1
        contact.version = self._stamp
        self._waiting.add(contact)
        self._record_waiting(contact)
        self._dirty_contacts.add(contact.contact_id)
        self.stats.contact_queued(contact.queue, contact.contact_id, contact.entered)

    def _unqueue(self, contact: ContactRecord) -> None:
        if not self._waiting.remove(contact):
            raise RoutingError("corrupt_queue", f"contact {contact.contact_id!r} is not where it should be")
        self.stats.contact_dequeued(contact.queue, contact.contact_id)

    def _act(
        self,
        contact: ContactRecord,
        action: QueueAction,
        reason: str,
        now: float,
        out: list[Command],
        visited: set[str],
    ) -> None:
        """Apply a queue's limit action to a contact that is in no queue's list."""
        cid, queue = contact.contact_id, contact.queue
        target = action.to_queue
        if action.kind is ActionKind.OVERFLOW and target in self._queues and target not in visited:
            out.append(OverflowContact(contact_id=cid, from_queue=queue, to_queue=target, reason=reason))
            visited.add(target)
            contact.queue, contact.entered = target, now
            q = self._queues[target]
            if q.max_length is not None and self._waiting.count(target) >= q.max_length:
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

    # --- matching -----------------------------------------------------------------------

    def _dispatch(self, now: float, out: list[Command]) -> None:
        """Offer waiting contacts, best first, each to the best free eligible agent.

        One pass is enough: an offer only takes room away, so a contact that found no
        agent earlier in the pass cannot find one later in it. The pass only visits
        what can pair up: changed contacts against every free agent of their queue,
        and, in the queues where a changed free agent stands, the waiting contacts
        against the changed agents; every other pair was ineligible at the last pass
        and eligibility only widens with time through the timers' events. It ends as
        soon as neither a changed contact nor a changed free agent is left."""
        widened = self._timers.widened(now)
        full, self._full = self._full, False
        dirty_contacts, self._dirty_contacts = self._dirty_contacts | widened, set()
        dirty_agents, self._dirty_agents = self._dirty_agents, set()
        if not self._free:
            return
        contacts, agents, queues = self._contacts, self._agents, self._queues
        lists = self._waiting.lists
        # queue -> changed free agents standing in it, not yet offered anything
        dirty_in: dict[str, set[str]] = {}
        dirty_free = {a for a in dirty_agents if a in self._free}
        for agent_id in sorted(dirty_free):
            for name in agents[agent_id].first_step:
                dirty_in.setdefault(name, set()).add(agent_id)
        # Heap entries: (-effective priority, arrival, seq, queue, list key, index, contact,
        # head): index >= 0 walks that waiting list, -1 is one changed contact alone; head
        # >= 0 is the entry's place in its queue's `heads`, whose next head then joins.
        heap: list[tuple[int, float, int, str, ListKey, int, str, int]] = []
        heads: dict[str, list[Head]] = {}
        if full:
            for name, q in queues.items():
                for key, ids in lists[name].items():
                    head = contacts[ids[0]]
                    heap.append((-effective_priority(q, head, now), head.arrived, head.seq, name, key, 0, "", -1))
        else:
            for name in dirty_in:
                heads[name] = self._waiting.heads(queues[name], now)
                if heads[name]:
                    eff, arrived, seq, key = heads[name][0]
                    heap.append((eff, arrived, seq, name, key, 0, "", 0))
        changed_left = 0  # changed contacts' entries still in the heap
        if not full:
            for cid in dirty_contacts:
                c = contacts.get(cid)
                if c is not None and c.agent is None:
                    q = queues[c.queue]
                    key = (c.priority, c.sig)
                    heap.append((-effective_priority(q, c, now), c.arrived, c.seq, c.queue, key, -1, cid, -1))
                    changed_left += 1
        heapq.heapify(heap)
        offered: list[ContactRecord] = []
        while heap:
            if not full and not changed_left and not dirty_free:
                break  # nothing changed is left to pair up
            _, _, _, name, key, i, cid, j = heapq.heappop(heap)
            if i < 0:
                changed = True
                changed_left -= 1
            else:
                if j >= 0 and j + 1 < len(heads[name]):
                    eff, arrived, seq, next_key = heads[name][j + 1]
                    heapq.heappush(heap, (eff, arrived, seq, name, next_key, 0, "", j + 1))
                ids = lists[name][key]
                cid = ids[i]
                if i == 0 and not full and key[1] and not self._any_meets(contacts[cid], dirty_in[name], now):
                    continue  # see _any_meets; checked only for the lists the pass reaches
                if i + 1 < len(ids) and (full or dirty_in[name]):
                    nxt = contacts[ids[i + 1]]
                    eff = effective_priority(queues[name], nxt, now)
                    heapq.heappush(heap, (-eff, nxt.arrived, nxt.seq, name, key, i + 1, "", -1))
                if not full and cid in dirty_contacts:
                    continue  # it has its own entry
                changed = full
            pool = None if changed else dirty_in[name]
            if pool is not None and not pool:
                continue
            contact = contacts[cid]
            best = self._best(contact, pool, now)
            if best is None:
                continue
            agent, step = best
            self._make_offer(contact, agent, step, now, out)
            offered.append(contact)
            agent_id = agent.profile.agent_id
            dirty_free.discard(agent_id)
            for queue_name in agent.first_step:  # one pending offer per agent
                dirty_in.get(queue_name, set()).discard(agent_id)
            if not self._free:
                break
        for contact in offered:
            self._unqueue(contact)

    def _any_meets(self, head: ContactRecord, agent_ids: Iterable[str], now: float) -> bool:
        """Some agent meets the requirements of the head of a waiting list that are in
        force at `now`. If none does, none meets those of any contact in the list: they
        share the same requirements and relaxing delays (`sig`), and the head arrived
        first, so it is the one with the fewest still in force."""
        agents = self._agents
        for agent_id in agent_ids:
            agent = agents[agent_id]
            key, lookup = agent.profile_key, agent.lookup
            for req, relaxed_at in head.requirements:
                if (relaxed_at is None or now < relaxed_at) and not req.holds(key, lookup):
                    break
            else:
                return True
        return False

    def _best(self, contact: ContactRecord, pool: set[str] | None, now: float) -> tuple[AgentRecord, int] | None:
        """The best agent with room for and eligible to the contact, among `pool` or,
        when None, every free agent of its queue."""
        queue, channel = contact.queue, contact.channel
        if contact.preferred_agent is not None and now < contact.prefer_until:
            # only the preferred agent qualifies meanwhile
            agent = self._agents[contact.preferred_agent]
            listed = agent.listed.get(queue)
            if listed is None or channel not in listed[1] or (pool is not None and agent.agent_id not in pool):
                return None
            step = match(self._compiled[queue], contact, agent, now)
            return None if step is None else (agent, step)
        if pool is not None and _RANK_DIRECTLY * len(pool) < self._index.count(queue, channel):
            return self._rank_pool(contact, pool, now)
        return self._walk(contact, pool, now)

    def _walk(self, contact: ContactRecord, pool: set[str] | None, now: float) -> tuple[AgentRecord, int] | None:
        """`_best` by walking the queue's free agents in rank order: the first eligible
        one wins, since the rank does not depend on the contact, except for best
        proficiency, where the contact's own requirements add to the score; there the
        walk goes on while an agent further down could still catch up. A walk that has
        found nobody after a few agents (a contact few can take, or none) narrows to the
        agents not known to fail the contact's requirements, and ranks those directly
        when they are few."""
        queue = contact.queue
        q, compiled, by_order = self._queues[queue], self._compiled[queue], self._by_order
        best_proficiency = q.strategy is Strategy.BEST_PROFICIENCY
        last_pick = self._last_pick.get(queue, -1)
        after = float(last_pick) if q.strategy is Strategy.ROUND_ROBIN else None
        # For best proficiency the key's score covers the queue's and the step's skills;
        # the contact's own requirements can add at most the best level anyone has in
        # each skill they name.
        bound = sum(self._max_level.get(n, 0) for n in contact_names(contact, now)) if best_proficiency else 0
        named: dict[int, set[str]] = {}
        best: tuple[tuple[float, ...], AgentRecord, int] | None = None
        only: set[int] | None = None  # once narrowed: the profile keys that may qualify
        for n, key in enumerate(self._index.walk(queue, contact.channel, after)):
            if best is not None and (key[0] - bound, *key[1:]) > best[0]:
                break  # no agent from here on can rank better
            if n == _NARROW_AFTER and best is None:
                only = self._not_failing(contact, now)
                if only is not None:
                    if not only:
                        return None
                    if len(only) <= _NARROW_AFTER:
                        ids = [self._by_profile[k].agent_id for k in only]
                        return self._rank_pool(contact, ids if pool is None else [a for a in ids if a in pool], now)
            agent = by_order[int(key[-1])]
            if only is not None and agent.profile_key not in only:
                continue
            if pool is not None and agent.agent_id not in pool:
                continue
            step = match(compiled, contact, agent, now)
            if step is None:
                continue
            if not best_proficiency:
                return agent, step
            if step not in named:
                named[step] = skills_named(compiled, contact, step, now)
            r = rank(q, agent, named[step], last_pick, len(self._agents))
            if best is None or r < best[0]:
                best = (r, agent, step)
        return None if best is None else (best[1], best[2])

    def _not_failing(self, contact: ContactRecord, now: float) -> set[int] | None:
        """The profile keys of the free agents of the contact's queue and channel not
        known to fail a requirement of the contact in force at `now`; None when it has
        none (nothing to narrow by)."""
        active = [req for req, relaxed_at in contact.requirements if relaxed_at is None or now < relaxed_at]
        if not active:
            return None
        keys = set(self._index.members(contact.queue, contact.channel))
        for req in active:
            keys -= req.fails
        return keys

    def _rank_pool(self, contact: ContactRecord, pool: Iterable[str], now: float) -> tuple[AgentRecord, int] | None:
        """`_best` by ranking a few changed agents directly."""
        agents, contacts = self._agents, self._contacts
        q = self._queues[contact.queue]
        compiled = self._compiled[contact.queue]
        last_pick = self._last_pick.get(contact.queue, -1)
        named: dict[int, set[str]] = {}
        best: tuple[tuple[float, ...], AgentRecord, int] | None = None
        for agent_id in pool:
            agent = agents[agent_id]
            if not has_room(agent, contact.channel, contacts):
                continue
            step = match(compiled, contact, agent, now)
            if step is None:
                continue
            if q.strategy is Strategy.BEST_PROFICIENCY and step not in named:
                named[step] = skills_named(compiled, contact, step, now)
            r = rank(q, agent, named.get(step), last_pick, len(agents))
            if best is None or r < best[0]:
                best = (r, agent, step)
        return None if best is None else (best[1], best[2])

    def _make_offer(
        self, contact: ContactRecord, agent: AgentRecord, step: int, now: float, out: list[Command]
    ) -> None:
        agent_id = agent.profile.agent_id
        contact.agent = agent_id
        contact.expires = now + self._queues[contact.queue].reservation_timeout_s
        self._stamp += 1
        contact.version = self._stamp
        self._timers.offer_made(contact)
        agent.offered = contact.contact_id
        self._last_pick[contact.queue] = agent.order
        self._settle(agent, now, out, forget=False)
        p = agent.profile
        named = skills_named(self._compiled[contact.queue], contact, step, now)
        matched = sorted(s for s in named if s not in p.attributes and p.level(s) > 0)
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
