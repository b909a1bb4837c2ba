"""Routing playbooks for the ACD features: channels and capacity, priority and aging,
routing steps, preferred agents, wrap-up, reservation timeouts, strategies, queue limits,
brokerage rules, statistics and configuration changes."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from routing import (
    DEFAULT_RULES,
    ActionKind,
    AgentProfile,
    AgentState,
    AnnounceAgentState,
    AnnounceQueued,
    Command,
    DisconnectContact,
    OfferCallback,
    OfferContact,
    OverflowContact,
    QueueAction,
    QueueConfig,
    RejectContact,
    Router,
    RoutingError,
    RoutingStep,
    Rule,
    StatsChanged,
    Strategy,
    WithdrawOffer,
)

S = AgentState


def agent(agent_id: str, levels: Mapping[str, int] | None = None, **kw: object) -> AgentProfile:
    levels = dict(levels or {})
    return AgentProfile(agent_id=agent_id, skills=frozenset(levels), proficiency=levels, **kw)  # type: ignore[arg-type]


def ready(r: Router, agent_id: str, now: float) -> list[Command]:
    r.agent_logged_in(agent_id, now)
    return r.agent_state_requested(agent_id, S.AVAILABLE, now)


def offers(commands: list[Command]) -> list[tuple[str, str]]:
    return [(c.contact_id, c.agent_id) for c in commands if isinstance(c, OfferContact)]


def st(agent_id: str, state: AgentState, previous: AgentState, reason: str | None = None) -> AnnounceAgentState:
    return AnnounceAgentState(agent_id=agent_id, state=state, previous=previous, reason=reason)


# --- channels and capacity -----------------------------------------------------------------


def test_chat_agent_takes_several_chats_but_voice_is_exclusive() -> None:
    r = Router([QueueConfig(name="q")], [agent("a", capacity={"voice": 1, "chat": 2})])
    ready(r, "a", 0)
    assert offers(r.contact_arrived("ch1", "q", 1, channel="chat")) == [("ch1", "a")]
    assert offers(r.contact_arrived("ch2", "q", 2, channel="chat")) == []  # one pending offer at a time
    out = r.offer_accepted("ch1", "a", 3)
    assert out[0] == st("a", S.BUSY, S.RESERVED)
    assert out[1] == st("a", S.RESERVED, S.BUSY)  # the second chat, while busy on the first
    assert offers(out) == [("ch2", "a")]
    assert out[2] == OfferContact(contact_id="ch2", agent_id="a", queue="q", matched_skills=(), channel="chat")
    r.offer_accepted("ch2", "a", 4)
    assert r.contacts_of("a") == ("ch1", "ch2")
    assert offers(r.contact_arrived("ch3", "q", 5, channel="chat")) == []  # full
    assert offers(r.contact_arrived("v1", "q", 6)) == []  # voice never joins chats
    assert r.contact_finished("ch1", 7)[-1] == OfferContact(
        contact_id="ch3", agent_id="a", queue="q", matched_skills=(), channel="chat"
    )


def test_voice_blocks_chat_unless_configured() -> None:
    r = Router(
        [QueueConfig(name="q")],
        [agent("x", capacity={"voice": 1, "chat": 2}), agent("y", capacity={"voice": 1, "chat": 2}, voice_exclusive=False)],
    )
    ready(r, "x", 0)
    ready(r, "y", 1)
    r.contact_arrived("v1", "q", 2)  # x, idle longest
    r.offer_accepted("v1", "x", 2)
    r.contact_arrived("v2", "q", 3)
    r.offer_accepted("v2", "y", 3)
    assert offers(r.contact_arrived("ch1", "q", 4, channel="chat")) == [("ch1", "y")]


def test_an_agent_without_the_channel_gets_none_of_it() -> None:
    r = Router([QueueConfig(name="q")], [agent("a")])
    ready(r, "a", 0)
    assert offers(r.contact_arrived("ch1", "q", 1, channel="chat")) == []
    assert r.waiting("q") == ["ch1"]


# --- priority and aging -------------------------------------------------------------------


def test_priority_first_then_arrival_and_aging_catches_up() -> None:
    r = Router([QueueConfig(name="q", aging_step_s=10)], [agent("a")])
    r.contact_arrived("old", "q", 0)
    r.contact_arrived("vip", "q", 5, priority=2)
    r.contact_arrived("new", "q", 6, priority=1)
    r.tick(6)
    assert r.waiting("q") == ["vip", "new", "old"]
    r.tick(20)  # old: 0 + 2 = 2, vip: 2 + 1 = 3, new: 1 + 1 = 2 (old arrived first)
    assert r.waiting("q") == ["vip", "old", "new"]
    r.tick(60)  # old: 6, vip: 2 + 5 = 7, new: 1 + 5 = 6
    assert r.waiting("q") == ["vip", "old", "new"]
    ready(r, "a", 61)
    assert r.agent_for("vip") == "a"


def test_queue_priority_orders_contacts_across_queues() -> None:
    r = Router([QueueConfig(name="low"), QueueConfig(name="high", priority=1)], [agent("a")])
    r.contact_arrived("l1", "low", 0)
    r.contact_arrived("h1", "high", 1)
    assert offers(ready(r, "a", 2)) == [("h1", "a")]


# --- steps, matched skills ------------------------------------------------------------------


def test_routing_steps_widen_with_time_and_report_the_step() -> None:
    q = QueueConfig(
        name="crypto",
        required_skills=frozenset({"sales"}),
        steps=(RoutingStep(after_s=0, requirement="crypto >= 4"), RoutingStep(after_s=30, requirement="crypto >= 2")),
    )
    r = Router([q], [agent("junior", {"sales": 2, "crypto": 2}), agent("senior", {"sales": 1, "crypto": 5})])
    ready(r, "junior", 0)
    assert r.contact_arrived("c1", "crypto", 10) == [AnnounceQueued(contact_id="c1", queue="crypto")]
    assert r.next_deadline() == 40
    assert r.tick(39) == []
    out = r.tick(40)
    assert out[-1] == OfferContact(contact_id="c1", agent_id="junior", queue="crypto", matched_skills=("crypto", "sales"), step=1)
    # steps are cumulative: an expert matches step 0 even after the widening
    ready(r, "senior", 41)
    r.contact_arrived("c2", "crypto", 41)
    assert r.eligible("c2", "senior", 100) == 0
    assert r.eligible("c2", "junior", 50) is None and r.eligible("c2", "junior", 71) == 1


def test_contact_requirements_and_attribute_names_are_not_matched_skills() -> None:
    r = Router([QueueConfig(name="q")], [agent("a", {"options": 3}, attributes={"language": "de"})])
    ready(r, "a", 0)
    out = r.contact_arrived("c1", "q", 1, requirements='language == "de" and options >= 2')
    assert out[-1] == OfferContact(contact_id="c1", agent_id="a", queue="q", matched_skills=("options",))
    with pytest.raises(RoutingError) as err:
        r.contact_arrived("c2", "q", 2, requirements="options >=")
    assert err.value.code == "bad_expression" and "position" in str(err.value)


# --- preferred agent --------------------------------------------------------------------------


def test_preferred_agent_first_then_anyone() -> None:
    r = Router([QueueConfig(name="q")], [agent("other"), agent("manager")])
    ready(r, "other", 0)
    r.agent_logged_in("manager", 0)
    assert offers(r.contact_arrived("c1", "q", 1, preferred_agent="manager", preferred_for_s=15)) == []
    assert r.next_deadline() == 16
    assert offers(r.agent_state_requested("manager", S.AVAILABLE, 5)) == [("c1", "manager")]
    r.offer_rejected("c1", "manager", 6)  # the manager's decline ends the preference
    assert r.agent_for("c1") == "other"


def test_preferred_window_expires_on_tick() -> None:
    r = Router([QueueConfig(name="q")], [agent("other"), agent("manager")])
    ready(r, "other", 0)
    r.contact_arrived("c1", "q", 1, preferred_agent="manager", preferred_for_s=15)
    assert offers(r.tick(15.9)) == []
    assert offers(r.tick(16)) == [("c1", "other")]


# --- wrap-up -----------------------------------------------------------------------------------


def test_wrap_up_is_timed_and_can_end_early() -> None:
    r = Router([QueueConfig(name="q", wrap_up_s=30)], [agent("a")])
    ready(r, "a", 0)
    r.contact_arrived("c1", "q", 1)
    r.offer_accepted("c1", "a", 2)
    r.contact_arrived("c2", "q", 3)
    assert r.contact_finished("c1", 10) == [st("a", S.WRAP_UP, S.BUSY)]
    assert r.next_deadline() == 40
    assert r.tick(39) == []
    assert offers(r.tick(40)) == [("c2", "a")]
    r.offer_accepted("c2", "a", 41)
    r.contact_finished("c2", 50)
    assert r.wrap_up_done("a", 52) == [st("a", S.AVAILABLE, S.WRAP_UP)]
    with pytest.raises(RoutingError) as err:
        r.wrap_up_done("a", 53)
    assert err.value.code == "not_in_wrap_up"


def test_away_requested_while_busy_waits_for_the_end_of_wrap_up() -> None:
    r = Router([QueueConfig(name="q", wrap_up_s=30)], [agent("a")])
    ready(r, "a", 0)
    r.contact_arrived("c1", "q", 1)
    r.offer_accepted("c1", "a", 2)
    r.agent_state_requested("a", S.AWAY, 3, "lunch")
    assert r.contact_finished("c1", 10) == [st("a", S.WRAP_UP, S.BUSY)]
    assert r.tick(40) == [st("a", S.AWAY, S.WRAP_UP, "lunch")]


# --- reservations ------------------------------------------------------------------------------


def test_reservation_times_out_and_three_misses_put_the_agent_away() -> None:
    r = Router([QueueConfig(name="q", reservation_timeout_s=20)], [agent("a"), agent("b")])
    ready(r, "a", 0)
    r.contact_arrived("c1", "q", 1)
    assert r.offer_expires_at("c1") == 21
    assert r.tick(20) == []
    assert r.tick(21) == [
        WithdrawOffer(contact_id="c1", agent_id="a", reason="timeout"),
        st("a", S.AVAILABLE, S.RESERVED),
    ]
    r.contact_arrived("c2", "q", 22)  # to a, who had not declined it
    r.offer_rejected("c2", "a", 23)  # miss 2
    r.contact_arrived("c3", "q", 24)
    assert r.offer_rejected("c3", "a", 25) == [st("a", S.AWAY, S.RESERVED, "missed")]  # miss 3
    assert offers(ready(r, "b", 26)) == [("c1", "b")]


def test_an_accept_resets_the_missed_count() -> None:
    r = Router([QueueConfig(name="q")], [agent("a")], max_missed_offers=2)
    ready(r, "a", 0)
    r.contact_arrived("c1", "q", 1)
    r.offer_rejected("c1", "a", 2)
    r.contact_arrived("c2", "q", 3)
    r.offer_accepted("c2", "a", 4)
    r.contact_finished("c2", 5)  # c1 again: declines are forgotten after a finished contact
    assert r.agent_for("c1") == "a"
    assert r.offer_rejected("c1", "a", 6) == [st("a", S.AVAILABLE, S.RESERVED)]


# --- strategies --------------------------------------------------------------------------------


def test_best_proficiency_then_longest_idle() -> None:
    q = QueueConfig(name="q", requirement="crypto >= 1", strategy=Strategy.BEST_PROFICIENCY)
    r = Router([q], [agent("ok", {"crypto": 2}), agent("best", {"crypto": 5}), agent("best2", {"crypto": 5})])
    ready(r, "ok", 0)
    ready(r, "best2", 2)
    ready(r, "best", 1)
    assert offers(r.contact_arrived("c1", "q", 3)) == [("c1", "best")]
    assert offers(r.contact_arrived("c2", "q", 4)) == [("c2", "best2")]
    assert offers(r.contact_arrived("c3", "q", 5)) == [("c3", "ok")]


def test_best_proficiency_counts_the_skills_the_contact_requires() -> None:
    # The queue alone ranks "crypto_star" first; a contact that also needs compliance
    # counts that skill too, and "all_round" has more of both together.
    q = QueueConfig(name="q", requirement="crypto >= 1", strategy=Strategy.BEST_PROFICIENCY)
    r = Router(
        [q],
        [
            agent("crypto_star", {"crypto": 5, "compliance": 1}),
            agent("all_round", {"crypto": 3, "compliance": 5}),
            agent("idle_longest", {"crypto": 1, "compliance": 1}),
        ],
    )
    for i, a in enumerate(["idle_longest", "crypto_star", "all_round"]):
        ready(r, a, i)
    assert offers(r.contact_arrived("c1", "q", 5, requirements="compliance >= 1")) == [("c1", "all_round")]
    assert offers(r.contact_arrived("c2", "q", 6)) == [("c2", "crypto_star")]
    assert offers(r.contact_arrived("c3", "q", 7, requirements="compliance >= 1")) == [("c3", "idle_longest")]


def test_round_robin_rotates_in_agent_order() -> None:
    r = Router([QueueConfig(name="q", strategy=Strategy.ROUND_ROBIN)], [agent("a"), agent("b"), agent("c")])
    for i, a in enumerate("cab"):
        ready(r, a, i)
    picked = []
    for i in range(4):
        cid = f"k{i}"
        picked += [a for _, a in offers(r.contact_arrived(cid, "q", 10 + i))]
        r.offer_accepted(cid, r.agent_for(cid) or "", 10 + i)
        r.contact_finished(cid, 10 + i)
    assert picked == ["a", "b", "c", "a"]


def test_least_occupied_prefers_the_agent_with_fewer_chats() -> None:
    q = QueueConfig(name="q", strategy=Strategy.LEAST_OCCUPIED)
    cap = {"chat": 4}
    r = Router([q], [agent("a", capacity=cap), agent("b", capacity=cap)])
    ready(r, "a", 0)
    r.contact_arrived("c1", "q", 1, channel="chat")
    r.offer_accepted("c1", "a", 1)
    r.contact_arrived("c2", "q", 1, channel="chat")
    r.offer_accepted("c2", "a", 1)
    ready(r, "b", 5)  # idle for less time, but emptier
    assert offers(r.contact_arrived("c3", "q", 6, channel="chat")) == [("c3", "b")]


# --- queue limits ------------------------------------------------------------------------------


def test_full_queue_overflows_then_rejects_and_loops_end() -> None:
    qs = [
        QueueConfig(name="a", max_length=1, on_full=QueueAction(kind=ActionKind.OVERFLOW, to_queue="b")),
        QueueConfig(name="b", max_length=1, on_full=QueueAction(kind=ActionKind.OVERFLOW, to_queue="a")),
    ]
    r = Router(qs, [])
    r.contact_arrived("c1", "a", 0)
    assert r.contact_arrived("c2", "a", 1) == [
        OverflowContact(contact_id="c2", from_queue="a", to_queue="b", reason="queue_full"),
        AnnounceQueued(contact_id="c2", queue="b"),
    ]
    assert r.contact_arrived("c3", "a", 2) == [
        OverflowContact(contact_id="c3", from_queue="a", to_queue="b", reason="queue_full"),
        RejectContact(contact_id="c3", queue="b", reason="queue_full"),  # b would send it back to a
    ]
    assert r.queue_of("c3") is None and r.queue_of("c2") == "b"


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (QueueAction(kind=ActionKind.REJECT), RejectContact(contact_id="c2", queue="q", reason="queue_full")),
        (QueueAction(kind=ActionKind.CALLBACK), OfferCallback(contact_id="c2", queue="q", reason="queue_full")),
        (
            QueueAction(kind=ActionKind.DISCONNECT, message="busy"),
            DisconnectContact(contact_id="c2", queue="q", reason="queue_full", message="busy"),
        ),
    ],
)
def test_full_queue_actions(action: QueueAction, expected: Command) -> None:
    r = Router([QueueConfig(name="q", max_length=1, on_full=action)], [])
    r.contact_arrived("c1", "q", 0)
    assert r.contact_arrived("c2", "q", 1) == [expected]
    assert r.queue_of("c2") is None


def test_maximum_wait_on_tick_overflows_with_a_fresh_clock_in_the_new_queue() -> None:
    qs = [
        QueueConfig(name="a", max_wait_s=60, on_timeout=QueueAction(kind=ActionKind.OVERFLOW, to_queue="b")),
        QueueConfig(name="b", max_wait_s=60, on_timeout=QueueAction(kind=ActionKind.CALLBACK)),
    ]
    r = Router(qs, [])
    r.contact_arrived("c1", "a", 0)
    assert r.next_deadline() == 60
    assert r.tick(59) == []
    assert r.tick(60) == [
        OverflowContact(contact_id="c1", from_queue="a", to_queue="b", reason="max_wait"),
        AnnounceQueued(contact_id="c1", queue="b"),
    ]
    assert r.tick(119) == []
    assert r.tick(120) == [OfferCallback(contact_id="c1", queue="b", reason="max_wait")]


# --- brokerage rules --------------------------------------------------------------------------


def _brokerage() -> Router:
    return Router(
        [QueueConfig(name="support")],
        [
            agent("plain", attributes={"language": "de", "languages": frozenset({"de", "en"})}),
            agent("compliance", {"compliance": 3}, attributes={"language": "en", "languages": frozenset({"en"})}),
        ],
        rules=DEFAULT_RULES,
    )


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"edd": True}, "compliance"),
        ({"kyc_status": "pending"}, "compliance"),
        ({"kyc_status": "verified"}, "plain"),
        ({}, "plain"),  # an unknown caller has no KYC record to fail
        ({"language": "en"}, "plain"),
        ({"language": "de", "edd": True}, None),  # compliance only, and nobody speaks German there
    ],
)
def test_default_rules(attributes: dict[str, object], expected: str | None) -> None:
    r = _brokerage()
    ready(r, "plain", 0)
    ready(r, "compliance", 1)
    out = r.contact_arrived("c1", "support", 2, attributes=attributes)  # type: ignore[arg-type]
    assert [a for _, a in offers(out)] == ([expected] if expected else [])


def test_language_requirement_relaxes_but_compliance_never_does() -> None:
    r = _brokerage()
    ready(r, "compliance", 0)
    r.contact_arrived("c1", "support", 1, attributes={"language": "de"})
    r.contact_arrived("c2", "support", 2, attributes={"language": "de", "edd": True})
    assert r.next_deadline() == 121
    assert offers(r.tick(121)) == [("c1", "compliance")]
    r.offer_accepted("c1", "compliance", 122)
    r.agent_logged_out("compliance", 123)
    ready(r, "plain", 124)
    assert r.tick(500) == [] and r.waiting("support") == ["c2"]


def test_vip_rule_raises_priority() -> None:
    r = _brokerage()
    r.contact_arrived("c1", "support", 0)
    r.contact_arrived("c2", "support", 1, attributes={"tier": "professional"})
    r.contact_arrived("c3", "support", 2, attributes={"tier": "vip"})
    assert r.waiting("support") == ["c3", "c2", "c1"]


def test_a_rule_naming_a_missing_attribute_does_not_apply() -> None:
    rule = Rule(name="lang", when="true", require="$language in languages")
    r = Router([QueueConfig(name="q")], [agent("a")], rules=[rule])
    ready(r, "a", 0)
    assert offers(r.contact_arrived("c1", "q", 1)) == [("c1", "a")]


# --- statistics -------------------------------------------------------------------------------


def test_queue_statistics() -> None:
    r = Router([QueueConfig(name="q", service_level_s=20, wrap_up_s=10)], [agent("a"), agent("b")])
    ready(r, "a", 0)
    r.agent_logged_in("b", 0)
    r.contact_arrived("c1", "q", 0)
    r.offer_accepted("c1", "a", 5)  # answered in 5 s
    r.contact_arrived("c2", "q", 6)
    r.contact_arrived("c3", "q", 7)
    r.contact_abandoned("c3", 17)
    r.contact_finished("c1", 65)  # wrap-up to 75: handle time 70
    snap = r.stats.snapshot(70)
    q = snap["queues"]["q"]
    assert q["ContactsInQueue"] == 1 and q["OldestContactAge"] == 64
    assert (q["AgentsOnline"], q["AgentsAfterContactWork"], q["AgentsNonProductive"]) == (2, 1, 1)
    r.tick(75)  # a ends wrap-up and takes c2 at once, answering after 69 s
    r.offer_accepted("c2", "a", 75)
    q = r.stats.snapshot(80)["queues"]["q"]
    assert q["ContactsAnswered"] == 2 and q["ServiceLevel"] == 50.0
    assert q["AvgQueueAnswerTime"] == 37.0  # (5 + 69) / 2
    assert q["AbandonRate"] == pytest.approx(33.33)
    assert q["AvgHandleTime"] == 70.0 and q["AgentsOnContact"] == 1
    agent_a = r.stats.snapshot(80)["agents"]["a"]
    assert agent_a["state"] == "busy" and agent_a["Occupancy"] == 1.0 and agent_a["ContactsHandled"] == 1
    # the window slides: fifteen minutes later the answers are forgotten
    assert r.stats.snapshot(80 + 900)["queues"]["q"]["ServiceLevel"] is None
    json.dumps(r.stats.snapshot(100))


def test_stats_changed_command_when_asked_for() -> None:
    r = Router([QueueConfig(name="q")], [agent("a")], publish_stats=True)
    assert r.agent_logged_in("a", 0)[-1] == StatsChanged(queues=(), agents=("a",))
    assert r.contact_arrived("c1", "q", 1)[-1] == StatsChanged(queues=("q",), agents=())
    assert r.tick(2) == []


# --- configuration changes ---------------------------------------------------------------------


def test_update_agent_and_queue_take_effect_at_once() -> None:
    r = Router([QueueConfig(name="q", requirement="crypto >= 3")], [agent("a", {"crypto": 1})])
    ready(r, "a", 0)
    r.contact_arrived("c1", "q", 1)
    assert offers(r.update_agent(agent("a", {"crypto": 3}), 2)) == [("c1", "a")]
    r.contact_arrived("c2", "q", 3)
    r.update_agent(agent("a", {"crypto": 1}), 4)
    r.offer_accepted("c1", "a", 5)
    r.contact_finished("c1", 6)
    assert r.waiting("q") == ["c2"]
    assert offers(r.update_queue(QueueConfig(name="q"), 7)) == [("c2", "a")]
    with pytest.raises(RoutingError) as err:
        r.update_agent(agent("a", capacity={"voice": 0}), 8)
    assert err.value.code == "capacity_in_use"
    with pytest.raises(RoutingError) as err:
        r.update_queue(QueueConfig(name="q", steps=(RoutingStep(after_s=5, requirement="x"),)), 8)
    assert err.value.code == "bad_queue"
