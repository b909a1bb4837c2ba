"""Random long sequences over the full ACD never break its invariants.

Arrivals on voice and chat with priorities, attributes (rules) and preferred agents,
abandons, accepts, rejects, finishes, ticks (offer timeouts, wrap-up ends, maximum waits,
routing steps), logins, logouts, state requests, wrap-up done and configuration changes.
After every step:
- no contact is held by two agents, and holdings agree both ways;
- no agent is over capacity on a channel, and voice is never held with another contact
  by a voice-exclusive agent;
- an agent is RESERVED exactly while it has a pending offer, and after a tick no offer
  outlives its expiry;
- no waiting contact is eligible for an agent with room who could take an offer;
- within one effective priority, an offer never passes over an older waiting contact
  of the same channel that the agent was eligible for;
- a RoutingError changes nothing; the announced states chain up; the statistics agree.
"""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from routing import (
    DEFAULT_RULES,
    ActionKind,
    AgentProfile,
    AgentState,
    AnnounceAgentState,
    Command,
    OfferContact,
    QueueAction,
    QueueConfig,
    Router,
    RoutingError,
    RoutingStep,
    StatsChanged,
    Strategy,
)

S = AgentState
QUEUES = {
    "sales": QueueConfig(
        name="sales",
        required_skills=frozenset({"sales"}),
        steps=(RoutingStep(after_s=0, requirement="sales >= 3"), RoutingStep(after_s=10, requirement="sales >= 1")),
        aging_step_s=5,
        wrap_up_s=4,
        reservation_timeout_s=8,
        strategy=Strategy.BEST_PROFICIENCY,
    ),
    "chat": QueueConfig(
        name="chat",
        strategy=Strategy.LEAST_OCCUPIED,
        max_length=3,
        on_full=QueueAction(kind=ActionKind.OVERFLOW, to_queue="vip"),
        reservation_timeout_s=5,
    ),
    "vip": QueueConfig(
        name="vip",
        priority=1,
        max_wait_s=20,
        on_timeout=QueueAction(kind=ActionKind.OVERFLOW, to_queue="sales"),
        max_length=4,
        on_full=QueueAction(kind=ActionKind.CALLBACK),
    ),
    "rr": QueueConfig(name="rr", strategy=Strategy.ROUND_ROBIN, requirement="compliance or support >= 2", wrap_up_s=2),
}
LANGS = {"a1": ("de", "en"), "a2": ("en",), "a3": ("fr", "en"), "a4": ("de",), "a5": ("en",)}
LEVELS = [{"sales": 4}, {"sales": 1, "support": 3}, {"compliance": 2, "sales": 3}, {}, {"support": 2}]
CAPACITY = {"voice": 1, "chat": 2}


def profile(agent_id: str, levels: dict[str, int]) -> AgentProfile:
    langs = LANGS[agent_id]
    return AgentProfile(
        agent_id=agent_id,
        skills=frozenset(levels),
        proficiency=levels,
        attributes={"language": langs[0], "languages": frozenset(langs)},
        capacity=CAPACITY,
        voice_exclusive=agent_id != "a5",
    )


AGENT_IDS = sorted(LANGS)
agent_ids = st.sampled_from(AGENT_IDS)
attributes = st.fixed_dictionaries(
    {},
    optional={
        "language": st.sampled_from(["de", "en", "fr"]),
        "edd": st.booleans(),
        "kyc_status": st.sampled_from(["verified", "pending"]),
        "tier": st.sampled_from(["vip", "professional", "retail"]),
    },
)


class AcdMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.router = Router(
            QUEUES.values(),
            [profile(a, LEVELS[i]) for i, a in enumerate(AGENT_IDS)],
            rules=DEFAULT_RULES,
            max_missed_offers=2,
            publish_stats=True,
        )
        self.now = 0.0
        self.n = 0
        self.seen: list[str] = []
        self.attrs: dict[str, tuple[float, dict[str, object]]] = {}
        self.levels: dict[str, dict[str, int]] = {a: LEVELS[i] for i, a in enumerate(AGENT_IDS)}
        self.announced: dict[str, AgentState] = {a: S.OFFLINE for a in AGENT_IDS}

    # --- driving ------------------------------------------------------------------------

    def feed(self, call: object, *args: object) -> list[Command]:
        before = self.router.dump()
        try:
            commands: list[Command] = call(*args)  # type: ignore[operator]
        except RoutingError:
            assert self.router.dump() == before, "a RoutingError changed the router"
            return []
        self.check(commands)
        return commands

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 3.0, 6.0, 11.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.feed(self.router.tick, self.now)
        dump = self.router.dump()
        for cid, c in dump["contacts"].items():
            if c["agent"] is not None and not c["accepted"]:
                assert c["expires"] > self.now, f"offer of {cid} outlived its reservation"
        for a in dump["agents"].values():
            assert a["wrap_until"] is None or a["wrap_until"] > self.now

    @rule(
        queue=st.sampled_from(sorted(QUEUES)),
        channel=st.sampled_from(["voice", "voice", "chat"]),
        priority=st.sampled_from([0, 0, 1]),
        attrs=attributes,
        preferred=st.one_of(st.none(), agent_ids),
    )
    def arrive(self, queue: str, channel: str, priority: int, attrs: dict[str, object], preferred: str | None) -> None:
        self.n += 1
        cid = f"c{self.n}"
        self.seen.append(cid)
        self.attrs[cid] = (self.now, attrs)
        self.feed(
            lambda: self.router.contact_arrived(
                cid, queue, self.now, channel=channel, priority=priority, attributes=attrs,  # type: ignore[arg-type]
                preferred_agent=preferred, preferred_for_s=6.0,
            )
        )

    @rule(data=st.data())
    def abandon(self, data: st.DataObject) -> None:
        if self.seen:
            cid = data.draw(st.sampled_from(self.seen))
            self.feed(self.router.contact_abandoned, cid, self.now)

    @rule(data=st.data(), accept=st.booleans())
    def answer(self, data: st.DataObject, accept: bool) -> None:
        offered = [c for c in self.seen if self.router.agent_for(c) and not self.router.is_accepted(c)]
        if offered:
            cid = data.draw(st.sampled_from(offered))
            agent = self.router.agent_for(cid)
            call = self.router.offer_accepted if accept else self.router.offer_rejected
            self.feed(call, cid, agent, self.now)

    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        accepted = [c for c in self.seen if self.router.is_accepted(c)]
        if accepted:
            self.feed(self.router.contact_finished, data.draw(st.sampled_from(accepted)), self.now)

    @rule(agent=agent_ids)
    def get_ready(self, agent: str) -> None:
        if self.router.agent_state(agent) is S.OFFLINE:
            self.feed(self.router.agent_logged_in, agent, self.now)
        self.feed(self.router.agent_state_requested, agent, S.AVAILABLE, self.now)

    @rule(agent=agent_ids, state=st.sampled_from(AgentState), reason=st.sampled_from([None, "lunch"]))
    def request(self, agent: str, state: AgentState, reason: str | None) -> None:
        self.feed(self.router.agent_state_requested, agent, state, self.now, reason)

    @rule(agent=agent_ids)
    def log_out(self, agent: str) -> None:
        self.feed(self.router.agent_logged_out, agent, self.now)

    @rule(agent=agent_ids)
    def wrap_up_done(self, agent: str) -> None:
        self.feed(self.router.wrap_up_done, agent, self.now)

    @rule(agent=agent_ids, levels=st.sampled_from(LEVELS))
    def reconfigure_agent(self, agent: str, levels: dict[str, int]) -> None:
        self.levels[agent] = levels  # capacity never changes here, so the update cannot fail
        self.feed(self.router.update_agent, profile(agent, levels), self.now)

    @rule(steps=st.booleans(), required=st.booleans())
    def reconfigure_sales(self, steps: bool, required: bool) -> None:
        q = QUEUES["sales"]
        new = QueueConfig(
            name="sales",
            required_skills=q.required_skills if required else frozenset(),
            steps=q.steps if steps else (),
            aging_step_s=q.aging_step_s,
            wrap_up_s=q.wrap_up_s,
            reservation_timeout_s=q.reservation_timeout_s,
            strategy=q.strategy,
        )
        self.feed(self.router.update_queue, new, self.now)

    # --- checks -------------------------------------------------------------------------

    def effective(self, cid: str) -> int:
        c = self.router.dump()["contacts"][cid]
        q = self.router._queues[c["queue"]]  # the live config (updates included)
        aging = max(0, math.floor((self.now - c["arrived"]) / q.aging_step_s)) if q.aging_step_s else 0
        return q.priority + c["priority"] + aging

    def has_room(self, agent: str, channel: str, held: tuple[str, ...]) -> bool:
        channels = [self.router.channel_of(c) for c in held]
        if channels.count(channel) >= CAPACITY.get(channel, 0):
            return False
        return not (agent != "a5" and channels and (channel == "voice" or "voice" in channels))

    def check(self, commands: list[Command]) -> None:
        for i, cmd in enumerate(commands):
            if isinstance(cmd, AnnounceAgentState):
                assert cmd.previous is self.announced[cmd.agent_id], cmd
                self.announced[cmd.agent_id] = cmd.state
            elif isinstance(cmd, OfferContact):
                assert commands[i - 1] == AnnounceAgentState(
                    agent_id=cmd.agent_id, state=S.RESERVED, previous=commands[i - 1].previous, reason=None  # type: ignore[union-attr]
                )
                assert self.router.eligible(cmd.contact_id, cmd.agent_id, self.now) == cmd.step
                contact = self.router.dump()["contacts"].get(cmd.contact_id)
                if contact is None:
                    continue  # abandoned later in the same input cannot happen, but be safe
                if contact["preferred_agent"] and self.now < contact["prefer_until"]:
                    assert cmd.agent_id == contact["preferred_agent"]
                # the brokerage rules, checked independently of the router's matching
                arrived, attrs = self.attrs[cmd.contact_id]
                if attrs.get("edd") is True or attrs.get("kyc_status") == "pending":
                    assert self.levels[cmd.agent_id].get("compliance", 0) >= 1, (cmd, attrs)
                if "language" in attrs and self.now < arrived + 120:
                    assert attrs["language"] in LANGS[cmd.agent_id], (cmd, attrs)
                mine = (self.effective(cmd.contact_id), -contact["arrived"])
                for queue in QUEUES:
                    for older in self.router.waiting(queue):
                        o = self.router.dump()["contacts"][older]
                        if o["channel"] != contact["channel"]:
                            continue
                        if (self.effective(older), -o["arrived"]) > mine:
                            assert self.router.eligible(older, cmd.agent_id, self.now) is None, (
                                f"{cmd.contact_id} offered to {cmd.agent_id} before {older}"
                            )
            elif isinstance(cmd, StatsChanged):
                assert i == len(commands) - 1

    @invariant()
    def holdings_are_exclusive_and_within_capacity(self) -> None:
        holders: dict[str, str] = {}
        for agent in AGENT_IDS:
            held = self.router.contacts_of(agent)
            state = self.router.agent_state(agent)
            dump = self.router.dump()["agents"][agent]
            assert (state is S.RESERVED) == (dump["offered"] is not None), (agent, state)
            assert (state is S.BUSY) == (dump["offered"] is None and bool(dump["handling"])), (agent, state)
            channels = [self.router.channel_of(c) for c in held]
            for channel in set(channels):
                assert channels.count(channel) <= CAPACITY.get(channel or "", 0), (agent, channels)
            if agent != "a5" and "voice" in channels:
                assert len(channels) == 1, (agent, channels)
            for cid in held:
                assert cid not in holders, f"{cid} held by {holders.get(cid)} and {agent}"
                holders[cid] = agent
                assert self.router.agent_for(cid) == agent
        for cid in self.seen:
            holder = self.router.agent_for(cid)
            if holder is not None:
                assert holders.get(cid) == holder

    @invariant()
    def no_waiting_contact_beside_a_free_eligible_agent(self) -> None:
        dump = self.router.dump()
        for agent in AGENT_IDS:
            a = dump["agents"][agent]
            free = (
                a["state"] in ("available", "busy")
                and a["wants"] == "available"
                and a["offered"] is None
                and a["wrap_until"] is None
            )
            if not free:
                continue
            held = self.router.contacts_of(agent)
            for queue in QUEUES:
                for cid in self.router.waiting(queue):
                    if self.has_room(agent, self.router.channel_of(cid) or "", held):
                        assert self.router.eligible(cid, agent, self.now) is None, f"{cid} waits while {agent} is free"

    @invariant()
    def states_and_statistics_agree(self) -> None:
        for agent, state in self.announced.items():
            assert self.router.agent_state(agent) is state
        snap = json.loads(json.dumps(self.router.stats.snapshot(self.now)))
        for queue in QUEUES:
            assert snap["queues"][queue]["ContactsInQueue"] == len(self.router.waiting(queue))
        for agent in AGENT_IDS:
            assert snap["agents"][agent]["state"] == self.router.agent_state(agent).value
            assert snap["agents"][agent]["Contacts"] == len(self.router.contacts_of(agent))
        json.dumps(self.router.dump())


AcdMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAcdInvariants = AcdMachine.TestCase
