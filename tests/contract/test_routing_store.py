"""The routing store contract (`routing.store`), on both stores: in the process, and Redis.

The same playbooks run on each: what `submit` returns, that a refused fact raises
`RoutingError` and changes nothing, that time-driven and configuration facts go
through the store. Then Hypothesis drives long random sequences of arrivals, abandons,
accepts, rejects, finishes, ticks (reservation timeouts, wrap-ups, maximum waits,
routing steps), agent state changes and configuration changes through each store,
checking after every fact the invariants in `routing_invariants`; on Redis two stores
("two processes", two connections) share the state and race each other with concurrent
submissions, and must converge and keep the reservation ledger exact.
Redis-only behaviour (several processes, snapshots, the ledger) is tested below them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from routing import (
    DEFAULT_RULES,
    ActionKind,
    AgentProfile,
    AgentState,
    AnnounceAgentState,
    AnnounceQueued,
    Command,
    OfferContact,
    QueueAction,
    QueueConfig,
    Router,
    RoutingError,
    RoutingStep,
    Strategy,
    WithdrawOffer,
)
from routing.facts import (
    AgentConfigured,
    AgentLoggedIn,
    AgentLoggedOut,
    AgentStateRequested,
    ContactAbandoned,
    ContactArrived,
    ContactFinished,
    Fact,
    OfferAccepted,
    OfferRejected,
    QueueConfigured,
    RulesChanged,
    TimePassed,
    WrapUpDone,
)
from routing.redis_store import RedisRoutingStore
from routing.store import Applied, InProcessStore, RoutingStore
from tests.conftest import REDIS_URL
from tests.contract.routing_invariants import (
    check_ledger,
    check_no_offer_outlives_its_reservation,
    check_offer_order,
    check_replica,
)

S = AgentState
Opener = Callable[[Callable[[], Router]], Awaitable[RoutingStore]]


def small_center() -> Router:
    return Router(
        [
            QueueConfig(name="sales", reservation_timeout_s=10, wrap_up_s=5),
            QueueConfig(name="kyc", required_skills=frozenset({"kyc"})),
        ],
        [AgentProfile(agent_id="a1"), AgentProfile(agent_id="a2", skills=frozenset({"kyc"}))],
        publish_stats=False,
    )


@pytest.fixture(params=["in_process", "redis"])
async def open_store(request: pytest.FixtureRequest) -> AsyncIterator[Opener]:
    """Opens stores on one shared state: on Redis each call is another 'process' (its
    own connection); in the process there is only one router, so only one call."""
    opened: list[RoutingStore] = []
    clients: list[Any] = []
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    if request.param == "in_process":

        async def opener(initial: Callable[[], Router]) -> RoutingStore:
            assert not opened, "one in-process store per test"
            opened.append(InProcessStore(initial()))
            return opened[-1]

    else:
        import redis.asyncio as aioredis

        url = request.getfixturevalue("redis_url")

        async def opener(initial: Callable[[], Router]) -> RoutingStore:
            client = aioredis.from_url(url)
            clients.append(client)
            opened.append(await RedisRoutingStore.open(client, initial, namespace=namespace))
            return opened[-1]

    yield opener
    for store in opened:
        await store.close()
    for client in clients:
        await client.delete(*[k async for k in client.scan_iter(match="{" + namespace + "}*")] or ["-"])
        await client.aclose()


def st_(agent_id: str, state: AgentState, previous: AgentState, reason: str | None = None) -> AnnounceAgentState:
    return AnnounceAgentState(agent_id=agent_id, state=state, previous=previous, reason=reason)


async def ready(store: RoutingStore, agent_id: str, now: float) -> list[Command]:
    await store.submit(AgentLoggedIn(agent_id=agent_id, now=now))
    return await store.submit(AgentStateRequested(agent_id=agent_id, state=S.AVAILABLE, now=now))


# --- playbooks, on both stores ---------------------------------------------------------------


async def test_an_offer_comes_back_to_the_submitter_and_runs_its_course(open_store: Opener) -> None:
    store = await open_store(small_center)
    assert await ready(store, "a1", 1.0) == [st_("a1", S.AVAILABLE, S.AWAY)]
    assert await store.submit(ContactArrived(contact_id="c1", queue="sales", now=2.0)) == [
        AnnounceQueued(contact_id="c1", queue="sales"),
        st_("a1", S.RESERVED, S.AVAILABLE),
        OfferContact(contact_id="c1", agent_id="a1", queue="sales", matched_skills=()),
    ]
    assert await store.submit(OfferAccepted(contact_id="c1", agent_id="a1", now=3.0)) == [
        st_("a1", S.BUSY, S.RESERVED)
    ]
    assert await store.submit(ContactFinished(contact_id="c1", now=4.0)) == [st_("a1", S.WRAP_UP, S.BUSY)]
    assert await store.submit(TimePassed(now=9.0)) == [st_("a1", S.AVAILABLE, S.WRAP_UP)]
    assert store.router.agent_state("a1") is S.AVAILABLE
    assert store.router.stats.snapshot(9.0)["queues"]["sales"]["ContactsHandled"] == 1


async def test_a_refused_fact_raises_and_changes_nothing(open_store: Opener) -> None:
    store = await open_store(small_center)
    await ready(store, "a1", 1.0)
    await store.submit(ContactArrived(contact_id="c1", queue="sales", now=2.0))
    before = store.router.dump()
    refused: list[tuple[Fact, str]] = [
        (OfferAccepted(contact_id="c1", agent_id="a2", now=3.0), "no_such_offer"),
        (ContactFinished(contact_id="c1", now=3.0), "not_assigned"),
        (ContactArrived(contact_id="c1", queue="sales", now=3.0), "duplicate_contact"),
        (ContactArrived(contact_id="c9", queue="nowhere", now=3.0), "unknown_queue"),
        (WrapUpDone(agent_id="a1", now=3.0), "not_in_wrap_up"),
        (AgentLoggedIn(agent_id="ghost", now=3.0), "unknown_agent"),
    ]
    for fact, code in refused:
        with pytest.raises(RoutingError) as err:
            await store.submit(fact)
        assert err.value.code == code
    assert store.router.dump() == before


async def test_reservation_timeout_and_logout_through_the_store(open_store: Opener) -> None:
    store = await open_store(small_center)
    await ready(store, "a1", 0.0)
    await store.submit(ContactArrived(contact_id="c1", queue="sales", now=1.0))
    assert await store.submit(TimePassed(now=5.0)) == []
    withdrawn = await store.submit(TimePassed(now=11.0))
    assert withdrawn[:2] == [
        WithdrawOffer(contact_id="c1", agent_id="a1", reason="timeout"),
        st_("a1", S.AVAILABLE, S.RESERVED),
    ]
    assert store.router.waiting("sales") == ["c1"]  # a1 declined it by letting it time out
    await ready(store, "a2", 12.0)
    assert store.router.agent_for("c1") == "a2"
    out = await store.submit(AgentLoggedOut(agent_id="a2", now=13.0))
    assert out[0] == WithdrawOffer(contact_id="c1", agent_id="a2", reason="agent_logged_out")
    assert store.router.agent_state("a2") is S.OFFLINE


async def test_configuration_changes_go_through_the_store(open_store: Opener) -> None:
    store = await open_store(small_center)
    await store.submit(QueueConfigured(queue=QueueConfig(name="vip", requirement="crypto >= 3"), now=1.0))
    await store.submit(AgentConfigured(profile=AgentProfile(agent_id="a3", proficiency={"crypto": 4}), now=1.0))
    await store.submit(RulesChanged(rules=DEFAULT_RULES, now=1.0))
    await ready(store, "a3", 2.0)
    out = await store.submit(ContactArrived(contact_id="c1", queue="vip", now=3.0, attributes={"tier": "vip"}))
    assert [c for c in out if isinstance(c, OfferContact)] == [
        OfferContact(contact_id="c1", agent_id="a3", queue="vip", matched_skills=("crypto",))
    ]
    await store.submit(OfferAccepted(contact_id="c1", agent_id="a3", now=4.0))
    await store.submit(ContactFinished(contact_id="c1", now=4.0))
    # the agent loses the skill: the next vip contact waits
    await store.submit(AgentConfigured(profile=AgentProfile(agent_id="a3"), now=5.0))
    await store.submit(ContactArrived(contact_id="c2", queue="vip", now=5.0))
    assert store.router.waiting("vip") == ["c2"]
    out = await store.submit(QueueConfigured(queue=QueueConfig(name="vip"), now=6.0))  # requirement dropped
    assert [(c.contact_id, c.agent_id) for c in out if isinstance(c, OfferContact)] == [("c2", "a3")]


async def test_sync_is_harmless_and_queries_read_the_replica(open_store: Opener) -> None:
    store = await open_store(small_center)
    await store.sync()
    await ready(store, "a2", 1.0)
    await store.sync()
    assert store.router.agent_state("a2") is S.AVAILABLE


# --- Redis only: several processes, the ledger, snapshots --------------------------------------


@pytest.fixture
async def redis_stores(redis_url: str) -> AsyncIterator[Callable[..., Awaitable[RedisRoutingStore]]]:
    """Opens RedisRoutingStores on one namespace, each with its own connection."""
    import redis.asyncio as aioredis

    namespace = f"t-{uuid.uuid4().hex[:8]}"
    opened: list[tuple[RedisRoutingStore, Any]] = []

    async def opener(initial: Callable[[], Router] = small_center, **options: Any) -> RedisRoutingStore:
        client = aioredis.from_url(redis_url)
        store = await RedisRoutingStore.open(client, initial, namespace=namespace, **options)
        opened.append((store, client))
        return store

    opener.namespace = namespace  # type: ignore[attr-defined]
    yield opener
    for store, client in opened:
        await store.close()
    if opened:
        client = opened[0][1]
        await client.delete(*[k async for k in client.scan_iter(match="{" + namespace + "}*")] or ["-"])
    for _, client in opened:
        await client.aclose()


def offers_in(commands: list[Command]) -> list[tuple[str, str]]:
    return [(c.contact_id, c.agent_id) for c in commands if isinstance(c, OfferContact)]


async def test_two_processes_route_from_one_state(redis_stores: Any) -> None:
    a, b = await redis_stores(), await redis_stores()
    await ready(a, "a1", 1.0)
    out = await b.submit(ContactArrived(contact_id="c1", queue="sales", now=2.0))
    assert offers_in(out) == [("c1", "a1")]  # to the process that logged the arrival
    assert a.router.agent_state("a1") is S.AVAILABLE  # a has not caught up yet
    await a.sync()
    assert a.router.agent_for("c1") == "a1"
    assert a.router.dump() == b.router.dump()
    assert a.applied == b.applied == 3


async def test_concurrent_submits_of_one_process_each_get_their_own_commands(redis_stores: Any) -> None:
    agents = [AgentProfile(agent_id=f"a{i}") for i in range(8)]
    a = await redis_stores(lambda: Router([QueueConfig(name="q")], agents))
    for i in range(8):
        await ready(a, f"a{i}", float(i))
    outs = await asyncio.gather(*[a.submit(ContactArrived(contact_id=f"c{i}", queue="q", now=10.0)) for i in range(12)])
    for i, out in enumerate(outs):
        assert out[0] == AnnounceQueued(contact_id=f"c{i}", queue="q")
        assert [cid for cid, _ in offers_in(out)] in ([f"c{i}"], [])
    offered = [o for out in outs for o in offers_in(out)]
    assert len(offered) == 8 and len({agent for _, agent in offered}) == 8


async def test_racing_facts_are_settled_by_the_log_order(redis_stores: Any) -> None:
    a, b = await redis_stores(), await redis_stores()
    await ready(a, "a1", 1.0)
    await a.submit(ContactArrived(contact_id="c1", queue="sales", now=2.0))
    await b.sync()
    results = await asyncio.gather(
        a.submit(OfferAccepted(contact_id="c1", agent_id="a1", now=3.0)),
        b.submit(ContactAbandoned(contact_id="c1", now=3.0)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, RoutingError) for r in results) == 1  # whichever came second
    await a.sync()
    await b.sync()
    assert a.router.dump() == b.router.dump()
    await check_ledger(a._redis, redis_stores.namespace, a.router)
    assert not a.refused and not b.refused


async def test_the_log_time_never_goes_back(redis_stores: Any) -> None:
    a, b = await redis_stores(), await redis_stores()
    await a.submit(AgentLoggedIn(agent_id="a1", now=10.0))
    await b.submit(AgentLoggedIn(agent_id="a2", now=5.0))  # b's clock is behind
    assert b.router.state_since("a2") == 10.0


async def test_on_applied_sees_every_fact_in_order(redis_stores: Any) -> None:
    seen: list[Applied] = []
    a = await redis_stores(on_applied=seen.append)
    b = await redis_stores()
    await ready(b, "a1", 1.0)
    await a.submit(ContactArrived(contact_id="c1", queue="sales", now=2.0))
    with pytest.raises(RoutingError):
        await b.submit(ContactFinished(contact_id="c1", now=3.0))
    await a.sync()
    assert [(x.seq, x.mine, x.error) for x in seen] == [(1, False, None), (2, False, None), (3, True, None),
                                                        (4, False, "not_assigned")]
    assert offers_in(list(seen[2].commands)) == [("c1", "a1")]


async def test_snapshots_trim_the_log_and_let_processes_join_or_catch_up(redis_stores: Any) -> None:
    a = await redis_stores(snapshot_every=20)
    late = await redis_stores(snapshot_every=1000)  # stays behind while a works
    await ready(a, "a2", 0.0)
    for i in range(60):
        out = await a.submit(ContactArrived(contact_id=f"c{i}", queue="kyc", now=2.0 * i + 1))
        for cid, agent in offers_in(out):
            await a.submit(OfferAccepted(contact_id=cid, agent_id=agent, now=2.0 * i + 1))
            await a.submit(ContactFinished(contact_id=cid, now=2.0 * i + 1.5))
        await asyncio.sleep(0)  # let the snapshot task run
    await a.close()  # waits for the snapshot being written, if any
    assert a._snap_seq >= 20  # snapshots were taken along the way
    snap_seq = await a.snapshot_now()
    assert snap_seq == a.applied
    log_len = await a._redis.xlen("{" + redis_stores.namespace + "}:log")
    assert log_len < a.applied  # trimmed
    joined = await redis_stores()
    assert joined.router.dump() == a.router.dump()
    await late.sync()  # its next entries were trimmed: it reloads the snapshot
    assert late.router.dump() == a.router.dump()
    out = await late.submit(ContactArrived(contact_id="last", queue="sales", now=500.0))
    assert out[0] == AnnounceQueued(contact_id="last", queue="sales")
    await a.sync()
    await joined.sync()
    assert a.router.dump() == late.router.dump() == joined.router.dump()


async def test_the_ledger_refuses_offers_from_a_replica_that_diverged(redis_stores: Any) -> None:
    initial = lambda: Router(
        [QueueConfig(name="q")], [AgentProfile(agent_id=a) for a in ("a1", "a2", "a3")], max_missed_offers=None
    )
    good, bad = await redis_stores(initial), await redis_stores(initial)
    for agent in ("a1", "a2"):
        await ready(good, agent, 1.0)
    await good.submit(ContactArrived(contact_id="c1", queue="q", now=2.0))
    await good.submit(OfferAccepted(contact_id="c1", agent_id="a1", now=3.0))
    await good.submit(ContactArrived(contact_id="c2", queue="q", now=4.0))  # offered to a2
    await bad.sync()
    # A bug makes one replica believe a1 finished c1 and a2 turned c2 down.
    bad.router.contact_finished("c1", 5.0)
    bad.router.offer_rejected("c2", "a2", 5.0)
    assert bad.router.agent_for("c2") == "a1"  # the bad replica re-offered c2 at once
    out = await bad.submit(ContactArrived(contact_id="c3", queue="q", now=6.0))
    assert offers_in(out) == []  # its offers of c3 never leave the process...
    await ready(bad, "a3", 7.0)
    assert bad.refused["full"] + bad.refused["taken"] >= 1
    await good.sync()
    check_replica(good.router, 7.0)
    # The ledger holds nothing the shared state does not (the bad replica's facts were
    # applied correctly by the others, but their offers were never carried out).
    await check_ledger(good._redis, redis_stores.namespace, good.router, exact=False)
    assert not good.refused


# --- long random sequences on both stores ---------------------------------------------------


def acd_center() -> Router:
    langs = {"a1": ("de", "en"), "a2": ("en",), "a3": ("fr", "en"), "a4": ("de",), "a5": ("en",)}
    levels = [{"sales": 4}, {"sales": 1, "support": 3}, {"compliance": 2, "sales": 3}, {}, {"support": 2}]
    return Router(
        [
            QueueConfig(
                name="sales",
                required_skills=frozenset({"sales"}),
                steps=(RoutingStep(after_s=0, requirement="sales >= 3"), RoutingStep(after_s=10, requirement="sales >= 1")),
                aging_step_s=5,
                wrap_up_s=4,
                reservation_timeout_s=8,
                strategy=Strategy.BEST_PROFICIENCY,
            ),
            QueueConfig(
                name="chat",
                strategy=Strategy.LEAST_OCCUPIED,
                max_length=3,
                on_full=QueueAction(kind=ActionKind.OVERFLOW, to_queue="vip"),
                reservation_timeout_s=5,
            ),
            QueueConfig(
                name="vip",
                priority=1,
                max_wait_s=20,
                on_timeout=QueueAction(kind=ActionKind.OVERFLOW, to_queue="sales"),
                max_length=4,
                on_full=QueueAction(kind=ActionKind.CALLBACK),
            ),
            QueueConfig(name="rr", strategy=Strategy.ROUND_ROBIN, requirement="compliance or support >= 2", wrap_up_s=2),
        ],
        [acd_profile(a, levels[i], langs[a]) for i, a in enumerate(sorted(langs))],
        rules=DEFAULT_RULES,
        max_missed_offers=2,
        publish_stats=True,
    )


def acd_profile(agent_id: str, levels: dict[str, int], langs: tuple[str, ...]) -> AgentProfile:
    return AgentProfile(
        agent_id=agent_id,
        skills=frozenset(levels),
        proficiency=levels,
        attributes={"language": langs[0], "languages": frozenset(langs)},
        capacity={"voice": 1, "chat": 2},
        voice_exclusive=agent_id != "a5",
    )


AGENT_IDS = ["a1", "a2", "a3", "a4", "a5"]
QUEUE_NAMES = ["sales", "chat", "vip", "rr"]
LEVELS = [{"sales": 4}, {"sales": 1, "support": 3}, {"compliance": 2, "sales": 3}, {}, {"support": 2}]


class StoreMachine(RuleBasedStateMachine):
    """Facts through the stores; after each step every replica is checked. Subclasses
    say which stores (`open_stores`) and whether they can race."""

    racing = False

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.stores: list[RoutingStore] = self.run(self.open_stores())
        self.now = 0.0
        self.n = 0
        self.seen: list[str] = []

    async def open_stores(self) -> list[RoutingStore]:
        raise NotImplementedError

    async def close_stores(self) -> None:
        for store in self.stores:
            await store.close()

    def run(self, coro: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.close_stores())
        self.loop.close()

    @property
    def router(self) -> Router:
        return self.stores[0].router

    # --- driving --------------------------------------------------------------------------

    def submit(self, fact: Fact, by: int = 0) -> None:
        store = self.stores[by % len(self.stores)]
        self.run(store.sync())
        before = json.dumps(store.router.dump())
        try:
            commands = self.run(store.submit(fact))
        except RoutingError:
            assert json.dumps(store.router.dump()) == before, "a refused fact changed the state"
            return
        for c in commands:
            if isinstance(c, OfferContact):
                check_offer_order(store.router, c, fact.now)
        if isinstance(fact, TimePassed):
            check_no_offer_outlives_its_reservation(store.router, fact.now)

    def race(self, first: Fact, second: Fact) -> None:
        """Two processes submit at the same moment."""

        async def both() -> None:
            await asyncio.gather(
                self.stores[0].submit(first), self.stores[-1].submit(second), return_exceptions=True
            )

        self.run(both())

    def offered(self) -> list[str]:
        return [c for c in self.seen if self.router.agent_for(c) and not self.router.is_accepted(c)]

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 3.0, 6.0, 11.0]), by=st.integers(0, 1))
    def tick(self, dt: float, by: int) -> None:
        self.now += dt
        self.submit(TimePassed(now=self.now), by)

    @rule(
        queue=st.sampled_from(QUEUE_NAMES),
        channel=st.sampled_from(["voice", "voice", "chat"]),
        priority=st.sampled_from([0, 0, 1]),
        language=st.sampled_from([None, "de", "en", "fr"]),
        edd=st.booleans(),
        preferred=st.sampled_from([None, None, *AGENT_IDS]),
        by=st.integers(0, 1),
    )
    def arrive(
        self, queue: str, channel: str, priority: int, language: str | None, edd: bool, preferred: str | None, by: int
    ) -> None:
        self.n += 1
        self.seen.append(f"c{self.n}")
        attrs: dict[str, Any] = {"edd": edd, **({"language": language} if language else {})}
        fact = ContactArrived(
            contact_id=f"c{self.n}",
            queue=queue,
            now=self.now,
            channel=channel,
            priority=priority,
            attributes=attrs,
            preferred_agent=preferred,
            preferred_for_s=6.0,
        )
        self.submit(fact, by)

    @precondition(lambda self: self.seen)
    @rule(data=st.data(), by=st.integers(0, 1))
    def abandon(self, data: st.DataObject, by: int) -> None:
        self.submit(ContactAbandoned(contact_id=data.draw(st.sampled_from(self.seen)), now=self.now), by)

    @precondition(lambda self: self.seen)
    @rule(data=st.data(), accept=st.booleans(), by=st.integers(0, 1))
    def answer(self, data: st.DataObject, accept: bool, by: int) -> None:
        self.run(self.stores[by % len(self.stores)].sync())
        offered = self.offered()
        if offered:
            cid = data.draw(st.sampled_from(offered))
            agent = self.router.agent_for(cid) or ""
            fact = OfferAccepted if accept else OfferRejected
            self.submit(fact(contact_id=cid, agent_id=agent, now=self.now), by)

    @precondition(lambda self: self.seen)
    @rule(data=st.data(), by=st.integers(0, 1))
    def finish(self, data: st.DataObject, by: int) -> None:
        accepted = [c for c in self.seen if self.router.is_accepted(c)]
        if accepted:
            self.submit(ContactFinished(contact_id=data.draw(st.sampled_from(accepted)), now=self.now), by)

    @rule(agent=st.sampled_from(AGENT_IDS), by=st.integers(0, 1))
    def get_ready(self, agent: str, by: int) -> None:
        if self.router.agent_state(agent) is S.OFFLINE:
            self.submit(AgentLoggedIn(agent_id=agent, now=self.now), by)
        self.submit(AgentStateRequested(agent_id=agent, state=S.AVAILABLE, now=self.now), by)

    @rule(agent=st.sampled_from(AGENT_IDS), state=st.sampled_from([S.AWAY, S.OFFLINE]), by=st.integers(0, 1))
    def leave(self, agent: str, state: AgentState, by: int) -> None:
        self.submit(AgentStateRequested(agent_id=agent, state=state, now=self.now, reason="lunch"), by)

    @rule(agent=st.sampled_from(AGENT_IDS), by=st.integers(0, 1))
    def log_out(self, agent: str, by: int) -> None:
        self.submit(AgentLoggedOut(agent_id=agent, now=self.now), by)

    @rule(agent=st.sampled_from(AGENT_IDS), by=st.integers(0, 1))
    def wrap_up_done(self, agent: str, by: int) -> None:
        self.submit(WrapUpDone(agent_id=agent, now=self.now), by)

    @rule(agent=st.sampled_from(AGENT_IDS), levels=st.sampled_from(LEVELS), by=st.integers(0, 1))
    def reconfigure_agent(self, agent: str, levels: dict[str, int], by: int) -> None:
        profile = acd_profile(agent, levels, ("en", "de"))
        self.submit(AgentConfigured(profile=profile, now=self.now), by)

    @rule(strategy=st.sampled_from(Strategy), steps=st.booleans(), by=st.integers(0, 1))
    def reconfigure_sales(self, strategy: Strategy, steps: bool, by: int) -> None:
        q = self.router.queue("sales")
        steps_now = (RoutingStep(after_s=0, requirement="sales >= 3"), RoutingStep(after_s=10, requirement="sales"))
        new = QueueConfig(
            name="sales",
            required_skills=q.required_skills,
            steps=steps_now if steps else (),
            aging_step_s=q.aging_step_s,
            wrap_up_s=q.wrap_up_s,
            reservation_timeout_s=q.reservation_timeout_s,
            strategy=strategy,
        )
        self.submit(QueueConfigured(queue=new, now=self.now), by)

    @rule(on=st.booleans(), by=st.integers(0, 1))
    def change_rules(self, on: bool, by: int) -> None:
        self.submit(RulesChanged(rules=DEFAULT_RULES if on else DEFAULT_RULES[:2], now=self.now), by)

    # --- races (two stores only) -----------------------------------------------------------

    @precondition(lambda self: self.racing and self.seen)
    @rule(data=st.data(), accept=st.booleans())
    def race_answer_and_abandon(self, data: st.DataObject, accept: bool) -> None:
        self.run(self.stores[0].sync())
        offered = self.offered()
        if offered:
            cid = data.draw(st.sampled_from(offered))
            agent = self.router.agent_for(cid) or ""
            answer = (OfferAccepted if accept else OfferRejected)(contact_id=cid, agent_id=agent, now=self.now)
            self.race(answer, ContactAbandoned(contact_id=cid, now=self.now))

    @precondition(lambda self: self.racing)
    @rule(agent=st.sampled_from(AGENT_IDS), queue=st.sampled_from(QUEUE_NAMES))
    def race_arrivals_and_an_agent(self, agent: str, queue: str) -> None:
        self.n += 2
        self.seen += [f"c{self.n - 1}", f"c{self.n}"]
        self.race(
            ContactArrived(contact_id=f"c{self.n - 1}", queue=queue, now=self.now),
            ContactArrived(contact_id=f"c{self.n}", queue="chat", channel="chat", now=self.now),
        )
        self.race(
            AgentStateRequested(agent_id=agent, state=S.AVAILABLE, now=self.now),
            AgentLoggedOut(agent_id=agent, now=self.now),
        )

    @precondition(lambda self: self.racing)
    @rule(dt=st.sampled_from([1.0, 6.0, 11.0]), agent=st.sampled_from(AGENT_IDS))
    def race_ticks_and_a_finish(self, dt: float, agent: str) -> None:
        self.now += dt
        held = [c for c in self.seen if self.router.is_accepted(c)]
        other: Fact = ContactFinished(contact_id=held[0], now=self.now) if held else WrapUpDone(agent_id=agent, now=self.now)
        self.race(TimePassed(now=self.now), other)

    # --- checks ------------------------------------------------------------------------------

    @invariant()
    def every_replica_holds_the_invariants_and_they_agree(self) -> None:
        for store in self.stores:
            self.run(store.sync())
            check_replica(store.router, self.now)
        first = self.stores[0].router
        for store in self.stores[1:]:
            assert store.router.dump() == first.dump()
            assert json.dumps(store.router.stats.snapshot(self.now)) == json.dumps(first.stats.snapshot(self.now))


class InProcessMachine(StoreMachine):
    async def open_stores(self) -> list[RoutingStore]:
        return [InProcessStore(acd_center())]


class RedisMachine(StoreMachine):
    racing = True
    url = REDIS_URL

    async def open_stores(self) -> list[RoutingStore]:
        import redis.asyncio as aioredis

        self.namespace = f"t-{uuid.uuid4().hex[:8]}"
        self.clients = [aioredis.from_url(self.url) for _ in range(2)]
        return [await RedisRoutingStore.open(c, acd_center, namespace=self.namespace) for c in self.clients]

    async def close_stores(self) -> None:
        await super().close_stores()
        keys = [k async for k in self.clients[0].scan_iter(match="{" + self.namespace + "}*")]
        if keys:
            await self.clients[0].delete(*keys)
        for c in self.clients:
            await c.aclose()

    @invariant()
    def the_ledger_is_exact_and_refused_nothing_but_stale_offers(self) -> None:
        self.run(check_ledger(self.clients[0], self.namespace, self.router))
        for store in self.stores:
            assert isinstance(store, RedisRoutingStore)
            assert store.refused.keys() <= {"stale"}, store.refused


def test_random_sequences_in_process() -> None:
    run_state_machine_as_test(
        InProcessMachine,
        settings=settings(
            max_examples=60, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        ),
    )


def test_random_sequences_on_redis_with_two_racing_processes(redis_url: str) -> None:
    RedisMachine.url = redis_url
    run_state_machine_as_test(
        RedisMachine,
        settings=settings(
            max_examples=30, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        ),
    )


@pytest.mark.parametrize(
    ("meanwhile", "carried_out", "claim"),
    [
        ([], True, ("a1", False)),
        ([OfferAccepted(contact_id="c1", agent_id="a1", now=3.0)], True, ("a1", True)),
        ([OfferAccepted(contact_id="c1", agent_id="a1", now=3.0), ContactFinished(contact_id="c1", now=4.0)], False, None),
        ([OfferRejected(contact_id="c1", agent_id="a1", now=3.0)], False, None),
        ([OfferRejected(contact_id="c1", agent_id="a2", now=3.0)], True, ("a1", False)),  # refused: not a2's
        ([ContactAbandoned(contact_id="c1", now=3.0)], False, None),
        ([ContactFinished(contact_id="c1", now=3.0)], True, ("a1", False)),  # refused: not accepted
        ([TimePassed(now=11.9)], True, ("a1", False)),
        ([TimePassed(now=12.0)], False, None),  # the reservation (10 s from 2.0) expired
        ([AgentLoggedOut(agent_id="a1", now=3.0)], False, None),
    ],
)
async def test_a_claim_that_lands_late_is_judged_by_the_facts_logged_meanwhile(
    redis_stores: Any, meanwhile: list[Fact], carried_out: bool, claim: tuple[str, bool] | None
) -> None:
    slow, fast = await redis_stores(), await redis_stores()
    await ready(slow, "a1", 1.0)
    gate = asyncio.Event()
    guard = slow._guard

    async def late_guard(*args: Any) -> list[Command]:
        await gate.wait()  # the offer's fact is logged; its claim is not
        return await guard(*args)

    slow._guard = late_guard  # type: ignore[method-assign]
    pending = asyncio.create_task(slow.submit(ContactArrived(contact_id="c1", queue="sales", now=2.0)))
    while fast.router.agent_for("c1") is None:
        await asyncio.sleep(0.001)
        await fast.sync()
    for fact in meanwhile:
        with contextlib.suppress(RoutingError):
            await fast.submit(fact)
    gate.set()
    out = await pending
    assert (offers_in(out) == [("c1", "a1")]) is carried_out
    assert slow.refused == ({} if carried_out else {"stale": 1})
    ledger = await slow._redis.hgetall("{" + redis_stores.namespace + "}:r:c:c1")
    assert ((ledger[b"a"].decode(), ledger[b"x"] == b"") if ledger else None) == claim
    await slow.sync()
    await check_ledger(slow._redis, redis_stores.namespace, slow.router)
