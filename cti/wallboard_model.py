"""The supervisor wallboard's view: queue tiles, the agent grid, alerts and the last hour.

Owns: turning the router's real-time statistics (`routing.stats.RoutingStats` queue
snapshots) and a few facts per agent into the JSON-ready view the wallboard page and
`GET /api/wallboard` show; the alerts (a queue's service level below its target, a
contact waiting past the service-level threshold); the per-minute history of every
queue over the last hour, in a bounded ring; and telling whether the view changed, so
that the websocket sends only real changes. Must never: import asyncio, do I/O, read a
clock (both clocks come in as arguments), or decide anything about routing.

Time: `now` is the hub's monotonic clock (the one the router is fed with); `wall_now`
the epoch seconds at the same instant. Every time in the view is epoch seconds, made
from monotonic ones through one offset taken once (and again only when the two clocks
drift apart by more than a second), so that a fact's time does not jitter from one
sample to the next and count as a change.

The contract (shapes, meaning of every figure) is docs/wallboard.md.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_SERVICE_LEVEL_TARGET",
    "AgentFacts",
    "ContactFacts",
    "Wallboard",
    "service_level_status",
    "service_level_target",
]

VIEW_VERSION = 1
# Percent of answered contacts to answer within the queue's threshold (`service_level_s`)
# when the routing configuration names no target for the queue: the common 80/20 goal.
DEFAULT_SERVICE_LEVEL_TARGET = 80.0
# Below the target by more than this many points, a tile turns from amber to red.
FAR_BELOW_POINTS = 10.0
HISTORY_S = 3600.0
SAMPLE_S = 60.0
# A sample's oldest-wait time is read again every tick; it only moves by rounding.
_SAME_INSTANT_S = 0.01
_RESYNC_S = 1.0
_AGENT_COUNTS = {  # view name -> RoutingStats (Amazon Connect) name
    "online": "AgentsOnline",
    "available": "AgentsAvailable",
    "on_contact": "AgentsOnContact",
    "after_contact_work": "AgentsAfterContactWork",
    "non_productive": "AgentsNonProductive",
}


def service_level_target(queue: str, configured: Mapping[str, float]) -> float:
    """The queue's service-level goal in percent: its configured one, else 80 %.
    The one place the target is read, so that configuration can provide it later."""
    return float(configured.get(queue, DEFAULT_SERVICE_LEVEL_TARGET))


def service_level_status(service_level: float | None, target: float) -> str:
    """`none` before the first answer, `met`, `below` (within 10 points), `far_below`."""
    if service_level is None:
        return "none"
    if service_level >= target:
        return "met"
    return "below" if service_level >= target - FAR_BELOW_POINTS else "far_below"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactFacts:
    """The contact an agent is offered or handling. No caller number: a wallboard hangs
    on a wall, and who is calling is not for everyone in the room."""

    contact_id: str
    queue: str | None
    channel: str | None
    answered_at: float | None = None  # epoch seconds; None while only offered


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentFacts:
    agent_id: str
    name: str
    state: str  # routing.AgentState value
    reason: str | None
    since: float | None  # monotonic; None for an agent who has not logged in since the start
    contact: ContactFacts | None
    handled: int


@dataclass(slots=True)
class _Sample:
    """One queue's minute: the most contacts seen waiting, the longest wait seen, and
    the windowed figures as they stood at its last update."""

    start: float  # epoch, a multiple of the sample length
    waiting_max: int = 0
    longest_wait_max_s: float = 0.0
    service_level: float | None = None
    abandon_rate: float | None = None
    asa_s: float | None = None
    available: int = 0
    online: int = 0

    def to_json(self, *, closed: bool) -> dict[str, Any]:
        return {
            "t": self.start,
            "waiting_max": self.waiting_max,
            # The open minute's figure grows every tick: published once the minute closes.
            "longest_wait_max_s": round(self.longest_wait_max_s, 1) if closed else None,
            "service_level": self.service_level,
            "abandon_rate": self.abandon_rate,
            "asa_s": self.asa_s,
            "available": self.available,
            "online": self.online,
        }


@dataclass(slots=True)
class _QueueMemory:
    samples: deque[_Sample]
    current: _Sample | None = None
    oldest_since: float | None = None  # monotonic
    below_since: float | None = None  # monotonic: the service level fell below target


@dataclass(slots=True)
class Wallboard:
    history_s: float = HISTORY_S
    sample_s: float = SAMPLE_S
    _queues: dict[str, _QueueMemory] = field(default_factory=dict)
    _offset: float | None = None  # wall - monotonic
    _signature: str | None = None
    view: dict[str, Any] = field(default_factory=dict)

    def update(
        self,
        *,
        now: float,
        wall_now: float,
        queues: Mapping[str, Mapping[str, Any]],
        agents: Sequence[AgentFacts],
        names: Mapping[str, str] | None = None,
        targets: Mapping[str, float] | None = None,
    ) -> bool:
        """Take the facts at `now`: `queues` are RoutingStats queue snapshots by queue
        name, `names` display names of queues, `targets` configured service-level
        targets in percent. Sets `view`; True when it differs from the last one other
        than by time passing."""
        if self._offset is None or abs(wall_now - now - self._offset) > _RESYNC_S:
            self._offset = wall_now - now
        names = names or {}
        targets = targets or {}
        for gone in set(self._queues) - set(queues):
            del self._queues[gone]
        tiles, alerts = [], []
        for name in sorted(queues):
            stats = queues[name]
            memory = self._queues.get(name)
            if memory is None:
                memory = self._queues[name] = _QueueMemory(samples=deque(maxlen=math.ceil(self.history_s / self.sample_s)))
            target = service_level_target(name, targets)
            tile = self._tile(name, names.get(name, name), stats, memory, target, now)
            tiles.append(tile)
            alerts.extend(self._alerts(tile, memory, now))
            self._sample(memory, tile, wall_now)
        view = {
            "version": VIEW_VERSION,
            "generated_at": round(wall_now, 3),
            "window_s": _first(queues, "WindowSeconds"),
            "queues": tiles,
            "alerts": alerts,
            "agents": [self._agent_row(a, now) for a in sorted(agents, key=lambda a: a.agent_id)],
            "history": {
                "sample_s": self.sample_s,
                "span_s": self.history_s,
                "queues": {name: self._history(memory) for name, memory in sorted(self._queues.items())},
            },
        }
        signature = json.dumps(_without_time_passing(view), sort_keys=True, separators=(",", ":"))
        changed = signature != self._signature
        self._signature = signature
        self.view = view
        return changed

    # --- pieces -------------------------------------------------------------------------

    def _epoch(self, monotonic: float | None) -> float | None:
        if monotonic is None or self._offset is None:
            return None
        return round(self._offset + monotonic, 3)

    def _tile(
        self, name: str, display: str, stats: Mapping[str, Any], memory: _QueueMemory, target: float, now: float
    ) -> dict[str, Any]:
        waiting = int(stats.get("ContactsInQueue", 0))
        if waiting:
            oldest = now - float(stats.get("OldestContactAge", 0.0))
            # The snapshot's age is rounded to the millisecond: keep the instant already
            # known unless the oldest contact is really another one.
            if memory.oldest_since is None or abs(oldest - memory.oldest_since) > _SAME_INSTANT_S:
                memory.oldest_since = oldest
        else:
            memory.oldest_since = None
        service_level = stats.get("ServiceLevel")
        return {
            "queue": name,
            "name": display,
            "waiting": waiting,
            "longest_wait_s": round(now - memory.oldest_since, 1) if memory.oldest_since is not None else 0.0,
            "oldest_since": self._epoch(memory.oldest_since),
            "service_level": service_level,
            "service_level_threshold_s": stats.get("ServiceLevelThreshold"),
            "service_level_target": target,
            "service_level_status": service_level_status(service_level, target),
            "asa_s": stats.get("AvgQueueAnswerTime"),
            "abandon_rate": stats.get("AbandonRate"),
            "answered": stats.get("ContactsAnswered", 0),
            "abandoned": stats.get("ContactsAbandoned", 0),
            "handled": stats.get("ContactsHandled", 0),
            "aht_s": stats.get("AvgHandleTime"),
            "agents": {key: int(stats.get(metric, 0)) for key, metric in _AGENT_COUNTS.items()},
        }

    def _alerts(self, tile: dict[str, Any], memory: _QueueMemory, now: float) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = []
        status = tile["service_level_status"]
        if status in ("below", "far_below"):
            if memory.below_since is None:
                memory.below_since = now
            alerts.append({
                "queue": tile["queue"],
                "kind": "service_level_below_target",
                "severity": "critical" if status == "far_below" else "warning",
                "service_level": tile["service_level"],
                "target": tile["service_level_target"],
                "threshold_s": tile["service_level_threshold_s"],
                "since": self._epoch(memory.below_since),
            })
        else:
            memory.below_since = None
        threshold = tile["service_level_threshold_s"]
        if memory.oldest_since is not None and threshold is not None and now - memory.oldest_since > threshold:
            # Answered now or later, this contact counts against the service level.
            alerts.append({
                "queue": tile["queue"],
                "kind": "contact_waiting_over_threshold",
                "severity": "warning",
                "waiting": tile["waiting"],
                "threshold_s": threshold,
                "since": self._epoch(memory.oldest_since + threshold),
            })
        return alerts

    def _sample(self, memory: _QueueMemory, tile: dict[str, Any], wall_now: float) -> None:
        start = math.floor(wall_now / self.sample_s) * self.sample_s
        current = memory.current
        if current is None or current.start != start:
            if current is not None and current.start < start:
                memory.samples.append(current)
            current = memory.current = _Sample(start=start)
        while memory.samples and memory.samples[0].start <= start - self.history_s:
            memory.samples.popleft()
        current.waiting_max = max(current.waiting_max, tile["waiting"])
        current.longest_wait_max_s = max(current.longest_wait_max_s, tile["longest_wait_s"])
        current.service_level = tile["service_level"]
        current.abandon_rate = tile["abandon_rate"]
        current.asa_s = tile["asa_s"]
        current.available = tile["agents"]["available"]
        current.online = tile["agents"]["online"]

    def _history(self, memory: _QueueMemory) -> list[dict[str, Any]]:
        closed = [s.to_json(closed=True) for s in memory.samples]
        return closed + ([memory.current.to_json(closed=False)] if memory.current is not None else [])

    def _agent_row(self, agent: AgentFacts, now: float) -> dict[str, Any]:
        contact = agent.contact
        return {
            "agent_id": agent.agent_id,
            "name": agent.name,
            "state": agent.state,
            "reason": agent.reason,
            "state_since": self._epoch(agent.since),
            "time_in_state_s": round(now - agent.since, 1) if agent.since is not None else None,
            "contact": None if contact is None else {
                "contact_id": contact.contact_id,
                "queue": contact.queue,
                "channel": contact.channel,
                "answered_at": contact.answered_at,
            },
            "handled": agent.handled,
        }


def _first(queues: Mapping[str, Mapping[str, Any]], key: str) -> Any:
    return next((q.get(key) for q in queues.values()), None)


def _without_time_passing(view: Mapping[str, Any]) -> dict[str, Any]:
    """The view without the figures that change only because time passes (the page
    counts those up itself from the `*_since` instants)."""
    stable = {k: v for k, v in view.items() if k != "generated_at"}
    stable["queues"] = [{k: v for k, v in q.items() if k != "longest_wait_s"} for q in view["queues"]]
    stable["agents"] = [{k: v for k, v in a.items() if k != "time_in_state_s"} for a in view["agents"]]
    return stable
