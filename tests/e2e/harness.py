"""End-to-end harness: a real hub in the test's event loop, real sipp callers, and agents
that log in over HTTP and listen on the real websocket."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import websockets

from cti.app import Hub
from cti.config import load_settings
from tests.conftest import free_tcp_port, free_udp_port

SIPP_DIR = Path(__file__).resolve().parents[1] / "sipp"


def free_sip_port() -> int:
    """A port free on both UDP and TCP: the hub (and sipp over TCP) bind both."""
    for _ in range(50):
        port = free_udp_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free on both UDP and TCP")


def write_tone(path: Path, seconds: float, *, hz: float = 440.0) -> Path:
    """A mono 8 kHz 16-bit tone: a stand-in recording notice whose length a test knows."""
    import math
    import struct
    import wave

    path.parent.mkdir(parents=True, exist_ok=True)
    frames = round(8000 * seconds)
    samples = (round(8000 * math.sin(2 * math.pi * hz * n / 8000)) for n in range(frames))
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return path


@asynccontextmanager
async def running_hub(tmp_path: Path, *, database_url: str | None = None, redis_url: str | None = None, **options: Any) -> AsyncIterator[Hub]:
    rtp_low = 30000 + 2 * (os.getpid() % 4000)
    flags: dict[str, object] = {
        "data_dir": str(tmp_path / "var"),
        "sip_host": "127.0.0.1",
        "sip_port": free_sip_port(),
        "http_host": "127.0.0.1",
        "http_port": free_tcp_port(),
        # Two hubs in one test need ranges of their own.
        "rtp_ports": options.pop("rtp_ports", None) or f"{rtp_low}-{rtp_low + 199}",
        "demo": True,
        "database_url": database_url,
        "redis_url": redis_url,
        "sip_digest_algorithms": options.pop("sip_digest_algorithms", None),
        "crm_url": options.pop("crm_url", None),
        "crm_webhook_secret": options.pop("crm_webhook_secret", None),
        # The demo's sales and KYC queues record and announce it; a short notice keeps
        # every test's call flow real (notice, then routing) without 5 s of speech.
        "recording_notice": options.pop("recording_notice", None) or str(write_tone(tmp_path / "notice.wav", 0.3)),
        "recording_default": options.pop("recording_default", None),
    }
    environ = options.pop("environ", {})
    # Tests of the call path route by the directory's skills alone (every demo agent
    # qualifies for their queues); tests of the routing model ask for it.
    flags["routing_config"] = options.pop("routing_config", None) or (
        None if "CTIHUB_ROUTING_CONFIG" in environ else "directory"
    )
    settings = load_settings(flags, environ=environ)
    hub = Hub(settings, answer_delay_s=options.pop("answer_delay_s", 0.2), **options)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


def http_base(hub: Hub) -> str:
    assert hub.http_address is not None
    return f"http://127.0.0.1:{hub.http_address[1]}"


@dataclass
class AgentClient:
    """An agent's desktop, as a program: login, websocket, and what arrived on it."""

    hub: Hub
    username: str
    token: str = ""
    socket: Any = None
    received: list[dict[str, Any]] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def login(self, password: str = "demo") -> None:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{http_base(self.hub)}/api/login", json={"username": self.username, "password": password}) as resp:
                body = await resp.json()
                assert resp.status == 200, body
                self.token = body["token"]

    async def connect(self) -> None:
        assert self.hub.http_address is not None
        url = f"ws://127.0.0.1:{self.hub.http_address[1]}/ws/agent"
        self.socket = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {self.token}"})
        self._reader = asyncio.create_task(self._read())
        await self.wait_for("hello")

    async def _read(self) -> None:
        try:
            async for text in self.socket:
                message = json.loads(text)
                async with self._arrived:
                    self.received.append(message)
                    self._arrived.notify_all()
        except websockets.ConnectionClosed:
            pass

    async def send(self, message: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(message))

    async def wait_for(self, kind: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """The first message of that type (and fields) not yet taken."""

        def find() -> dict[str, Any] | None:
            for message in self.received:
                if message.get("type") == kind and not message.get("_taken") and all(
                    message.get(k) == v or (message.get("data") or {}).get(k) == v for k, v in match.items()
                ):
                    message["_taken"] = True
                    return message
            return None

        async with asyncio.timeout(timeout):
            async with self._arrived:
                while (found := find()) is None:
                    await self._arrived.wait()
        return found

    async def go_available(self) -> None:
        await self.send({"type": "set_state", "state": "available"})
        await self.wait_for("agent.state_changed", state="available")

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()
        if self._reader is not None:
            await self._reader


@asynccontextmanager
async def agent(hub: Hub, username: str, *, available: bool = True) -> AsyncIterator[AgentClient]:
    client = AgentClient(hub, username)
    await client.login()
    await client.connect()
    if available:
        await client.go_available()
    try:
        yield client
    finally:
        await client.close()


@dataclass
class SippRun:
    process: asyncio.subprocess.Process
    scenario: Path

    async def finish(self, timeout: float = 30.0) -> tuple[int, str]:
        async with asyncio.timeout(timeout):
            out, _ = await self.process.communicate()
        return self.process.returncode or 0, out.decode(errors="replace")


async def start_sipp(
    sipp: str,
    hub: Hub,
    tmp_path: Path,
    *,
    scenario: str,
    service: str,
    caller: str,
    hold_ms: int = 1000,
    wait_ms: int = 15000,
    transport: str = "u1",
) -> SippRun:
    """Start one sipp call from `caller` to `service` with a scenario of tests/sipp/;
    `transport` is sipp's -t mode ("u1" UDP, "t1" one TCP connection)."""
    assert hub.sip_address is not None
    text = (SIPP_DIR / scenario).read_text()
    text = text.replace("CALLER", caller).replace("HOLD_MS", str(hold_ms)).replace("WAIT_MS", str(wait_ms))
    path = tmp_path / f"{scenario}.{caller.strip('+')}.{free_udp_port()}.xml"
    path.write_text(text)
    process = await asyncio.create_subprocess_exec(
        sipp,
        f"127.0.0.1:{hub.sip_address[1]}",
        "-sf", str(path),
        "-s", service,
        "-i", "127.0.0.1",
        "-t", transport,
        "-p", str(free_sip_port()),
        "-mp", str(free_udp_port() & ~1),
        "-m", "1",
        "-timeout", "40s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-error_file", str(tmp_path / f"sipp_{caller.strip('+')}_errors.log"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=str(tmp_path),
    )
    return SippRun(process=process, scenario=path)
