"""Routing shared by several hubs, without Redis: which hub carries out which command,
the envelopes hubs send each other, a configuration change as facts, the fact queue
over the in-process store, and the CTIHUB_ROUTING_STORE setting."""

from __future__ import annotations

import pytest

from cti.config import ConfigError as SettingError
from cti.config import load_settings
from cti.directory.store import AgentRecord, Directory, QueueRecord
from cti.routing_config import apply_change, change_facts, effective
from cti.routing_link import AgentRequest, Nudge, ToAgent, decode, encode
from cti.routing_shared import FactQueue, carried_out_here, contact_of_command
from routing import (
    AgentState,
    AnnounceAgentState,
    AnnounceQueued,
    Command,
    DisconnectContact,
    OfferCallback,
    OfferContact,
    OverflowContact,
    RejectContact,
    RoutingError,
    StatsChanged,
    WithdrawOffer,
    build_router,
)
from routing.facts import (
    AgentConfigured,
    AgentLoggedIn,
    AgentStateRequested,
    ContactArrived,
    OfferAccepted,
    QueueConfigured,
    RulesChanged,
    apply,
)
from routing.store import InProcessStore

CONTACT_COMMANDS: list[Command] = [
    OfferContact(contact_id="c1", agent_id="a1", queue="sales", matched_skills=("sales",)),
    WithdrawOffer(contact_id="c1", agent_id="a1", reason="timeout"),
    OverflowContact(contact_id="c1", from_queue="sales", to_queue="support", reason="max_wait"),
    RejectContact(contact_id="c1", queue="sales", reason="queue_full"),
    DisconnectContact(contact_id="c1", queue="sales", reason="max_wait", message=None),
    OfferCallback(contact_id="c1", queue="sales", reason="max_wait"),
    AnnounceQueued(contact_id="c1", queue="sales"),
]
OTHER_COMMANDS: list[Command] = [
    AnnounceAgentState(agent_id="a1", state=AgentState.AVAILABLE, previous=AgentState.AWAY, reason=None),
    StatsChanged(queues=("sales",), agents=("a1",)),
]


@pytest.mark.parametrize("command", CONTACT_COMMANDS, ids=lambda c: type(c).__name__)
def test_a_command_about_a_contact_is_carried_out_by_the_hub_holding_its_call(command: Command) -> None:
    assert contact_of_command(command) == "c1"
    for mine in (True, False):
        assert carried_out_here(command, holds=lambda c: c == "c1", mine=mine)
        assert not carried_out_here(command, holds=lambda c: False, mine=mine)


@pytest.mark.parametrize("command", OTHER_COMMANDS, ids=lambda c: type(c).__name__)
def test_any_other_command_is_carried_out_by_the_hub_that_submitted_the_fact(command: Command) -> None:
    assert contact_of_command(command) is None
    assert carried_out_here(command, holds=lambda c: True, mine=True)
    assert not carried_out_here(command, holds=lambda c: True, mine=False)


def test_every_command_is_carried_out_by_exactly_one_of_two_hubs() -> None:
    # Hub A holds c1 and submitted the fact; hub B holds nothing of it.
    for command in CONTACT_COMMANDS + OTHER_COMMANDS:
        on_a = carried_out_here(command, holds=lambda c: c == "c1", mine=True)
        on_b = carried_out_here(command, holds=lambda c: False, mine=False)
        assert on_a != on_b or not (on_a or on_b), command
        assert on_a or on_b, command


@pytest.mark.parametrize(
    "envelope",
    [
        ToAgent(sender="hubA", agent_id="agent01", message={"type": "screen_pop", "contact_id": "ct_1", "customer": None}),
        AgentRequest(sender="hubB", agent_id="agent01", request="transfer", contact_id="ct_1", args={"queue": "support"}),
        Nudge(sender="hubA"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_envelopes_round_trip(envelope: ToAgent | AgentRequest | Nudge) -> None:
    assert decode(encode(envelope)) == envelope
    assert decode(encode(envelope).encode()) == envelope  # Redis hands back bytes


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[]", b'{"k":"agent"}', b'{"k":"agent","h":"x","a":1,"m":{}}', b'{"k":"later","h":"x"}',
     b'{"k":"request","h":"x","a":"agent01","r":"hangup","c":"ct_1"}', b"\xff\xfe"],
)
def test_an_envelope_this_hub_does_not_understand_is_ignored(raw: bytes) -> None:
    assert decode(raw) is None


def _directory() -> Directory:
    return Directory(
        agents={a: AgentRecord(username=a, display_name=a, skills=("sales",), languages=("en",)) for a in ("a1", "a2")},
        queues={"sales": QueueRecord(name="sales", display_name="Sales", required_skills=("sales",))},
        numbers={"1000": "sales"},
    )


def test_a_configuration_change_as_facts_gives_the_router_what_apply_change_gives() -> None:
    old = effective({"skills": ["sales"]}, _directory(), reservation_timeout_s=20, strict=True)
    new = effective(
        {
            "skills": ["sales"], "queues": [{"name": "vip", "required_skills": ["sales"]}, {"name": "sales", "max_length": 5}],
            "agents": [{"id": "a2", "skills": {"sales": 5}}],
            "rules": [{"name": "vip_first", "when": 'tier == "vip"', "priority": 3}],
        },
        _directory(), reservation_timeout_s=20, strict=True,
    )
    by_facts, by_calls = build_router(old.config), build_router(old.config)
    facts = change_facts(by_facts, new.config, 5.0, rules_before=old.config.rules)
    assert [type(f) for f in facts] == [QueueConfigured, QueueConfigured, AgentConfigured, RulesChanged]
    assert [f.queue.name for f in facts if isinstance(f, QueueConfigured)] == ["vip", "sales"]  # new queues first
    for fact in facts:
        apply(by_facts, fact)
    apply_change(by_calls, new.config, 5.0)
    assert by_facts.snapshot() == by_calls.snapshot()
    assert by_facts.profile("a2").level("sales") == 5 and by_facts.queue("sales").max_length == 5
    # Nothing to say once the router has it (a hub starting with the configuration in force).
    assert change_facts(by_facts, new.config, 6.0, rules_before=new.config.rules) == []
    assert [type(f) for f in change_facts(by_facts, new.config, 6.0, rules_before=None)] == [RulesChanged]


async def test_the_fact_queue_submits_in_order_and_reports_each_result() -> None:
    config = effective({"skills": ["sales"]}, _directory(), reservation_timeout_s=20, strict=True).config
    store = InProcessStore(build_router(config))
    queue = FactQueue(store, poll_s=0.01)
    queue.start()
    seen: list[object] = []
    queue.put(AgentLoggedIn(agent_id="a1", now=1.0), done=lambda c: seen.append("logged in"))
    queue.put(AgentStateRequested(agent_id="a1", state=AgentState.AVAILABLE, now=2.0), done=lambda c: seen.append("available"))
    queue.put(ContactArrived(contact_id="c1", queue="sales", now=3.0),
              done=lambda c: seen.append([type(x).__name__ for x in c if isinstance(x, OfferContact)]))
    queue.put(OfferAccepted(contact_id="c1", agent_id="a2", now=4.0), failed=lambda err: seen.append(err.code))
    settled = queue.put(OfferAccepted(contact_id="c1", agent_id="a1", now=5.0), done=lambda c: seen.append("accepted"))
    await queue.drained()
    assert settled.done()
    assert seen == ["logged in", "available", ["OfferContact"], "no_such_offer", "accepted"]
    assert store.router.agent_state("a1") == AgentState.BUSY and store.applied == 5
    await queue.close()


async def test_a_failing_callback_does_not_stop_the_queue() -> None:
    config = effective({"skills": ["sales"]}, _directory(), reservation_timeout_s=20, strict=True).config
    store = InProcessStore(build_router(config))
    queue = FactQueue(store, poll_s=0.01)
    queue.start()

    def broken(_: object) -> None:
        raise RuntimeError("a bug in a callback")

    queue.put(AgentLoggedIn(agent_id="a1", now=1.0), done=broken)
    queue.put(AgentLoggedIn(agent_id="a1", now=2.0), failed=broken)  # already logged in
    queue.put(AgentLoggedIn(agent_id="a2", now=3.0))
    await queue.drained()
    assert store.router.agent_state("a2") == AgentState.AWAY
    await queue.close()
    with pytest.raises(RoutingError):
        apply(store.router, AgentLoggedIn(agent_id="a2", now=4.0))


def test_the_routing_store_setting(tmp_path: object) -> None:
    assert load_settings({}, environ={}).routing_store == "process"  # even with Redis: an explicit choice
    assert load_settings({}, environ={"CTIHUB_REDIS_URL": "redis://127.0.0.1:6379/0"}).routing_store == "process"
    shared = load_settings({"routing_store": "REDIS", "redis_url": "redis://127.0.0.1:6379/0"}, environ={})
    assert shared.routing_store == "redis"
    with pytest.raises(SettingError) as err:
        load_settings({}, environ={"CTIHUB_ROUTING_STORE": "redis"})
    assert str(err.value).startswith("invalid setting CTIHUB_ROUTING_STORE (--routing-store)")
    assert "CTIHUB_REDIS_URL" in str(err.value)
    with pytest.raises(SettingError, match="CTIHUB_ROUTING_STORE .*'cluster' is not one of process, redis"):
        load_settings({"routing_store": "cluster"}, environ={})


def test_a_hub_serves_an_agent_while_they_have_a_session_or_a_socket_there() -> None:
    from cti.agents.sessions import SESSION_TTL_S, SessionRegistry

    now = [1000.0]
    sessions = SessionRegistry(clock=lambda: now[0])
    token, _ = sessions.create(username="agent01", role="agent", display_name="Agent 1")
    assert sessions.serves("agent01") and not sessions.serves("agent02")
    now[0] += SESSION_TTL_S + 1  # expired: another hub's message is no longer kept here
    assert not sessions.serves("agent01")
    token, _ = sessions.create(username="agent01", role="agent", display_name="Agent 1")
    sessions.revoke(token)
    assert not sessions.serves("agent01")

    class Socket:
        async def send_str(self, data: str) -> None:
            return None

    sessions.attach("agent02", Socket())  # a socket outlives its session's check
    assert sessions.serves("agent02")
