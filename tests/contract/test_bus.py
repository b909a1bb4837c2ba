"""One contract for every event bus: the in-process one and Redis streams (against a
real Redis, one fresh stream per test)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone

import pytest

from cti.bus import EventBus, InMemoryBus, RedisStreamsBus, Subscription, make_bus
from cti.events import AgentStateChanged, CallAnswered, CallOffered, ContactOffered, Event

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=timezone.utc)
WAIT = 3.0

BusFactory = Callable[[], EventBus]


def offered(n: int = 0) -> CallOffered:
    return CallOffered(
        occurred_at=T0, event_id=f"offered-{n}", call_id=f"c{n}", caller="+44 20 7946 0000", caller_e164="+442079460000",
        dialled="1000", queue="sales",
    )


def answered(n: int = 0) -> CallAnswered:
    return CallAnswered(occurred_at=T0, event_id=f"answered-{n}", call_id=f"c{n}", agent_id="a1")


def state_changed() -> AgentStateChanged:
    return AgentStateChanged(occurred_at=T0, event_id="state-1", agent_id="a1", state="available", previous="away")


@pytest.fixture(params=["memory", "redis"])
async def new_bus(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """A factory of buses that share one medium (as several hub processes would)."""
    buses: list[EventBus] = []
    stream = f"test:ctihub:{uuid.uuid4().hex}"
    if request.param == "memory":
        shared = InMemoryBus()

        def factory() -> EventBus:
            if buses:
                pytest.skip("an in-memory bus is not shared between processes")
            buses.append(shared)
            return shared
    else:
        url = request.getfixturevalue("redis_url")

        def factory() -> EventBus:
            bus = RedisStreamsBus(url, stream=stream, client_name=f"test-{stream}")
            buses.append(bus)
            return bus

    yield factory
    for bus in buses:
        await bus.close()
    # close() must leave no reader behind (no "Task was destroyed but it is pending").
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("bus-reader") and not t.done()] == []
    if request.param == "redis":
        import redis.asyncio as aioredis

        client = aioredis.from_url(request.getfixturevalue("redis_url"))
        await client.delete(stream)
        await client.aclose()


@pytest.fixture
async def bus(new_bus: BusFactory) -> EventBus:
    return new_bus()


async def drain(sub: Subscription, n: int) -> list[Event]:
    return [await sub.get(timeout=WAIT) for _ in range(n)]


async def nothing_more(sub: Subscription, within: float = 0.3) -> bool:
    try:
        await sub.get(timeout=within)
    except TimeoutError:
        return True
    return False


async def test_round_trip_keeps_every_field(bus: EventBus) -> None:
    sent = [offered(), ContactOffered(occurred_at=T0, contact_id="k1", queue="kyc", agent_id="a2",
                                      matched_skills=("kyc", "fr")), state_changed()]
    async with bus.subscribe() as sub:
        for ev in sent:
            await bus.publish(ev)
        got = await drain(sub, len(sent))
    assert got == sent
    assert [type(e) for e in got] == [type(e) for e in sent]


async def test_subscribe_then_publish_without_async_with(bus: EventBus) -> None:
    sub = bus.subscribe(["call.offered"])
    await bus.publish(offered())
    assert await sub.get(timeout=WAIT) == offered()
    await sub.close()


async def test_topic_filters_and_prefix_patterns(bus: EventBus) -> None:
    async with bus.subscribe(["call.*"]) as calls, bus.subscribe(["agent.state_changed"]) as agents, \
            bus.subscribe(["call.answered", "agent.*"]) as mixed, bus.subscribe(["*"]) as everything:
        for ev in (offered(), state_changed(), answered()):
            await bus.publish(ev)
        assert await drain(calls, 2) == [offered(), answered()]
        assert await drain(agents, 1) == [state_changed()]
        assert await drain(mixed, 2) == [state_changed(), answered()]
        assert await drain(everything, 3) == [offered(), state_changed(), answered()]
        assert await nothing_more(calls, 0.1)
        assert await nothing_more(agents, 0.1)


def test_bad_patterns_are_refused() -> None:
    bus = InMemoryBus()
    for bad in (["call*"], ["*.offered"], [".*"], "call.offered"):
        with pytest.raises((ValueError, TypeError)):
            bus.subscribe(bad)


async def test_two_subscribers_both_get_every_event(bus: EventBus) -> None:
    async with bus.subscribe() as one, bus.subscribe() as two:
        for n in range(5):
            await bus.publish(offered(n))
        assert await drain(one, 5) == [offered(n) for n in range(5)]
        assert await drain(two, 5) == [offered(n) for n in range(5)]


async def test_order_is_preserved_for_1000_events(bus: EventBus) -> None:
    sent = [answered(n) for n in range(1000)]
    async with bus.subscribe(["call.*"]) as sub:
        for ev in sent:
            await bus.publish(ev)
        got = await drain(sub, 1000)
    assert [e.call_id for e in got] == [e.call_id for e in sent]  # type: ignore[attr-defined]


async def test_later_subscription_does_not_see_earlier_events(bus: EventBus) -> None:
    await bus.publish(offered(1))
    async with bus.subscribe() as sub:
        await bus.publish(offered(2))
        assert await sub.get(timeout=WAIT) == offered(2)
        assert await nothing_more(sub)


async def test_close_ends_iteration(bus: EventBus) -> None:
    sub = bus.subscribe()
    await sub.ready()
    got: list[Event] = []

    async def consume() -> None:
        async for ev in sub:
            got.append(ev)

    task = asyncio.create_task(consume())
    await bus.publish(offered())
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.02)
    await sub.close()
    await asyncio.wait_for(task, WAIT)
    assert got == [offered()]
    assert sub.closed


async def test_bus_close_ends_every_subscription(new_bus: BusFactory) -> None:
    bus = new_bus()
    subs = [bus.subscribe(), bus.subscribe(["call.*"])]

    async def consume(sub: Subscription) -> int:
        return len([ev async for ev in sub])

    tasks = [asyncio.create_task(consume(s)) for s in subs]
    await asyncio.sleep(0.05)
    await bus.close()
    assert await asyncio.wait_for(asyncio.gather(*tasks), WAIT) == [0, 0]
    with pytest.raises(RuntimeError):
        await bus.publish(offered())


async def test_slow_subscriber_does_not_block_publisher_and_drops_oldest(caplog: pytest.LogCaptureFixture) -> None:
    bus = InMemoryBus(max_pending=3)
    async with bus.subscribe() as slow:
        with caplog.at_level(logging.WARNING):
            for n in range(5):
                await asyncio.wait_for(bus.publish(answered(n)), 0.1)
        assert slow.dropped == 2
        assert [e.call_id for e in await drain(slow, 3)] == ["c2", "c3", "c4"]  # type: ignore[attr-defined]
        assert "dropped" in caplog.text
    await bus.close()


def test_make_bus_picks_the_implementation() -> None:
    assert isinstance(make_bus(None), InMemoryBus)
    assert isinstance(make_bus("redis://127.0.0.1:6379/15"), RedisStreamsBus)


# --- Redis only ------------------------------------------------------------------------


only_redis = pytest.mark.parametrize("new_bus", ["redis"], indirect=True)


@pytest.fixture
async def redis_bus(new_bus: BusFactory) -> RedisStreamsBus:
    bus = new_bus()
    assert isinstance(bus, RedisStreamsBus)
    return bus


@only_redis
async def test_two_hub_processes_see_each_others_events(redis_bus: RedisStreamsBus, new_bus: BusFactory) -> None:
    other = new_bus()
    async with redis_bus.subscribe() as here, other.subscribe() as there:
        await redis_bus.publish(offered(1))
        await other.publish(answered(2))
        assert await drain(here, 2) == [offered(1), answered(2)]
        assert await drain(there, 2) == [offered(1), answered(2)]


@only_redis
async def test_unknown_event_types_are_skipped(redis_bus: RedisStreamsBus, redis_url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    async with redis_bus.subscribe() as sub:
        future = {"type": "hologram.projected", "version": 9, "id": "x", "occurred_at": "2030-01-01T00:00:00Z", "data": {}}
        await client.xadd(redis_bus.stream, {"e": json.dumps(future)})
        await client.xadd(redis_bus.stream, {"e": b"not json"})
        await redis_bus.publish(offered())
        assert await sub.get(timeout=WAIT) == offered()
    await client.aclose()


async def _kill_bus_connections(redis_url: str, client_name: str) -> int:
    """Drop this bus's connections only, so other users of the server are untouched."""
    import redis.asyncio as aioredis

    admin = aioredis.from_url(redis_url)
    killed = 0
    for info in await admin.client_list():
        if info.get("name") == client_name:
            await admin.client_kill_filter(_id=info["id"])
            killed += 1
    await admin.aclose()
    return killed


@only_redis
async def test_reader_survives_a_killed_connection(redis_bus: RedisStreamsBus, new_bus: BusFactory, redis_url: str) -> None:
    publisher = new_bus()
    async with redis_bus.subscribe(["call.*"]) as sub:
        await publisher.publish(offered(1))
        assert await sub.get(timeout=WAIT) == offered(1)
        await asyncio.sleep(0.05)  # let the reader go back into XREAD BLOCK
        assert await _kill_bus_connections(redis_url, f"test-{redis_bus.stream}") >= 1
        for n in range(2, 12):
            await publisher.publish(offered(n))
        assert await drain(sub, 10) == [offered(n) for n in range(2, 12)]
        await redis_bus.publish(answered(99))  # the killed bus can still publish too
        assert await sub.get(timeout=WAIT) == answered(99)


@only_redis
async def test_reader_resumes_from_last_seen_id_after_an_outage(redis_bus: RedisStreamsBus, new_bus: BusFactory, redis_url: str) -> None:
    """Events published while the reader is cut off are delivered once it is back."""
    publisher = new_bus()
    async with redis_bus.subscribe() as sub:
        await publisher.publish(offered(0))
        assert await sub.get(timeout=WAIT) == offered(0)
        for _ in range(3):  # keep killing while the publisher writes
            await _kill_bus_connections(redis_url, f"test-{redis_bus.stream}")
            await publisher.publish(offered(1))
            await publisher.publish(offered(2))
        assert await drain(sub, 6) == [offered(1), offered(2)] * 3
        assert await nothing_more(sub)
