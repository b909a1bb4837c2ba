"""The outbox delivery worker: the asyncio shell that moves messages to the external CRM.

Owns the loop (claim due messages, send them through the connector, record the
outcome), its pacing and its lifecycle (start, wake, stop). Must never decide retry
timing (the pure `RetryPolicy` does), never busy-loop while the CRM is down (it
sleeps until the next message falls due), and never lose a claimed message: one it
could not settle stays 'delivering' until its lease runs out and is then taken again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import datetime, timezone

from crm_sync.connector import Connector, SendResult
from crm_sync.outbox import OutboxEntry, OutboxStore
from crm_sync.retry import DeadLetter, Failure, RetryPolicy

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class DeliveryWorker:
    """Delivers the outbox; several workers (in one or many hubs) may share one database."""

    def __init__(
        self,
        outbox: OutboxStore,
        connector: Connector,
        *,
        policy: RetryPolicy | None = None,
        lease_s: float = 120.0,
        batch: int = 20,
        concurrency: int = 4,
        idle_s: float = 5.0,
        clock: Callable[[], datetime] = _utcnow,
        rand: Callable[[], float] = random.random,
    ) -> None:
        """`lease_s` must exceed the connector's timeout: a lease that runs out while a
        send is still in flight lets another worker send the same message (harmless
        thanks to the idempotency key, but wasteful). `idle_s` bounds the sleep when
        nothing is due, so messages written by another process are seen that soon."""
        self.outbox = outbox
        self.connector = connector
        self.policy = policy or RetryPolicy()
        self.lease_s = lease_s
        self.batch = batch
        self.idle_s = idle_s
        self.clock = clock
        self.rand = rand
        self._limit = asyncio.Semaphore(max(concurrency, 1))
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """Claim what is due now and deliver it; returns how many messages were tried."""
        claimed = await self.outbox.claim(now=self.clock(), lease_s=self.lease_s, limit=self.batch)
        # Only the oldest undelivered message of each stream is ever claimed, so the
        # messages of one batch are independent and may go out side by side.
        results = await asyncio.gather(*(self._deliver(entry) for entry in claimed), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            # Unsettled messages stay 'delivering' and come back when their lease ends.
            raise failures[0]
        return len(claimed)

    async def _deliver(self, entry: OutboxEntry) -> None:
        async with self._limit:
            try:
                result = await self.connector.send(entry)
            except Exception as exc:  # a connector bug must not kill the worker
                log.exception("CRM connector failed on outbox message %d", entry.id)
                result = SendResult(failure=Failure.TRANSIENT, error=f"connector error: {type(exc).__name__}")
        await self._settle(entry, result)

    async def _settle(self, entry: OutboxEntry, result: SendResult) -> None:
        now = self.clock()
        token = entry.claim_token or ""
        if result.failure is None:
            await self.outbox.mark_delivered(entry.id, now=now)
            return
        decision = self.policy.decide(
            attempts=entry.attempts, failure=result.failure, now=now, rand=self.rand(), error=result.error,
            not_before_s=result.retry_after_s,
        )
        if isinstance(decision, DeadLetter):
            log.error("outbox message %d (%s, key %s) dead-lettered: %s",
                      entry.id, entry.kind, entry.idempotency_key, decision.reason)
            await self.outbox.dead_letter(entry.id, token, error=decision.reason)
            return
        log.warning("outbox message %d (%s) attempt %d failed (%s); next try in %.1fs",
                    entry.id, entry.kind, entry.attempts, result.error, decision.delay_s)
        await self.outbox.reschedule(entry.id, token, at=decision.at, error=result.error)

    async def _pause(self) -> float:
        due = await self.outbox.next_due_at()
        if due is None:
            return self.idle_s
        # A little past the due time, so that the claim's `<= now` sees it due.
        return min(max((due - self.clock()).total_seconds() + 0.005, 0.005), self.idle_s)

    async def run(self) -> None:
        """Deliver until `stop()`; survives a CRM or database outage by sleeping on it."""
        while not self._stopping:
            try:
                if await self.run_once():
                    continue  # there may be more due right now
                delay = await self._pause()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox delivery round failed (database unavailable?)")
                delay = self.idle_s
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass

    def wake(self) -> None:
        """Look for due messages now (call after writing one, to skip the idle sleep)."""
        self._wake.set()

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name="crm-outbox-delivery")
        return self._task

    async def stop(self) -> None:
        """Finish the round in flight, then return; claimed messages are settled."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None


async def list_dead_letters(outbox: OutboxStore, *, limit: int = 100) -> list[dict[str, object]]:
    """Admin: the dead letters as JSON-ready dicts, oldest first."""
    return [entry.to_dict() for entry in await outbox.list_dead(limit=limit)]


async def replay_dead_letter(outbox: OutboxStore, message_id: int, *, now: datetime | None = None) -> bool:
    """Admin: send one dead letter again (same idempotency key, fresh attempts)."""
    return await outbox.replay(message_id, now=now or _utcnow())


async def replay_all_dead_letters(outbox: OutboxStore, *, now: datetime | None = None) -> int:
    """Admin: send every dead letter again; returns how many."""
    return await outbox.replay_all(now=now or _utcnow())


__all__ = ["DeliveryWorker", "list_dead_letters", "replay_all_dead_letters", "replay_dead_letter"]
