"""The hub's side of routing configuration, without a hub: the merge with the
directory, live-change checks, contact attributes and the preferred agent, why_you,
statistics events, the start-up setting and the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from crm_sync.profile import NO_KYC, CustomerProfile, kyc_view
from cti.config import ConfigError as SettingError
from cti.config import load_settings
from cti.directory.demo import DEMO_QUEUES, DEMO_USERS
from cti.directory.store import AgentRecord, Directory, QueueRecord
from cti.routing_admin import _relative
from cti.routing_config import (
    DEMO_ROUTING_FILE,
    RoutingFileError,
    apply_change,
    check_live_change,
    effective,
    read_routing_file,
)
from cti.routing_contact import (
    contact_attributes,
    offer_reason,
    preferred_agent,
    rules_applying,
)
from cti.routing_stats import StatsPublisher, agent_event, queue_event
from cti.web.routing_openapi import REQUEST_BODIES, SCHEMAS, openapi_document
from routing import DEFAULT_RULES, AgentState, ConfigError, OfferContact, build_router

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def demo_directory() -> Directory:
    return Directory(
        agents={
            u.username: AgentRecord(username=u.username, display_name=u.display_name, skills=u.skills, languages=u.languages)
            for u in DEMO_USERS
            if u.role == "agent"
        },
        queues={name: QueueRecord(name=name, display_name=display, required_skills=skills)
                for name, display, skills, _ in DEMO_QUEUES},
        numbers={n: name for name, _, _, numbers in DEMO_QUEUES for n in numbers},
    )


def small_directory(*agents: str) -> Directory:
    return Directory(
        agents={a: AgentRecord(username=a, display_name=a, skills=("sales",), languages=("en",)) for a in agents},
        queues={"sales": QueueRecord(name="sales", display_name="Sales", required_skills=("sales",))},
        numbers={"1000": "sales"},
    )


def demo_document() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DEMO_ROUTING_FILE.read_text())
    return data


# --- the merge with the directory ----------------------------------------------------------


def test_the_directory_alone_routes_queues_and_agents_at_level_one() -> None:
    model = effective({}, small_directory("a1"), reservation_timeout_s=7, strict=False)
    (q,) = model.config.queues
    assert q.name == "sales" and q.required_skills == {"sales"} and q.reservation_timeout_s == 7
    (a,) = model.config.agents
    assert a.agent_id == "a1" and a.level("sales") == 1 and a.attributes["languages"] == frozenset({"en"})
    assert model.config.rules == ()


def test_agents_missing_from_the_file_route_with_their_directory_skills() -> None:
    document = {"skills": ["sales"], "agents": [{"id": "a1", "skills": {"sales": 4}}]}
    model = effective(document, small_directory("a1", "a2"), reservation_timeout_s=20, strict=False)
    agents = {a.agent_id: a for a in model.config.agents}
    assert agents["a1"].level("sales") == 4 and agents["a2"].level("sales") == 1
    assert [a["id"] for a in model.document["agents"]] == ["a1", "a2"]  # the file's first, in place


def test_an_agent_the_directory_does_not_know_is_dropped_at_start_and_refused_by_the_api() -> None:
    document = {"skills": ["sales"], "agents": [{"id": "a1"}, {"id": "ghost", "skills": ["sales"]}]}
    model = effective(document, small_directory("a1"), reservation_timeout_s=20, strict=False)
    assert model.dropped == ("ghost",) and [a.agent_id for a in model.config.agents] == ["a1"]
    with pytest.raises(ConfigError) as err:
        effective(document, small_directory("a1"), reservation_timeout_s=20, strict=True)
    assert err.value.path == "agents[1].id"


def test_the_demo_file_matches_the_demo_directory() -> None:
    model = effective(read_routing_file(DEMO_ROUTING_FILE), demo_directory(), reservation_timeout_s=20, strict=True)
    assert not model.dropped
    assert {q.name for q in model.config.queues} == {name for name, *_ in DEMO_QUEUES}
    assert len(model.document["agents"]) == len([u for u in DEMO_USERS if u.role == "agent"])  # none added
    assert model.config.rules == DEFAULT_RULES and model.config.preferred_agent_s == 15


def test_a_bad_routing_file_stops_start_up_naming_the_setting_and_the_field(tmp_path: Path) -> None:
    document = demo_document()
    document["queues"][1]["max_length"] = "many"
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(SettingError) as err:
        load_settings({}, {"CTIHUB_ROUTING_CONFIG": str(path)})
    assert err.value.setting.startswith("CTIHUB_ROUTING_CONFIG")
    assert str(err.value).endswith(f"{path}: queues[1].max_length: must be an integer")
    path.write_text("queues: [\n  - name: x\n")
    with pytest.raises(SettingError) as err:
        load_settings({}, {"CTIHUB_ROUTING_CONFIG": str(path)})
    assert "not valid YAML at line" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(SettingError):
        load_settings({}, {"CTIHUB_ROUTING_CONFIG": str(tmp_path / "missing.yaml")})
    assert load_settings({}, {"CTIHUB_ROUTING_CONFIG": "demo"}).routing_config == "demo"
    assert load_settings({}, {}).routing_config is None


def test_read_routing_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("skills: [s]\nqueues: [{name: q, strategy: random}]\n")
    with pytest.raises(RoutingFileError, match=r"^queues\[0\]\.strategy: must be one of"):
        read_routing_file(path)


# --- live changes ------------------------------------------------------------------------------


def test_a_live_change_keeps_queues_and_capacity_in_use_and_applies_the_rest() -> None:
    directory = small_directory("a1", "a2")
    old = effective({"skills": ["sales"], "queues": [{"name": "extra"}]}, directory, reservation_timeout_s=20, strict=True)
    router = build_router(old.config)
    router.agent_logged_in("a1", 0)
    router.agent_state_requested("a1", AgentState.AVAILABLE, 0)
    router.contact_arrived("c1", "sales", 1)
    assert router.contact_of("a1") == "c1"
    without_extra = effective({"skills": ["sales"]}, directory, reservation_timeout_s=20, strict=True)
    with pytest.raises(ConfigError, match="queue 'extra' cannot be removed"):
        check_live_change(router, without_extra)
    no_room = effective(
        {"skills": ["sales"], "queues": [{"name": "extra"}], "agents": [{"id": "a1", "skills": ["sales"], "capacity": {"voice": 0}}]},
        directory, reservation_timeout_s=20, strict=True,
    )
    with pytest.raises(ConfigError) as err:
        check_live_change(router, no_room)
    assert err.value.path == "agents[0].capacity.voice"
    # A new queue, a raised level and a rule, all at once.
    new = effective(
        {
            "skills": ["sales"], "queues": [{"name": "extra"}, {"name": "vip", "required_skills": ["sales"]}],
            "agents": [{"id": "a2", "skills": {"sales": 5}}],
            "rules": [{"name": "vip_first", "when": 'tier == "vip"', "priority": 3}],
        },
        directory, reservation_timeout_s=20, strict=True,
    )
    check_live_change(router, new)
    apply_change(router, new.config, 2)
    assert router.has_queue("vip") and router.profile("a2").level("sales") == 5
    router.agent_logged_in("a2", 3)
    out = router.agent_state_requested("a2", AgentState.AVAILABLE, 3)
    assert not any(isinstance(c, OfferContact) for c in out)
    out = router.contact_arrived("c2", "vip", 4)
    assert any(isinstance(c, OfferContact) and c.agent_id == "a2" for c in out)


def test_errors_of_an_item_route_are_relative_to_the_item() -> None:
    assert _relative(ConfigError("queues[2].max_length", "x"), "queues[2]").path == "max_length"
    assert _relative(ConfigError("queues[2].steps[1].requirement", "x"), "queues[2]").path == "steps[1].requirement"
    assert _relative(ConfigError("queues[2]", "x"), "queues[2]").path == "$"
    assert _relative(ConfigError("queues[0].on_full.to_queue", "x"), "queues[2]").path == "queues[0].on_full.to_queue"


# --- contacts ------------------------------------------------------------------------------------


def profile(*, tier: str = "vip", language: str = "de", kyc_status: str = "verified", edd: tuple[str, ...] = (),
            manager: str | None = "agent08") -> CustomerProfile:
    kyc = kyc_view(status=kyc_status, verified_at=None, risk_rating="low", pep=False, sanctions_hit=False,
                   edd_required=bool(edd), edd_reasons=edd, document_type=None, document_number_masked=None,
                   next_review_at=None, now=NOW)
    return CustomerProfile(
        customer_id="cus_x", first_name="X", last_name="Y", language=language, country="DE", tier=tier,
        account_manager=manager, email=None, marketing_consent=False, created_at=NOW, phones=(), accounts=(),
        kyc=kyc, recent_interactions=(), as_of=NOW,
    )


def test_contact_attributes_come_from_the_profile_and_feed_the_rules() -> None:
    assert contact_attributes(None) == {}
    attrs = contact_attributes(profile(tier="retail", language="en", kyc_status="pending", edd=("unusual_transactions",)))
    assert attrs["kyc_status"] == "pending" and attrs["edd"] is True and attrs["tier"] == "retail"
    assert attrs["edd_reasons"] == frozenset({"unusual_transactions"}) and attrs["customer_id"] == "cus_x"
    assert rules_applying(DEFAULT_RULES, attrs) == ("edd_or_unverified_kyc_to_compliance", "speak_the_customers_language")
    assert rules_applying(DEFAULT_RULES, contact_attributes(profile())) == ("vip_first", "speak_the_customers_language")
    assert contact_attributes(profile())["edd"] is False and NO_KYC.status == "not_started"


def test_the_account_manager_is_preferred_only_when_they_could_take_the_contact() -> None:
    config = effective(read_routing_file(DEMO_ROUTING_FILE), demo_directory(), reservation_timeout_s=20, strict=True).config
    queues = {q.name: q for q in config.queues}
    agents = {a.agent_id: a for a in config.agents}

    def choose(manager: str, queue: str, *, state: AgentState = AgentState.AVAILABLE, window: float = 15,
               **customer: Any) -> str | None:
        return preferred_agent(
            account_manager=manager, queue=queues[queue], profile=agents.get(manager), state=state,
            rules=config.rules, attributes=contact_attributes(profile(manager=manager, **customer)), window_s=window,
        )

    assert choose("agent08", "sales") == "agent08"  # sales 5, speaks German
    assert choose("agent08", "sales", state=AgentState.BUSY) == "agent08"  # worth the wait
    assert choose("agent08", "sales", state=AgentState.AWAY) is None
    assert choose("agent08", "sales", state=AgentState.OFFLINE) is None
    assert choose("agent08", "sales", window=0) is None
    assert choose("agent08", "support") is None  # no support skill
    assert choose("agent08", "sales", kyc_status="expired") is None  # compliance required
    assert choose("agent02", "sales", language="de") is None  # the language rule
    assert choose("agent05", "sales", language="it") is None  # sales 2 qualifies only after 30 s
    assert choose("nobody", "sales") is None


def test_why_you_names_the_step_the_strategy_and_the_preference() -> None:
    config = load_demo()
    sales = next(q for q in config.queues if q.name == "sales")
    reason = offer_reason(sales, matched_skills=("sales",), step=1, preferred=True, rules=("vip_first",))
    assert reason.to_dict() == {
        "queue": "sales", "strategy": "best_proficiency", "matched_skills": ["sales"], "step": 1,
        "step_requirement": "sales >= 1", "step_after_s": 30.0, "preferred_agent": True, "rules": ["vip_first"],
    }
    kyc = next(q for q in config.queues if q.name == "kyc")  # no steps
    assert offer_reason(kyc, matched_skills=(), step=0, preferred=False, rules=()).step_requirement is None


def load_demo() -> Any:
    return effective(read_routing_file(DEMO_ROUTING_FILE), demo_directory(), reservation_timeout_s=20, strict=True).config


# --- statistics ----------------------------------------------------------------------------------


def test_statistics_events_carry_the_connect_names() -> None:
    router = build_router(load_demo(), publish_stats=True)
    router.agent_logged_in("agent01", 0)
    router.agent_state_requested("agent01", AgentState.AVAILABLE, 0)
    router.contact_arrived("c1", "support", 1, attributes={"language": "en"})
    router.contact_arrived("c2", "support", 2)
    event = queue_event("support", router.stats.queue_snapshot("support", 5), at=NOW)
    assert event.topic == "queue.stats_changed"
    data = event.to_wire()["data"]
    assert data["queue"] == "support" and data["AGENTS_ONLINE"] == 1
    assert data["CONTACTS_IN_QUEUE"] + data["AGENTS_ON_CONTACT"] == 2  # one offered to agent01, one waiting
    assert data["OLDEST_CONTACT_AGE"] > 0 and data["SERVICE_LEVEL"] is None
    agent = agent_event("agent01", router.stats.agent_snapshot("agent01", 5), at=NOW).to_wire()["data"]
    assert agent["state"] == "reserved" and agent["AGENT_OCCUPANCY"] == 0.25  # 1 of voice 1 + chat 3 and agent["CONTACTS_HANDLED"] == 0
    schema = json.loads((ROOT / "docs" / "events.schema.json").read_text())
    jsonschema.validate(event.to_wire(), schema)


# --- the OpenAPI document ------------------------------------------------------------------------


def test_the_openapi_document_is_valid_and_the_docs_copy_is_current() -> None:
    document = openapi_document()
    assert json.loads((ROOT / "docs" / "openapi" / "routing.json").read_text()) == document, (
        "regenerate: python -m cti.web.routing_openapi > docs/openapi/routing.json"
    )
    assert document["openapi"] == "3.1.0"
    components = {"components": {"schemas": SCHEMAS}}
    for schema in SCHEMAS.values():
        jsonschema.Draft202012Validator.check_schema({**schema, **components})
    for (path, method), body in REQUEST_BODIES.items():
        ref = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{body}"


def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": {"schemas": SCHEMAS}})


def test_the_request_body_schemas_accept_the_demo_file_and_refuse_bad_shapes() -> None:
    demo = demo_document()
    _validator("RoutingDocument").validate(demo)
    for queue in demo["queues"]:
        _validator("Queue").validate(queue)
    for agent in demo["agents"]:
        _validator("Agent").validate(agent)
    for rule in demo["rules"]:
        _validator("Rule").validate(rule)
    _validator("Skills").validate(demo["skills"])
    for name, bad in (
        ("Queue", {"name": "q", "max_length": "many"}),
        ("Queue", {"name": "q", "colour": "red"}),
        ("Queue", {"name": "q", "on_full": {"action": "explode"}}),
        ("Agent", {"id": "a", "skills": {"sales": 6}}),
        ("Rule", {"name": "r", "when": "", "priority": 1}),
        ("Skills", ["sales", "sales"]),
        ("RoutingDocument", {"queues": [{"max_length": 1}]}),  # a queue needs its name
    ):
        assert list(_validator(name).iter_errors(bad)), (name, bad)


async def test_statistics_are_coalesced_to_a_few_events_a_second() -> None:
    router = build_router(load_demo(), publish_stats=True)
    published: list[Any] = []
    loop = asyncio.get_running_loop()
    publisher = StatsPublisher(lambda: router.stats, published.append, clock=loop.time, interval_s=0.2)
    started = loop.time()
    for i in range(50):  # a burst of changes to one queue and one agent
        publisher.changed(("sales",), ("agent01",) if i % 2 else ())
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.25)
    elapsed = loop.time() - started
    queues = [e for e in published if e.topic == "queue.stats_changed"]
    assert 2 <= len(queues) <= elapsed / 0.2 + 1, (len(queues), elapsed)
    assert {e.queue for e in queues} == {"sales"}
    assert 1 <= len([e for e in published if e.topic == "agent.stats_changed"]) <= len(queues)
    publisher.changed(("support",), ())
    publisher.close()  # a pending flush is dropped at shutdown
    await asyncio.sleep(0.25)
    assert not any(getattr(e, "queue", None) == "support" for e in published)
