"""Offer/answer with the caller's leg over raw datagrams: no common codec, an INVITE
without an offer, and the caller's own hold by re-INVITE."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from tests.e2e.harness import running_hub
from tests.e2e.test_sip_listener import UdpPeer, hub_port, open_peer, request, status_of


def header(message: bytes, name: str) -> str:
    for line in message.split(b"\r\n"):
        if line.lower().startswith(name.lower().encode() + b":"):
            return line.split(b":", 1)[1].strip().decode()
    raise AssertionError(f"no {name} in {message!r}")


def body(message: bytes) -> str:
    return message.split(b"\r\n\r\n", 1)[1].decode()


async def final(peer: UdpPeer) -> bytes:
    while True:
        message = await peer.next()
        if status_of(message) >= 200:
            return message


def sdp(port: int, formats: str, rtpmap: str, direction: str = "sendrecv") -> str:
    return (
        f"v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {formats}\r\n{rtpmap}a={direction}\r\n"
    )


async def test_no_common_codec_gets_488(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        transport, peer, port = await open_peer()
        hp = hub_port(hub)
        g729 = sdp(40000, "18", "a=rtpmap:18 G729/8000\r\n")
        transport.sendto(request("INVITE", "1000", port, hp, body=g729), ("127.0.0.1", hp))
        assert status_of(await final(peer)) == 488
        assert hub.media is not None and hub.media.open_endpoints == 0
        transport.close()


async def test_invite_without_offer_gets_our_offer_and_the_ack_answer_directs_media(tmp_path: Path) -> None:
    async with running_hub(tmp_path, answer_delay_s=0.05) as hub:
        transport, peer, port = await open_peer()
        loop = asyncio.get_running_loop()
        rtp_transport, rtp_peer = await loop.create_datagram_endpoint(UdpPeer, local_addr=("127.0.0.1", 0), family=socket.AF_INET)
        rtp_port = rtp_transport.get_extra_info("sockname")[1]
        hp = hub_port(hub)
        invite = request("INVITE", "1000", port, hp)
        transport.sendto(invite, ("127.0.0.1", hp))
        ok = await final(peer)
        assert status_of(ok) == 200 and "m=audio" in body(ok) and "PCMU" in body(ok)
        call_id = header(invite, "Call-ID")
        ack = request("ACK", "1000", port, hp, call_id=call_id, body=sdp(rtp_port, "8", "a=rtpmap:8 PCMA/8000\r\n"))
        ack = ack.replace(f"To: <sip:1000@127.0.0.1:{hp}>".encode(), f"To: {header(ok, 'To')}".encode())
        transport.sendto(ack, ("127.0.0.1", hp))
        # The answer chose PCMA and named our RTP port: music on hold arrives there, as PCMA.
        packet = await rtp_peer.next(timeout=3)
        assert packet[1] & 0x7F == 8
        rtp_transport.close()
        transport.close()


async def test_caller_hold_is_answered_with_the_mirrored_direction(tmp_path: Path) -> None:
    async with running_hub(tmp_path, answer_delay_s=0.05) as hub:
        transport, peer, port = await open_peer()
        hp = hub_port(hub)
        invite = request("INVITE", "1000", port, hp, body=sdp(40002, "0", "a=rtpmap:0 PCMU/8000\r\n"))
        transport.sendto(invite, ("127.0.0.1", hp))
        ok = await final(peer)
        to = header(ok, "To")
        call_id = header(invite, "Call-ID")
        ack = request("ACK", "1000", port, hp, call_id=call_id).replace(f"To: <sip:1000@127.0.0.1:{hp}>".encode(), f"To: {to}".encode())
        transport.sendto(ack, ("127.0.0.1", hp))
        for direction, expected in (("sendonly", "a=recvonly"), ("inactive", "a=inactive"), ("sendrecv", "a=sendrecv")):
            reinvite = request("INVITE", "1000", port, hp, call_id=call_id, body=sdp(40002, "0", "a=rtpmap:0 PCMU/8000\r\n", direction))
            reinvite = reinvite.replace(b"CSeq: 1 INVITE", f"CSeq: {2 + len(direction)} INVITE".encode())
            reinvite = reinvite.replace(f"To: <sip:1000@127.0.0.1:{hp}>".encode(), f"To: {to}".encode())
            transport.sendto(reinvite, ("127.0.0.1", hp))
            answer = await final(peer)
            assert status_of(answer) == 200 and expected in body(answer), body(answer)
        assert hub.voice is not None and hub.voice.active_calls == 1
        transport.close()


async def test_the_hub_sends_rtcp_receiver_reports_about_our_stream(tmp_path: Path, monkeypatch: object) -> None:
    import cti.calls.service as service
    from cti.media.rtp import RtcpReceiverReport, RtpPacket, parse_rtcp

    monkeypatch.setattr(service, "RTCP_INTERVAL_S", 0.5)  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()
    # An even RTP port with RTCP above it, as the peer's SDP promises.
    for candidate in range(44000, 44400, 2):
        try:
            rtp_transport, _ = await loop.create_datagram_endpoint(UdpPeer, local_addr=("127.0.0.1", candidate), family=socket.AF_INET)
        except OSError:
            continue
        try:
            rtcp_transport, rtcp_peer = await loop.create_datagram_endpoint(UdpPeer, local_addr=("127.0.0.1", candidate + 1), family=socket.AF_INET)
        except OSError:
            rtp_transport.close()
            continue
        rtp_port = candidate
        break
    async with running_hub(tmp_path, answer_delay_s=0.05) as hub:
        transport, peer, port = await open_peer()
        hp = hub_port(hub)
        transport.sendto(request("INVITE", "1000", port, hp, body=sdp(rtp_port, "0", "a=rtpmap:0 PCMU/8000\r\n")), ("127.0.0.1", hp))
        ok = await final(peer)
        hub_rtp = int(next(line for line in body(ok).splitlines() if line.startswith("m=audio")).split()[1])
        for n in range(40):
            if n in (10, 11):
                continue  # two packets lost on the way
            packet = RtpPacket(payload_type=0, sequence=1000 + n, timestamp=160 * n, ssrc=0xC0FFEE, payload=b"\xff" * 160)
            rtp_transport.sendto(packet.serialize(), ("127.0.0.1", hub_rtp))
            await asyncio.sleep(0.005)
        async with asyncio.timeout(5):
            while True:
                report = next((p for p in parse_rtcp(await rtcp_peer.next(timeout=5)) if isinstance(p, RtcpReceiverReport)), None)
                if report is not None and report.reports:
                    break
        (block,) = report.reports
        assert block.ssrc == 0xC0FFEE
        assert block.packets_lost == 2 and block.highest_sequence == 1039
        transport.close()
    rtp_transport.close()
    rtcp_transport.close()
