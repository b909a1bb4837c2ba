"""Two real hub processes route from one Redis at the same time.

Each child process (its own interpreter, its own hash seed, its own connection) opens a
`RedisRoutingStore` on the same namespace and, for a while, submits random facts with
wall-clock times, acting on what its own replica shows: arrivals, accepts and rejects of
any pending offer (the other process's too), finishes, abandons, agents getting ready,
going away and logging out, ticks, and now and then an agent's new profile. The
processes race for real: the same offer is often answered by both, an agent logs out
while the other offers to them, ticks expire reservations between a fact and its claim.

Afterwards the parent replays the whole log into a fresh router and checks the
invariants after every fact, checks that each child got exactly the offers the log
gives its facts (minus those the ledger found already ended), that both replicas and a
newly joined third one converged on the same state, and that the reservation ledger
holds exactly the router's offers and assignments.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import time
import uuid
from typing import Any

from routing import (
    AgentProfile,
    AgentState,
    OfferContact,
    QueueConfig,
    Router,
    RoutingError,
    Strategy,
)
from routing.codec import fact_from_json
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
    TimePassed,
    apply,
)
from routing.redis_store import RedisRoutingStore
from routing.snapshot import restore_router
from tests.contract.routing_invariants import check_ledger, check_replica

S = AgentState
AGENTS = [f"a{i}" for i in range(6)]
STEPS = 300


def center() -> Router:
    return Router(
        [
            QueueConfig(name="sales", reservation_timeout_s=0.05, wrap_up_s=0.02),
            QueueConfig(name="kyc", required_skills=frozenset({"kyc"}), strategy=Strategy.BEST_PROFICIENCY),
            QueueConfig(name="chat", strategy=Strategy.LEAST_OCCUPIED, reservation_timeout_s=0.1),
        ],
        [profile(a, i % 2 == 0) for i, a in enumerate(AGENTS)],
        max_missed_offers=None,
        publish_stats=True,
    )


def profile(agent_id: str, kyc: bool, level: int = 3) -> AgentProfile:
    return AgentProfile(
        agent_id=agent_id,
        proficiency={"kyc": level} if kyc else {},
        capacity={"voice": 1, "chat": 2},
        voice_exclusive=agent_id != "a5",
    )


def pick(rng: random.Random, router: Router, who: str, n: int) -> Fact:
    now = time.time()
    contacts = [c for a in router.agents() for c in router.contacts_of(a)]
    offered = [c for c in contacts if not router.is_accepted(c)]
    accepted = [c for c in contacts if router.is_accepted(c)]
    waiting = [c for q in router.queues() for c in router.waiting(q)]
    x = rng.random()
    if x < 0.3:
        queue = rng.choice(["sales", "sales", "kyc", "chat"])
        return ContactArrived(
            contact_id=f"{who}{n}", queue=queue, now=now, channel="chat" if queue == "chat" else "voice"
        )
    if x < 0.5 and offered:
        cid = rng.choice(offered)
        kind = OfferAccepted if rng.random() < 0.8 else OfferRejected
        return kind(contact_id=cid, agent_id=router.agent_for(cid) or "", now=now)
    if x < 0.62 and accepted:
        return ContactFinished(contact_id=rng.choice(accepted), now=now)
    if x < 0.67 and (waiting or offered):
        return ContactAbandoned(contact_id=rng.choice(waiting or offered), now=now)
    agent = rng.choice(AGENTS)
    if x < 0.85:
        if router.agent_state(agent) is S.OFFLINE:
            return AgentLoggedIn(agent_id=agent, now=now)
        return AgentStateRequested(agent_id=agent, state=S.AVAILABLE, now=now)
    if x < 0.9:
        return AgentStateRequested(agent_id=agent, state=rng.choice([S.AWAY, S.OFFLINE]), now=now, reason="break")
    if x < 0.93:
        return AgentLoggedOut(agent_id=agent, now=now)
    if x < 0.95:
        return AgentConfigured(profile=profile(agent, rng.random() < 0.5, rng.randint(1, 5)), now=now)
    return TimePassed(now=now)


async def drive(url: str, namespace: str, who: str, seed: int) -> dict[str, Any]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    store = await RedisRoutingStore.open(client, center, namespace=namespace, snapshot_every=10**9)
    await client.incr("{" + namespace + "}:test:ready")
    while int(await client.get("{" + namespace + "}:test:ready") or 0) < 2:
        await asyncio.sleep(0.001)  # start together
    rng = random.Random(seed)
    offers: list[list[Any]] = []
    refused_facts = 0
    for n in range(STEPS):
        await store.sync()
        fact = pick(rng, store.router, who, n)
        try:
            commands = await store.submit(fact)
        except RoutingError:
            refused_facts += 1
            continue
        offers += [[store.applied, c.contact_id, c.agent_id] for c in commands if isinstance(c, OfferContact)]
        if rng.random() < 0.3:
            await asyncio.sleep(rng.random() * 0.002)
    await client.incr("{" + namespace + "}:test:done")
    while int(await client.get("{" + namespace + "}:test:done") or 0) < 2:
        await asyncio.sleep(0.001)
    await store.sync()
    result = {
        "who": who,
        "offers": offers,
        "refused": dict(store.refused),
        "refused_facts": refused_facts,
        "applied": store.applied,
        "dump": store.router.dump(),
    }
    await store.close()
    await client.aclose()
    return result


def child(url: str, namespace: str, who: str, seed: int, out: Any) -> None:
    out.put(json.dumps(asyncio.run(drive(url, namespace, who, seed))))


async def test_two_processes_race_on_one_redis(redis_url: str) -> None:
    import redis.asyncio as aioredis

    namespace = f"race-{uuid.uuid4().hex[:8]}"
    ctx = multiprocessing.get_context("spawn")
    results_q = ctx.Queue()
    processes = []
    saved = os.environ.get("PYTHONHASHSEED")
    try:
        for i, who in enumerate(["p", "q"]):
            os.environ["PYTHONHASHSEED"] = str(11 + i)  # different set orders in each replica
            proc = ctx.Process(target=child, args=(redis_url, namespace, who, 1000 + i, results_q))
            proc.start()
            processes.append(proc)
    finally:
        if saved is None:
            os.environ.pop("PYTHONHASHSEED", None)
        else:
            os.environ["PYTHONHASHSEED"] = saved
    results = [json.loads(await asyncio.to_thread(results_q.get, True, 60)) for _ in processes]
    for proc in processes:
        proc.join(10)
        assert proc.exitcode == 0

    client: Any = aioredis.from_url(redis_url)
    try:
        # Both replicas converged, and a third process joining now agrees with them.
        joined = await RedisRoutingStore.open(client, center, namespace=namespace)
        for r in results:
            assert r["applied"] == joined.applied
            assert r["dump"] == json.loads(json.dumps(joined.router.dump()))
            assert set(r["refused"]) <= {"stale"}, r["refused"]
        await check_ledger(client, namespace, joined.router)

        # Replay the whole log from the first snapshot, checking after every fact.
        ns = "{" + namespace + "}"
        snap_seq, data = await client.hmget(ns + ":snap", ["seq", "data"])
        assert int(snap_seq) == 0
        router = restore_router(json.loads(data))
        offers_by_seq: dict[int, list[list[Any]]] = {}
        entries = await client.xrange(ns + ":log")
        assert len(entries) == joined.applied
        for entry_id, fields in entries:
            seq = int(entry_id.decode().split("-")[0])
            fact = fact_from_json(fields[b"f"], float(fields[b"n"]))
            try:
                commands = apply(router, fact)
            except RoutingError:
                continue
            offers_by_seq[seq] = [[seq, c.contact_id, c.agent_id] for c in commands if isinstance(c, OfferContact)]
            check_replica(router, fact.now)
        # Each child carried out exactly the offers of its facts, but those the ledger
        # found already ended by a later fact.
        stale = sum(r["refused"].get("stale", 0) for r in results)
        carried = [o for r in results for o in r["offers"]]
        logged = [o for seq in sorted(offers_by_seq) for o in offers_by_seq[seq]]
        assert all(o in logged for o in carried)
        assert len(logged) == len(carried) + stale
        assert len(carried) > 50  # the race made decisions
        assert sum(r["refused_facts"] for r in results) > 0  # and the processes did collide
        await joined.close()
    finally:
        keys = [k async for k in client.scan_iter(match="{" + namespace + "}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
