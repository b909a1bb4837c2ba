"""The live UDP listener against raw datagrams: the answers a standard client expects,
and bad input that gets its error or is dropped while the listener keeps serving."""

from __future__ import annotations

import asyncio
import socket
import uuid
from pathlib import Path

from cti.app import Hub
from tests.e2e.harness import running_hub


class UdpPeer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)

    async def next(self, timeout: float = 3.0) -> bytes:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def nothing_for(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.queue.get(), seconds)
        except TimeoutError:
            return True
        return False


async def open_peer() -> tuple[asyncio.DatagramTransport, UdpPeer, int]:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(UdpPeer, local_addr=("127.0.0.1", 0), family=socket.AF_INET)
    return transport, peer, transport.get_extra_info("sockname")[1]


def request(method: str, target: str, port: int, hub_port: int, *, call_id: str | None = None, branch: str | None = None, body: str = "", extra: str = "") -> bytes:
    call_id = call_id or uuid.uuid4().hex
    branch = branch or "z9hG4bK" + uuid.uuid4().hex[:12]
    lines = [
        f"{method} sip:{target}@127.0.0.1:{hub_port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:+442079460018@127.0.0.1:{port}>;tag=abc123",
        f"To: <sip:{target}@127.0.0.1:{hub_port}>",
        f"Call-ID: {call_id}",
        f"CSeq: 1 {method}",
        f"Contact: <sip:caller@127.0.0.1:{port}>",
    ]
    if extra:
        lines.append(extra)
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


SDP = "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8\r\n"


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def hub_port(hub: Hub) -> int:
    assert hub.sip_address is not None
    return hub.sip_address[1]


async def test_unknown_number_gets_404_and_options_200(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        transport, peer, port = await open_peer()
        hp = hub_port(hub)
        transport.sendto(request("INVITE", "9999", port, hp, body=SDP), ("127.0.0.1", hp))
        assert status_of(await peer.next()) == 100
        assert status_of(await peer.next()) == 404
        transport.sendto(request("OPTIONS", "1000", port, hp), ("127.0.0.1", hp))
        answer = await peer.next()
        assert status_of(answer) == 200 and b"Allow: " in answer and b"INVITE" in answer
        transport.close()


async def test_garbage_is_dropped_and_bad_requests_get_400(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        transport, peer, port = await open_peer()
        hp = hub_port(hub)
        for junk in (b"hello", b"\x00\xff" * 300, b"INVITE\r\n\r\n", b"SIP/2.0 200\r\n"):
            transport.sendto(junk, ("127.0.0.1", hp))
        assert await peer.nothing_for(0.5), "unanswerable garbage must be dropped"
        # Headers a response can be built from, but a broken request line: 400.
        bad = request("OPTIONS", "1000", port, hp).replace(b"OPTIONS sip:", b"OPTIONS  sip:", 1)
        transport.sendto(bad, ("127.0.0.1", hp))
        assert status_of(await peer.next()) == 400
        # The listener is still serving.
        transport.sendto(request("OPTIONS", "1000", port, hp), ("127.0.0.1", hp))
        assert status_of(await peer.next()) == 200
        assert hub.sip is not None and hub.sip.running
        transport.close()


async def test_retransmissions_are_absorbed_and_2xx_repeats_until_ack(tmp_path: Path) -> None:
    async with running_hub(tmp_path, answer_delay_s=0.1) as hub:
        transport, peer, port = await open_peer()
        hp = hub_port(hub)
        invite = request("INVITE", "1000", port, hp, body=SDP)
        transport.sendto(invite, ("127.0.0.1", hp))
        assert status_of(await peer.next()) == 100
        transport.sendto(invite, ("127.0.0.1", hp))  # a retransmission while ringing
        statuses = [status_of(await peer.next()) for _ in range(3)]
        assert 180 in statuses and 200 in statuses
        assert hub.voice is not None and hub.voice.active_calls == 1  # one call, not two
        # No ACK yet: the 200 OK comes again (Timer G, T1 = 0.5 s).
        repeated = await peer.next(timeout=2.0)
        assert status_of(repeated) == 200
        to_tag = [line for line in repeated.split(b"\r\n") if line.lower().startswith(b"to:")][0].split(b"tag=")[1]
        ack = request("ACK", "1000", port, hp, call_id=invite.split(b"Call-ID: ")[1].split(b"\r\n")[0].decode())
        ack = ack.replace(b"CSeq: 1 ACK", b"CSeq: 1 ACK").replace(
            f"To: <sip:1000@127.0.0.1:{hp}>".encode(), f"To: <sip:1000@127.0.0.1:{hp}>;tag=".encode() + to_tag
        )
        transport.sendto(ack, ("127.0.0.1", hp))
        while not await peer.nothing_for(1.2):
            pass  # drain 200s sent before the ACK arrived; then silence
        transport.close()
