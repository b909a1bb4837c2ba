"""What a busy hub meets in its transaction layer, played as playbooks: copies of an
INVITE read late from the socket, and a phone that stops answering after ringing."""

from __future__ import annotations

from cti.sip.message import build_response
from cti.sip.transaction import (
    DeliverRequest,
    ReportTimeout,
    StartTimer,
    TransactionLayer,
)
from tests.unit.test_sip_transaction import (
    AGENT,
    METHODS,
    PEER,
    agent_response,
    delivered,
    outbound_invite,
    raw,
)


def layer() -> TransactionLayer:
    return TransactionLayer(allowed_methods=METHODS)


def test_a_late_copy_of_an_answered_and_acked_invite_starts_no_second_call() -> None:
    tl = layer()
    d = delivered(tl.datagram_received(raw("INVITE"), PEER, 0.0))
    tl.send_response(d.transaction, build_response(d.request, 200, to_tag="t1"), 0.0)
    tl.datagram_received(raw("ACK", branch="z9hG4bKack", to_tag="t1"), PEER, 0.5)
    assert tl.active_transactions == 0
    # The caller's retransmission, queued in the hub's socket while it was busy.
    late = tl.datagram_received(raw("INVITE"), PEER, 3.0)
    assert not [c for c in late if isinstance(c, DeliverRequest)]
    assert tl.active_transactions == 0
    # 64*T1 later the key is forgotten: a new INVITE with it is a new transaction again.
    assert [c for c in tl.datagram_received(raw("INVITE"), PEER, 33.0) if isinstance(c, DeliverRequest)]


def test_a_new_invite_is_not_mistaken_for_a_late_copy() -> None:
    tl = layer()
    d = delivered(tl.datagram_received(raw("INVITE"), PEER, 0.0))
    tl.send_response(d.transaction, build_response(d.request, 200, to_tag="t1"), 0.0)
    tl.datagram_received(raw("ACK", branch="z9hG4bKack", to_tag="t1"), PEER, 0.5)
    other = tl.datagram_received(raw("INVITE", branch="z9hG4bKbbb"), PEER, 1.0)
    assert [c for c in other if isinstance(c, DeliverRequest)]


def test_a_cancelled_invite_without_final_response_ends_64_t1_after_the_cancel_is_answered() -> None:
    tl = layer()
    key, _ = tl.send_request(outbound_invite(), AGENT, 0.0)
    tl.datagram_received(agent_response(180), AGENT, 0.1)  # Timer B stops: the phone rings
    cancel_key, _ = tl.cancel(key, 5.0)
    assert cancel_key is not None
    ok = tl.datagram_received(agent_response(200, method="CANCEL"), AGENT, 5.1)
    assert StartTimer(key=f"B:{key}", delay=32.0) in ok
    # A late provisional does not stop it again.
    tl.datagram_received(agent_response(180), AGENT, 6.0)
    tl.timer_fired(f"K:{cancel_key}", 10.1)
    # The phone never sends its 487 (it vanished): the INVITE is over, the user hears of it.
    assert ReportTimeout(transaction=key, what="no_response") in tl.timer_fired(f"B:{key}", 37.1)
    assert tl.active_transactions == 0


def test_an_unanswered_cancel_ends_its_invite_with_it() -> None:
    tl = layer()
    key, _ = tl.send_request(outbound_invite(), AGENT, 0.0)
    tl.datagram_received(agent_response(180), AGENT, 0.1)
    cancel_key, _ = tl.cancel(key, 1.0)
    assert cancel_key is not None
    out = tl.timer_fired(f"F:{cancel_key}", 33.0)
    assert ReportTimeout(transaction=cancel_key, what="no_response") in out
    assert ReportTimeout(transaction=key, what="no_response") in out
    assert tl.active_transactions == 0


def test_the_487_after_a_cancel_still_ends_the_invite_normally() -> None:
    tl = layer()
    key, _ = tl.send_request(outbound_invite(), AGENT, 0.0)
    tl.datagram_received(agent_response(180), AGENT, 0.1)
    tl.cancel(key, 1.0)
    tl.datagram_received(agent_response(200, method="CANCEL"), AGENT, 1.1)
    tl.datagram_received(agent_response(487), AGENT, 1.2)
    assert tl.timer_fired(f"B:{key}", 33.1) == []  # the INVITE completed: nothing to report
