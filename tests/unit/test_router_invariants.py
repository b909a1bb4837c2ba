"""Random sequences of routing facts never break the router's invariants.

The machine feeds arrivals, abandons, accepts, rejects, finishes, logins, logouts and
state requests (some of them misuse on purpose) and checks after every step that:
- no contact is offered to two agents and no agent holds two contacts;
- no contact waits while an idle, eligible AVAILABLE agent who has not declined it exists;
- within a queue, contacts are offered oldest first (an older one may be passed over
  only by an agent who declined it) and the waiting list is in arrival order;
- the announced agent states chain up (each `previous` is the last announced state)
  and agree with the router's queries;
- a RoutingError changes nothing.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from routing import (
    AgentProfile,
    AgentState,
    AnnounceAgentState,
    AnnounceQueued,
    Command,
    OfferContact,
    QueueConfig,
    Router,
    RoutingError,
    WithdrawOffer,
)

S = AgentState
QUEUES = {
    "sales": frozenset[str](),
    "kyc": frozenset({"kyc"}),
    "fr_kyc": frozenset({"kyc", "fr"}),
}
AGENTS = {
    "a1": frozenset[str](),
    "a2": frozenset({"kyc"}),
    "a3": frozenset({"kyc", "fr"}),
    "a4": frozenset({"fr"}),
}

agent_ids = st.sampled_from(sorted(AGENTS))
queue_names = st.sampled_from(sorted(QUEUES))
delays = st.sampled_from([0.0, 0.5, 1.0, 3.0])


class RouterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.router = Router(
            [QueueConfig(name=q, required_skills=s) for q, s in QUEUES.items()],
            [AgentProfile(agent_id=a, skills=s) for a, s in AGENTS.items()],
        )
        self.now = 0.0
        self.next_contact = 0
        self.arrival: dict[str, tuple[float, int]] = {}  # every contact ever seen
        self.queue: dict[str, str] = {}
        self.declined: dict[str, set[str]] = {}  # contact -> agents who ever rejected it
        self.announced: dict[str, AgentState] = {a: S.OFFLINE for a in AGENTS}

    # --- driving ------------------------------------------------------------------

    def _feed(self, call: object, *args: object) -> None:
        before = self.router.snapshot()
        try:
            commands: list[Command] = call(*args, self.now)  # type: ignore[operator]
        except RoutingError:
            assert self.router.snapshot() == before, "a RoutingError changed the router"
            return
        self._check_commands(commands)

    def _contacts(self) -> list[str]:
        return sorted(self.arrival)

    @rule(dt=delays)
    def time_passes(self, dt: float) -> None:
        self.now += dt

    @rule(queue=queue_names)
    def contact_arrives(self, queue: str) -> None:
        self.next_contact += 1
        cid = f"c{self.next_contact}"
        self.arrival[cid] = (self.now, self.next_contact)
        self.queue[cid] = queue
        self.declined[cid] = set()
        self._feed(self.router.contact_arrived, cid, queue)

    @rule(data=st.data())
    def contact_abandons(self, data: st.DataObject) -> None:
        if self.arrival:
            self._feed(self.router.contact_abandoned, data.draw(st.sampled_from(self._contacts())))

    @rule(data=st.data(), right_agent=st.sampled_from([True, True, True, False]), accept=st.booleans())
    def agent_answers_offer(self, data: st.DataObject, right_agent: bool, accept: bool) -> None:
        offered = [c for c in self._contacts() if self.router.agent_for(c) is not None]
        if not offered:
            return
        cid = data.draw(st.sampled_from(offered))
        agent = self.router.agent_for(cid)
        if agent is None or not right_agent:
            agent = data.draw(agent_ids)
        if accept:
            self._feed(self.router.offer_accepted, cid, agent)
        else:
            if self.router.agent_for(cid) == agent:
                self.declined[cid].add(agent)
            self._feed(self.router.offer_rejected, cid, agent)

    @rule(data=st.data(), assigned=st.sampled_from([True, True, True, False]))
    def contact_finishes(self, data: st.DataObject, assigned: bool) -> None:
        candidates = self._contacts()
        if assigned:
            candidates = [c for c in candidates if self.router.agent_for(c) is not None]
        if candidates:
            self._feed(self.router.contact_finished, data.draw(st.sampled_from(candidates)))

    @rule(agent=agent_ids)
    def agent_logs_in(self, agent: str) -> None:
        self._feed(self.router.agent_logged_in, agent)

    @rule(agent=agent_ids)
    def agent_gets_ready(self, agent: str) -> None:
        if self.router.agent_state(agent) is S.OFFLINE:
            self._feed(self.router.agent_logged_in, agent)
        self._feed(lambda a, now: self.router.agent_state_requested(a, S.AVAILABLE, now), agent)

    @rule(agent=agent_ids)
    def agent_logs_out(self, agent: str) -> None:
        self._feed(self.router.agent_logged_out, agent)

    @rule(agent=agent_ids, state=st.sampled_from(AgentState), reason=st.sampled_from([None, "lunch", "training"]))
    def agent_requests_state(self, agent: str, state: AgentState, reason: str | None) -> None:
        self._feed(lambda a, s, r, now: self.router.agent_state_requested(a, s, now, r), agent, state, reason)

    # --- checks -------------------------------------------------------------------

    def _check_commands(self, commands: list[Command]) -> None:
        for i, cmd in enumerate(commands):
            if isinstance(cmd, AnnounceAgentState):
                assert cmd.previous is self.announced[cmd.agent_id], cmd
                self.announced[cmd.agent_id] = cmd.state
            elif isinstance(cmd, OfferContact):
                # the agent's RESERVED announcement comes right before the offer
                assert commands[i - 1] == AnnounceAgentState(
                    agent_id=cmd.agent_id, state=S.RESERVED, previous=S.AVAILABLE, reason=None
                )
                assert cmd.queue == self.queue[cmd.contact_id]
                assert set(cmd.matched_skills) == QUEUES[cmd.queue] <= AGENTS[cmd.agent_id]
                mine = self.arrival[cmd.contact_id]
                for older in self.router.waiting(cmd.queue):
                    if self.arrival[older] < mine:
                        assert cmd.agent_id in self.declined[older], (
                            f"{cmd.contact_id} offered to {cmd.agent_id} before older {older}"
                        )
            elif isinstance(cmd, WithdrawOffer):
                assert cmd.reason in ("abandoned", "agent_logged_out", "timeout")
            else:
                assert isinstance(cmd, AnnounceQueued)

    @invariant()
    def announced_states_match_the_router(self) -> None:
        for agent, state in self.announced.items():
            assert self.router.agent_state(agent) is state

    @invariant()
    def one_contact_per_agent_one_agent_per_contact(self) -> None:
        holders: dict[str, str] = {}
        for agent in AGENTS:
            cid = self.router.contact_of(agent)
            state = self.router.agent_state(agent)
            assert (cid is not None) == (state in (S.RESERVED, S.BUSY)), (agent, state, cid)
            if cid is not None:
                assert cid not in holders, f"{cid} held by {holders.get(cid)} and {agent}"
                holders[cid] = agent
                assert self.router.agent_for(cid) == agent
        for cid in self.arrival:
            holder = self.router.agent_for(cid)
            if holder is not None:
                assert holders.get(cid) == holder

    @invariant()
    def no_waiting_contact_beside_an_idle_eligible_agent(self) -> None:
        idle = [a for a in AGENTS if self.router.agent_state(a) is S.AVAILABLE]
        for queue, required in QUEUES.items():
            waiting = self.router.waiting(queue)
            assert [self.arrival[c] for c in waiting] == sorted(self.arrival[c] for c in waiting)
            for cid in waiting:
                assert self.router.agent_for(cid) is None
                for agent in idle:
                    if required <= AGENTS[agent]:
                        # only a decline can keep them apart
                        assert agent in self.declined[cid], f"{cid} waits while {agent} is idle"

    @invariant()
    def snapshot_agrees_with_queries(self) -> None:
        snap = self.router.snapshot()
        for queue in QUEUES:
            waiting = self.router.waiting(queue)
            assert snap["queues"][queue]["waiting"] == len(waiting)
            first = snap["queues"][queue]["longest_wait_since"]
            assert first == (min(self.arrival[c][0] for c in waiting) if waiting else None)
        for agent in AGENTS:
            assert snap["agents"][agent]["state"] == self.router.agent_state(agent).value
            assert snap["agents"][agent]["since"] == self.router.state_since(agent)


RouterMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRouterInvariants = RouterMachine.TestCase
