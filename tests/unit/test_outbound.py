"""Outbound calls' pure parts: the trunk setting, what a final response means, the
click-to-dial machine as playbooks, routing's outbound contact, and the center's rules
for the number dialled, the queue it counts in and the customer an agent picks."""

from __future__ import annotations

import pytest

from crm_sync.profile import CustomerSummary
from cti.calls.outbound import (
    AgentAnswered,
    AgentFailed,
    AgentHungUp,
    BridgeLegs,
    ByeLeg,
    CancelLeg,
    ClickToDial,
    CustomerAnswered,
    CustomerFailed,
    CustomerHungUp,
    CustomerRang,
    DialFailure,
    DialSide,
    DialState,
    GaveUp,
    HubHungUp,
    InviteCustomer,
    ReportAnswered,
    ReportEnded,
    ReportFailed,
    ReportRinging,
    Trunk,
    TrunkError,
    failure_of,
    parse_trunk,
    sipfrag,
    trunk_leg,
)
from cti.center import (
    CallerIdentity,
    CenterError,
    _check_pick,
    _match_ids,
    dial_number,
    outbound_queue,
)
from cti.config import ConfigError, load_settings
from routing import (
    AgentProfile,
    AgentState,
    AnnounceAgentState,
    QueueConfig,
    Router,
    RoutingError,
)
from routing.codec import fact_from_json, fact_to_json
from routing.facts import OutboundStarted, apply

A, C = DialSide.AGENT, DialSide.CUSTOMER
S = AgentState


# --- the trunk setting -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "trunk"),
    [
        ("gw.carrier.example", Trunk(host="gw.carrier.example", port=5060)),
        ("127.0.0.1:5080", Trunk(host="127.0.0.1", port=5080)),
        ("sip:gw.carrier.example:5070;transport=udp", Trunk(host="gw.carrier.example", port=5070)),
        ("[2001:db8::1]:5062", Trunk(host="2001:db8::1", port=5062)),
    ],
)
def test_trunk_settings_parse(raw: str, trunk: Trunk) -> None:
    assert parse_trunk(raw) == trunk
    assert parse_trunk(str(trunk)) == trunk  # what the settings keep parses back the same


@pytest.mark.parametrize("raw", ["", "gw:port", "gw:0", "gw:70000", "2001:db8::1", "[2001:db8::1", "a b:5060"])
def test_bad_trunk_settings_are_refused(raw: str) -> None:
    with pytest.raises(TrunkError):
        parse_trunk(raw)


def test_the_trunk_setting_is_read_and_a_bad_one_names_itself(tmp_path: object) -> None:
    settings = load_settings({"data_dir": str(tmp_path), "sip_trunk": "sip:10.0.0.5"}, environ={})
    assert settings.sip_trunk == "10.0.0.5:5060"
    assert load_settings({"data_dir": str(tmp_path)}, environ={}).sip_trunk == ""
    with pytest.raises(ConfigError) as refused:
        load_settings({"data_dir": str(tmp_path)}, environ={"CTIHUB_SIP_TRUNK": "gw:99999"})
    assert str(refused.value).startswith("invalid setting CTIHUB_SIP_TRUNK (--sip-trunk):")


def test_a_trunk_leg_invites_the_number_at_the_gateway() -> None:
    leg = trunk_leg(
        Trunk(host="127.0.0.1", port=5080), "+442079460018", local_host="192.0.2.1", local_port=5060,
        presented_number="+4930901820",
    )
    invite = leg.invite(b"v=0\r\n")
    assert invite.uri == "sip:+442079460018@127.0.0.1:5080;user=phone"
    assert leg.destination == ("127.0.0.1", 5080) and leg.next_hop() == ("127.0.0.1", 5080)
    assert invite.from_.uri.user == "+4930901820"


@pytest.mark.parametrize(
    ("status", "failure"),
    [(486, DialFailure.BUSY), (600, DialFailure.BUSY), (603, DialFailure.DECLINED), (404, DialFailure.NOT_FOUND),
     (484, DialFailure.NOT_FOUND), (408, DialFailure.NO_ANSWER), (480, DialFailure.NO_ANSWER),
     (503, DialFailure.FAILED), (500, DialFailure.FAILED)],
)
def test_final_responses_mean_a_failure(status: int, failure: DialFailure) -> None:
    assert failure_of(status) is failure


def test_sipfrag_status_lines() -> None:
    assert sipfrag(100) == "SIP/2.0 100 Trying"
    assert sipfrag(486) == "SIP/2.0 486 Busy Here"
    assert sipfrag(299) == "SIP/2.0 299 Unknown"


# --- click-to-dial playbooks ----------------------------------------------------------------


def play(*steps: tuple[object, tuple[object, ...]]) -> ClickToDial:
    dial = ClickToDial()
    for event, expected in steps:
        assert dial.handle(event) == expected, event  # type: ignore[arg-type]
    return dial


def test_answered_on_both_sides_then_the_agent_hangs_up() -> None:
    dial = play(
        (CustomerRang(), ()),  # nothing to ring yet: ignored
        (AgentAnswered(), (InviteCustomer(),)),
        (CustomerRang(), (ReportRinging(),)),
        (CustomerRang(), ()),  # a second 18x says nothing new
        (CustomerAnswered(), (BridgeLegs(), ReportAnswered())),
        (AgentHungUp(), (ByeLeg(side=C), ReportEnded(ended_by="agent"))),
        (CustomerHungUp(), ()),  # the crossing BYE of a call already over
    )
    assert dial.state is DialState.ENDED and dial.ringing_side is None


def test_the_customer_hangs_up_first() -> None:
    play(
        (AgentAnswered(), (InviteCustomer(),)),
        (CustomerAnswered(), (BridgeLegs(), ReportAnswered())),
        (CustomerHungUp(), (ByeLeg(side=A), ReportEnded(ended_by="customer"))),
    )


def test_a_busy_customer_releases_the_agent() -> None:
    play(
        (AgentAnswered(), (InviteCustomer(),)),
        (CustomerFailed(status=486), (
            ByeLeg(side=A), ReportFailed(side=C, failure=DialFailure.BUSY, status=486), ReportEnded(ended_by="customer"),
        )),
    )


def test_the_agents_phone_fails_or_rings_out() -> None:
    play((AgentFailed(status=603), (
        ReportFailed(side=A, failure=DialFailure.DECLINED, status=603), ReportEnded(ended_by="hub"),
    )))
    dial = ClickToDial()
    assert dial.ringing_side is A
    assert dial.handle(GaveUp()) == (
        CancelLeg(side=A), ReportFailed(side=A, failure=DialFailure.NO_ANSWER, status=408), ReportEnded(ended_by="hub"),
    )


def test_giving_up_on_the_customer_cancels_them_and_releases_the_agent() -> None:
    dial = play((AgentAnswered(), (InviteCustomer(),)), (CustomerRang(), (ReportRinging(),)))
    assert dial.ringing_side is C
    assert dial.handle(GaveUp()) == (
        CancelLeg(side=C), ByeLeg(side=A), ReportFailed(side=C, failure=DialFailure.NO_ANSWER, status=408),
        ReportEnded(ended_by="hub"),
    )


def test_hanging_up_from_the_desktop_in_each_state() -> None:
    play((HubHungUp(), (CancelLeg(side=A), ReportEnded(ended_by="agent"))))
    play((AgentAnswered(), (InviteCustomer(),)), (HubHungUp(), (CancelLeg(side=C), ByeLeg(side=A), ReportEnded(ended_by="agent"))))
    play(
        (AgentAnswered(), (InviteCustomer(),)),
        (CustomerAnswered(), (BridgeLegs(), ReportAnswered())),
        (HubHungUp(by="hub"), (ByeLeg(side=A), ByeLeg(side=C), ReportEnded(ended_by="hub"))),
        (HubHungUp(), ()),
    )


def test_the_agent_hangs_up_while_the_customer_rings() -> None:
    play((AgentAnswered(), (InviteCustomer(),)), (AgentHungUp(), (CancelLeg(side=C), ReportEnded(ended_by="agent"))))


# --- routing: the outbound contact ------------------------------------------------------------


def router() -> Router:
    queues = [QueueConfig(name="sales", wrap_up_s=5.0), QueueConfig(name="kyc", required_skills=frozenset({"kyc"}))]
    return Router(queues, [AgentProfile(agent_id="a1", skills=frozenset({"sales"}))])


def test_an_outbound_call_makes_the_agent_busy_then_wrap_up() -> None:
    r = router()
    r.agent_logged_in("a1", 0)
    assert r.outbound_started("o1", "a1", "sales", 1) == [
        AnnounceAgentState(agent_id="a1", state=S.BUSY, previous=S.AWAY, reason=None)
    ]
    assert r.contact_of("a1") == "o1" and r.is_accepted("o1")
    r.contact_arrived("in1", "sales", 2)
    assert r.agent_for("in1") is None  # no offer while on the outbound call
    with pytest.raises(RoutingError) as busy:
        r.outbound_started("o2", "a1", "sales", 2)
    assert busy.value.code == "agent_busy"
    assert r.contact_finished("o1", 3)[0] == AnnounceAgentState(agent_id="a1", state=S.WRAP_UP, previous=S.BUSY, reason=None)
    r.tick(9)  # wrap-up over: back to AWAY, as asked before the call
    assert r.agent_state("a1") is S.AWAY and r.agent_for("in1") is None


def test_an_outbound_call_is_refused_offline_reserved_or_to_an_unknown_queue() -> None:
    r = router()
    with pytest.raises(RoutingError) as offline:
        r.outbound_started("o1", "a1", "sales", 0)
    assert offline.value.code == "not_logged_in"
    r.agent_logged_in("a1", 0)
    r.agent_state_requested("a1", S.AVAILABLE, 0)
    with pytest.raises(RoutingError):
        r.outbound_started("o1", "a1", "nowhere", 0)
    r.contact_arrived("in1", "sales", 1)
    assert r.agent_state("a1") is S.RESERVED
    with pytest.raises(RoutingError) as reserved:
        r.outbound_started("o1", "a1", "sales", 1)
    assert reserved.value.code == "agent_busy"
    assert r.agent_state("a1") is S.RESERVED  # nothing changed


def test_the_outbound_fact_round_trips_and_applies() -> None:
    fact = OutboundStarted(contact_id="o1", agent_id="a1", queue="sales", now=4.5)
    assert fact_from_json(fact_to_json(fact), 4.5) == fact
    r = router()
    r.agent_logged_in("a1", 0)
    assert apply(r, fact)[-1].state is S.BUSY  # type: ignore[union-attr]


def test_an_outbound_call_counts_in_the_first_queue_the_agent_serves() -> None:
    r = Router(
        [QueueConfig(name="b_support", required_skills=frozenset({"support"})), QueueConfig(name="a_kyc", required_skills=frozenset({"kyc"}))],
        [AgentProfile(agent_id="a1", skills=frozenset({"support"})), AgentProfile(agent_id="a2", skills=frozenset())],
    )
    assert outbound_queue(r, "a1") == "b_support"
    assert outbound_queue(r, "a2") is None


# --- the customer an agent picks ---------------------------------------------------------------


def summary(customer_id: str) -> CustomerSummary:
    return CustomerSummary(customer_id=customer_id, name=customer_id, tier="retail", language="el", country="CY", kyc_status="verified")


def test_only_an_offered_match_may_be_picked() -> None:
    matches = _match_ids(CallerIdentity(matches=(summary("cus_a"), summary("cus_b")), profile=None))
    _check_pick("cus_b", matches)
    with pytest.raises(CenterError) as stranger:
        _check_pick("cus_c", matches)
    assert (stranger.value.code, stranger.value.field) == ("bad_field", "customer_id")
    with pytest.raises(CenterError) as single:
        _check_pick("cus_a", ("cus_a",))
    assert single.value.code == "nothing_to_pick"


def test_the_number_dialled_is_one_of_the_customers_own() -> None:
    numbers = ["+442079460018", "+447700900123"]
    assert dial_number("cus_o", numbers, None, default_region="GB") == "+442079460018"
    assert dial_number("cus_o", numbers, "07700 900123", default_region="GB") == "+447700900123"
    for phone in ("+4930901820", "call me"):
        with pytest.raises(CenterError) as refused:
            dial_number("cus_o", numbers, phone, default_region="GB")
        assert (refused.value.code, refused.value.field) == ("bad_field", "phone")
    with pytest.raises(CenterError) as none:
        dial_number("cus_o", [], None, default_region="GB")
    assert none.value.field == "phone"
