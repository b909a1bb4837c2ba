"""pyVoIP, an independent SIP user agent, as an agent's softphone: it registers with the
hub's digest challenge (MD5: all pyVoIP knows), is rung when routing picks its agent,
answers, exchanges RTP through the hub, and sees the call end when the caller hangs up.

pyVoIP is thread-based and UDP-only, which is why it cannot be the hub's SIP stack; as
a phone on the other side of the wire it is an honest, separate implementation."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import free_udp_port
from tests.e2e.harness import agent, running_hub, start_sipp

pyVoIP_VoIP = pytest.importorskip("pyVoIP.VoIP")

pytestmark = pytest.mark.sipp


class Softphone:
    def __init__(self, hub_port: int, username: str, password: str) -> None:
        self.answered = threading.Event()
        self.ended = threading.Event()
        self.phone = pyVoIP_VoIP.VoIPPhone(
            "127.0.0.1", hub_port, username, password, myIP="127.0.0.1",
            callCallback=self._on_call, sipPort=free_udp_port(), rtpPortLow=42000, rtpPortHigh=42998,
        )

    def _on_call(self, call: object) -> None:  # runs on pyVoIP's thread
        call.answer()  # type: ignore[attr-defined]
        self.answered.set()
        while call.state == pyVoIP_VoIP.CallState.ANSWERED:  # type: ignore[attr-defined]
            time.sleep(0.05)
        self.ended.set()

    async def start(self) -> None:
        await asyncio.to_thread(self.phone.start)
        for _ in range(100):
            if self.phone.get_status() == pyVoIP_VoIP.PhoneStatus.REGISTERED:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"pyVoIP did not register: {self.phone.get_status()}")

    async def stop(self) -> None:
        await asyncio.to_thread(self.phone.stop)


async def test_pyvoip_softphone_registers_answers_and_hears_the_hangup(sipp_path: str, tmp_path: Path) -> None:
    async with running_hub(tmp_path, sip_digest_algorithms="MD5") as hub, agent(hub, "agent03") as desk:
        assert hub.sip_address is not None
        softphone = Softphone(hub.sip_address[1], "agent03", "demo")
        await softphone.start()
        try:
            (binding,) = await hub._phones_of("agent03")
            assert binding.username == "agent03"
            call = await start_sipp(sipp_path, hub, tmp_path, scenario="uac_rtp.xml", service="1000", caller="+442079460018", hold_ms=3000)
            pop = await desk.wait_for("screen_pop")
            assert pop["customer"]["name"] == "Oliver Bennett"
            await desk.wait_for("call.answered", timeout=10)
            assert await asyncio.to_thread(softphone.answered.wait, 5)
            code, output = await call.finish()
            assert code == 0, output
            assert await asyncio.to_thread(softphone.ended.wait, 10), "pyVoIP never saw the hub's BYE"
            assert hub.media is not None and hub.voice is not None
            async with asyncio.timeout(10):
                while hub.voice.active_calls or hub.media.open_endpoints:
                    await asyncio.sleep(0.05)
            caller_leg, agent_leg = list(hub.media.recently_closed)[-2:]
            assert agent_leg.sent > 20, agent_leg  # the caller's audio reached pyVoIP
            assert agent_leg.received > 20, agent_leg  # and pyVoIP's audio came back through the hub
        finally:
            await softphone.stop()
