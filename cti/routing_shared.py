"""Routing from a state shared by several hubs: this hub's facts submitted in order, and
which hub carries out which router command.

Owns: `FactQueue`, the one task through which a hub submits its routing facts to a
shared store (`routing.redis_store.RedisRoutingStore`), one at a time and in the order
the center produced them, and through which it keeps its replica in step with the other
hubs' facts (on a nudge from them, and on a slow poll in case a nudge is lost); and
`carried_out_here`, the ownership rule. Must never: decide routing (the router does),
or touch calls and sockets (the center does, with the commands it gets back).

The ownership rule: every hub applies every fact to its replica and so computes every
command, but each command must happen once. A command about a contact (an offer, its
withdrawal, an overflow, a reject, a disconnect, a callback, "queued") is carried out
by the hub that holds the contact's call, whoever submitted the fact: only that hub can
ring a phone for it, build its screen pop, or hang it up. Any other command (an agent's
state announcement, statistics) is carried out by the hub that submitted the fact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from routing import (
    AnnounceQueued,
    Command,
    DisconnectContact,
    OfferCallback,
    OfferContact,
    OverflowContact,
    RejectContact,
    RoutingError,
    WithdrawOffer,
)
from routing.facts import Fact
from routing.store import RoutingStore

log = logging.getLogger(__name__)

# Another hub's facts reach this replica on its nudge; this poll only bounds how late
# they are when a nudge is lost (pub/sub does not queue for a reconnecting subscriber).
POLL_S = 0.5
_CONTACT_COMMANDS = (OfferContact, WithdrawOffer, OverflowContact, RejectContact, DisconnectContact, OfferCallback, AnnounceQueued)


def contact_of_command(command: Command) -> str | None:
    """The contact a command is about, or None for agent and statistics commands."""
    if isinstance(command, _CONTACT_COMMANDS):
        return command.contact_id
    return None


def carried_out_here(command: Command, *, holds: Callable[[str], bool], mine: bool) -> bool:
    """Whether this hub carries the command out: `holds(contact_id)` says whether this
    hub holds the contact's call, `mine` whether this hub submitted the fact. Pure."""
    contact_id = contact_of_command(command)
    if contact_id is not None:
        return holds(contact_id)
    return mine


@dataclass(slots=True)
class _Pending:
    fact: Fact
    done: Callable[[list[Command]], None] | None
    failed: Callable[[RoutingError], None] | None
    settled: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class FactQueue:
    """This hub's routing facts, submitted one at a time in the order `put` was called.

    `done(commands)` runs once the fact is applied, with the commands the store returned
    for it (offers the reservation ledger refused are already left out); `failed(error)`
    when the router refused it (logged when there is no `failed`). Both run on the queue's
    task, before the next fact is submitted, so commands are carried out in log order."""

    def __init__(self, store: RoutingStore, *, after_submit: Callable[[], None] = lambda: None, poll_s: float = POLL_S) -> None:
        self._store = store
        self._after_submit = after_submit
        self._poll_s = poll_s
        self._pending: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="routing-facts")

    def put(
        self,
        fact: Fact,
        *,
        done: Callable[[list[Command]], None] | None = None,
        failed: Callable[[RoutingError], None] | None = None,
    ) -> asyncio.Future[None]:
        """Queue the fact; the future settles once it is applied (or refused)."""
        pending = _Pending(fact, done, failed)
        self._pending.append(pending)
        self._last = pending.settled
        self._wake.set()
        return pending.settled

    def wake(self) -> None:
        """Another hub logged a fact: bring the replica up to date soon."""
        self._wake.set()

    async def drained(self) -> None:
        """Wait until every fact queued so far is applied."""
        if self._last is not None and not self._last.done():
            await asyncio.shield(self._last)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Submit what is still queued (within `timeout_s`), then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drained(), timeout_s)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)
            self._wake.clear()
            try:
                if not self._pending:
                    await self._store.sync()
                while self._pending:
                    await self._submit(self._pending[0])
                    self._pending.popleft()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The store could not answer (Redis down, a broken replica): logged; the
                # fact stays queued and is tried again on the next round.
                log.exception("shared routing store failed; retrying")
                await asyncio.sleep(self._poll_s)
                self._wake.set()

    async def _submit(self, pending: _Pending) -> None:
        try:
            commands = await self._store.submit(pending.fact)
        except RoutingError as err:
            self._settle(pending)
            if pending.failed is not None:
                _guarded(pending.failed, err)
            else:
                log.warning("routing refused %s: %s", type(pending.fact).__name__, err)
            self._after_submit()
            return
        self._settle(pending)
        if pending.done is not None:
            _guarded(pending.done, commands)
        self._after_submit()

    @staticmethod
    def _settle(pending: _Pending) -> None:
        if not pending.settled.done():
            pending.settled.set_result(None)


def _guarded(callback: Callable[..., None], argument: object) -> None:
    # A failing callback must not stop the queue: the facts after it still have to go.
    try:
        callback(argument)
    except Exception:
        log.exception("carrying out a routing result failed")
