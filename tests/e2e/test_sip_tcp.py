"""SIP over TCP against the live hub: raw TCP peers and sipp (`-t t1`). Answers come back
on the request's connection, the hub's own requests reuse the peer's connection and
name TCP in their Via, and a peer that sends garbage loses its connection while the
listener keeps serving."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from cti.app import Hub
from cti.sip.framing import PONG, MessageFramed, StreamFramer
from cti.sip.message import SipRequest, SipResponse, build_response, parse_message, serialize
from tests.e2e.harness import agent, running_hub, start_sipp
from tests.e2e.test_sip_listener import SDP

LENA = "+4930901820"  # demo customer: Lena Hoffmann


def hub_port(hub: Hub) -> int:
    assert hub.sip_address is not None
    return hub.sip_address[1]


class TcpPeer:
    """A SIP peer on one TCP connection to the hub, framing what comes back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = StreamFramer()
        self.messages: list[bytes] = []
        host, port = writer.get_extra_info("sockname")[:2]
        self.address = (str(host), int(port))

    @classmethod
    async def connect(cls, hub: Hub) -> TcpPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", hub_port(hub))
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def _read_more(self) -> bool:
        data = await self.reader.read(65536)
        if not data:
            return False
        self.messages += [o.data for o in self.framer.feed(data) if isinstance(o, MessageFramed)]
        return True

    async def ping(self) -> bytes:
        """RFC 5626 keep-alive: CRLFCRLF out, the raw answer (a CRLF pong) back."""
        await self.send(b"\r\n\r\n")
        async with asyncio.timeout(3):
            return await self.reader.readexactly(len(PONG))

    async def next(self, timeout: float = 5.0) -> SipRequest | SipResponse:
        async with asyncio.timeout(timeout):
            while not self.messages:
                if not await self._read_more():
                    raise ConnectionError("the hub closed the connection")
        return parse_message(self.messages.pop(0))

    async def closed_by_hub(self, timeout: float = 5.0) -> bool:
        async with asyncio.timeout(timeout):
            while await self._read_more():
                pass
        await self.close()  # our side of the socket, so that nothing is left unclosed
        return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


def request(peer: TcpPeer, method: str, target: str, hub: Hub, *, body: str = "", content_length: bool = True) -> bytes:
    host, port = peer.address
    lines = [
        f"{method} sip:{target}@127.0.0.1:{hub_port(hub)};transport=tcp SIP/2.0",
        f"Via: SIP/2.0/TCP {host}:{port};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport",
        "Max-Forwards: 70",
        f"From: <sip:{LENA}@{host}:{port}>;tag=tcp1",
        f"To: <sip:{target}@127.0.0.1:{hub_port(hub)}>",
        f"Call-ID: {uuid.uuid4().hex}",
        f"CSeq: 1 {method}",
        f"Contact: <sip:{LENA}@{host}:{port};transport=tcp>",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    if content_length:
        lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def status(message: SipRequest | SipResponse) -> int:
    assert isinstance(message, SipResponse), message
    return message.status


async def test_options_is_answered_on_the_same_connection_which_stays_open(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        peer = await TcpPeer.connect(hub)
        sent = request(peer, "OPTIONS", "1000", hub)
        await peer.send(sent)
        answer = await peer.next()
        assert status(answer) == 200 and "INVITE" in (answer.headers.get("Allow") or "")
        assert answer.call_id == parse_message(sent).call_id
        assert answer.top_via.transport == "TCP" and answer.top_via.rport == str(peer.address[1])
        assert await peer.ping() == PONG
        await peer.send(request(peer, "OPTIONS", "1000", hub))  # and the connection is reused
        assert status(await peer.next()) == 200
        assert hub.sip is not None and hub.sip.tcp is not None and hub.sip.tcp.connection_count == 1
        await peer.close()


async def test_the_hubs_bye_reuses_the_callers_connection_and_names_tcp(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, agent(hub, "agent01") as desk:
        peer = await TcpPeer.connect(hub)
        invite = request(peer, "INVITE", "1000", hub, body=SDP)
        await peer.send(invite)
        statuses: list[int] = []
        while not statuses or statuses[-1] < 200:
            statuses.append(status(ok := await peer.next()))
        assert statuses[-1] == 200 and 180 in statuses
        assert isinstance(ok, SipResponse)
        ack = invite.replace(b"INVITE sip:", b"ACK sip:", 1).replace(b"1 INVITE", b"1 ACK")
        to = ok.headers.get("To") or ""
        ack_message = parse_message(ack.split(b"Content-Type")[0] + b"Content-Length: 0\r\n\r\n")
        assert isinstance(ack_message, SipRequest)
        ack_message.headers.set("To", to)
        await peer.send(serialize(ack_message))
        pop = await desk.wait_for("screen_pop")
        await desk.send({"type": "accept", "contact_id": pop["contact_id"]})
        await desk.wait_for("call.answered")
        await desk.send({"type": "hangup", "contact_id": pop["contact_id"]})
        bye = await peer.next(timeout=10)
        assert isinstance(bye, SipRequest) and bye.method == "BYE"
        assert bye.top_via.transport == "TCP"  # §18.1.1: the Via names the transport it went on
        await peer.send(serialize(build_response(bye, 200)))
        ended = await desk.wait_for("call.ended", call_id=pop["call_id"])
        assert ended["data"]["ended_by"] == "agent"
        assert hub.sip is not None and hub.sip.tcp is not None and hub.sip.tcp.connection_count == 1
        await peer.close()


@pytest.mark.sipp
async def test_sipp_caller_over_tcp_pops_on_the_agent_and_hangs_up(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub, agent(hub, "agent01") as desk:
        call = await start_sipp(
            sipp_path, hub, tmp_path, scenario="uac_hangup.xml", service="1000", caller="00" + LENA[1:], hold_ms=2000,
            transport="t1",
        )
        pop = await desk.wait_for("screen_pop")
        assert pop["caller_e164"] == LENA and pop["dialled"] == "1000"
        assert pop["customer"]["name"] == "Lena Hoffmann"
        await desk.send({"type": "accept", "contact_id": pop["contact_id"]})
        await desk.wait_for("call.answered", call_id=pop["call_id"])
        assert hub.sip is not None and hub.sip.tcp is not None and hub.sip.tcp.connection_count == 1
        code, output = await call.finish()
        assert code == 0, output
        await desk.wait_for("call.ended", call_id=pop["call_id"], outcome="completed", ended_by="caller")


async def test_garbage_closes_the_connection_and_the_listener_keeps_serving(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        garbage = await TcpPeer.connect(hub)
        await garbage.send(b"\x16\x03\x01" + b"\xff" * 70_000)  # no head end within 64 KiB
        assert await garbage.closed_by_hub()
        assert not garbage.messages

        no_length = await TcpPeer.connect(hub)
        await no_length.send(request(no_length, "OPTIONS", "1000", hub, content_length=False))
        answer = await no_length.next()
        assert status(answer) == 400 and "Content-Length" in answer.reason  # type: ignore[union-attr]
        assert await no_length.closed_by_hub()

        healthy = await TcpPeer.connect(hub)
        await healthy.send(request(healthy, "OPTIONS", "1000", hub))
        assert status(await healthy.next()) == 200
        await healthy.close()


async def test_idle_connections_are_closed_and_connections_are_capped(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        assert hub.sip is not None and hub.sip.tcp is not None
        tcp = hub.sip.tcp
        tcp.idle_timeout, tcp.max_connections = 0.3, 2
        first, second = await TcpPeer.connect(hub), await TcpPeer.connect(hub)
        refused = await TcpPeer.connect(hub)
        assert await refused.closed_by_hub(timeout=2)
        assert tcp.connections_refused == 1
        await first.send(request(first, "OPTIONS", "1000", hub))
        assert status(await first.next()) == 200
        assert await first.closed_by_hub(timeout=3) and await second.closed_by_hub(timeout=3)
        assert tcp.connection_count == 0
