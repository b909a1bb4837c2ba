"""The routing configuration loader: the demo file, and errors that name the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from routing import (
    DEFAULT_RULES,
    AgentState,
    ConfigError,
    OfferContact,
    build_router,
    load_config,
)
from routing.model import ActionKind, Strategy

yaml = pytest.importorskip("yaml")
DEMO = Path(__file__).resolve().parents[2] / "routing" / "demo.yaml"


def demo() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DEMO.read_text())
    return data


def test_demo_file_loads_and_matches_the_demo_directory() -> None:
    from cti.directory.demo import DEMO_QUEUES, DEMO_USERS

    cfg = load_config(demo())
    assert [q.name for q in cfg.queues] == [name for name, *_ in DEMO_QUEUES]
    assert [q.required_skills for q in cfg.queues] == [frozenset(skills) for _, _, skills, _ in DEMO_QUEUES]
    agents = {a.agent_id: a for a in cfg.agents}
    for user in DEMO_USERS:
        if user.role == "agent":
            assert agents[user.username].skills == frozenset(user.skills), user.username
            assert agents[user.username].attributes["languages"] == frozenset(user.languages)
            assert agents[user.username].attributes["language"] == user.languages[0]
    assert cfg.rules == DEFAULT_RULES
    sales = cfg.queues[0]
    assert sales.strategy is Strategy.BEST_PROFICIENCY and sales.on_full.kind is ActionKind.OVERFLOW
    assert agents["agent08"].level("crypto") == 4


def test_demo_router_routes_a_german_crypto_sales_call() -> None:
    r = build_router(load_config(demo()))
    for a in ("agent01", "agent02", "agent08"):
        r.agent_logged_in(a, 0)
        r.agent_state_requested(a, AgentState.AVAILABLE, 0)
    out = r.contact_arrived("c1", "sales", 1, requirements="crypto >= 3", attributes={"language": "de", "kyc_status": "verified"})
    assert out[-1] == OfferContact(contact_id="c1", agent_id="agent08", queue="sales", matched_skills=("crypto", "sales"))


def _set(data: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        (["queues", 2, "service_level_s"], -5, "queues[2].service_level_s: must be a positive number"),
        (["queues", 2, "service_level_s"], "fast", "queues[2].service_level_s: must be a positive number"),
        (["queues", 0, "steps", 1, "requirement"], "sales >=", "queues[0].steps[1].requirement: expected a value, found 'end of expression' at position 8 in 'sales >='"),
        (["queues", 0, "steps", 0, "after_s"], 5, "queues[0].steps[0].after_s: the first step must start at 0"),
        (["queues", 0, "steps", 1, "requirement"], "salez >= 1", "queues[0].steps[1].requirement: unknown skill or attribute 'salez'"),
        (["queues", 0, "on_full"], {"action": "overflow", "to_queue": "nowhere"}, "queues[0].on_full.to_queue: must name a configured queue, not 'nowhere'"),
        (["queues", 0, "on_full"], {"action": "explode"}, "queues[0].on_full.action: must be one of overflow, callback, disconnect, reject"),
        (["queues", 0, "on_timeout"], {"action": "overflow", "to_queue": "sales"}, "queues[0].on_timeout.to_queue: a queue cannot overflow into itself"),
        (["queues", 1, "strategy"], "random", "queues[1].strategy: must be one of longest_idle, best_proficiency, round_robin, least_occupied"),
        (["queues", 1, "max_length"], 2.5, "queues[1].max_length: must be an integer"),
        (["queues", 1, "colour"], "red", "queues[1].colour: unknown field (expected one of aging_step_s, display_name, max_length, max_wait_s, name, numbers, on_full, on_timeout, priority, required_skills, requirement, reservation_timeout_s, service_level_s, steps, strategy, wrap_up_s)"),
        (["queues", 2, "name"], "sales", "queues[2].name: duplicate queue 'sales'"),
        (["queues", 2, "required_skills"], ["kyc", "magic"], "queues[2].required_skills[1]: unknown skill 'magic'"),
        (["agents", 3, "skills", "support"], 6, "agents[3].skills.support: must be from 1 to 5"),
        (["agents", 3, "skills", "cooking"], 2, "agents[3].skills.cooking: unknown skill 'cooking'"),
        (["agents", 4, "id"], "agent01", "agents[4].id: duplicate agent 'agent01'"),
        (["agents", 4, "capacity"], {"chat": -1}, "agents[4].capacity.chat: must be at least 0"),
        (["agents", 4, "voice_exclusive"], "yes", "agents[4].voice_exclusive: must be true or false"),
        (["rules", 0, "when"], "edd ==", "rules[0].when: expected a value, found 'end of expression' at position 6 in 'edd =='"),
        (["rules", 1], {"name": "noop", "when": "true"}, "rules[1]: a rule must require something or change the priority"),
        (["routing", "max_missed_offers"], 0, "routing.max_missed_offers: must be at least 1"),
        (["skills"], "sales", "skills: must be a list"),
    ],
)
def test_errors_name_the_field(path: list[Any], value: Any, error: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_set(demo(), path, value))
    assert str(err.value) == error


def test_minimal_document_and_defaults() -> None:
    cfg = load_config({"skills": ["s"], "queues": [{"name": "q"}], "agents": [{"id": "a", "skills": ["s"]}]})
    assert cfg.queues[0].service_level_s == 20 and cfg.queues[0].on_full.kind is ActionKind.REJECT
    assert cfg.agents[0].level("s") == 1 and dict(cfg.agents[0].capacity) == {"voice": 1}
    with pytest.raises(ConfigError) as err:
        load_config([])
    assert str(err.value) == "$: must be a mapping"
