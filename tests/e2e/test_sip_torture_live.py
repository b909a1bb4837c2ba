"""All 49 RFC 4475 torture messages through the live UDP listener, as one datagram each,
checked against ../shared/sip-torture/README.md; the listener keeps serving throughout.

Responses go where RFC 3261 §18.2.2 sends them: to the source address at the Via's
sent-by port (5060 unless the Via says otherwise; the source port with rport). The test
therefore sends from 127.0.0.2 and listens there on those ports.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.e2e.harness import running_hub
from tests.unit.test_sip_torture import TORTURE_DIR

# The final answer the hub must give (None: no answer at all). INVITEs for numbers the
# hub does not serve are processed normally: 100 Trying, then 404.
EXPECTED: dict[str, int | None] = {
    "wsinv.dat": 481,  # its To has a tag: an in-dialog INVITE for no dialog the hub knows
    "intmeth.dat": 501,
    "esc01.dat": 404,
    "escnull.dat": 401,  # REGISTER: the digest challenge first
    "esc02.dat": 501,  # RE%47IST%45R is an unknown method (RFC 4475 §3.1.1.5)
    "lwsdisp.dat": 200,  # OPTIONS
    "longreq.dat": 404,
    "dblreq.dat": 401,  # the REGISTER is handled; the trailing bytes are ignored
    "semiuri.dat": 200,
    "transports.dat": 200,
    "mpart01.dat": 501,  # MESSAGE: no chat over SIP yet
    "unreason.dat": None,  # responses: parsed, never answered
    "noreason.dat": None,
    "badinv01.dat": None,  # its Via is unusable: no response can be built; dropped and logged
    "clerr.dat": 400,
    "ncl.dat": 400,
    "scalar02.dat": 400,
    "scalarlg.dat": None,
    "quotbal.dat": 400,
    "ltgtruri.dat": 400,
    "lwsruri.dat": 400,
    "lwsstart.dat": 400,
    "trws.dat": 400,
    "escruri.dat": 400,
    "baddate.dat": 404,  # the Date header is ignored
    "regbadct.dat": 400,
    "badaspec.dat": 400,
    "baddn.dat": 400,
    "badvers.dat": 505,
    "mismatch01.dat": 400,
    "mismatch02.dat": 501,
    "bigcode.dat": None,
    "badbranch.dat": 200,  # OPTIONS; the bare cookie branch is matched RFC 2543 style
    "insuf.dat": 400,
    "unkscm.dat": 416,
    "novelsc.dat": 416,
    "unksm2.dat": 401,  # processed normally: the REGISTER gets its challenge
    "bext01.dat": 420,
    "invut.dat": 415,
    "regaut01.dat": 401,  # unknown scheme: the hub's own challenge
    "multi01.dat": 400,
    "mcl01.dat": 400,
    "bcast.dat": None,
    "zeromf.dat": 200,  # OPTIONS with Max-Forwards 0 at a UAS: answered normally
    "cparam01.dat": 401,
    "cparam02.dat": 401,
    "regescrt.dat": 401,
    "sdp01.dat": 406,
    "inv2543.dat": 404,  # RFC 2543 syntax accepted, processed normally
}

TOP_VIA = re.compile(rb"^(?:via|v)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)
SENDER = "127.0.0.2"


class Listener(asyncio.DatagramProtocol):
    def __init__(self, inbox: list[bytes]) -> None:
        self.inbox = inbox

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.inbox.append(data)


def rounds(files: list[Path]) -> list[list[Path]]:
    """Several torture files share a branch, sent-by and method (they were written as
    separate tests): to the hub the second is a retransmission of the first (§17.2.3).
    Such files go to separate rounds, each against a fresh hub."""
    groups: list[tuple[set[bytes], list[Path]]] = []
    for path in files:
        data = path.read_bytes()
        via = TOP_VIA.search(data)
        key = data.split(b" ", 1)[0] + b"|" + (via.group(1).split(b",")[0].strip() if via else b"")
        for keys, group in groups:
            if key not in keys:
                keys.add(key)
                group.append(path)
                break
        else:
            groups.append(({key}, [path]))
    return [group for _, group in groups]


def answers_for(inbox: list[bytes], sent: bytes) -> list[int]:
    wanted = CALL_ID.search(sent)
    statuses = []
    for data in inbox:
        got = CALL_ID.search(data)
        if wanted is not None and got is not None and got.group(1) != wanted.group(1):
            continue  # a retransmission of an earlier message's answer
        statuses.append(int(data.split(b" ", 2)[1]))
    return statuses


async def test_every_torture_message_gets_the_readme_answer(tmp_path: Path) -> None:
    files = sorted(TORTURE_DIR.glob("*.dat")) if TORTURE_DIR.is_dir() else []
    if not files:
        from tests.conftest import missing

        missing(f"the RFC 4475 torture folder {TORTURE_DIR}")
    assert {f.name for f in files} == set(EXPECTED)
    loop = asyncio.get_running_loop()
    inbox: list[bytes] = []
    transports = []
    try:
        for port in (5060, 5050):  # the sent-by ports the messages name
            transport, _ = await loop.create_datagram_endpoint(lambda: Listener(inbox), local_addr=(SENDER, port))
            transports.append(transport)
    except OSError as err:
        pytest.fail(f"cannot listen on {SENDER}:5060/5050 for the hub's answers: {err}")
    sender, _ = await loop.create_datagram_endpoint(lambda: Listener(inbox), local_addr=(SENDER, 0))
    transports.append(sender)
    results: dict[str, int | None] = {}
    try:
        for number, group in enumerate(rounds(files)):
            async with running_hub(tmp_path / f"round{number}") as hub:
                assert hub.sip_address is not None
                target = ("127.0.0.1", hub.sip_address[1])
                for path in group:
                    inbox.clear()
                    data = path.read_bytes()
                    sender.sendto(data, target)
                    await asyncio.sleep(0.15)  # the hub answers at once; later arrivals are retransmissions
                    finals = [s for s in answers_for(inbox, data) if s >= 200]
                    results[path.name] = finals[0] if finals else None
                # Still serving after all of them.
                inbox.clear()
                probe = (TORTURE_DIR / "zeromf.dat").read_bytes().replace(b"kdjuw2349i", b"kdjuw2349z")
                sender.sendto(probe, target)
                await asyncio.sleep(0.3)
                assert 200 in answers_for(inbox, probe)
                assert hub.sip is not None and hub.sip.datagrams_failed == 0
    finally:
        for transport in transports:
            transport.close()
    wrong = {name: (results[name], expected) for name, expected in EXPECTED.items() if results[name] != expected}
    assert not wrong, f"(got, expected) per file: {wrong}"
