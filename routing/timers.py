"""When the router next has something to do without being told: offer expiries, wrap-up
ends, maximum waits, and the moments a waiting contact's eligibility widens (a routing
step reached, a preferred agent's window over, a rule's requirement relaxed).

Owns: four lazy min-heaps. Entries are never removed when they go stale; each carries
the contact's `version` (or the agent's `wrap_until`) it was made for and is skipped
when that no longer holds, so every change is O(log n) and `tick` / `next_deadline`
never walk the waiting contacts. Must never: change a contact or an agent, import
asyncio, do I/O or read a clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from typing import Any

from routing.agents import AgentRecord
from routing.model import QueueConfig
from routing.queueing import ContactRecord


def _slack(now: float) -> float:
    # Heap times are sums (entered + after_s) while the router's tests are differences
    # (now - entered >= after_s); they can disagree in the last bit, so candidates are
    # taken a hair early and confirmed with the router's own test.
    return now + 1e-9 * max(1.0, abs(now))


class Timers:
    def __init__(self, contacts: Mapping[str, ContactRecord], agents: Mapping[str, AgentRecord]) -> None:
        self._contacts = contacts
        self._agents = agents
        self.offers: list[tuple[float, int, str, int]] = []  # (expires, seq, contact, version)
        self.wraps: list[tuple[float, int, str]] = []  # (wrap_until, agent order, agent)
        self.max_waits: list[tuple[float, int, str, int]] = []  # (entered + max_wait_s, seq, contact, version)
        # (time, seq, contact, version, after_s): after_s >= 0 for a routing step (reached
        # when now - entered >= after_s), -1 for a plain time (reached when now >= time)
        self.widen: list[tuple[float, int, str, int, float]] = []

    # --- recording ----------------------------------------------------------------------

    def offer_made(self, contact: ContactRecord) -> None:
        assert contact.expires is not None
        heapq.heappush(self.offers, (contact.expires, contact.seq, contact.contact_id, contact.version))

    def wrap_started(self, agent: AgentRecord) -> None:
        assert agent.wrap_until is not None
        heapq.heappush(self.wraps, (agent.wrap_until, agent.order, agent.agent_id))

    def contact_waiting(
        self,
        contact: ContactRecord,
        steps: tuple[float, ...],
        max_wait_s: float | None,
        *,
        seen_at: float | None = None,
    ) -> None:
        """The contact (with a fresh `version`) entered a waiting list. `seen_at`: the
        router already matched it at that time (a restored snapshot), so eligibility
        changes reached by then are not due again."""
        cid, seq, version, entered = contact.contact_id, contact.seq, contact.version, contact.entered
        if max_wait_s is not None:
            heapq.heappush(self.max_waits, (entered + max_wait_s, seq, cid, version))
        for after_s in steps:
            if seen_at is None or seen_at - entered < after_s:
                heapq.heappush(self.widen, (entered + after_s, seq, cid, version, after_s))
        times = [contact.prefer_until, *(t for _, t in contact.requirements if t is not None)]
        for t in times:
            if seen_at is None or seen_at < t:
                heapq.heappush(self.widen, (t, seq, cid, version, -1.0))

    def clear_waiting(self) -> None:
        """Forget every waiting contact's entries (the caller records them again)."""
        self.max_waits.clear()
        self.widen.clear()

    # --- reading ------------------------------------------------------------------------

    def _waiting(self, cid: str, version: int) -> ContactRecord | None:
        contact = self._contacts.get(cid)
        if contact is None or contact.version != version or contact.agent is not None:
            return None
        return contact

    def expired_offers(self, now: float) -> list[ContactRecord]:
        """Pending offers with `expires <= now`, by (expires, seq); taken off the heap."""
        out: list[ContactRecord] = []
        while self.offers and self.offers[0][0] <= now:
            expires, _, cid, version = heapq.heappop(self.offers)
            contact = self._contacts.get(cid)
            if contact is not None and contact.version == version and contact.expires == expires:
                out.append(contact)
        return out

    def ended_wraps(self, now: float) -> list[AgentRecord]:
        """Agents whose wrap-up ends by `now`, in agent order; taken off the heap."""
        out: dict[str, AgentRecord] = {}
        while self.wraps and self.wraps[0][0] <= now:
            until, _, agent_id = heapq.heappop(self.wraps)
            agent = self._agents[agent_id]
            if agent.wrap_until == until:
                out[agent_id] = agent
        return sorted(out.values(), key=lambda a: a.order)

    def overdue(self, now: float, queues: Mapping[str, QueueConfig]) -> list[ContactRecord]:
        """Waiting contacts with `now - entered >= max_wait_s` of their queue; taken off."""
        out: list[ContactRecord] = []
        keep: list[tuple[float, int, str, int]] = []
        limit = _slack(now)
        while self.max_waits and self.max_waits[0][0] <= limit:
            entry = heapq.heappop(self.max_waits)
            contact = self._waiting(entry[2], entry[3])
            if contact is None:
                continue
            max_wait_s = queues[contact.queue].max_wait_s
            if max_wait_s is not None and now - contact.entered >= max_wait_s:
                out.append(contact)
            else:
                keep.append(entry)
        for entry in keep:
            heapq.heappush(self.max_waits, entry)
        return out

    def widened(self, now: float) -> set[str]:
        """Waiting contacts whose eligibility widened by `now`; taken off the heap."""
        out: set[str] = set()
        keep: list[tuple[float, int, str, int, float]] = []
        limit = _slack(now)
        while self.widen and self.widen[0][0] <= limit:
            entry = heapq.heappop(self.widen)
            t, _, cid, version, after_s = entry
            contact = self._waiting(cid, version)
            if contact is None:
                continue
            if (now - contact.entered >= after_s) if after_s >= 0 else now >= t:
                out.add(cid)
            else:
                keep.append(entry)
        for entry in keep:
            heapq.heappush(self.widen, entry)
        return out

    def next_deadline(self, now: float) -> float | None:
        """The earliest live entry: any offer, wrap-up or maximum wait (even one already
        due), or an eligibility change after `now`."""
        times: list[float] = []
        heaps: tuple[tuple[list[Any], Callable[[Any], bool]], ...] = (
            (self.offers, lambda e: self._offer_live(e[2], e[3], e[0])),
            (self.wraps, lambda e: self._agents[e[2]].wrap_until == e[0]),
            (self.max_waits, lambda e: self._waiting(e[2], e[3]) is not None),
        )
        for heap, valid in heaps:
            while heap and not valid(heap[0]):
                heapq.heappop(heap)  # stale: dropping it changes nothing
            if heap:
                times.append(heap[0][0])
        later: list[tuple[float, int, str, int, float]] = []
        while self.widen:
            entry = self.widen[0]
            if self._waiting(entry[2], entry[3]) is None:
                heapq.heappop(self.widen)
            elif entry[0] <= now:
                later.append(heapq.heappop(self.widen))  # due but not yet confirmed: keep
            else:
                times.append(entry[0])
                break
        for entry in later:
            heapq.heappush(self.widen, entry)
        return min(times) if times else None

    def _offer_live(self, cid: str, version: int, expires: float) -> bool:
        contact = self._contacts.get(cid)
        return contact is not None and contact.version == version and contact.expires == expires
