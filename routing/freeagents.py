"""The free agents of every queue, kept in the order of the queue's strategy.

Owns: `FreeAgents`, per (queue, channel) a sorted list of rank keys, one per free agent
standing in the queue with room on the channel, and `standing_key`, the part of each
strategy's rank (`matching.rank`) that does not depend on the contact. A decision then
walks one list from the best end and stops at the first eligible agent, instead of
ranking every free agent. Must never: decide eligibility or change an agent, import
asyncio, do I/O or read a clock.

Every key ends with the agent's `order`, so keys are unique and the agent is found
from its key. The router removes an agent's keys with exactly the values it inserted
(it keeps them in `AgentRecord.listed`), so a list never holds a stale key. Beside each
list, the set of the listed agents' profile keys (`members`), for set arithmetic with
`Requirement.fails`: a walk that finds nobody eligible early can drop, in C, every agent
known to fail the contact's requirements.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from itertools import chain, islice

from routing.agents import AgentRecord
from routing.model import Strategy

Key = tuple[float, ...]


def standing_key(strategy: Strategy, agent: AgentRecord, score: int) -> Key:
    """`matching.rank` without what depends on the contact: for BEST_PROFICIENCY,
    `score` is the agent's proficiency over the skills the queue and their routing step
    name; a contact's own requirements can only add to it (see `Router._best`). For
    ROUND_ROBIN the key is the agent order, and the walk starts after the last pick."""
    load = len(agent.handling) + (agent.offered is not None)
    if strategy is Strategy.LONGEST_IDLE:
        return (float(load > 0), agent.idle_since, float(agent.order))
    if strategy is Strategy.BEST_PROFICIENCY:
        return (-float(score), float(load > 0), agent.idle_since, float(agent.order))
    if strategy is Strategy.LEAST_OCCUPIED:
        total = sum(agent.profile.capacity.values()) or 1
        return (load / total, agent.idle_since, float(agent.order))
    return (float(agent.order),)


_NONE: frozenset[int] = frozenset()


class FreeAgents:
    def __init__(self) -> None:
        self._lists: dict[tuple[str, str], list[Key]] = {}
        self._members: dict[tuple[str, str], set[int]] = {}

    def add(self, queue: str, channel: str, key: Key, profile_key: int) -> None:
        pair = (queue, channel)
        bisect.insort(self._lists.setdefault(pair, []), key)
        self._members.setdefault(pair, set()).add(profile_key)

    def remove(self, queue: str, channel: str, key: Key, profile_key: int) -> None:
        pair = (queue, channel)
        keys = self._lists[pair]
        at = bisect.bisect_left(keys, key)
        if at >= len(keys) or keys[at] != key:
            raise KeyError(f"free-agent index of {queue}/{channel} lost {key!r}")
        del keys[at]
        self._members[pair].remove(profile_key)

    def drop_queue(self, queue: str) -> None:
        """Forget the queue's lists (its strategy changed: every key is rebuilt)."""
        for pair in [p for p in self._lists if p[0] == queue]:
            del self._lists[pair]
            del self._members[pair]

    def members(self, queue: str, channel: str) -> set[int] | frozenset[int]:
        """The profile keys of the agents listed; do not change it."""
        return self._members.get((queue, channel), _NONE)

    def count(self, queue: str, channel: str) -> int:
        return len(self._lists.get((queue, channel), ()))

    def walk(self, queue: str, channel: str, after: float | None = None) -> Iterator[Key]:
        """Keys best first; with `after` (round robin), the keys after that agent order
        first, then from the start. The list must not change during the walk."""
        keys = self._lists.get((queue, channel), [])
        if after is None:
            return iter(keys)
        start = bisect.bisect_right(keys, (after,))
        return chain(islice(keys, start, None), islice(keys, 0, start))
