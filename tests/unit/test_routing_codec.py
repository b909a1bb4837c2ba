"""Routing facts and configuration survive their JSON form exactly, and so does a whole
router's state; malformed JSON is refused with `CodecError`, never half-read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing import (
    DEFAULT_RULES,
    ActionKind,
    AgentProfile,
    AgentState,
    QueueAction,
    QueueConfig,
    Router,
    RoutingStep,
    Rule,
    Strategy,
)
from routing.codec import CodecError, fact_from_json, fact_to_json
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
    apply,
)
from routing.snapshot import export_state, restore_router

ids = st.text(st.sampled_from("abcxyz019_-é€ "), min_size=1, max_size=8)
times = st.floats(min_value=0, max_value=1e9, allow_nan=False)
scalars = st.one_of(st.text(max_size=5), st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False), st.booleans())
values = st.one_of(
    st.none(),
    scalars,
    st.frozensets(st.text(max_size=4), max_size=3),
    st.lists(scalars, max_size=3).map(tuple),
)
attributes = st.dictionaries(st.text(max_size=6), values, max_size=4)
profiles = st.builds(
    AgentProfile,
    agent_id=ids,
    skills=st.frozensets(st.sampled_from(["sales", "kyc", "crypto"])),
    proficiency=st.dictionaries(st.sampled_from(["sales", "kyc"]), st.integers(1, 5)),
    attributes=attributes,
    capacity=st.dictionaries(st.sampled_from(["voice", "chat"]), st.integers(0, 3)),
    voice_exclusive=st.booleans(),
)
actions = st.builds(
    QueueAction, kind=st.sampled_from(ActionKind), to_queue=st.one_of(st.none(), ids), message=st.one_of(st.none(), ids)
)
queue_configs = st.builds(
    QueueConfig,
    name=ids,
    required_skills=st.frozensets(st.sampled_from(["sales", "kyc"])),
    requirement=st.sampled_from([None, "crypto >= 2", '"de" in languages']),
    steps=st.sampled_from([(), (RoutingStep(after_s=0, requirement="a"), RoutingStep(after_s=7.5, requirement="b"))]),
    priority=st.integers(-2, 3),
    aging_step_s=st.one_of(st.none(), times),
    strategy=st.sampled_from(Strategy),
    service_level_s=times,
    max_length=st.one_of(st.none(), st.integers(0, 9)),
    on_full=actions,
    max_wait_s=st.one_of(st.none(), times),
    on_timeout=actions,
    reservation_timeout_s=times,
    wrap_up_s=times,
)
rules = st.builds(
    Rule,
    name=ids,
    when=st.just("edd == true"),
    require=st.sampled_from([None, "compliance >= 1"]),
    priority=st.integers(0, 2),
    relax_after_s=st.one_of(st.none(), times),
)
facts: st.SearchStrategy[Fact] = st.one_of(
    st.builds(
        ContactArrived,
        contact_id=ids,
        queue=ids,
        now=times,
        channel=st.sampled_from(["voice", "chat"]),
        priority=st.integers(-3, 3),
        requirements=st.sampled_from([None, "kyc >= 2"]),
        attributes=attributes,
        preferred_agent=st.one_of(st.none(), ids),
        preferred_for_s=times,
    ),
    st.builds(ContactAbandoned, contact_id=ids, now=times),
    st.builds(ContactFinished, contact_id=ids, now=times),
    st.builds(OfferAccepted, contact_id=ids, agent_id=ids, now=times),
    st.builds(OfferRejected, contact_id=ids, agent_id=ids, now=times),
    st.builds(AgentLoggedIn, agent_id=ids, now=times),
    st.builds(AgentLoggedOut, agent_id=ids, now=times),
    st.builds(WrapUpDone, agent_id=ids, now=times),
    st.builds(
        AgentStateRequested, agent_id=ids, state=st.sampled_from(AgentState), now=times, reason=st.one_of(st.none(), ids)
    ),
    st.builds(TimePassed, now=times),
    st.builds(AgentConfigured, profile=profiles, now=times),
    st.builds(QueueConfigured, queue=queue_configs, now=times),
    st.builds(RulesChanged, rules=st.lists(rules, max_size=3).map(tuple), now=times),
)


@settings(max_examples=300)
@given(facts)
def test_facts_round_trip_through_json(fact: Fact) -> None:
    assert fact_from_json(fact_to_json(fact), fact.now) == fact


@pytest.mark.parametrize(
    "text",
    ["", "[]", '{"k": "contact_arrived"}', '{"k": "no_such_fact"}', '{"k": "agent_state_requested", "agent_id": "a"}'],
)
def test_malformed_facts_are_refused(text: str) -> None:
    with pytest.raises(CodecError):
        fact_from_json(text, 1.0)


def test_config_facts_add_then_update() -> None:
    r = Router([], [])
    assert apply(r, QueueConfigured(queue=QueueConfig(name="q"), now=0)) == []
    assert apply(r, AgentConfigured(profile=AgentProfile(agent_id="a"), now=0)) == []
    apply(r, AgentLoggedIn(agent_id="a", now=1))
    apply(r, AgentStateRequested(agent_id="a", state=AgentState.AVAILABLE, now=2))
    apply(r, ContactArrived(contact_id="c", queue="q", now=3, attributes={"edd": True}))
    assert r.agent_for("c") == "a"
    apply(r, RulesChanged(rules=DEFAULT_RULES, now=4))
    apply(r, QueueConfigured(queue=QueueConfig(name="q", priority=2), now=5))  # an update
    apply(r, AgentConfigured(profile=AgentProfile(agent_id="a", skills=frozenset({"kyc"})), now=6))
    assert r.profile("a").skills == {"kyc"}
    state = json.loads(json.dumps(export_state(r)))
    assert export_state(restore_router(state)) == state


def test_the_core_and_the_in_process_store_import_no_io() -> None:
    code = (
        "import sys, routing, routing.facts, routing.codec, routing.snapshot, routing.store\n"
        "bad = {'asyncio', 'socket', 'redis', 'aiohttp', 'sqlalchemy'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
