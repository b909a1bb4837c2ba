"""The wallboard's pure view: tiles, alerts, the agent grid, change detection and the
last hour's history, fed from a real RoutingStats driven by a real Router."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from cti.wallboard_model import (
    DEFAULT_SERVICE_LEVEL_TARGET,
    AgentFacts,
    ContactFacts,
    Wallboard,
    service_level_status,
    service_level_target,
)
from routing import AgentProfile, AgentState, QueueConfig, Router

WALL = 1_800_000_000.0  # epoch seconds at monotonic 0 in these tests
DOCS = Path(__file__).resolve().parents[2] / "docs" / "wallboard.md"


def snapshot_schema() -> jsonschema.Draft202012Validator:
    """The snapshot schema published in docs/wallboard.md (also used by the e2e tests)."""
    block = DOCS.read_text().split("### Message schema", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    schema = json.loads(block)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _router() -> Router:
    return Router(
        [QueueConfig(name="sales", required_skills=frozenset({"sales"}), service_level_s=20.0)],
        [AgentProfile(agent_id="a1", skills=frozenset({"sales"})), AgentProfile(agent_id="a2", skills=frozenset({"sales"}))],
    )


def _facts(router: Router, handled: dict[str, int] | None = None) -> list[AgentFacts]:
    facts = []
    for agent_id in router.agents():
        state = router.agent_state(agent_id)
        contact_id = router.contact_of(agent_id)
        facts.append(AgentFacts(
            agent_id=agent_id,
            name=agent_id.upper(),
            state=state.value,
            reason=router.agent_reason(agent_id),
            since=None if state is AgentState.OFFLINE and router.state_since(agent_id) == 0.0 else router.state_since(agent_id),
            contact=ContactFacts(contact_id=contact_id, queue=router.queue_of(contact_id), channel="voice") if contact_id else None,
            handled=(handled or {}).get(agent_id, 0),
        ))
    return facts


def _update(board: Wallboard, router: Router, now: float, **extra: Any) -> bool:
    queues = {name: router.stats.queue_snapshot(name, now) for name in router.queues()}
    return board.update(now=now, wall_now=WALL + now, queues=queues, agents=_facts(router), **extra)


def _tile(board: Wallboard, queue: str = "sales") -> dict[str, Any]:
    return next(q for q in board.view["queues"] if q["queue"] == queue)


def _row(board: Wallboard, agent_id: str) -> dict[str, Any]:
    return next(a for a in board.view["agents"] if a["agent_id"] == agent_id)


def test_target_defaults_to_80_and_status_bands() -> None:
    assert service_level_target("sales", {}) == DEFAULT_SERVICE_LEVEL_TARGET == 80.0
    assert service_level_target("sales", {"sales": 90}) == 90.0
    assert service_level_status(None, 80) == "none"
    assert service_level_status(80.0, 80) == "met"
    assert service_level_status(75.0, 80) == "below"
    assert service_level_status(70.0, 80) == "below"
    assert service_level_status(69.9, 80) == "far_below"


def test_waiting_rises_and_falls_and_only_real_changes_count() -> None:
    router, board = _router(), Wallboard()
    assert _update(board, router, 100.0) is True  # the first view is a change
    assert _tile(board)["waiting"] == 0 and _tile(board)["oldest_since"] is None
    assert _update(board, router, 100.25) is False  # nothing happened

    router.contact_arrived("c1", "sales", 101.0)
    assert _update(board, router, 101.1) is True
    tile = _tile(board)
    assert tile["waiting"] == 1
    assert tile["oldest_since"] == WALL + 101.0
    assert tile["longest_wait_s"] == 0.1
    # Time passing alone is no change: the page counts the wait up from oldest_since.
    assert _update(board, router, 105.0) is False
    assert _tile(board)["longest_wait_s"] == 4.0 and _tile(board)["oldest_since"] == WALL + 101.0

    router.contact_abandoned("c1", 106.0)
    assert _update(board, router, 106.1) is True
    tile = _tile(board)
    assert (tile["waiting"], tile["abandoned"], tile["abandon_rate"]) == (0, 1, 100.0)
    assert tile["service_level"] is None and tile["service_level_status"] == "none"


def test_service_level_alert_below_target_and_back() -> None:
    router, board = _router(), Wallboard()
    router.agent_logged_in("a1", 0.0)
    router.agent_state_requested("a1", AgentState.AVAILABLE, 0.0)
    # Answered within 20 s, then one after 30 s: 50 % against 80 %.
    router.contact_arrived("c1", "sales", 10.0)
    router.offer_accepted("c1", "a1", 12.0)
    router.contact_finished("c1", 40.0)
    router.contact_arrived("c2", "sales", 50.0)
    router.agent_state_requested("a1", AgentState.AVAILABLE, 50.0)
    router.offer_accepted("c2", "a1", 80.0)
    assert _update(board, router, 81.0) is True
    tile = _tile(board)
    assert tile["service_level"] == 50.0 and tile["service_level_status"] == "far_below"
    assert tile["asa_s"] == 16.0 and tile["service_level_threshold_s"] == 20.0 and tile["service_level_target"] == 80.0
    [alert] = board.view["alerts"]
    snapshot_schema().validate(board.view)  # the shape docs/wallboard.md publishes
    assert alert["kind"] == "service_level_below_target" and alert["severity"] == "critical"
    assert alert["since"] == WALL + 81.0 and alert["service_level"] == 50.0

    # A laxer configured target: no alert, the tile shows it met.
    assert _update(board, router, 82.0, targets={"sales": 50.0}) is True
    assert board.view["alerts"] == [] and _tile(board)["service_level_status"] == "met"

    # Out of the 15-minute window, the service level is unknown again: no alert.
    _update(board, router, 82.0 + 901)
    assert _tile(board)["service_level"] is None and board.view["alerts"] == []


def test_a_contact_waiting_past_the_threshold_warns_before_it_is_answered() -> None:
    router, board = _router(), Wallboard()
    router.contact_arrived("c1", "sales", 0.0)
    _update(board, router, 19.0)
    assert board.view["alerts"] == []
    assert _update(board, router, 21.0) is True
    [alert] = board.view["alerts"]
    snapshot_schema().validate(board.view)
    assert alert["kind"] == "contact_waiting_over_threshold" and alert["since"] == WALL + 20.0
    assert _update(board, router, 30.0) is False  # the same alert, still


def test_agent_grid_rows() -> None:
    router, board = _router(), Wallboard()
    router.agent_logged_in("a1", 5.0)
    router.agent_state_requested("a1", AgentState.AVAILABLE, 6.0)
    router.contact_arrived("c1", "sales", 7.0)
    _update(board, router, 9.5)
    row = _row(board, "a1")
    assert row["name"] == "A1" and row["state"] == "reserved"
    assert row["state_since"] == WALL + 7.0 and row["time_in_state_s"] == 2.5
    assert row["contact"] == {"contact_id": "c1", "queue": "sales", "channel": "voice", "answered_at": None}
    snapshot_schema().validate(board.view)
    offline = _row(board, "a2")
    assert offline["state"] == "offline" and offline["state_since"] is None and offline["time_in_state_s"] is None
    tile = _tile(board)
    assert tile["agents"] == {"online": 1, "available": 0, "on_contact": 1, "after_contact_work": 0, "non_productive": 0}

    assert _update(board, router, 12.0) is False  # only time in state moved
    router.agent_logged_out("a1", 13.0)
    assert _update(board, router, 13.0) is True
    assert _row(board, "a1")["state"] == "offline" and _row(board, "a1")["state_since"] == WALL + 13.0
    assert _tile(board)["waiting"] == 1  # the offer went back to the queue


def test_history_keeps_one_sample_a_minute_for_the_last_hour() -> None:
    router, board = _router(), Wallboard()
    start = 60.0 * 1000  # a minute boundary of the wall clock in these tests (WALL is one too)
    router.contact_arrived("c1", "sales", start + 5)
    router.contact_arrived("c2", "sales", start + 6)
    _update(board, router, start + 10)
    router.contact_abandoned("c1", start + 20)
    router.contact_abandoned("c2", start + 21)
    _update(board, router, start + 30)
    [minute] = board.view["history"]["queues"]["sales"]
    assert minute["t"] == WALL + start and minute["waiting_max"] == 2
    assert minute["longest_wait_max_s"] is None  # the open minute does not publish it yet

    assert _update(board, router, start + 61) is True  # a new minute is a change
    closed, current = board.view["history"]["queues"]["sales"]
    assert closed["waiting_max"] == 2 and closed["longest_wait_max_s"] == 5.0 and closed["abandon_rate"] == 100.0
    assert current["t"] == WALL + start + 60 and current["waiting_max"] == 0

    # Two hours of samples later, only the last hour is kept, bounded.
    for minute_n in range(2, 125):
        _update(board, router, start + 60 * minute_n + 1)
    samples = board.view["history"]["queues"]["sales"]
    assert len(samples) == 60  # 59 closed minutes and the open one: the last hour
    assert samples[-1]["t"] - samples[0]["t"] == 3540
    snapshot_schema().validate(board.view)
    assert board.view["history"]["sample_s"] == 60 and board.view["history"]["span_s"] == 3600


def test_queue_names_and_a_removed_queue() -> None:
    router, board = _router(), Wallboard()
    _update(board, router, 1.0, names={"sales": "Sales (front office)"})
    assert _tile(board)["name"] == "Sales (front office)"
    assert board.update(now=2.0, wall_now=WALL + 2.0, queues={}, agents=[]) is True
    assert board.view["queues"] == [] and board.view["history"]["queues"] == {}


def test_clock_drift_resyncs_the_offset() -> None:
    router, board = _router(), Wallboard()
    router.contact_arrived("c1", "sales", 1.0)
    _update(board, router, 2.0)
    assert _tile(board)["oldest_since"] == WALL + 1.0
    queues = {"sales": router.stats.queue_snapshot("sales", 3.0)}
    # The wall clock stepped 5 s ahead (NTP): times follow it.
    assert board.update(now=3.0, wall_now=WALL + 8.0, queues=queues, agents=[]) is True
    assert _tile(board)["oldest_since"] == WALL + 6.0
