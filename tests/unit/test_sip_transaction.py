"""Playbook tests of the pure transaction layer: datagrams and timer firings in, commands
out. No sockets, no event loop."""

from __future__ import annotations

from cti.sip.message import SipRequest, SipResponse, build_response, parse_message
from cti.sip.headers import Headers
from cti.sip.transaction import (
    CancelTimer,
    DeliverAck,
    DeliverRequest,
    DeliverResponse,
    Log,
    ReportTimeout,
    SendDatagram,
    StartTimer,
    TransactionLayer,
)

PEER = ("192.0.2.10", 5062)
METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"})


def layer() -> TransactionLayer:
    return TransactionLayer(allowed_methods=METHODS)


def raw(method: str, *, branch: str = "z9hG4bKaaa", cseq: int = 1, cseq_method: str | None = None, to_tag: str = "", rport: bool = False, body: str = "", extra: str = "") -> bytes:
    via = f"SIP/2.0/UDP 192.0.2.10:5062;branch={branch}" + (";rport" if rport else "")
    lines = [
        f"{method} sip:1000@192.0.2.1 SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        "From: <sip:alice@192.0.2.10>;tag=from1",
        "To: <sip:1000@192.0.2.1>" + (f";tag={to_tag}" if to_tag else ""),
        "Call-ID: call-1@192.0.2.10",
        f"CSeq: {cseq} {cseq_method or method}",
    ]
    if extra:
        lines.append(extra)
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def sent(commands: list[object]) -> list[SipRequest | SipResponse]:
    return [parse_message(c.data) for c in commands if isinstance(c, SendDatagram)]


def statuses(commands: list[object]) -> list[int]:
    return [m.status for m in sent(commands) if isinstance(m, SipResponse)]


def delivered(commands: list[object]) -> DeliverRequest:
    found = [c for c in commands if isinstance(c, DeliverRequest)]
    assert len(found) == 1, commands
    return found[0]


def test_invite_gets_100_and_reaches_the_user() -> None:
    tl = layer()
    out = tl.datagram_received(raw("INVITE"), PEER, 0.0)
    assert statuses(out) == [100]
    assert delivered(out).request.method == "INVITE"


def test_retransmitted_invite_is_absorbed_then_gets_the_last_provisional() -> None:
    tl = layer()
    txn = delivered(tl.datagram_received(raw("INVITE"), PEER, 0.0)).transaction
    again = tl.datagram_received(raw("INVITE"), PEER, 0.1)
    assert statuses(again) == [100] and not [c for c in again if isinstance(c, DeliverRequest)]
    invite = tl._servers[txn].request
    tl.send_response(txn, build_response(invite, 180, to_tag="t1"), 0.2)
    assert statuses(tl.datagram_received(raw("INVITE"), PEER, 0.3)) == [180]


def test_2xx_is_retransmitted_with_doubling_until_the_ack() -> None:
    tl = layer()
    d = delivered(tl.datagram_received(raw("INVITE"), PEER, 0.0))
    out = tl.send_response(d.transaction, build_response(d.request, 200, to_tag="t1"), 0.0)
    assert StartTimer(key=f"G:{d.transaction}", delay=0.5) in out
    assert StartTimer(key=f"H:{d.transaction}", delay=32.0) in out
    delays = []
    for _ in range(5):
        fired = tl.timer_fired(f"G:{d.transaction}", 0.0)
        assert statuses(fired) == [200]
        delays.append(next(c.delay for c in fired if isinstance(c, StartTimer)))
    assert delays == [1.0, 2.0, 4.0, 4.0, 4.0]  # capped at T2
    # A retransmitted INVITE while accepted is absorbed (RFC 6026).
    assert sent(tl.datagram_received(raw("INVITE"), PEER, 1.0)) == []
    ack = tl.datagram_received(raw("ACK", branch="z9hG4bKack", to_tag="t1"), PEER, 1.0)
    assert CancelTimer(key=f"G:{d.transaction}") in ack
    assert any(isinstance(c, DeliverAck) for c in ack)
    assert tl.timer_fired(f"G:{d.transaction}", 2.0) == []
    assert tl.active_transactions == 0


def test_2xx_without_ack_reports_no_ack_after_64_t1() -> None:
    tl = layer()
    d = delivered(tl.datagram_received(raw("INVITE"), PEER, 0.0))
    tl.send_response(d.transaction, build_response(d.request, 200, to_tag="t1"), 0.0)
    out = tl.timer_fired(f"H:{d.transaction}", 32.0)
    assert ReportTimeout(transaction=d.transaction, what="no_ack") in out
    assert tl.active_transactions == 0


def test_error_final_response_is_repeated_on_retransmission_and_absorbs_ack() -> None:
    tl = layer()
    d = delivered(tl.datagram_received(raw("INVITE"), PEER, 0.0))
    tl.send_response(d.transaction, build_response(d.request, 486, to_tag="t1"), 0.0)
    assert statuses(tl.datagram_received(raw("INVITE"), PEER, 0.1)) == [486]
    ack = tl.datagram_received(raw("ACK", to_tag="t1"), PEER, 0.2)  # same branch: ACK of a non-2xx
    assert not any(isinstance(c, DeliverAck) for c in ack)
    assert any(isinstance(c, StartTimer) and c.key.startswith("I:") for c in ack)
    assert tl.timer_fired(f"I:{d.transaction}", 5.2) == []
    assert tl.active_transactions == 0


def test_cancel_is_matched_to_its_invite() -> None:
    tl = layer()
    invite = delivered(tl.datagram_received(raw("INVITE"), PEER, 0.0))
    cancel = delivered(tl.datagram_received(raw("CANCEL", cseq_method="CANCEL"), PEER, 0.1))
    assert cancel.cancels == invite.transaction
    stray = delivered(tl.datagram_received(raw("CANCEL", branch="z9hG4bKother"), PEER, 0.1))
    assert stray.cancels is None


def test_non_invite_final_response_repeats_until_timer_j() -> None:
    tl = layer()
    d = delivered(tl.datagram_received(raw("BYE", to_tag="t1"), PEER, 0.0))
    out = tl.send_response(d.transaction, build_response(d.request, 200), 0.0)
    assert StartTimer(key=f"J:{d.transaction}", delay=32.0) in out
    assert statuses(tl.datagram_received(raw("BYE", to_tag="t1"), PEER, 1.0)) == [200]
    tl.timer_fired(f"J:{d.transaction}", 32.0)
    assert tl.active_transactions == 0


def test_rport_sends_responses_back_to_the_source() -> None:
    tl = layer()
    source = ("198.51.100.7", 40123)  # behind NAT: not what the Via says
    out = tl.datagram_received(raw("OPTIONS", rport=True), source, 0.0)
    assert [c.destination for c in out if isinstance(c, SendDatagram)] == []
    d = delivered(out)
    assert d.request.top_via.received == "198.51.100.7" and d.request.top_via.rport == "40123"
    reply = tl.send_response(d.transaction, build_response(d.request, 200), 0.0)
    assert [c.destination for c in reply if isinstance(c, SendDatagram)] == [source]


def test_unknown_method_gets_501_without_reaching_the_user() -> None:
    tl = layer()
    out = tl.datagram_received(raw("FROB"), PEER, 0.0)
    assert statuses(out) == [501]
    assert not any(isinstance(c, DeliverRequest) for c in out)


def test_unparsable_datagrams_are_dropped_with_a_log_line() -> None:
    tl = layer()
    for junk in (b"\x00\x01garbage", b"INVITE sip:x SIP/2.0\r\n\r\n", b"\r\n\r\n"):
        out = tl.datagram_received(junk, PEER, 0.0)
        assert not sent(out)
    out = tl.datagram_received(b"\x00\x01garbage", PEER, 0.0)
    assert any(isinstance(c, Log) and c.level == "warning" for c in out)


def test_client_bye_retransmits_on_timer_e_and_times_out_on_f() -> None:
    tl = layer()
    headers = Headers()
    headers.add("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbye1")
    headers.add("From", "<sip:1000@192.0.2.1>;tag=t1")
    headers.add("To", "<sip:alice@192.0.2.10>;tag=from1")
    headers.add("Call-ID", "call-1@192.0.2.10")
    headers.add("CSeq", "2 BYE")
    headers.add("Max-Forwards", "70")
    bye = SipRequest(method="BYE", uri="sip:alice@192.0.2.10:5062", headers=headers)
    key, out = tl.send_request(bye, PEER, 0.0)
    assert len(sent(out)) == 1
    retry = tl.timer_fired(f"E:{key}", 0.5)
    assert len(sent(retry)) == 1 and StartTimer(key=f"E:{key}", delay=1.0) in retry
    assert ReportTimeout(transaction=key, what="no_response") in tl.timer_fired(f"F:{key}", 32.0)

    key2, _ = tl.send_request(SipRequest(method="BYE", uri=bye.uri, headers=_with_branch(headers, "z9hG4bKbye2")), PEER, 0.0)
    response = (
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKbye2\r\n"
        "From: <sip:1000@192.0.2.1>;tag=t1\r\nTo: <sip:alice@192.0.2.10>;tag=from1\r\n"
        "Call-ID: call-1@192.0.2.10\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    got = tl.datagram_received(response, PEER, 0.1)
    assert any(isinstance(c, DeliverResponse) and c.transaction == key2 for c in got)
    assert tl.datagram_received(response, PEER, 0.2) == []  # retransmitted final response absorbed


def test_stray_response_is_dropped() -> None:
    tl = layer()
    response = (
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bKnashds7\r\n"
        "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    out = tl.datagram_received(response, PEER, 0.0)
    assert not sent(out) and not any(isinstance(c, DeliverResponse) for c in out)


def _with_branch(headers: Headers, branch: str) -> Headers:
    copy = headers.copy()
    copy.set("Via", f"SIP/2.0/UDP 192.0.2.1:5060;branch={branch}")
    return copy


# --- INVITE client transactions (the hub ringing an agent's phone) ---------------------

AGENT = ("192.0.2.20", 5060)


def outbound_invite(branch: str = "z9hG4bKout1") -> SipRequest:
    headers = Headers()
    headers.add("Via", f"SIP/2.0/UDP 192.0.2.1:5060;branch={branch}")
    headers.add("Max-Forwards", "70")
    headers.add("From", "<sip:hub@192.0.2.1>;tag=hub1")
    headers.add("To", "<sip:agent01@192.0.2.20>")
    headers.add("Call-ID", "out-1@192.0.2.1")
    headers.add("CSeq", "1 INVITE")
    headers.add("Contact", "<sip:hub@192.0.2.1:5060>")
    return SipRequest(method="INVITE", uri="sip:agent01@192.0.2.20:5060", headers=headers)


def agent_response(status: int, *, branch: str = "z9hG4bKout1", method: str = "INVITE", to_tag: str = "ag1") -> bytes:
    return (
        f"SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n"
        f"From: <sip:hub@192.0.2.1>;tag=hub1\r\nTo: <sip:agent01@192.0.2.20>;tag={to_tag}\r\n"
        f"Call-ID: out-1@192.0.2.1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_invite_client_retransmits_on_timer_a_without_cap_and_times_out_on_b() -> None:
    tl = layer()
    key, out = tl.send_request(outbound_invite(), AGENT, 0.0)
    assert StartTimer(key=f"A:{key}", delay=0.5) in out and StartTimer(key=f"B:{key}", delay=32.0) in out
    delays = []
    for _ in range(5):
        fired = tl.timer_fired(f"A:{key}", 0.0)
        assert len(sent(fired)) == 1
        delays.append(next(c.delay for c in fired if isinstance(c, StartTimer)))
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert ReportTimeout(transaction=key, what="no_response") in tl.timer_fired(f"B:{key}", 32.0)
    assert tl.active_transactions == 0


def test_provisional_stops_retransmission_and_busy_is_acked_by_the_transaction() -> None:
    tl = layer()
    key, _ = tl.send_request(outbound_invite(), AGENT, 0.0)
    ringing = tl.datagram_received(agent_response(180), AGENT, 0.1)
    assert CancelTimer(key=f"A:{key}") in ringing and any(isinstance(c, DeliverResponse) for c in ringing)
    busy = tl.datagram_received(agent_response(486), AGENT, 1.0)
    acks = [m for m in sent(busy) if isinstance(m, SipRequest)]
    assert len(acks) == 1 and acks[0].method == "ACK"
    assert acks[0].top_via.branch == "z9hG4bKout1" and acks[0].to.tag == "ag1"  # same branch, the response's To
    assert any(isinstance(c, DeliverResponse) and c.response.status == 486 for c in busy)
    again = tl.datagram_received(agent_response(486), AGENT, 1.5)
    assert [m.method for m in sent(again) if isinstance(m, SipRequest)] == ["ACK"]  # re-ACK, not re-delivered
    assert not any(isinstance(c, DeliverResponse) for c in again)
    tl.timer_fired(f"D:{key}", 33.0)
    assert tl.active_transactions == 0


def test_2xx_retransmissions_reach_the_user_until_timer_m() -> None:
    tl = layer()
    key, _ = tl.send_request(outbound_invite(), AGENT, 0.0)
    first = tl.datagram_received(agent_response(200), AGENT, 0.1)
    assert StartTimer(key=f"M:{key}", delay=32.0) in first
    again = tl.datagram_received(agent_response(200), AGENT, 0.6)
    assert any(isinstance(c, DeliverResponse) for c in again) and not sent(again)  # the TU re-sends its ACK
    tl.timer_fired(f"M:{key}", 32.1)
    assert tl.active_transactions == 0


def test_cancel_follows_a_provisional_and_shares_the_invite_branch() -> None:
    tl = layer()
    key, _ = tl.send_request(outbound_invite(), AGENT, 0.0)
    assert tl.cancel(key, 0.1) == (None, [])  # nothing received yet: a CANCEL may not be sent
    tl.datagram_received(agent_response(180), AGENT, 0.2)
    cancel_key, out = tl.cancel(key, 0.3)
    cancels = [m for m in sent(out) if isinstance(m, SipRequest)]
    assert cancel_key is not None and len(cancels) == 1
    cancel = cancels[0]
    assert cancel.method == "CANCEL" and cancel.cseq == (1, "CANCEL") and cancel.top_via.branch == "z9hG4bKout1"
    assert cancel.uri == "sip:agent01@192.0.2.20:5060" and cancel.to.tag is None
    ok = tl.datagram_received(agent_response(200, method="CANCEL"), AGENT, 0.4)
    assert any(isinstance(c, DeliverResponse) and c.transaction == cancel_key for c in ok)
    terminated = tl.datagram_received(agent_response(487), AGENT, 0.5)
    assert any(isinstance(c, DeliverResponse) and c.response.status == 487 for c in terminated)
