"""Agents' phones played by sipp: one sipp registers the phone with digest auth, another
listens on the registered contact and rings, answers, is busy or hangs up."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from cti.app import Hub
from tests.conftest import free_udp_port
from tests.e2e.harness import SIPP_DIR

G711A_PCAP = Path("/usr/share/sip-tester/g711a.pcap")


@dataclass
class Phone:
    process: asyncio.subprocess.Process
    port: int

    async def finish(self, timeout: float = 30.0) -> tuple[int, str]:
        out, _ = await asyncio.wait_for(self.process.communicate(), timeout)
        return self.process.returncode or 0, out.decode(errors="replace")


def _scenario(tmp_path: Path, name: str, **values: object) -> Path:
    text = (SIPP_DIR / name).read_text()
    for key, value in values.items():
        text = text.replace(key, str(value))
    path = tmp_path / f"{name}.{free_udp_port()}.xml"
    path.write_text(text)
    return path


async def start_phone(sipp: str, tmp_path: Path, scenario: str, *, rtp_echo: bool = False, **values: object) -> Phone:
    port = free_udp_port()
    path = _scenario(tmp_path, scenario, **{"RING_MS": 300, "WAIT_MS": 30000, "TALK_MS": 1000, **values})
    args = [sipp, "-sf", str(path), "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_udp_port() & ~1),
            "-m", "1", "-nostdin", "-timeout", "40s", "-timeout_error",
            "-trace_msg", "-message_file", str(tmp_path / f"phone_{port}_messages.log")]
    if rtp_echo:
        args.append("-rtp_echo")
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(tmp_path)
    )
    return Phone(process=process, port=port)


async def register_phone(sipp: str, hub: Hub, tmp_path: Path, agent: str, phone: Phone, *, password: str = "demo") -> None:
    """REGISTER the phone's contact for the agent, answering the hub's digest challenge."""
    assert hub.sip_address is not None
    path = _scenario(tmp_path, "phone_register.xml", AGENT=agent, PASSWORD=password, PHONE_PORT=phone.port, EXPIRES=300)
    process = await asyncio.create_subprocess_exec(
        sipp, f"127.0.0.1:{hub.sip_address[1]}", "-sf", str(path), "-i", "127.0.0.1", "-p", str(free_udp_port()),
        "-m", "1", "-nostdin", "-timeout", "10s", "-timeout_error",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(tmp_path),
    )
    out, _ = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, out.decode(errors="replace")
