"""5% of the signalling lost, both ways, between the hub and a caller and between the hub
and an agent's phone: every call still completes, through SIP's retransmissions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import free_udp_port
from tests.e2e.harness import SIPP_DIR, agent, running_hub
from tests.e2e.lossy import LossyRelay
from tests.e2e.phones import _scenario

pytestmark = pytest.mark.sipp

CALLS = 12
LOSS = 0.05


async def test_every_call_completes_with_5_percent_signalling_loss(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path, sip_digest_algorithms="MD5") as hub, agent(hub, "agent01"):
        assert hub.sip_address is not None
        hub_address = ("127.0.0.1", hub.sip_address[1])
        phone_port = free_udp_port()
        caller_relay = LossyRelay(hub_address, LOSS, seed=4475)
        phone_relay = LossyRelay(("127.0.0.1", phone_port), LOSS, seed=3261)
        caller_front = await caller_relay.start()
        phone_front = await phone_relay.start()
        try:
            # The phone registers directly, with its contact behind the lossy relay.
            register = _scenario(tmp_path, "phone_register.xml", AGENT="agent01", PASSWORD="demo", PHONE_PORT=phone_front, EXPIRES=300)
            process = await asyncio.create_subprocess_exec(
                sipp_path, f"127.0.0.1:{hub_address[1]}", "-sf", str(register), "-i", "127.0.0.1", "-p", str(free_udp_port()),
                "-m", "1", "-nostdin", "-timeout", "10s", "-timeout_error",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(tmp_path),
            )
            out, _ = await process.communicate()
            assert process.returncode == 0, out.decode(errors="replace")
            # Like a real phone's Timer J, the sipp phone lingers after a call so that a BYE
            # the hub retransmits (its 200 was lost) is answered again, not taken as new.
            answer = _scenario(tmp_path, "phone_answer.xml", RING_MS=100, WAIT_MS=30000)
            answer.write_text(answer.read_text().replace("</scenario>", '  <pause milliseconds="4000"/>\n</scenario>'))
            phone = await asyncio.create_subprocess_exec(
                sipp_path, "-sf", str(answer),
                "-i", "127.0.0.1", "-p", str(phone_port), "-m", str(CALLS), "-nostdin", "-timeout", "120s", "-timeout_error",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(tmp_path),
            )
            # The caller stays long enough for the recording notice, the ringing and any
            # retransmission to be over: a caller who hangs up while the phone still rings
            # gets it a CANCEL, which this phone scenario does not expect.
            caller_scenario = tmp_path / "lossy_caller.xml"
            caller_scenario.write_text(
                (SIPP_DIR / "uac_hangup.xml").read_text().replace("CALLER", "+4930901820").replace("HOLD_MS", "1500")
            )
            # One call at a time: the single agent takes each in turn.
            caller = await asyncio.create_subprocess_exec(
                sipp_path, f"127.0.0.1:{caller_front}", "-sf", str(caller_scenario), "-s", "1000", "-i", "127.0.0.1",
                "-p", str(free_udp_port()), "-m", str(CALLS), "-l", "1", "-nostdin", "-timeout", "120s", "-timeout_error",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(tmp_path),
            )
            out, _ = await asyncio.wait_for(caller.communicate(), 150)
            assert caller.returncode == 0, out.decode(errors="replace")[-3000:]
            out, _ = await asyncio.wait_for(phone.communicate(), 60)
            assert phone.returncode == 0, out.decode(errors="replace")[-3000:]
        finally:
            caller_relay.close()
            phone_relay.close()
        assert caller_relay.dropped > 0 and phone_relay.dropped > 0  # loss really happened
        dropped = caller_relay.dropped + phone_relay.dropped
        total = dropped + caller_relay.forwarded + phone_relay.forwarded
        assert 0.02 < dropped / total < 0.10, (dropped, total)
        assert hub.voice is not None and hub.voice.active_calls == 0
