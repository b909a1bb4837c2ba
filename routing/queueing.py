"""Waiting contacts: the router's record of a contact, the per-queue waiting lists, and
the order in which contacts are offered (effective priority with aging, then arrival).

Owns: `ContactRecord`, `WaitingLists` and `effective_priority`. The lists are kept per
(queue, contact priority, requirement signature), each sorted by (arrival, seq), so that
the head of a list is always its most aged contact and the global order is a merge of
the heads. `WaitingLists.heads` also keeps, per queue, its lists' heads in that order,
updated as heads change and rebuilt when aging moves one of them. Must never: decide
who gets a contact, import asyncio, do I/O or read a clock.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from routing.model import QueueConfig
from routing.requirements import Requirement


@dataclass(slots=True)
class ContactRecord:
    contact_id: str
    queue: str
    channel: str
    arrived: float  # first arrival: order, aging, preferred window
    entered: float  # into the current queue: steps, maximum wait, answer time
    seq: int
    priority: int  # the contact's own, rules included (the queue's is added when ordering)
    requirements: list[tuple[Requirement, float | None]]  # (agent expression, relaxed at)
    # The texts of the requirements, with their relaxing delays, sorted: contacts of one
    # queue and priority with the same `sig` share a waiting list, so an agent who fails
    # the head's requirements can skip the whole list instead of every contact in it.
    sig: tuple[str, ...] = ()
    preferred_agent: str | None = None
    prefer_until: float = 0.0
    declined: set[str] = field(default_factory=set)
    agent: str | None = None
    accepted: bool = False
    expires: float | None = None  # of the pending offer
    accepted_at: float | None = None
    # Bumped whenever the contact enters or leaves a waiting list, or is offered: timer
    # entries carry the version they were made for, so stale ones are simply skipped.
    version: int = 0

    @property
    def key(self) -> tuple[float, int]:
        return (self.arrived, self.seq)


def effective_priority(q: QueueConfig, contact: ContactRecord, now: float) -> int:
    # Router._dispatch inlines this for the heads of the waiting lists: keep them in step.
    aging = 0
    if q.aging_step_s:
        aging = max(0, math.floor((now - contact.arrived) / q.aging_step_s))
    return q.priority + contact.priority + aging


ListKey = tuple[int, tuple[str, ...]]  # (contact priority, sig)
Head = tuple[int, float, int, ListKey]  # (-effective priority, arrival, seq, list key)


@dataclass(slots=True)
class _Heads:
    """A queue's list heads in offer order, right for `since <= now < until`: no head's
    aging step changes in between. `stale`: lists whose head changed since."""

    since: float
    until: float
    order: list[Head]
    entry: dict[ListKey, Head]
    stale: set[ListKey] = field(default_factory=set)


class WaitingLists:
    """Per queue, per (contact priority, sig): contact ids sorted by (arrival, seq)."""

    def __init__(self, contacts: Mapping[str, ContactRecord]) -> None:
        self._contacts = contacts
        self.lists: dict[str, dict[ListKey, list[str]]] = {}
        self._heads: dict[str, _Heads] = {}

    def add_queue(self, name: str) -> None:
        self.lists[name] = {}

    def count(self, queue: str) -> int:
        return sum(len(ids) for ids in self.lists[queue].values())

    def queued(self, queue: str) -> Iterator[str]:
        for ids in self.lists[queue].values():
            yield from ids

    def add(self, contact: ContactRecord) -> None:
        key = (contact.priority, contact.sig)
        bucket = self.lists[contact.queue].setdefault(key, [])
        at = bisect.bisect(bucket, contact.key, key=lambda cid: self._contacts[cid].key)
        bucket.insert(at, contact.contact_id)
        if at == 0:
            self._head_changed(contact.queue, key)

    def remove(self, contact: ContactRecord) -> bool:
        """False (and nothing changed) when the contact is not where it should be."""
        key = (contact.priority, contact.sig)
        buckets = self.lists[contact.queue]
        bucket = buckets.get(key, [])
        at = bisect.bisect_left(bucket, contact.key, key=lambda cid: self._contacts[cid].key)
        if at >= len(bucket) or bucket[at] != contact.contact_id:
            return False
        del bucket[at]
        if not bucket:
            del buckets[key]
        if at == 0:
            self._head_changed(contact.queue, key)
        return True

    def heads(self, q: QueueConfig, now: float) -> list[Head]:
        """The heads of the queue's lists by (effective priority desc, arrival, seq) at
        `now`. Do not change it; it is good until the next change to the lists."""
        h = self._heads.get(q.name)
        if h is None or not h.since <= now < h.until:
            return self._rebuild(q, now)
        if h.stale:
            lists = self.lists[q.name]
            for key in h.stale:
                old = h.entry.pop(key, None)
                if old is not None:
                    del h.order[bisect.bisect_left(h.order, old)]
                ids = lists.get(key)
                if ids:
                    head, until = self._head(q, key, ids[0], now)
                    bisect.insort(h.order, head)
                    h.entry[key] = head
                    h.until = min(h.until, until)
            h.stale.clear()
            h.since = max(h.since, now)
            if not h.since < h.until:
                return self._rebuild(q, now)
        return h.order

    def forget_heads(self, queue: str) -> None:
        """The queue's priority or aging changed."""
        self._heads.pop(queue, None)

    def _head_changed(self, queue: str, key: ListKey) -> None:
        h = self._heads.get(queue)
        if h is not None:
            h.stale.add(key)

    def _rebuild(self, q: QueueConfig, now: float) -> list[Head]:
        entry: dict[ListKey, Head] = {}
        until = math.inf
        for key, ids in self.lists[q.name].items():
            entry[key], head_until = self._head(q, key, ids[0], now)
            until = min(until, head_until)
        h = _Heads(since=now, until=until, order=sorted(entry.values()), entry=entry)
        self._heads[q.name] = h
        return h.order

    def _head(self, q: QueueConfig, key: ListKey, cid: str, now: float) -> tuple[Head, float]:
        """The head's entry at `now`, and until when its effective priority holds."""
        c = self._contacts[cid]
        head = (-effective_priority(q, c, now), c.arrived, c.seq, key)
        if not q.aging_step_s:
            return head, math.inf
        k = max(0, math.floor((now - c.arrived) / q.aging_step_s))
        edge = c.arrived + (k + 1) * q.aging_step_s
        # A hair early: `effective_priority` divides a difference, this multiplies, and
        # the two may disagree in the last bits.
        return head, edge - 1e-9 * max(1.0, abs(edge))

    def by_priority(self, queue: str) -> dict[int, list[str]]:
        """The queue's waiting contacts per contact priority, by (arrival, seq)."""
        out: dict[int, list[str]] = {}
        for (prio, _), ids in self.lists[queue].items():
            out.setdefault(prio, []).extend(ids)
        for ids in out.values():
            ids.sort(key=lambda cid: self._contacts[cid].key)
        return out

    def ordered(self, queues: Mapping[str, QueueConfig], now: float, names: Iterable[str]) -> Iterator[str]:
        """Waiting contacts of `names` by (effective priority desc, arrival asc), merging
        the lists: within one list the head always comes first, since it is the oldest
        and so the most aged. The lists must not change meanwhile."""
        heap: list[tuple[int, float, int, str, ListKey, int]] = []
        contacts = self._contacts
        for name in names:
            q = queues[name]
            for prio, ids in self.lists[name].items():
                if ids:
                    head = contacts[ids[0]]
                    heap.append((-effective_priority(q, head, now), head.arrived, head.seq, name, prio, 0))
        heapq.heapify(heap)
        while heap:
            _, _, _, name, prio, i = heapq.heappop(heap)
            ids = self.lists[name][prio]
            yield ids[i]
            if i + 1 < len(ids):
                nxt = contacts[ids[i + 1]]
                eff = effective_priority(queues[name], nxt, now)
                heapq.heappush(heap, (-eff, nxt.arrived, nxt.seq, name, prio, i + 1))
