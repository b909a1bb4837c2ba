"""Routing statistics on the bus: the router's per-queue and per-agent figures as
`queue.stats_changed` and `agent.stats_changed` events, coalesced.

Owns: the naming of the figures on the wire (Amazon Connect's names where the meaning
is the same) and the coalescing: the router reports a change on nearly every input,
and a busy queue would otherwise put hundreds of events a second on the bus; changes
are gathered and published at most once per `interval_s` (per queue and agent, the
latest figures win). Must never compute a figure (routing.stats does) or publish
anything but these two events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cti import events as ev
from routing import RoutingStats

DEFAULT_INTERVAL_S = 0.25  # at most four events a second per queue and per agent


def queue_event(queue: str, figures: dict[str, Any], *, at: datetime) -> ev.QueueStatsChanged:
    """`routing.stats.queue_snapshot` output as an event."""
    return ev.QueueStatsChanged(
        occurred_at=at,
        queue=queue,
        CONTACTS_IN_QUEUE=int(figures["ContactsInQueue"]),
        OLDEST_CONTACT_AGE=float(figures["OldestContactAge"]),
        AGENTS_ONLINE=int(figures["AgentsOnline"]),
        AGENTS_AVAILABLE=int(figures["AgentsAvailable"]),
        AGENTS_ON_CONTACT=int(figures["AgentsOnContact"]),
        AGENTS_AFTER_CONTACT_WORK=int(figures["AgentsAfterContactWork"]),
        AGENTS_NON_PRODUCTIVE=int(figures["AgentsNonProductive"]),
        CONTACTS_ANSWERED=int(figures["ContactsAnswered"]),
        CONTACTS_ABANDONED=int(figures["ContactsAbandoned"]),
        CONTACTS_HANDLED=int(figures["ContactsHandled"]),
        SERVICE_LEVEL=_maybe_float(figures["ServiceLevel"]),
        AVG_QUEUE_ANSWER_TIME=_maybe_float(figures["AvgQueueAnswerTime"]),
        ABANDONMENT_RATE=_maybe_float(figures["AbandonRate"]),
        AVG_HANDLE_TIME=_maybe_float(figures["AvgHandleTime"]),
        service_level_threshold_s=float(figures["ServiceLevelThreshold"]),
        window_s=float(figures["WindowSeconds"]),
    )


def agent_event(agent_id: str, figures: dict[str, Any], *, at: datetime) -> ev.AgentStatsChanged:
    """`routing.stats.agent_snapshot` output as an event."""
    return ev.AgentStatsChanged(
        occurred_at=at,
        agent_id=agent_id,
        state=str(figures["state"]),
        reason=figures["reason"],
        time_in_state_s=float(figures["TimeInState"]),
        contacts=int(figures["Contacts"]),
        AGENT_OCCUPANCY=float(figures["Occupancy"]),
        CONTACTS_HANDLED=int(figures["ContactsHandled"]),
        missed_in_a_row=int(figures["MissedInARow"]),
    )


def _maybe_float(value: Any) -> float | None:
    return None if value is None else float(value)


class StatsPublisher:
    """Gathers the queues and agents whose statistics changed and publishes their
    latest figures, at most once per `interval_s`."""

    def __init__(
        self,
        stats: Callable[[], RoutingStats],
        publish: Callable[[ev.Event], None],
        *,
        clock: Callable[[], float],
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self._stats = stats  # a getter: the center's router may be replaced
        self._publish = publish
        self._clock = clock
        self.interval_s = interval_s
        self._queues: set[str] = set()
        self._agents: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._last_flush = float("-inf")

    def changed(self, queues: tuple[str, ...], agents: tuple[str, ...]) -> None:
        self._queues.update(queues)
        self._agents.update(agents)
        if self._timer is None and (self._queues or self._agents):
            delay = max(0.0, self._last_flush + self.interval_s - self._clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self.flush)

    def flush(self) -> None:
        self._timer = None
        self._last_flush = self._clock()
        queues, agents = sorted(self._queues), sorted(self._agents)
        self._queues.clear()
        self._agents.clear()
        stats, now, at = self._stats(), self._clock(), datetime.now(UTC)
        for name in queues:
            self._publish(queue_event(name, stats.queue_snapshot(name, now), at=at))
        for agent_id in agents:
            self._publish(agent_event(agent_id, stats.agent_snapshot(agent_id, now), at=at))

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
