"""Routing playbooks: a fact goes in, the exact commands come out."""

from __future__ import annotations

import pytest

from routing import (
    AGENT_TRANSITIONS,
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
QUEUES = [
    QueueConfig(name="sales"),
    QueueConfig(name="kyc", required_skills=frozenset({"kyc", "en"})),
]


def make_router(*agents: tuple[str, set[str]]) -> Router:
    return Router(QUEUES, [AgentProfile(agent_id=a, skills=frozenset(s)) for a, s in agents])


def st(agent: str, state: AgentState, previous: AgentState, reason: str | None = None) -> AnnounceAgentState:
    return AnnounceAgentState(agent_id=agent, state=state, previous=previous, reason=reason)


def offer(contact: str, agent: str, queue: str = "sales") -> list[Command]:
    skills = tuple(sorted(next(q.required_skills for q in QUEUES if q.name == queue)))
    return [
        st(agent, S.RESERVED, S.AVAILABLE),
        OfferContact(contact_id=contact, agent_id=agent, queue=queue, matched_skills=skills),
    ]


def queued(contact: str, queue: str = "sales") -> AnnounceQueued:
    return AnnounceQueued(contact_id=contact, queue=queue)


def ready(r: Router, agent: str, now: float) -> list[Command]:
    """Log in and ask for AVAILABLE; returns the commands of the second step."""
    r.agent_logged_in(agent, now)
    return r.agent_state_requested(agent, S.AVAILABLE, now)


# --- agent states ----------------------------------------------------------------------


def test_login_lands_in_away_then_available_on_request() -> None:
    r = make_router(("a1", set()))
    assert r.agent_state("a1") is S.OFFLINE
    assert r.agent_logged_in("a1", 10.0) == [st("a1", S.AWAY, S.OFFLINE, "logged_in")]
    assert r.state_since("a1") == 10.0
    assert r.agent_state_requested("a1", S.AVAILABLE, 12.0) == [st("a1", S.AVAILABLE, S.AWAY)]
    assert r.agent_state_requested("a1", S.AVAILABLE, 13.0) == []  # already there
    assert r.state_since("a1") == 12.0


def test_away_reason_changes_are_announced_same_reason_is_not() -> None:
    r = make_router(("a1", set()))
    ready(r, "a1", 0)
    assert r.agent_state_requested("a1", S.AWAY, 1, "lunch") == [st("a1", S.AWAY, S.AVAILABLE, "lunch")]
    assert r.agent_state_requested("a1", S.AWAY, 2, "lunch") == []
    assert r.agent_state_requested("a1", S.AWAY, 3, "training") == [st("a1", S.AWAY, S.AWAY, "training")]
    assert r.agent_reason("a1") == "training"


def test_logout_from_any_logged_in_state_and_offline_request() -> None:
    r = make_router(("a1", set()), ("a2", set()))
    r.agent_logged_in("a1", 0)
    assert r.agent_logged_out("a1", 1) == [st("a1", S.OFFLINE, S.AWAY, "logged_out")]
    assert r.agent_logged_out("a1", 2) == []  # idempotent
    ready(r, "a2", 0)
    assert r.agent_state_requested("a2", S.OFFLINE, 3, "shift_end") == [st("a2", S.OFFLINE, S.AVAILABLE, "shift_end")]
    assert r.agent_state_requested("a2", S.OFFLINE, 4) == []


def test_transition_table_covers_every_state_and_forbids_skipping_login() -> None:
    assert set(AGENT_TRANSITIONS) == set(AgentState)
    assert S.AVAILABLE not in AGENT_TRANSITIONS[S.OFFLINE]
    assert S.BUSY not in AGENT_TRANSITIONS[S.OFFLINE]  # an offer or an outbound call, once logged in
    for state in AgentState:
        if state is not S.OFFLINE:
            assert S.OFFLINE in AGENT_TRANSITIONS[state]


# --- offering ----------------------------------------------------------------------------


def test_contact_waits_then_goes_to_the_agent_who_becomes_available() -> None:
    r = make_router(("a1", set()))
    assert r.contact_arrived("c1", "sales", 5) == [queued("c1")]
    assert r.waiting("sales") == ["c1"]
    r.agent_logged_in("a1", 6)
    assert r.agent_state_requested("a1", S.AVAILABLE, 7) == [st("a1", S.AVAILABLE, S.AWAY), *offer("c1", "a1")]
    assert r.waiting("sales") == []
    assert (r.agent_for("c1"), r.contact_of("a1"), r.queue_of("c1")) == ("a1", "c1", "sales")


def test_longest_idle_eligible_agent_gets_the_contact() -> None:
    r = make_router(("a1", set()), ("a2", set()), ("a3", set()))
    ready(r, "a1", 3)
    ready(r, "a2", 1)
    ready(r, "a3", 2)
    assert r.contact_arrived("c1", "sales", 10) == [queued("c1"), *offer("c1", "a2")]
    assert r.contact_arrived("c2", "sales", 11) == [queued("c2"), *offer("c2", "a3")]
    assert r.contact_arrived("c3", "sales", 12) == [queued("c3"), *offer("c3", "a1")]


def test_ties_in_idle_time_go_to_the_agent_added_first() -> None:
    r = make_router(("b", set()), ("a", set()))
    ready(r, "a", 1)
    ready(r, "b", 1)
    assert r.contact_arrived("c1", "sales", 2) == [queued("c1"), *offer("c1", "b")]


def test_skills_decide_eligibility() -> None:
    r = make_router(("novice", {"en"}), ("expert", {"en", "kyc", "fr"}))
    ready(r, "novice", 0)  # idle the longest, but lacks "kyc"
    ready(r, "expert", 1)
    assert r.contact_arrived("k1", "kyc", 2) == [queued("k1", "kyc"), *offer("k1", "expert", "kyc")]
    assert r.contact_arrived("k2", "kyc", 3) == [queued("k2", "kyc")]
    assert r.agent_state("novice") is S.AVAILABLE  # idle, yet not eligible for k2
    assert offer("k1", "expert", "kyc")[1].matched_skills == ("en", "kyc")  # type: ignore[union-attr]


def test_contacts_are_offered_in_arrival_order_across_queues() -> None:
    r = make_router(("a1", {"kyc", "en"}))
    r.contact_arrived("s1", "sales", 1)
    r.contact_arrived("k1", "kyc", 2)
    r.contact_arrived("s2", "sales", 3)
    assert ready(r, "a1", 4)[-1] == offer("s1", "a1")[1]
    r.offer_accepted("s1", "a1", 5)
    assert r.contact_finished("s1", 6) == [st("a1", S.AVAILABLE, S.BUSY), *offer("k1", "a1", "kyc")]
    r.offer_accepted("k1", "a1", 7)
    assert r.contact_finished("k1", 8)[-1] == offer("s2", "a1")[1]


def test_accept_then_finish() -> None:
    r = make_router(("a1", set()))
    ready(r, "a1", 0)
    r.contact_arrived("c1", "sales", 1)
    assert r.offer_accepted("c1", "a1", 2) == [st("a1", S.BUSY, S.RESERVED)]
    assert r.contact_finished("c1", 30) == [st("a1", S.AVAILABLE, S.BUSY)]
    assert r.agent_for("c1") is None and r.contact_of("a1") is None and r.queue_of("c1") is None


# --- reject ------------------------------------------------------------------------------


def test_rejected_contact_goes_to_another_eligible_agent() -> None:
    r = make_router(("a1", set()), ("a2", set()))
    ready(r, "a1", 0)
    r.contact_arrived("c1", "sales", 1)
    ready(r, "a2", 2)
    assert r.offer_rejected("c1", "a1", 3) == [st("a1", S.AVAILABLE, S.RESERVED), *offer("c1", "a2")]


def test_rejected_contact_waits_rather_than_returning_to_the_decliner() -> None:
    r = make_router(("a1", set()), ("a2", set()))
    ready(r, "a1", 0)
    r.contact_arrived("c1", "sales", 1)
    assert r.offer_rejected("c1", "a1", 2) == [st("a1", S.AVAILABLE, S.RESERVED)]
    assert r.waiting("sales") == ["c1"]
    # the decliner still gets other contacts
    assert r.contact_arrived("c2", "sales", 3) == [queued("c2"), *offer("c2", "a1")]
    # another agent takes the declined one as soon as they are ready
    assert ready(r, "a2", 4) == [st("a2", S.AVAILABLE, S.AWAY), *offer("c1", "a2")]


def test_decline_is_forgotten_after_the_decliner_changes_state() -> None:
    r = make_router(("a1", set()))
    ready(r, "a1", 0)
    r.contact_arrived("c1", "sales", 1)
    r.offer_rejected("c1", "a1", 2)
    r.agent_state_requested("a1", S.AWAY, 3, "coffee")
    assert r.agent_state_requested("a1", S.AVAILABLE, 4) == [st("a1", S.AVAILABLE, S.AWAY), *offer("c1", "a1")]


def test_rejected_contact_returns_to_the_front_keeping_its_arrival_time() -> None:
    r = make_router(("a1", set()))
    ready(r, "a1", 0)
    r.contact_arrived("c1", "sales", 1)
    r.contact_arrived("c2", "sales", 2)
    r.contact_arrived("c3", "sales", 3)
    assert r.waiting("sales") == ["c2", "c3"]
    r.offer_rejected("c1", "a1", 4)  # a1 declined c1, so c2 is offered to a1
    assert r.waiting("sales") == ["c1", "c3"]
    assert r.snapshot()["queues"]["sales"] == {"waiting": 2, "longest_wait_since": 1}


# --- abandon and logout ------------------------------------------------------------------


def test_abandon_while_waiting_removes_the_contact() -> None:
    r = make_router()
    r.contact_arrived("c1", "sales", 1)
    assert r.contact_abandoned("c1", 2) == []
    assert r.waiting("sales") == [] and r.queue_of("c1") is None


def test_abandon_while_offered_withdraws_and_frees_the_agent_for_the_next() -> None:
    r = make_router(("a1", set()))
    ready(r, "a1", 0)
    r.contact_arrived("c1", "sales", 1)
    r.contact_arrived("c2", "sales", 2)
    assert r.contact_abandoned("c1", 3) == [
        WithdrawOffer(contact_id="c1", agent_id="a1", reason="abandoned"),
        st("a1", S.AVAILABLE, S.RESERVED),
        *offer("c2", "a1"),
    ]


def test_logout_while_offered_withdraws_and_reroutes_to_the_front() -> None:
    r = make_router(("a1", set()), ("a2", set()))
    ready(r, "a1", 0)
    r.contact_arrived("c1", "sales", 1)
    r.contact_arrived("c2", "sales", 2)
    assert r.agent_logged_out("a1", 3) == [
        WithdrawOffer(contact_id="c1", agent_id="a1", reason="agent_logged_out"),
        st("a1", S.OFFLINE, S.RESERVED, "logged_out"),
    ]
    assert r.waiting("sales") == ["c1", "c2"]
    assert ready(r, "a2", 4)[-1] == offer("c1", "a2")[1]


def test_logout_while_busy_releases_the_contact() -> None:
    r = make_router(("a1", set()))
    ready(r, "a1", 0)
    r.contact_arrived("c1", "sales", 1)
    r.offer_accepted("c1", "a1", 2)
    assert r.agent_logged_out("a1", 3) == [st("a1", S.OFFLINE, S.BUSY, "logged_out")]
    assert r.agent_for("c1") is None
    with pytest.raises(RoutingError) as err:
        r.contact_finished("c1", 4)
    assert err.value.code == "unknown_contact"


# --- requests while RESERVED / BUSY ------------------------------------------------------


def test_away_requested_while_busy_is_applied_when_the_contact_ends() -> None:
    r = make_router(("a1", set()))
    ready(r, "a1", 0)
    r.contact_arrived("c1", "sales", 1)
    r.offer_accepted("c1", "a1", 2)
    r.contact_arrived("c2", "sales", 3)
    assert r.agent_state_requested("a1", S.AWAY, 4, "lunch") == []
    assert r.agent_state("a1") is S.BUSY
    assert r.contact_finished("c1", 5) == [st("a1", S.AWAY, S.BUSY, "lunch")]
    assert r.waiting("sales") == ["c2"]


def test_available_request_cancels_a_remembered_request() -> None:
    r = make_router(("a1", set()))
    ready(r, "a1", 0)
    r.contact_arrived("c1", "sales", 1)
    r.offer_accepted("c1", "a1", 2)
    r.agent_state_requested("a1", S.AWAY, 3, "lunch")
    assert r.agent_state_requested("a1", S.AVAILABLE, 4) == []
    assert r.contact_finished("c1", 5) == [st("a1", S.AVAILABLE, S.BUSY)]


def test_offline_requested_while_reserved_is_applied_on_reject() -> None:
    r = make_router(("a1", set()))
    ready(r, "a1", 0)
    r.contact_arrived("c1", "sales", 1)
    assert r.agent_state_requested("a1", S.OFFLINE, 2, "shift_end") == []
    assert r.offer_rejected("c1", "a1", 3) == [st("a1", S.OFFLINE, S.RESERVED, "shift_end")]
    assert r.waiting("sales") == ["c1"]


# --- misuse ------------------------------------------------------------------------------


def _setup_for_errors() -> Router:
    r = make_router(("a1", set()), ("a2", set()), ("off", set()))
    ready(r, "a1", 0)
    ready(r, "a2", 0.5)
    r.contact_arrived("offered", "sales", 1)  # to a1
    r.contact_arrived("busy", "sales", 2)  # to a2
    r.offer_accepted("busy", "a2", 3)
    r.agent_state_requested("a1", S.AWAY, 4, "x")  # remembered; a1 still RESERVED
    r.contact_arrived("waiting", "sales", 5)
    return r


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda r: r.agent_logged_in("nobody", 9), "unknown_agent"),
        (lambda r: r.agent_logged_in("a1", 9), "already_logged_in"),
        (lambda r: r.agent_state_requested("off", S.AVAILABLE, 9), "not_logged_in"),
        (lambda r: r.agent_state_requested("a1", S.BUSY, 9), "illegal_request"),
        (lambda r: r.agent_state_requested("a1", S.RESERVED, 9), "illegal_request"),
        (lambda r: r.contact_arrived("c9", "nowhere", 9), "unknown_queue"),
        (lambda r: r.contact_arrived("waiting", "sales", 9), "duplicate_contact"),
        (lambda r: r.contact_abandoned("ghost", 9), "unknown_contact"),
        (lambda r: r.contact_abandoned("busy", 9), "already_assigned"),
        (lambda r: r.offer_accepted("offered", "a2", 9), "no_such_offer"),
        (lambda r: r.offer_accepted("busy", "a2", 9), "no_such_offer"),
        (lambda r: r.offer_accepted("waiting", "a1", 9), "no_such_offer"),
        (lambda r: r.offer_rejected("offered", "nobody", 9), "unknown_agent"),
        (lambda r: r.contact_finished("offered", 9), "not_assigned"),
        (lambda r: r.contact_finished("waiting", 9), "not_assigned"),
        (lambda r: r.waiting("nowhere"), "unknown_queue"),
        (lambda r: r.add_agent(AgentProfile(agent_id="a1")), "duplicate_agent"),
        (lambda r: r.add_queue(QueueConfig(name="sales")), "duplicate_queue"),
    ],
)
def test_misuse_raises_with_a_code_and_changes_nothing(call: object, code: str) -> None:
    r = _setup_for_errors()
    before = r.snapshot()
    with pytest.raises(RoutingError) as err:
        call(r)  # type: ignore[operator]
    assert err.value.code == code
    assert r.snapshot() == before
    # the remembered AWAY survived too
    assert r.offer_rejected("offered", "a1", 10)[0] == st("a1", S.AWAY, S.RESERVED, "x")


def test_snapshot_is_json_ready() -> None:
    import json

    r = make_router(("a1", set()), ("a2", {"kyc", "en"}))
    ready(r, "a1", 1)
    r.contact_arrived("c1", "sales", 2)
    r.contact_arrived("k1", "kyc", 3)
    snap = json.loads(json.dumps(r.snapshot()))
    assert snap == {
        "queues": {
            "sales": {"waiting": 0, "longest_wait_since": None},
            "kyc": {"waiting": 1, "longest_wait_since": 3},
        },
        "agents": {
            "a1": {"state": "reserved", "since": 2, "reason": None, "contact": "c1"},
            "a2": {"state": "offline", "since": 0.0, "reason": None, "contact": None},
        },
    }
