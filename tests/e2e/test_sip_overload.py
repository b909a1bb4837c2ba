"""A flood of new calls past what the hub will take (sipp at 300 calls/s): the hub refuses
the excess with 503 and Retry-After, while the calls it answered, a call already in
progress (re-INVITE, BYE), OPTIONS and REGISTER are all served; once the callers and
phones are gone the hub holds nothing: no call, no agent leg, no transaction, no RTP port.

The hub's overload threshold is set low (20 calls in set-up, with the harness's 0.2 s
answer delay) so that the flood trips it whatever the machine's speed, and its T1 is
short (0.1 s) so that the transactions' wait states, 64*T1, end within the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import secrets
from pathlib import Path

import aiohttp
import pytest

from cti.app import Hub
from tests.conftest import free_udp_port
from tests.e2e.harness import (
    SIPP_DIR,
    agent,
    free_sip_port,
    http_base,
    running_hub,
    start_sipp,
)
from tests.e2e.phones import Phone, register_phone

pytestmark = pytest.mark.sipp

FLOOD_RATE = 300
FLOOD_CALLS = 600
SUPPORT = "2000"  # the demo's support queue: no recording by default, agents 04, 05, 09 (and 07)
OVERLOAD = {"CTIHUB_OVERLOAD_MAX_SETUP": "20", "CTIHUB_OVERLOAD_RETRY_AFTER": "7", "CTIHUB_OVERLOAD_LAG_MS": "250"}


async def start_phones(sipp: str, tmp_path: Path) -> Phone:
    """One sipp playing every agent's phone, for as many calls as come (stopped at the end)."""
    port = free_udp_port()
    process = await asyncio.create_subprocess_exec(
        sipp, "-sf", str(SIPP_DIR / "phone_overload.xml"), "-i", "127.0.0.1", "-p", str(port),
        "-mp", str(free_udp_port() & ~1), "-nostdin", "-trace_err", "-error_file", str(tmp_path / "phones_errors.log"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(tmp_path),
    )
    return Phone(process=process, port=port)


async def start_flood(sipp: str, hub: Hub, tmp_path: Path) -> tuple[asyncio.subprocess.Process, Path]:
    assert hub.sip_address is not None
    text = (SIPP_DIR / "uac_overload.xml").read_text().replace("CALLER", "+442079460999").replace("HOLD_MS", "1000")
    scenario = tmp_path / "flood.xml"
    scenario.write_text(text)
    stats = tmp_path / "flood_stats.csv"
    process = await asyncio.create_subprocess_exec(
        sipp, f"127.0.0.1:{hub.sip_address[1]}", "-sf", str(scenario), "-s", SUPPORT, "-i", "127.0.0.1",
        "-p", str(free_sip_port()), "-mp", str(free_udp_port() & ~1),
        "-r", str(FLOOD_RATE), "-rp", "1000", "-m", str(FLOOD_CALLS), "-nostdin",
        "-timeout", "60s", "-timeout_error", "-recv_timeout", "20000",
        "-trace_stat", "-stf", str(stats), "-fd", "1", "-trace_counts",
        "-trace_err", "-error_file", str(tmp_path / "flood_errors.log"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(tmp_path),
    )
    return process, scenario


def received(scenario: Path, status: str) -> list[int]:
    """How many `status` responses sipp received at each place of the scenario where it
    waits for one, in order, from its -trace_counts file (columns like 3_503_Recv)."""
    [counts] = scenario.parent.glob(f"{scenario.stem}_*_counts.csv")
    rows = list(csv.reader(counts.read_text().splitlines(), delimiter=";"))
    header, totals = rows[0], rows[-1]  # the last line holds the run's totals
    return [int(v) for h, v in zip(header, totals) if h.split("_")[1:] == [status, "Recv"]]


class _OptionsProbe(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answered: dict[str, int] = {}
        self.arrived = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        text = data.decode(errors="replace")
        call_id = next((line.split(":", 1)[1].strip() for line in text.split("\r\n") if line.lower().startswith("call-id:")), "")
        status = int(text.split(" ", 2)[1]) if text.startswith("SIP/2.0 ") else 0
        self.answered.setdefault(call_id, status)
        self.arrived.set()


async def probe_options(hub: Hub, stop: asyncio.Event) -> tuple[int, list[int]]:
    """OPTIONS every 100 ms until `stop`, each retransmitted at T1 (500 ms) like any UAC
    until answered, for at most 4 s. Returns how many were sent and their answers."""
    assert hub.sip_address is not None
    hub_address = hub.sip_address
    loop = asyncio.get_running_loop()
    transport, probe = await loop.create_datagram_endpoint(_OptionsProbe, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    sent: list[str] = []

    async def one(n: int) -> None:
        call_id = f"probe-{n}-{secrets.token_hex(4)}"
        sent.append(call_id)
        request = (
            f"OPTIONS sip:{SUPPORT}@127.0.0.1:{hub_address[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
            f"From: <sip:probe@127.0.0.1>;tag={secrets.token_hex(4)}\r\nTo: <sip:{SUPPORT}@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        for _ in range(8):
            transport.sendto(request, hub_address)
            await asyncio.sleep(0.5)
            if call_id in probe.answered:
                return

    tasks = []
    try:
        n = 0
        while not stop.is_set():
            tasks.append(asyncio.create_task(one(n)))
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
        await asyncio.gather(*tasks)
    finally:
        transport.close()
    return len(sent), [probe.answered.get(call_id, 0) for call_id in sent]


async def metrics(hub: Hub) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(f"{http_base(hub)}/metrics") as resp:
        text = await resp.text()
    return {
        name: float(value)
        for name, _, value in (line.partition(" ") for line in text.splitlines() if line and not line.startswith("#"))
    }


async def nothing_left(hub: Hub, timeout: float) -> None:
    assert hub.voice is not None and hub.media is not None and hub.sip is not None
    voice, media, layer = hub.voice, hub.media, hub.sip.layer
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while voice.active_calls or voice.agent_legs_alive or media.open_endpoints or layer.active_transactions:
                await asyncio.sleep(0.1)
    left = (voice.active_calls, voice.agent_legs_alive, media.open_endpoints, layer.active_transactions)
    assert left == (0, 0, 0, 0), f"calls, agent legs, RTP endpoints, transactions left: {left}"


async def test_a_flood_is_refused_with_503_and_nothing_is_left_behind(
    sipp_path: str, tmp_path: Path, database_url: str
) -> None:
    async with running_hub(
        tmp_path, database_url=database_url, sip_digest_algorithms="MD5", environ=OVERLOAD, sip_t1_s=0.1
    ) as hub, contextlib.AsyncExitStack() as desks:
        assert hub.overload is not None and hub.voice is not None
        phones = await start_phones(sipp_path, tmp_path)
        try:
            for name in ("agent04", "agent05", "agent09"):
                await desks.enter_async_context(agent(hub, name))
                await register_phone(sipp_path, hub, tmp_path, name, phones)
            # A call in progress before the flood: it re-INVITEs and hangs up during it.
            ongoing = await start_sipp(
                sipp_path, hub, tmp_path, scenario="uac_overload_reinvite.xml", service=SUPPORT, caller="+4930901820",
                hold_ms=1500,
            )
            async with asyncio.timeout(10):
                while not hub.voice.active_calls:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # answered (0.2 s) and ACKed

            stop_probe = asyncio.Event()
            probe = asyncio.create_task(probe_options(hub, stop_probe))
            flood, scenario = await start_flood(sipp_path, hub, tmp_path)
            async with asyncio.timeout(20):
                while not hub.overload.overloaded:
                    await asyncio.sleep(0.02)
            # Overloaded: a phone still registers (digest challenge and all).
            await register_phone(sipp_path, hub, tmp_path, "agent07", phones)

            code, output = await ongoing.finish(timeout=30)
            assert code == 0, output  # its re-INVITE answered (recvonly), its BYE too: not cut
            async with asyncio.timeout(90):
                out, _ = await flood.communicate()
            stop_probe.set()
            sent, answers = await probe
            flood_output = out.decode(errors="replace")
            # Every call of the flood either was refused with 503 (with a Retry-After, or
            # the scenario fails it) or was answered, held and hung up by the caller.
            assert flood.returncode == 0, flood_output[-3000:]
            [refused], [answered, hung_up] = received(scenario, "503"), received(scenario, "200")
            assert refused > 0 and hub.overload.refused_total > 0, (refused, hub.overload.refused_total)
            assert refused >= hub.overload.refused_total  # each refusal reached its caller (plus any retransmissions)
            assert answered > 0, "the hub answered no call of the flood at all"
            assert hung_up == answered and refused + answered == FLOOD_CALLS, (refused, answered, hung_up)
            assert sent > 10 and answers == [200] * sent, answers  # OPTIONS served throughout

            await nothing_left(hub, timeout=15)
            scraped = await metrics(hub)
            assert scraped["ctihub_sip_invites_refused_total"] == hub.overload.refused_total
            assert scraped["ctihub_sip_transactions"] == 0 and scraped["ctihub_agent_legs"] == 0
            assert scraped["ctihub_active_calls"] == 0 and scraped["ctihub_rtp_endpoints_open"] == 0
            async with asyncio.timeout(10):  # calm again: the next new call is admitted
                while hub.overload.overloaded:
                    await asyncio.sleep(0.1)
            assert (await metrics(hub))["ctihub_sip_overloaded"] == 0
        finally:
            if phones.process.returncode is None:
                phones.process.terminate()
            await phones.process.communicate()


class _Peer(asyncio.DatagramProtocol):
    """A bare UDP SIP peer: what it receives, in order."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.arrived = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data.decode(errors="replace"))
        self.arrived.set()

    async def wait_for(self, first_line: str, timeout: float = 5.0) -> str:
        async with asyncio.timeout(timeout):
            while True:
                found = next((m for m in self.received if m.startswith(first_line)), None)
                if found is not None:
                    self.received.remove(found)
                    return found
                self.arrived.clear()
                await self.arrived.wait()


async def test_a_copy_of_the_invite_read_after_the_ack_starts_no_second_call(tmp_path: Path) -> None:
    """A busy hub reads its socket late: a retransmitted INVITE can come out of the queue
    after the call was answered and ACKed. It must be absorbed, not taken for a new call
    with the same Call-ID (which held a phantom call for a minute and leaked the first
    call's RTP ports)."""
    async with running_hub(tmp_path, sip_t1_s=0.1) as hub:
        assert hub.sip_address is not None and hub.voice is not None
        loop = asyncio.get_running_loop()
        transport, peer = await loop.create_datagram_endpoint(_Peer, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        try:
            call_id, tag = f"late-{secrets.token_hex(4)}", secrets.token_hex(4)
            sdp = "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"

            def request(method: str, cseq: int, branch: str, to_tag: str = "", body: str = "") -> bytes:
                return (
                    f"{method} sip:{SUPPORT}@127.0.0.1:{hub.sip_address[1]} SIP/2.0\r\n"  # type: ignore[index]
                    f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch};rport\r\n"
                    f"From: <sip:+4930901820@127.0.0.1>;tag={tag}\r\n"
                    f"To: <sip:{SUPPORT}@127.0.0.1>{';tag=' + to_tag if to_tag else ''}\r\n"
                    f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:caller@127.0.0.1:{port}>\r\n"
                    f"Max-Forwards: 70\r\n" + ("Content-Type: application/sdp\r\n" if body else "")
                    + f"Content-Length: {len(body)}\r\n\r\n{body}"
                ).encode()

            invite = request("INVITE", 1, "inv1", body=sdp)
            transport.sendto(invite, hub.sip_address)
            ok = await peer.wait_for("SIP/2.0 200")
            to_tag = next(line for line in ok.split("\r\n") if line.startswith("To:")).split("tag=")[1]
            transport.sendto(request("ACK", 1, "ack1", to_tag), hub.sip_address)
            await asyncio.sleep(0.3)
            peer.received.clear()
            transport.sendto(invite, hub.sip_address)  # the copy that waited in the queue
            await asyncio.sleep(0.5)
            assert peer.received == [] and hub.voice.active_calls == 1, peer.received
            transport.sendto(request("BYE", 2, "bye1", to_tag), hub.sip_address)
            await peer.wait_for("SIP/2.0 200")
            await nothing_left(hub, timeout=10)
        finally:
            transport.close()
