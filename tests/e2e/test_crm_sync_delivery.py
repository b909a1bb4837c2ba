"""The outbox reaches a real HTTP server standing in for the external CRM, whatever it does.

The stand-in CRM runs on 127.0.0.1 and does what a real one does on a bad day: answers
500, answers slowly, applies a request and then hangs until the client gives up, refuses
a request with 400, or is not there at all. It deduplicates by Idempotency-Key (409 for a
key it has already applied), so the test can see that each message was applied exactly
once. "Down for an hour" runs on an injected clock, not a real hour.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp import web

from crm_sync.connector import RestConnector
from crm_sync.delivery import DeliveryWorker, list_dead_letters, replay_all_dead_letters, replay_dead_letter
from crm_sync.outbox import OutboxStore
from crm_sync.retry import RetryPolicy
from crm_sync.store import CrmStore
from cti.db import make_engine, make_sessionmaker, migrate

TOKEN_ENV = "CTIHUB_TEST_CRM_TOKEN"
FAST = RetryPolicy(base_s=0.02, factor=2, cap_s=0.2, max_attempts=40, jitter=0.5)
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


@dataclass
class StandInCrm:
    """An aiohttp app that records requests and misbehaves on command."""

    port: int = 0
    # Behaviour of the next requests, one per request: ok, 500, 400, slow, hang; then `default`.
    script: collections.deque[str] = field(default_factory=collections.deque)
    default: str = "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)
    applied: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        body = await request.json()
        behaviour = self.script.popleft() if self.script else self.default
        self.requests.append({"key": key, "method": request.method, "path": request.path, "body": body,
                              "auth": request.headers.get("Authorization"), "behaviour": behaviour})
        if behaviour == "500":
            return web.json_response({"error": "internal"}, status=500)
        if behaviour == "400":
            return web.json_response({"error": "owner unknown"}, status=400)
        if key in self.applied:
            return web.json_response({"error": "duplicate"}, status=409, headers={"Idempotency-Key": key})
        self.applied[key] = {"method": request.method, "path": request.path, "body": body}
        self.order.append(key)
        if behaviour == "slow":
            await asyncio.sleep(0.1)  # slower than usual, faster than the client's timeout
        if behaviour == "hang":
            # Applied, but the answer never comes: the client times out and sends it again.
            try:
                await asyncio.wait_for(self.release.wait(), timeout=5)
            except asyncio.TimeoutError:
                pass
        return web.json_response({"id": f"act_{len(self.applied)}"}, status=201)

    async def up(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        if not self.port:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def down(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.release = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def crm() -> AsyncIterator[StandInCrm]:
    server = StandInCrm()
    await server.up()
    yield server
    await server.down()


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[tuple[CrmStore, OutboxStore]]:
    engine = make_engine(database_url)
    await migrate(engine)
    sessionmaker = make_sessionmaker(engine)
    yield CrmStore(sessionmaker), OutboxStore(sessionmaker)
    await engine.dispose()


def _connector(crm: StandInCrm, *, timeout_s: float = 0.5) -> RestConnector:
    return RestConnector(base_url=crm.url, token_env=TOKEN_ENV, environ={TOKEN_ENV: "tok-123"},
                         timeout_s=timeout_s, connect_timeout_s=0.5)


async def _interactions(store: CrmStore, n: int, *, wrapup: bool = False, now: datetime | None = None) -> list[str]:
    ids = []
    for k in range(n):
        started = T0 + timedelta(minutes=k)
        interaction_id = await store.record_interaction_with_outbox(
            customer_id=None, channel="voice", direction="inbound", caller_number=f"+44207946{k:04d}",
            dialled="1000", queue="sales", agent_id="agent01", started_at=started,
            answered_at=started + timedelta(seconds=3), ended_at=started + timedelta(minutes=2),
            outcome="completed", call_id=f"call{k}@x", now=now,
        )
        if wrapup:
            await store.update_interaction_wrapup(interaction_id, disposition="sale", now=now)
            await store.add_interaction_note(interaction_id, text=f"note {k}", author="agent01", now=now)
        ids.append(interaction_id)
    return ids


async def _until(condition: Callable[[], Any], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.02)


def _assert_exactly_once(crm: StandInCrm, keys: set[str]) -> None:
    assert set(crm.applied) == keys
    assert len(crm.order) == len(set(crm.order)), "the CRM applied a message twice"


async def test_every_message_is_applied_once_through_500s_hangs_and_slowness(
    crm: StandInCrm, stores: tuple[CrmStore, OutboxStore]
) -> None:
    store, outbox = stores
    ids = await _interactions(store, 6, wrapup=True)
    crm.script.extend(["500", "slow", "hang", "500", "500", "ok", "hang", "slow", "500"])
    connector = _connector(crm, timeout_s=0.3)
    worker = DeliveryWorker(outbox, connector, policy=FAST, lease_s=5, idle_s=0.1, concurrency=3)
    worker.start()
    try:
        await _until(lambda: _all_delivered(outbox, 18))
    finally:
        await worker.stop()
        await connector.close()

    keys = {m.idempotency_key for m in await outbox.list_all()}
    _assert_exactly_once(crm, keys)
    assert any(r["behaviour"] == "ok" and r["key"] in [q["key"] for q in crm.requests if q["behaviour"] == "hang"]
               for r in crm.requests), "a timed-out message was sent again and recognised"
    assert all(r["auth"] == "Bearer tok-123" for r in crm.requests)
    # Each interaction's messages arrived in the order they were written.
    for interaction_id in ids:
        stream = [k for k in crm.order if interaction_id in str(crm.applied[k])]
        kinds = [k.split(":")[0] for k in stream]
        assert kinds == ["interaction.created", "interaction.updated", "note.added"], kinds
    created = crm.applied[f"interaction.created:{ids[0]}"]
    assert created["path"] == "/api/activities"
    assert created["body"]["external_id"] == ids[0] and created["body"]["type"] == "call"
    assert crm.applied[next(k for k in crm.order if k.startswith("note.added"))]["path"].endswith("/notes")


async def _all_delivered(outbox: OutboxStore, n: int) -> bool:
    return (await outbox.counts())["delivered"] == n


async def test_a_crm_down_for_an_hour_loses_nothing(crm: StandInCrm, stores: tuple[CrmStore, OutboxStore]) -> None:
    store, outbox = stores
    clock = Clock(T0)
    await crm.down()
    await _interactions(store, 3, now=T0)
    connector = _connector(crm)
    worker = DeliveryWorker(outbox, connector, clock=clock, rand=lambda: 0.5)  # the default policy
    rounds = 0
    try:
        while clock.now < T0 + timedelta(hours=1):
            rounds += 1
            await worker.run_once()
            due = await outbox.next_due_at()
            assert due is not None and due > clock.now  # backing off, not spinning
            clock.now = due
        counts = await outbox.counts()
        assert counts["dead"] == 0 and counts["pending"] == 3
        await crm.up()
        await worker.run_once()
    finally:
        await connector.close()
    assert (await outbox.counts())["delivered"] == 3
    assert rounds < RetryPolicy().max_attempts  # about one try per backoff step, not per tick
    _assert_exactly_once(crm, {m.idempotency_key for m in await outbox.list_all()})


async def test_the_loop_sleeps_on_a_down_crm_instead_of_spinning(
    crm: StandInCrm, stores: tuple[CrmStore, OutboxStore]
) -> None:
    store, outbox = stores
    await crm.down()
    await _interactions(store, 1)
    sends = 0

    class Counting(RestConnector):
        async def send(self, message: Any) -> Any:
            nonlocal sends
            sends += 1
            return await super().send(message)

    connector = Counting(base_url=crm.url, timeout_s=0.5)
    worker = DeliveryWorker(outbox, connector, policy=RetryPolicy(base_s=0.1, factor=2, cap_s=10, jitter=0),
                            idle_s=5)
    worker.start()
    await asyncio.sleep(1.0)  # tries at about 0, 0.1, 0.3, 0.7 s
    await worker.stop()
    await connector.close()
    assert 3 <= sends <= 5, sends


async def test_4xx_and_endless_500s_are_dead_lettered_and_replay_delivers_them(
    crm: StandInCrm, stores: tuple[CrmStore, OutboxStore]
) -> None:
    store, outbox = stores
    first, second, third = await _interactions(store, 3)
    crm.default = "500"
    crm.script.extend(["400"])  # the first message is refused outright
    connector = _connector(crm)
    policy = RetryPolicy(base_s=0.01, cap_s=0.02, max_attempts=3, jitter=0)
    worker = DeliveryWorker(outbox, connector, policy=policy, idle_s=0.05, concurrency=1)
    worker.start()
    try:
        await _until(lambda: _dead(outbox, 3))
        await worker.stop()
        dead = await list_dead_letters(outbox)
        by_stream = {d["stream"]: d for d in dead}
        assert by_stream[first]["attempts"] == 1
        assert "permanent failure: HTTP 400" in str(by_stream[first]["last_error"])
        assert by_stream[second]["attempts"] == by_stream[third]["attempts"] == 3
        assert "gave up after 3 attempts: HTTP 500" in str(by_stream[second]["last_error"])
        assert crm.applied == {}

        crm.default = "ok"
        assert await replay_dead_letter(outbox, int(str(by_stream[first]["id"]))) is True
        worker.start()
        await _until(lambda: _all_delivered(outbox, 1))
        assert await replay_all_dead_letters(outbox) == 2
        worker.wake()
        await _until(lambda: _all_delivered(outbox, 3))
    finally:
        await worker.stop()
        await connector.close()
    assert await list_dead_letters(outbox) == []
    _assert_exactly_once(crm, {m.idempotency_key for m in await outbox.list_all()})


async def _dead(outbox: OutboxStore, n: int) -> bool:
    return (await outbox.counts())["dead"] == n


async def test_a_worker_killed_mid_delivery_loses_and_duplicates_nothing(
    crm: StandInCrm, stores: tuple[CrmStore, OutboxStore]
) -> None:
    store, outbox = stores
    await _interactions(store, 8)
    crm.default = "hang"  # every request is applied, but its answer never comes back
    first = _connector(crm, timeout_s=10)
    crashed = DeliveryWorker(outbox, first, policy=FAST, lease_s=30, concurrency=4)
    task = crashed.start()
    await _until(lambda: _received(crm, 4))
    task.cancel()  # the hub dies with four messages on the wire
    with pytest.raises(asyncio.CancelledError):
        await task
    await first.close()
    counts = await outbox.counts()
    assert counts["delivering"] >= 4 and counts["delivered"] == 0

    crm.default = "ok"
    crm.release.set()
    # The restarted hub: its clock is past the dead worker's leases.
    later = DeliveryWorker(outbox, (second := _connector(crm)), policy=FAST, lease_s=30, idle_s=0.05,
                           clock=lambda: datetime.now(timezone.utc) + timedelta(seconds=31))
    later.start()
    try:
        await _until(lambda: _all_delivered(outbox, 8))
    finally:
        await later.stop()
        await second.close()
    _assert_exactly_once(crm, {m.idempotency_key for m in await outbox.list_all()})
    resent = [r for r in crm.requests if r["behaviour"] == "ok" and r["key"] in crm.order[:4]]
    assert resent, "the messages in flight at the crash were sent again (and recognised as duplicates)"


async def _received(crm: StandInCrm, n: int) -> bool:
    return len(crm.requests) >= n


async def test_a_connector_needs_its_token_and_never_shows_it() -> None:
    with pytest.raises(ValueError, match=TOKEN_ENV):
        RestConnector(base_url="http://127.0.0.1:9", token_env=TOKEN_ENV, environ={})
    connector = RestConnector(base_url="http://127.0.0.1:9", token_env=TOKEN_ENV, environ={TOKEN_ENV: "tok-secret"})
    assert "tok-secret" not in repr(connector)
    with pytest.raises(ValueError):
        RestConnector(base_url="ftp://crm.example")
