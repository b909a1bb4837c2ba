"""Playbook tests of the transaction layer over a reliable transport (TCP): no
retransmissions, no waiting states, the timeouts kept, and every message sent on the
transport (and connection) its transaction runs on. No sockets, no event loop."""

from __future__ import annotations

from cti.sip.headers import Headers
from cti.sip.message import SipRequest, build_response, parse_message
from cti.sip.transaction import (
    CancelTimer,
    Command,
    DeliverAck,
    DeliverRequest,
    DeliverResponse,
    ReportTimeout,
    SendDatagram,
    StartTimer,
    TransactionLayer,
)
from cti.sip.transport import choose_transport
from tests.unit.test_sip_transaction import AGENT, METHODS, agent_response, outbound_invite, raw

SOURCE = ("192.0.2.10", 40001)  # the peer's end of the TCP connection
SENT_BY = ("192.0.2.10", 5062)  # its Via sent-by


def layer() -> TransactionLayer:
    return TransactionLayer(allowed_methods=METHODS)


def tcp(data: bytes) -> bytes:
    return data.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")


def sends(commands: list[Command]) -> list[SendDatagram]:
    return [c for c in commands if isinstance(c, SendDatagram)]


def timers(commands: list[Command]) -> set[str]:
    return {c.key.partition(":")[0] for c in commands if isinstance(c, StartTimer)}


def delivered(commands: list[Command]) -> DeliverRequest:
    found = [c for c in commands if isinstance(c, DeliverRequest)]
    assert len(found) == 1, commands
    return found[0]


def test_responses_go_back_on_the_connection_with_the_sent_by_as_fallback() -> None:
    tl = layer()
    for rport in (False, True):
        out = tl.datagram_received(tcp(raw("INVITE", branch=f"z9hG4bK{rport}", rport=rport)), SOURCE, 0.0, transport="TCP")
        [trying] = sends(out)
        assert parse_message(trying.data).status == 100  # type: ignore[union-attr]
        assert (trying.transport, trying.destination, trying.fallback) == ("TCP", SOURCE, SENT_BY)


def test_2xx_to_invite_is_not_retransmitted_but_timer_h_still_runs() -> None:
    tl = layer()
    d = delivered(tl.datagram_received(tcp(raw("INVITE")), SOURCE, 0.0, transport="TCP"))
    out = tl.send_response(d.transaction, build_response(d.request, 200, to_tag="t1"), 0.0)
    assert timers(out) == {"H"} and [s.transport for s in sends(out)] == ["TCP"]
    assert ReportTimeout(transaction=d.transaction, what="no_ack") in tl.timer_fired(f"H:{d.transaction}", 32.0)
    assert tl.active_transactions == 0


def test_2xx_then_ack_over_tcp() -> None:
    tl = layer()
    d = delivered(tl.datagram_received(tcp(raw("INVITE")), SOURCE, 0.0, transport="TCP"))
    tl.send_response(d.transaction, build_response(d.request, 200, to_tag="t1"), 0.0)
    ack = tl.datagram_received(tcp(raw("ACK", branch="z9hG4bKack", to_tag="t1")), SOURCE, 0.1, transport="TCP")
    assert CancelTimer(key=f"H:{d.transaction}") in ack and any(isinstance(c, DeliverAck) for c in ack)
    assert tl.active_transactions == 0


def test_error_response_waits_for_its_ack_then_ends_at_once() -> None:
    tl = layer()
    d = delivered(tl.datagram_received(tcp(raw("INVITE")), SOURCE, 0.0, transport="TCP"))
    out = tl.send_response(d.transaction, build_response(d.request, 486, to_tag="t1"), 0.0)
    assert timers(out) == {"H"}  # no Timer G
    ack = tl.datagram_received(tcp(raw("ACK", to_tag="t1")), SOURCE, 0.1, transport="TCP")
    assert not timers(ack) and not any(isinstance(c, DeliverAck) for c in ack)  # Timer I is 0
    assert tl.active_transactions == 0


def test_non_invite_final_response_ends_the_transaction_at_once() -> None:
    tl = layer()
    d = delivered(tl.datagram_received(tcp(raw("BYE", to_tag="t1")), SOURCE, 0.0, transport="TCP"))
    out = tl.send_response(d.transaction, build_response(d.request, 200), 0.0)
    assert not timers(out) and len(sends(out)) == 1  # Timer J is 0
    assert tl.active_transactions == 0


def test_unparsable_request_is_answered_on_the_connection() -> None:
    tl = layer()
    out = tl.datagram_received(tcp(raw("OPTIONS", extra="Max-Forwards: 99999")), SOURCE, 0.0, transport="TCP")
    [answer] = sends(out)
    assert (answer.transport, answer.destination) == ("TCP", SOURCE)
    assert parse_message(answer.data).status == 400  # type: ignore[union-attr]


def bye(branch: str = "z9hG4bKbye1") -> SipRequest:
    headers = Headers()
    headers.add("Via", f"SIP/2.0/UDP 192.0.2.1:5060;branch={branch};rport")
    headers.add("Max-Forwards", "70")
    headers.add("From", "<sip:1000@192.0.2.1>;tag=t1")
    headers.add("To", "<sip:alice@192.0.2.10>;tag=from1")
    headers.add("Call-ID", "call-1@192.0.2.10")
    headers.add("CSeq", "2 BYE")
    return SipRequest(method="BYE", uri="sip:alice@192.0.2.10:5062", headers=headers)


def test_client_request_names_tcp_in_its_via_and_is_not_retransmitted() -> None:
    tl = layer()
    request = bye()
    key, out = tl.send_request(request, SENT_BY, 0.0, transport="TCP")
    assert timers(out) == {"F"}  # no Timer E
    [sent] = sends(out)
    assert (sent.transport, sent.destination, sent.fallback) == ("TCP", SENT_BY, None)
    message = parse_message(sent.data)
    assert message.headers.get("Via") == "SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKbye1;rport"
    assert [name for name, _ in message.headers][:2] == ["Via", "Max-Forwards"]  # the Via stays on top
    assert request.top_via.transport == "UDP"  # the transaction user's request is not changed
    assert ReportTimeout(transaction=key, what="no_response") in tl.timer_fired(f"F:{key}", 32.0)


def test_client_final_response_ends_the_transaction_at_once() -> None:
    tl = layer()
    key, _ = tl.send_request(bye(), SENT_BY, 0.0, transport="TCP")
    response = (
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKbye1\r\n"
        "From: <sip:1000@192.0.2.1>;tag=t1\r\nTo: <sip:alice@192.0.2.10>;tag=from1\r\n"
        "Call-ID: call-1@192.0.2.10\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    out = tl.datagram_received(response, SOURCE, 0.1, transport="TCP")
    assert any(isinstance(c, DeliverResponse) and c.transaction == key for c in out)
    assert not timers(out) and tl.active_transactions == 0  # Timer K is 0


def test_invite_client_over_tcp_acks_a_failure_on_tcp_and_ends_at_once() -> None:
    tl = layer()
    key, out = tl.send_request(outbound_invite(), AGENT, 0.0, transport="TCP")
    assert timers(out) == {"B"}  # no Timer A
    busy = tl.datagram_received(tcp(agent_response(486)), AGENT, 1.0, transport="TCP")
    [ack] = sends(busy)
    message = parse_message(ack.data)
    assert isinstance(message, SipRequest) and message.method == "ACK" and ack.transport == "TCP"
    assert message.top_via.transport == "TCP" and message.top_via.branch == "z9hG4bKout1"
    assert not timers(busy) and tl.active_transactions == 0  # Timer D is 0


def test_invite_client_over_tcp_times_out_on_timer_b() -> None:
    tl = layer()
    key, _ = tl.send_request(outbound_invite(), AGENT, 0.0, transport="TCP")
    assert ReportTimeout(transaction=key, what="no_response") in tl.timer_fired(f"B:{key}", 32.0)


def test_cancel_goes_on_the_invites_transport() -> None:
    tl = layer()
    key, _ = tl.send_request(outbound_invite(), AGENT, 0.0, transport="TCP")
    tl.datagram_received(tcp(agent_response(180)), AGENT, 0.2, transport="TCP")
    cancel_key, out = tl.cancel(key, 0.3)
    [sent] = sends(out)
    assert cancel_key is not None and sent.transport == "TCP" and timers(out) == {"F"}
    assert parse_message(sent.data).top_via.transport == "TCP"


def test_stateless_ack_names_its_transport() -> None:
    tl = layer()
    ack = SipRequest(method="ACK", uri="sip:agent01@192.0.2.20", headers=outbound_invite().headers.copy())
    [sent] = tl.send_stateless(ack, AGENT, transport="TCP")
    assert isinstance(sent, SendDatagram) and sent.transport == "TCP"
    assert parse_message(sent.data).top_via.transport == "TCP"


def test_udp_stays_the_default() -> None:
    tl = layer()
    out = tl.datagram_received(raw("INVITE"), SOURCE, 0.0)
    assert [(s.transport, s.fallback) for s in sends(out)] == [("UDP", None)]
    _, out = tl.send_request(bye(), SENT_BY, 0.0)
    assert timers(out) == {"E", "F"} and parse_message(sends(out)[0].data).top_via.transport == "UDP"


# --- the endpoint's transport policy (pure) -----------------------------------------------


def with_uri(uri: str, *routes: str) -> SipRequest:
    request = bye()
    request.uri = uri
    for route in routes:
        request.headers.add("Route", route)
    return request


def test_transport_policy() -> None:
    assert choose_transport(with_uri("sip:a@192.0.2.10"), None, tcp_available=True) == "UDP"
    assert choose_transport(with_uri("sip:a@192.0.2.10;transport=tcp"), None, tcp_available=True) == "TCP"
    assert choose_transport(with_uri("sip:a@192.0.2.10"), "TCP", tcp_available=True) == "TCP"
    # The URI wins over what was last seen; no TCP listener means UDP.
    assert choose_transport(with_uri("sip:a@192.0.2.10;transport=udp"), "TCP", tcp_available=True) == "UDP"
    assert choose_transport(with_uri("sip:a@192.0.2.10;transport=TCP"), None, tcp_available=False) == "UDP"
    # The next hop is the first Route when there is one.
    routed = with_uri("sip:a@192.0.2.10", "<sip:proxy.example.com;lr;transport=tcp>")
    assert choose_transport(routed, None, tcp_available=True) == "TCP"
    assert choose_transport(None, "TCP", tcp_available=True) == "TCP"
