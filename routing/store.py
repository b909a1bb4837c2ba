"""Where the routing state lives: the `RoutingStore` interface, and the in-process store.

Owns: the contract every store keeps, and `InProcessStore`, the store of a hub that runs
alone. Must never: import asyncio or do I/O (the methods are `async` so that a store
which does I/O, `redis_store.RedisRoutingStore`, fits the same calls; this one never
awaits anything).

The contract:
- `await store.submit(fact)` applies one routing fact (see `facts`) after every fact
  submitted before it, by this process or any other sharing the store, and returns the
  commands this process must carry out, in order: those the router returned for this
  fact. It raises `RoutingError` exactly when the router does, and the state is then
  unchanged. Facts are applied one at a time, in one total order that every process
  sees; no contact is ever offered to two agents and no agent is ever offered more than
  its capacity, even if two processes submit at the same moment.
- `await store.sync()` applies what other processes submitted since; `store.router` is
  then up to date for queries (`agent_state`, `waiting`, `stats.snapshot(now)`,
  `next_deadline`...). Only read it: every change goes through `submit`. Re-read the
  attribute each time, since a store may replace the router (after loading a snapshot).
- `now` is the fact's own time, in seconds. The in-process store takes it as given (any
  monotonic origin). A shared store orders time as it orders facts: a fact's `now` is
  raised to the latest `now` logged before it, so processes sharing a store must give
  times from one clock (wall time, `time.time()`, on NTP-synced hosts).
- `await store.close()` lets go of connections; the state stays where it lives.

Commands of facts submitted by other processes are not returned to this one; an
`on_applied` callback (where a store offers one) sees every applied fact with its
commands, for example to publish agent states on the bus.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from routing.facts import Fact, apply
from routing.model import Command, RoutingError
from routing.router import Router


@dataclass(frozen=True, slots=True, kw_only=True)
class Applied:
    """One fact as applied: its position in the store's order, who submitted it, and
    what it produced (`error`: the RoutingError code when the router refused it)."""

    seq: int
    fact: Fact
    commands: tuple[Command, ...]
    mine: bool
    error: str | None = None


class RoutingStore(Protocol):
    @property
    def router(self) -> Router: ...

    async def submit(self, fact: Fact) -> list[Command]: ...

    async def sync(self) -> None: ...

    async def close(self) -> None: ...


class InProcessStore:
    """The router lives in this process; `submit` applies the fact at once."""

    def __init__(self, router: Router, *, on_applied: Callable[[Applied], None] | None = None) -> None:
        self._router = router
        self._on_applied = on_applied
        self._seq = 0

    @property
    def router(self) -> Router:
        return self._router

    @property
    def applied(self) -> int:
        """How many facts were applied (refused ones included)."""
        return self._seq

    async def submit(self, fact: Fact) -> list[Command]:
        self._seq += 1
        try:
            commands = apply(self._router, fact)
        except RoutingError as err:
            if self._on_applied is not None:
                self._on_applied(Applied(seq=self._seq, fact=fact, commands=(), mine=True, error=err.code))
            raise
        if self._on_applied is not None:
            self._on_applied(Applied(seq=self._seq, fact=fact, commands=tuple(commands), mine=True))
        return commands

    async def sync(self) -> None:
        return None

    async def close(self) -> None:
        return None
