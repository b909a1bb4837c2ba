"""`ctihub serve` as a real process: bad settings, health, metrics, and a clean SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
import websockets

from tests.conftest import free_tcp_port, free_udp_port
from tests.e2e.harness import SIPP_DIR, free_sip_port

CTIHUB = [sys.executable, "-m", "cti.cli"]


def run_ctihub(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    import subprocess

    result = subprocess.run([*CTIHUB, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        (["--sip-port", "70000"], {}, "CTIHUB_SIP_PORT"),
        ([], {"CTIHUB_HTTP_PORT": "http"}, "CTIHUB_HTTP_PORT"),
        ([], {"CTIHUB_DATABASE_URL": "mysql://db/hub"}, "CTIHUB_DATABASE_URL"),
        ([], {"CTIHUB_REDIS_URL": "localhost:6379"}, "CTIHUB_REDIS_URL"),
        (["--sip-host", "not a host!"], {}, "CTIHUB_SIP_HOST"),
        ([], {"CTIHUB_RTP_PORTS": "30000"}, "CTIHUB_RTP_PORTS"),
    ],
)
def test_bad_setting_stops_startup_with_one_line(args: list[str], env: dict[str, str], names: str, tmp_path: Path) -> None:
    code, _, err = run_ctihub("serve", "--data-dir", str(tmp_path), *args, env=env)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert names in lines[0] and "Traceback" not in err


async def test_serve_health_metrics_and_clean_sigterm(sipp_path: str, tmp_path: Path) -> None:
    sip_port, http_port = free_sip_port(), free_tcp_port()
    process = await asyncio.create_subprocess_exec(
        *CTIHUB, "serve", "--demo", "--data-dir", str(tmp_path / "var"),
        "--sip-host", "127.0.0.1", "--sip-port", str(sip_port),
        "--http-host", "127.0.0.1", "--http-port", str(http_port), "--rtp-ports", "39000-39099",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        banner = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        assert f"udp:127.0.0.1:{sip_port}" in banner and f"http://127.0.0.1:{http_port}" in banner
        base = f"http://127.0.0.1:{http_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as resp:
                health = await resp.json()
                assert resp.status == 200 and health["sip"] and health["database"] and health["http"]
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
                assert resp.status == 200 and "ctihub_active_calls" in text and 'ctihub_agents{state="offline"} 10.0' in text
            async with http.post(f"{base}/api/login", json={"username": "agent01"}) as resp:
                assert resp.status == 422 and (await resp.json())["field"] == "password"
            async with http.post(f"{base}/api/login", json={"username": "agent01", "password": "demo"}) as resp:
                token = (await resp.json())["token"]
        socket = await websockets.connect(f"ws://127.0.0.1:{http_port}/ws/agent?token={token}")
        await socket.recv()  # hello
        await socket.send('{"type": "set_state", "state": "available"}')
        scenario = (SIPP_DIR / "uac_wait_bye.xml").read_text().replace("CALLER", "+4930901820").replace("WAIT_MS", "20000")
        (tmp_path / "wait.xml").write_text(scenario)
        caller = await asyncio.create_subprocess_exec(
            sipp_path, f"127.0.0.1:{sip_port}", "-sf", str(tmp_path / "wait.xml"), "-s", "1000", "-m", "1",
            "-i", "127.0.0.1", "-p", str(free_udp_port()), "-timeout", "30s", "-timeout_error", "-nostdin",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=str(tmp_path),
        )
        async with asyncio.timeout(10):
            while '"screen_pop"' not in await socket.recv():
                pass
        process.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(caller.communicate(), 20)
        assert caller.returncode == 0, out.decode(errors="replace")  # the caller got a BYE
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                while True:
                    await socket.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
