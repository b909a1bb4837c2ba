"""Routing benchmark (issue 4, item 9): how long the ACD takes to decide, at contact-center
scale, in-process and through the shared Redis store. Not a test: it prints one line per
phase and, last, one line of JSON.

    .venv/bin/python bench/routing.py            # 5,000 agents, 200 skills, 20,000 waiting
    .venv/bin/python bench/routing.py --quick    # 1,000 agents, 200 skills, 4,000 waiting
    .venv/bin/python bench/routing.py --no-redis # in-process figures only

What a "decision" is: one routing input (one call into `routing.Router`) whose returned
commands include an `OfferContact`, timed from the call to its return with
`time.perf_counter_ns` (the statistics feed is on: `publish_stats=True`, as in the hub).
Two kinds are measured, each on its own population:

- `agent_available`: every agent is busy and 20,000 contacts wait (the backlog). A random
  busy agent finishes their contact (`contact_finished`); routing picks the best waiting
  contact for them across every queue they qualify for and offers it. The benchmark then
  accepts the offer and a new contact arrives, so the backlog stays at 20,000 (those two
  inputs are timed too, as `other_inputs`, but are not decisions).
- `contact_arrived`: 20,000 contacts wait for a "backlog desk" (a contact requirement only
  the 1,000 desk agents meet; they are all busy) while the other 4,000 agents are mostly
  free. A contact arrives in a random queue (`contact_arrived`); routing picks the best of
  the free agents eligible for it. The benchmark accepts the offer and, to keep the free
  pool, finishes the oldest of those accepted contacts (also `other_inputs`).

The headline `decision_p50_ms` / `decision_p99_ms` / `decisions_per_s` are those of the
worse kind (by p99); both kinds are in `kinds`. `decisions_per_s` is decisions divided by
the time spent inside the deciding calls. The same figures measured in CPU time
(`time.thread_time_ns`) are given as `decision_cpu_*`, since wall time on a shared
machine includes other processes; `load_average` says how shared it was.
`peak_memory_mb` is the process's peak resident set size (`ru_maxrss`), both populations
included, and `router_memory_mb` what tracemalloc counts while building the larger
population (the router's own data, Python objects only).

The population: 200 skills (s000..s199); 50 queues, each requiring one of s000..s049 plus
an expression (levels, a second skill, or a language), a fifth of them with two routing
steps, strategies mixed (mostly longest idle), queue priorities 0..2, aging every 30 s;
the brokerage's default rules (language with relaxing, VIP and professional priority,
compliance for EDD/KYC). Each agent has 3-8 skills (at least two of s000..s049) at levels
1..5, a language (en, de or fr; most also speak en). Contacts: language en 70%, de 15%,
fr 15%; VIP 5%, professional 10%; a few EDD; priorities 0 or 1.

The `redis_*` figures are the same two kinds through `routing.redis_store.RedisRoutingStore`
on a local Redis (`--redis-url`, default db 13, not the tests' db 15, which test fixtures
flush; the bench uses its own key namespace and deletes it afterwards): each population is built in-process as above, then handed to a
fresh Redis store (the first snapshot, timed as `redis_bootstrap_s`, its JSON size as
`redis_snapshot_mb`), and every timed input is one `await store.submit(fact)` from
a plain call: the round trip that logs the fact and fetches it back, applying it to the
store's replica, and, for decisions, the second round trip that claims the offer in the
reservation ledger. They run in a child process, so `redis_peak_memory_mb` is that
process's own peak RSS (the in-process population it starts from, the snapshot, and the
replica); `redis_server_memory_mb` is what Redis's `used_memory` grew by meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path, where bench/recordings.py
# would hide the hub's `recordings` package from everything imported below.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from routing import (
    DEFAULT_RULES,
    AgentProfile,
    AgentState,
    OfferContact,
    QueueConfig,
    Router,
    RoutingStep,
    Strategy,
)
from routing.facts import (
    AgentLoggedIn,
    AgentStateRequested,
    ContactArrived,
    ContactFinished,
    Fact,
    OfferAccepted,
)

SKILLS = [f"s{i:03d}" for i in range(200)]
QUEUE_SKILLS = SKILLS[:50]
LANGS = ["en", "de", "fr"]
STEP_S = 0.002  # simulated time between inputs


def make_queues(rng: random.Random) -> list[QueueConfig]:
    queues = []
    for i, skill in enumerate(QUEUE_SKILLS):
        other = QUEUE_SKILLS[(i * 7 + 3) % 50]
        requirement = [
            f"{skill} >= 2",
            f"{skill} >= 1 and ({other} >= 2 or language == \"en\")",
            f"{skill} >= 2 or {other} >= 4",
            None,
        ][i % 4]
        steps: tuple[RoutingStep, ...] = ()
        if i % 5 == 0:
            steps = (RoutingStep(after_s=0, requirement=f"{skill} >= 4"), RoutingStep(after_s=20, requirement=f"{skill} >= 1"))
        strategy = [Strategy.LONGEST_IDLE] * 5 + [Strategy.BEST_PROFICIENCY, Strategy.LEAST_OCCUPIED, Strategy.ROUND_ROBIN]
        queues.append(
            QueueConfig(
                name=f"q{i:02d}",
                required_skills=frozenset({skill}),
                requirement=requirement,
                steps=steps,
                priority=i % 3,
                aging_step_s=30.0,
                strategy=strategy[i % len(strategy)],
                reservation_timeout_s=20.0,
            )
        )
    return queues


def make_agents(rng: random.Random, n: int, desk: int) -> list[AgentProfile]:
    agents = []
    for k in range(n):
        count = rng.randint(3, 8)
        skills = set(rng.sample(QUEUE_SKILLS, 2))
        while len(skills) < count:
            skills.add(rng.choice(SKILLS))
        primary = rng.choices(LANGS, weights=[70, 15, 15])[0]
        languages = {primary} | ({"en"} if rng.random() < 0.8 else set())
        attributes: dict[str, Any] = {"language": primary, "languages": frozenset(languages)}
        if k < desk:
            attributes["desk"] = "backlog"
        proficiency = {s: rng.randint(1, 5) for s in skills}
        if rng.random() < 0.3:
            proficiency["compliance"] = rng.randint(1, 5)
        agents.append(
            AgentProfile(
                agent_id=f"a{k:05d}",
                skills=frozenset(proficiency),
                proficiency=proficiency,
                attributes=attributes,
                capacity={"voice": 1},
            )
        )
    return agents


def contact_attributes(rng: random.Random) -> dict[str, Any]:
    attrs: dict[str, Any] = {"language": rng.choices(LANGS, weights=[70, 15, 15])[0]}
    tier = rng.random()
    if tier < 0.05:
        attrs["tier"] = "vip"
    elif tier < 0.15:
        attrs["tier"] = "professional"
    if rng.random() < 0.02:
        attrs["edd"] = True
    return attrs


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def step(self) -> float:
        self.now += STEP_S
        return self.now


class Timed:
    """Per-kind timings of routing inputs, in nanoseconds."""

    def __init__(self) -> None:
        self.ns: dict[str, list[int]] = {}

    def call(self, kind: str, fn: Any, *args: Any, **kw: Any) -> list[Any]:
        t0 = time.perf_counter_ns()
        out: list[Any] = fn(*args, **kw)
        self.ns.setdefault(kind, []).append(time.perf_counter_ns() - t0)
        return out


def offers(commands: list[Any]) -> list[OfferContact]:
    return [c for c in commands if isinstance(c, OfferContact)]


def figures(ns: list[int]) -> dict[str, Any]:
    if not ns:
        return {"count": 0}
    ms = sorted(n / 1e6 for n in ns)
    return {
        "count": len(ms),
        "p50_ms": round(statistics.median(ms), 4),
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 4),
        "max_ms": round(ms[-1], 3),
        "mean_ms": round(sum(ms) / len(ms), 4),
        "per_s": round(len(ms) / (sum(ms) / 1000.0)),
    }


class StoreRouter:
    """The router calls the scenarios make, each made one `await store.submit(fact)`
    (and waited for) through a `RedisRoutingStore`; queries read its replica."""

    def __init__(self, store: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop

    def _submit(self, fact: Fact) -> list[Any]:
        return self.loop.run_until_complete(self.store.submit(fact))

    def contact_arrived(
        self,
        contact_id: str,
        queue: str,
        now: float,
        *,
        priority: int = 0,
        requirements: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> list[Any]:
        fact = ContactArrived(
            contact_id=contact_id,
            queue=queue,
            now=now,
            priority=priority,
            requirements=requirements,
            attributes=dict(attributes or {}),
        )
        return self._submit(fact)

    def contact_finished(self, contact_id: str, now: float) -> list[Any]:
        return self._submit(ContactFinished(contact_id=contact_id, now=now))

    def offer_accepted(self, contact_id: str, agent_id: str, now: float) -> list[Any]:
        return self._submit(OfferAccepted(contact_id=contact_id, agent_id=agent_id, now=now))

    def agent_logged_in(self, agent_id: str, now: float) -> list[Any]:
        return self._submit(AgentLoggedIn(agent_id=agent_id, now=now))

    def agent_state_requested(self, agent_id: str, state: AgentState, now: float) -> list[Any]:
        return self._submit(AgentStateRequested(agent_id=agent_id, state=state, now=now))

    def agent_for(self, contact_id: str) -> str | None:
        return self.store.router.agent_for(contact_id)

    def agent_state(self, agent_id: str) -> AgentState:
        return self.store.router.agent_state(agent_id)

    def waiting(self, queue: str) -> list[str]:
        return self.store.router.waiting(queue)


class RedisVia:
    """Hands a built population to a fresh Redis store (on its own namespace) and keeps
    what it cost."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self.loop = asyncio.new_event_loop()
        self.client = aioredis.from_url(url)
        self.namespaces: list[str] = []
        self.bootstrap_s: list[float] = []
        self.snapshot_mb: list[float] = []
        self.used_memory_before = self.loop.run_until_complete(self.client.info("memory"))["used_memory"]
        self.used_memory_peak = self.used_memory_before

    def __call__(self, router: Router) -> StoreRouter:
        from routing.redis_store import RedisRoutingStore
        from routing.snapshot import export_state

        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        self.namespaces.append(namespace)
        t0 = time.perf_counter()
        # The snapshot interval is past the run: the figures are decisions, not snapshots.
        store = self.loop.run_until_complete(
            RedisRoutingStore.open(self.client, lambda: router, namespace=namespace, snapshot_every=10**9)
        )
        self.bootstrap_s.append(round(time.perf_counter() - t0, 2))
        self.snapshot_mb.append(round(len(json.dumps(export_state(store.router))) / 2**20, 1))
        return StoreRouter(store, self.loop)

    def sample_memory(self) -> None:
        used = self.loop.run_until_complete(self.client.info("memory"))["used_memory"]
        self.used_memory_peak = max(self.used_memory_peak, used)

    def close(self) -> None:
        async def clean() -> None:
            for namespace in self.namespaces:
                keys = [k async for k in self.client.scan_iter(match="{" + namespace + "}*", count=1000)]
                for i in range(0, len(keys), 1000):
                    await self.client.delete(*keys[i : i + 1000])
            await self.client.aclose()

        self.loop.run_until_complete(clean())
        self.loop.close()


def build(n_agents: int, desk: int, seed: int) -> Router:
    rng = random.Random(seed)
    return Router(make_queues(rng), make_agents(rng, n_agents, desk), rules=DEFAULT_RULES, publish_stats=True)


def log_in(router: Router, agent_ids: list[str], clock: Clock) -> list[Any]:
    out: list[Any] = []
    for agent_id in agent_ids:
        router.agent_logged_in(agent_id, clock.now)
        out += router.agent_state_requested(agent_id, AgentState.AVAILABLE, clock.step())
    return out


def accept_all(router: Any, commands: list[Any], clock: Clock, timed: Timed | None = None) -> list[str]:
    accepted = []
    pending = offers(commands)
    while pending:
        offer = pending.pop()
        if timed is None:
            more = router.offer_accepted(offer.contact_id, offer.agent_id, clock.now)
        else:
            more = timed.call("offer_accepted", router.offer_accepted, offer.contact_id, offer.agent_id, clock.now)
        accepted.append(offer.contact_id)
        pending += offers(more)
    return accepted


Via = Callable[[Router], Any]


def scenario_agent_available(
    n_agents: int, backlog: int, decisions: int, seed: int, via: Via | None = None
) -> dict[str, Any]:
    rng = random.Random(seed + 1)
    clock = Clock()
    router = build(n_agents, 0, seed)
    agent_ids = [f"a{k:05d}" for k in range(n_agents)]
    log_in(router, agent_ids, clock)
    held: dict[str, str] = {}  # agent -> accepted contact
    n = 0
    waiting = 0
    queues = [f"q{i:02d}" for i in range(50)]
    t0 = time.perf_counter()
    while waiting < backlog:
        n += 1
        cid = f"c{n}"
        out = router.contact_arrived(
            cid, rng.choice(queues), clock.step(), priority=rng.choice([0, 0, 0, 1]), attributes=contact_attributes(rng)
        )
        for accepted in accept_all(router, out, clock):
            agent = router.agent_for(accepted)
            assert agent is not None
            held[agent] = accepted
        if not offers(out):
            waiting += 1
    free = sum(router.agent_state(a) is AgentState.AVAILABLE for a in agent_ids)
    print(
        f"agent_available: built in {time.perf_counter() - t0:.1f} s: {len(held)} agents busy, {free} free"
        f" (qualify for nothing waiting), {waiting} waiting",
        flush=True,
    )
    target: Any = router
    if via is not None:
        target = via(router)
        del router  # the store's replica, restored from its snapshot, is what counts now
    timed = Timed()
    decided: list[int] = []
    decided_cpu: list[int] = []  # the same calls' CPU time: less sensitive to a busy machine
    no_offer = 0
    busy = list(held)
    gc.collect()
    for _ in range(decisions):
        agent = busy.pop(rng.randrange(len(busy)))
        cid = held.pop(agent)
        c, t = time.thread_time_ns(), time.perf_counter_ns()
        out = target.contact_finished(cid, clock.step())
        dt, dc = time.perf_counter_ns() - t, time.thread_time_ns() - c
        timed.ns.setdefault("contact_finished", []).append(dt)
        if offers(out):
            decided.append(dt)
            decided_cpu.append(dc)
        else:
            no_offer += 1
        for accepted in accept_all(target, out, clock, timed):
            a = target.agent_for(accepted)
            assert a is not None
            held[a] = accepted
            busy.append(a)
        n += 1
        out = timed.call(
            "contact_arrived",
            target.contact_arrived,
            f"c{n}",
            rng.choice(queues),
            clock.step(),
            priority=rng.choice([0, 0, 0, 1]),
            attributes=contact_attributes(rng),
        )
        for accepted in accept_all(target, out, clock, timed):
            a = target.agent_for(accepted)
            assert a is not None
            held[a] = accepted
            busy.append(a)
    waiting_end = sum(len(target.waiting(q)) for q in queues)
    return {
        "decision": figures(decided),
        "decision_cpu": figures(decided_cpu),
        "no_offer_inputs": no_offer,
        "waiting_at_end": waiting_end,
        "other_inputs": {kind: figures(ns) for kind, ns in timed.ns.items()},
    }


def scenario_contact_arrived(
    n_agents: int, desk: int, backlog: int, decisions: int, seed: int, via: Via | None = None
) -> dict[str, Any]:
    rng = random.Random(seed + 2)
    clock = Clock()
    router = build(n_agents, desk, seed)
    queues = [f"q{i:02d}" for i in range(50)]
    desk_ids = [f"a{k:05d}" for k in range(desk)]
    log_in(router, desk_ids, clock)
    t0 = time.perf_counter()
    n = 0
    waiting = 0
    while waiting < backlog:
        n += 1
        out = router.contact_arrived(
            f"b{n}", rng.choice(queues), clock.step(), requirements='desk == "backlog"', attributes=contact_attributes(rng)
        )
        accept_all(router, out, clock)
        if not offers(out):
            waiting += 1
    rest = [f"a{k:05d}" for k in range(desk, n_agents)]
    log_in(router, rest, clock)
    free = sum(router.agent_state(a) is AgentState.AVAILABLE for a in rest)
    print(
        f"contact_arrived: built in {time.perf_counter() - t0:.1f} s: {free} agents free, {waiting} waiting"
        " for the busy backlog desk",
        flush=True,
    )
    target: Any = router
    if via is not None:
        target = via(router)
        del router  # the store's replica, restored from its snapshot, is what counts now
    timed = Timed()
    decided: list[int] = []
    decided_cpu: list[int] = []  # the same calls' CPU time: less sensitive to a busy machine
    no_offer = 0
    in_hand: deque[str] = deque()
    gc.collect()
    for _ in range(decisions):
        n += 1
        now, attrs, queue, prio = clock.step(), contact_attributes(rng), rng.choice(queues), rng.choice([0, 0, 0, 1])
        c, t = time.thread_time_ns(), time.perf_counter_ns()
        out = target.contact_arrived(f"c{n}", queue, now, priority=prio, attributes=attrs)
        dt, dc = time.perf_counter_ns() - t, time.thread_time_ns() - c
        timed.ns.setdefault("contact_arrived", []).append(dt)
        if offers(out):
            decided.append(dt)
            decided_cpu.append(dc)
        else:
            no_offer += 1
        in_hand.extend(accept_all(target, out, clock, timed))
        while len(in_hand) > 200:  # keep most of the 4,000 free
            out = timed.call("contact_finished", target.contact_finished, in_hand.popleft(), clock.step())
            in_hand.extend(accept_all(target, out, clock, timed))
    return {
        "decision": figures(decided),
        "decision_cpu": figures(decided_cpu),
        "no_offer_inputs": no_offer,
        "other_inputs": {kind: figures(ns) for kind, ns in timed.ns.items()},
    }


def memory_of_build(n_agents: int, backlog: int, seed: int) -> float:
    """MB tracemalloc counts for a router with the population and backlog, no timing."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    rng = random.Random(seed + 3)
    clock = Clock()
    router = build(n_agents, 0, seed)
    queues = [f"q{i:02d}" for i in range(50)]
    for n in range(backlog):
        router.contact_arrived(f"m{n}", rng.choice(queues), clock.step(), attributes=contact_attributes(rng))
    size = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del router
    return round(size / 2**20, 1)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gb": ram_gb, "python": platform.python_version()}


def redis_child(args: argparse.Namespace, n_agents: int, desk: int, backlog: int, decisions: int) -> None:
    """The `redis_*` figures, measured in this (child) process; the last line is JSON."""
    via = RedisVia(args.redis_url)
    try:
        kinds = {
            "agent_available": scenario_agent_available(n_agents, backlog, decisions, args.seed, via),
        }
        via.sample_memory()
        gc.collect()
        kinds["contact_arrived"] = scenario_contact_arrived(n_agents, desk, backlog, decisions, args.seed, via)
        via.sample_memory()
    finally:
        via.close()
    print(
        json.dumps(
            {
                "kinds": kinds,
                "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "server_memory_mb": round((via.used_memory_peak - via.used_memory_before) / 2**20, 1),
                "bootstrap_s": via.bootstrap_s,
                "snapshot_mb": via.snapshot_mb,
            }
        ),
        flush=True,
    )


def run_redis_child(args: argparse.Namespace, decisions: int) -> dict[str, Any] | None:
    """Runs `redis_child` in a process of its own (its own peak memory); None if Redis
    cannot be reached."""
    cmd = [sys.executable, __file__, "--redis-child", "--redis-url", args.redis_url, "--seed", str(args.seed)]
    cmd += ["--decisions", str(decisions)] + (["--quick"] if args.quick else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    last = ""
    for line in proc.stdout:
        last = line
        if not line.startswith("{"):
            print(f"redis: {line}", end="", flush=True)
    if proc.wait() != 0:
        return None
    result: dict[str, Any] = json.loads(last)
    return result


def headline(kinds: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any], int, int]:
    """The worse kind by p99: its name, decision and CPU figures, and the lower rates."""
    worse = max(kinds, key=lambda k: kinds[k]["decision"].get("p99_ms", float("inf")))
    per_s = min(k["decision"].get("per_s", 0) for k in kinds.values())
    per_cpu_s = min(k["decision_cpu"].get("per_s", 0) for k in kinds.values())
    return worse, kinds[worse]["decision"], kinds[worse]["decision_cpu"], per_s, per_cpu_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 agents, 4,000 waiting, fewer decisions")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--decisions", type=int, help="decisions to time per kind")
    parser.add_argument("--redis-url", default=os.environ.get("CTIHUB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    parser.add_argument("--redis-decisions", type=int, help="decisions to time per kind through Redis")
    parser.add_argument("--no-redis", action="store_true", help="in-process figures only")
    parser.add_argument("--redis-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n_agents, desk, backlog, decisions = (1000, 200, 4000, 2000) if args.quick else (5000, 1000, 20000, 20000)
    decisions = args.decisions or decisions
    if args.redis_child:
        redis_child(args, n_agents, desk, backlog, decisions)
        return
    print(f"routing bench: {n_agents} agents, 200 skills, 50 queues, {backlog} waiting, {decisions} decisions per kind")
    kinds = {
        "agent_available": scenario_agent_available(n_agents, backlog, decisions, args.seed),
        "contact_arrived": scenario_contact_arrived(n_agents, desk, backlog, decisions, args.seed),
    }
    for name, kind in kinds.items():
        print(f"{name}: decision {json.dumps(kind['decision'])}, no offer {kind['no_offer_inputs']}", flush=True)
    worse, head, cpu_head, per_s, per_cpu_s = headline(kinds)
    peak_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    router_mb = memory_of_build(n_agents, backlog, args.seed)
    load_in_process = [round(x, 1) for x in os.getloadavg()]
    redis: dict[str, Any] | None = None
    redis_note = "not measured (--no-redis)"
    if not args.no_redis:
        redis_decisions = args.redis_decisions or decisions
        print(f"redis: {redis_decisions} decisions per kind through the Redis store at {args.redis_url}", flush=True)
        redis = run_redis_child(args, redis_decisions)
        redis_note = f"{redis_decisions} decisions per kind" if redis else f"Redis at {args.redis_url} failed"
    r_worse, r_head, r_cpu, r_per_s, _ = headline(redis["kinds"]) if redis else (None, {}, {}, None, None)
    result = {
        "bench": "routing",
        "quick": args.quick,
        "agents": n_agents,
        "skills": len(SKILLS),
        "queues": 50,
        "waiting_contacts": backlog,
        "headline_kind": worse,
        "decision_p50_ms": head.get("p50_ms"),
        "decision_p99_ms": head.get("p99_ms"),
        "decisions_per_s": per_s,
        "decision_cpu_p50_ms": cpu_head.get("p50_ms"),
        "decision_cpu_p99_ms": cpu_head.get("p99_ms"),
        "decisions_per_cpu_s": per_cpu_s,
        "peak_memory_mb": peak_mb,
        "router_memory_mb": router_mb,
        "redis_headline_kind": r_worse,
        "redis_decision_p50_ms": r_head.get("p50_ms"),
        "redis_decision_p99_ms": r_head.get("p99_ms"),
        "redis_decisions_per_s": r_per_s,
        "redis_decision_cpu_p50_ms": r_cpu.get("p50_ms"),
        "redis_decision_cpu_p99_ms": r_cpu.get("p99_ms"),
        "redis_peak_memory_mb": redis["peak_memory_mb"] if redis else None,
        "redis_server_memory_mb": redis["server_memory_mb"] if redis else None,
        "redis_bootstrap_s": redis["bootstrap_s"] if redis else None,
        "redis_snapshot_mb": redis["snapshot_mb"] if redis else None,
        "redis_note": redis_note,
        "load_average": load_in_process,
        "load_average_end": [round(x, 1) for x in os.getloadavg()],
        "targets": {"decision_p99_ms": 2.0, "redis_decision_p99_ms": 5.0, "decisions_per_s": 5000},
        "targets_met": {
            "decision_p99_ms": head.get("p99_ms") is not None and head["p99_ms"] <= 2.0,
            "decisions_per_s": per_s >= 5000,
            "redis_decision_p99_ms": r_head["p99_ms"] <= 5.0 if r_head.get("p99_ms") is not None else None,
        },
        "kinds": kinds,
        "redis_kinds": redis["kinds"] if redis else None,
        "machine": machine(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
