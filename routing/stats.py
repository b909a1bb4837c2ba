"""Real-time routing statistics per queue and per agent, for the wallboard.

Owns: the counters and the sliding windows behind them, and `snapshot(now)`, JSON-ready,
with Amazon Connect's real-time metric names where the meaning is the same
(ContactsInQueue, OldestContactAge, AgentsOnline, AgentsAvailable, AgentsOnContact,
AgentsAfterContactWork, AgentsNonProductive) and Connect-like names for the windowed
ones (ServiceLevel, AvgQueueAnswerTime, AbandonRate, AvgHandleTime, ContactsHandled,
ContactsAbandoned, ContactsAnswered). Fed only by the router, which calls it on every
change. Must never: import asyncio, do I/O, read a clock, or decide anything.

Definitions (all windowed over the last `window_s`, 15 minutes by default):
- ServiceLevel: contacts answered within the queue's threshold / contacts answered, in
  percent (None before the first answer). Abandoned contacts do not count.
- AvgQueueAnswerTime: mean time from entering the queue to the accepted offer.
- AbandonRate: abandoned / (answered + abandoned), in percent.
- AvgHandleTime: mean time from the accepted offer to the end of after-contact work.
An agent counts in a queue's Agents* when they meet the queue's base requirement.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from routing.model import AgentState

_S = AgentState
_BY_STATE = {
    _S.AVAILABLE: "AgentsAvailable",
    _S.RESERVED: "AgentsOnContact",
    _S.BUSY: "AgentsOnContact",
    _S.WRAP_UP: "AgentsAfterContactWork",
    _S.AWAY: "AgentsNonProductive",
}


@dataclass(slots=True)
class _Queue:
    service_level_s: float
    waiting: dict[str, float] = field(default_factory=dict)  # contact -> entered the queue
    agents: dict[str, int] = field(default_factory=lambda: {name: 0 for name in (*_BY_STATE.values(), "AgentsOnline")})
    answered: deque[tuple[float, float]] = field(default_factory=deque)  # (at, waited)
    abandoned: deque[tuple[float, float]] = field(default_factory=deque)
    handled: deque[tuple[float, float]] = field(default_factory=deque)  # (at, handle time)


@dataclass(slots=True)
class _Agent:
    queues: frozenset[str]
    capacity: int
    state: AgentState = _S.OFFLINE
    since: float = 0.0
    reason: str | None = None
    contacts: int = 0
    handled: int = 0
    missed: int = 0


class RoutingStats:
    def __init__(self, *, window_s: float = 900.0) -> None:
        self.window_s = window_s
        self._queues: dict[str, _Queue] = {}
        self._agents: dict[str, _Agent] = {}
        self._dirty_queues: set[str] = set()
        self._dirty_agents: set[str] = set()

    # --- facts from the router ----------------------------------------------------------

    def queue_configured(self, name: str, service_level_s: float) -> None:
        q = self._queues.get(name)
        if q is None:
            self._queues[name] = _Queue(service_level_s=service_level_s)
        else:
            q.service_level_s = service_level_s
        self._dirty_queues.add(name)

    def agent_configured(self, agent_id: str, queues: frozenset[str], capacity: int) -> None:
        a = self._agents.get(agent_id)
        if a is None:
            self._agents[agent_id] = _Agent(queues=queues, capacity=capacity)
        else:
            self._count(a, -1)
            a.queues, a.capacity = queues, capacity
            self._count(a, +1)
        self._dirty_agents.add(agent_id)

    def agent_state_changed(self, agent_id: str, state: AgentState, reason: str | None, now: float) -> None:
        a = self._agents[agent_id]
        self._count(a, -1)
        a.state, a.since, a.reason = state, now, reason
        self._count(a, +1)
        self._dirty_agents.add(agent_id)

    def agent_load_changed(self, agent_id: str, contacts: int, *, missed: int) -> None:
        a = self._agents[agent_id]
        if (a.contacts, a.missed) != (contacts, missed):
            a.contacts, a.missed = contacts, missed
            self._dirty_agents.add(agent_id)

    def contact_queued(self, queue: str, contact_id: str, entered: float) -> None:
        self._queues[queue].waiting[contact_id] = entered
        self._dirty_queues.add(queue)

    def contact_dequeued(self, queue: str, contact_id: str) -> None:
        """Offered, abandoned, overflowed, or let go while waiting."""
        self._queues[queue].waiting.pop(contact_id, None)
        self._dirty_queues.add(queue)

    def contact_answered(self, queue: str, waited_s: float, now: float) -> None:
        self._queues[queue].answered.append((now, waited_s))
        self._dirty_queues.add(queue)

    def contact_abandoned(self, queue: str, waited_s: float, now: float) -> None:
        self._queues[queue].abandoned.append((now, waited_s))
        self._dirty_queues.add(queue)

    def contact_handled(self, queue: str, agent_id: str, handle_s: float, now: float) -> None:
        self._queues[queue].handled.append((now, handle_s))
        self._agents[agent_id].handled += 1
        self._dirty_queues.add(queue)
        self._dirty_agents.add(agent_id)

    # --- reading -------------------------------------------------------------------------

    def take_changes(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The queues and agents changed since the last call, sorted; then forgets them."""
        changes = (tuple(sorted(self._dirty_queues)), tuple(sorted(self._dirty_agents)))
        self._dirty_queues.clear()
        self._dirty_agents.clear()
        return changes

    def queue_snapshot(self, name: str, now: float) -> dict[str, Any]:
        q = self._queues[name]
        horizon = now - self.window_s
        for window in (q.answered, q.abandoned, q.handled):
            while window and window[0][0] < horizon:
                window.popleft()
        answered = len(q.answered)
        abandoned = len(q.abandoned)
        within = sum(1 for _, waited in q.answered if waited <= q.service_level_s)
        oldest = min(q.waiting.values()) if q.waiting else None
        return {
            "ContactsInQueue": len(q.waiting),
            "OldestContactAge": round(now - oldest, 3) if oldest is not None else 0,
            **q.agents,
            "ContactsAnswered": answered,
            "ContactsAbandoned": abandoned,
            "ContactsHandled": len(q.handled),
            "ServiceLevel": round(100.0 * within / answered, 2) if answered else None,
            "AvgQueueAnswerTime": round(sum(w for _, w in q.answered) / answered, 3) if answered else None,
            "AbandonRate": round(100.0 * abandoned / (answered + abandoned), 2) if answered + abandoned else None,
            "AvgHandleTime": round(sum(h for _, h in q.handled) / len(q.handled), 3) if q.handled else None,
            "ServiceLevelThreshold": q.service_level_s,
            "WindowSeconds": self.window_s,
        }

    def agent_snapshot(self, agent_id: str, now: float) -> dict[str, Any]:
        a = self._agents[agent_id]
        return {
            "state": a.state.value,
            "reason": a.reason,
            "TimeInState": round(now - a.since, 3),
            "Contacts": a.contacts,
            "Occupancy": round(a.contacts / a.capacity, 3) if a.capacity else 0.0,
            "ContactsHandled": a.handled,
            "MissedInARow": a.missed,
        }

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "queues": {name: self.queue_snapshot(name, now) for name in self._queues},
            "agents": {agent_id: self.agent_snapshot(agent_id, now) for agent_id in self._agents},
        }

    # --- snapshots -------------------------------------------------------------------------

    def export(self) -> dict[str, Any]:
        """Everything, JSON-ready, for a store's snapshot (`restore` takes it back)."""
        return {
            "window_s": self.window_s,
            "changed": [sorted(self._dirty_queues), sorted(self._dirty_agents)],
            "queues": {
                name: {
                    "service_level_s": q.service_level_s,
                    "waiting": [[cid, at] for cid, at in q.waiting.items()],
                    "agents": dict(q.agents),
                    "answered": [list(e) for e in q.answered],
                    "abandoned": [list(e) for e in q.abandoned],
                    "handled": [list(e) for e in q.handled],
                }
                for name, q in self._queues.items()
            },
            "agents": {
                agent_id: {
                    "queues": sorted(a.queues),
                    "capacity": a.capacity,
                    "state": a.state.value,
                    "since": a.since,
                    "reason": a.reason,
                    "contacts": a.contacts,
                    "handled": a.handled,
                    "missed": a.missed,
                }
                for agent_id, a in self._agents.items()
            },
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> RoutingStats:
        stats = cls(window_s=data["window_s"])
        stats._dirty_queues, stats._dirty_agents = set(data["changed"][0]), set(data["changed"][1])
        for name, q in data["queues"].items():
            stats._queues[name] = _Queue(
                service_level_s=q["service_level_s"],
                waiting={cid: at for cid, at in q["waiting"]},
                agents=dict(q["agents"]),
                answered=deque((at, v) for at, v in q["answered"]),
                abandoned=deque((at, v) for at, v in q["abandoned"]),
                handled=deque((at, v) for at, v in q["handled"]),
            )
        for agent_id, a in data["agents"].items():
            stats._agents[agent_id] = _Agent(
                queues=frozenset(a["queues"]),
                capacity=a["capacity"],
                state=_S(a["state"]),
                since=a["since"],
                reason=a["reason"],
                contacts=a["contacts"],
                handled=a["handled"],
                missed=a["missed"],
            )
        return stats

    def _count(self, a: _Agent, delta: int) -> None:
        if a.state is _S.OFFLINE:
            return
        metric = _BY_STATE[a.state]
        for name in a.queues:
            counts = self._queues[name].agents
            counts[metric] += delta
            counts["AgentsOnline"] += delta
