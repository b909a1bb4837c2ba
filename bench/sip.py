"""SIP benchmark (issue 3): sipp against a real `ctihub serve` process on loopback, with
sipp also playing every agent's phone. Prints one line per step and, last, one line of
JSON with the figures.

    .venv/bin/python bench/sip.py            # full run: 60 s steps, 500 agents (25-30 minutes)
    .venv/bin/python bench/sip.py --quick    # smoke run: 10 s steps, 150 agents (about 5 minutes)

Each hub phase (call rate, media) runs against a fresh hub process, so that the
overloaded last step of one phase does not weigh on the next. Results, the machine and
how to read them: docs/benchmarks.md.

What is measured, and how:

- `calls_per_s`: callers (sipp, tests/sipp/uac_hangup.xml: INVITE, ACK, hold, BYE) dial
  1000 at a fixed rate for `--step-seconds`; the hub answers, queues, offers the
  longest-idle agent and rings that agent's phone (one sipp UAS for all phones), which
  answers at once, and the legs are bridged. A step passes when no call failed: both
  sipps exit 0 with no failed call in their statistics, every call was bridged to a
  phone (counted from the `call.answered` events on the agents' websockets), and sipp
  kept the rate (calls created / time to create them >= 90% of the target). The figure
  is the highest passing rate; the ladder stops at the first failing step.
- `sipp_direct_calls_per_s`: the same caller scenario straight against the same phone
  scenario (no hub), same step length and pass rules, in the same run, after the hub
  stopped; its ladder is coarser and reaches higher (to 1000/s), since sipp to sipp goes
  far beyond the hub. `sipp_direct_capped` says the top step passed too.
- `hub_cpu_ms_per_call`: the hub process's CPU time (utime + stime, /proc/PID/stat)
  during the highest passing rate step, divided by the calls of that step.
- `concurrent_media_calls`: levels of N calls held at once, each with RTP both ways.
  The callers' audio comes from this process, not from sipp: each call's SDP offer
  names a socket of this process (sipp injection file), sipp logs the hub's RTP port
  from the 200 OK, and this process sends 50 packets/s of G.711 to it. The hub relays
  them to the phone (sipp -rtp_echo), which sends them back; the hub relays the echo to
  the caller's socket. Loss is counted by RTP sequence number, on the round trip
  (caller -> hub -> phone -> hub -> caller, so it includes any loss in sipp's echo),
  over the plateau: the packets sent after every call of the level was bridged (the
  send time of the newest call's first echoed packet) and before the first call stopped
  talking. A level passes with no failed call, every call bridged, a plateau of at least
  half the configured one, and loss under 0.5%. Calls ramp up at `--media-ramp` (20/s),
  under the call rate the hub sustains, so that a level measures media, not set-up.

Everything runs on 127.0.0.1 and on the same machine: the hub, sipp and this process
share the CPUs, which the figures include. Every wait is bounded; every subprocess is
ended on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import csv
import json
import os
import platform
import re
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path, where bench/recordings.py
# would hide the hub's `recordings` package from everything imported below.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
BENCH_SIPP = Path(__file__).resolve().parent / "sipp"
TESTS_SIPP = ROOT / "tests" / "sipp"
CTIHUB = ROOT / ".venv" / "bin" / "ctihub"

TARGET_CALLS_PER_S = 150
TARGET_MEDIA_CALLS = 300
MAX_LOSS = 0.005
CALLER = "+442071234567"  # a well-formed number that is no demo customer: a CRM lookup that finds no one
SERVICE = "1000"
AGENT_PASSWORD = "bench-login"
SIP_PASSWORD = "bench-sip"
SIP_REALM = "ctihub"  # the hub's default realm

RTP_PTIME = 0.020
RTP_PAYLOAD = b"\xd5" * 160  # 20 ms of G.711 A-law silence
PT_PCMA = 8
PHONE_LINGER_MS = 1500


# --- small helpers -------------------------------------------------------------------


def log(line: str) -> None:
    print(line, flush=True)


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_media_port() -> int:
    """An even port p with p..p+3 free: sipp binds audio (p, p+1) and video (p+2, p+3)
    RTP sockets on its -mp port, and fails to start when any of them is taken."""
    for _ in range(100):
        base = free_port() & ~1
        held: list[socket.socket] = []
        try:
            for port in range(base, base + 4):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError("no block of 4 free UDP ports on 127.0.0.1")


async def start_phones(
    procs: Processes, workdir: Path, scenario_path: Path, *, port: int, calls: int, timeout_s: float, tag: str, echo: bool
) -> asyncio.subprocess.Process:
    """The one sipp that plays every agent's phone on `port`; retried (bounded) when it
    cannot bind, which another program grabbing a port in between can cause."""
    for attempt in range(3):
        stats = workdir / f"phones_{tag}.csv"
        stats.unlink(missing_ok=True)
        process = await procs.start(
            "sipp", "-sf", str(scenario_path), "-i", "127.0.0.1", "-p", str(port),
            "-mp", str(free_media_port()), *(["-rtp_echo"] if echo else []), "-m", str(calls), "-nostdin",
            "-timeout", f"{int(timeout_s)}s", "-timeout_error",
            "-trace_stat", "-stf", str(stats), "-fd", "1",
            "-trace_err", "-error_file", str(workdir / f"phones_{tag}_errors.log"), "-max_log_size", "1000000",
            log_path=workdir / f"phones_{tag}.out",
        )
        await asyncio.sleep(0.5)  # let it bind
        if process.returncode is None:
            return process
        await procs.wait(process, timeout=1)
        log(f"the phones' sipp could not start (exit {process.returncode}, attempt {attempt + 1}); see phones_{tag}.out")
    raise RuntimeError(f"the phones' sipp did not start on port {port}: see {workdir / f'phones_{tag}.out'}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (no dependency)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def udp_drops(ports: range | set[int]) -> int:
    """Datagrams the kernel dropped on full receive buffers, summed over the loopback UDP
    sockets bound to `ports` (the last column of /proc/net/udp)."""
    total = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
            fields = line.split()
            address, _, port_hex = fields[1].partition(":")
            if address == "0100007F" and int(port_hex, 16) in ports:
                total += int(fields[-1])
    return total


def system_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat: how loaded the whole machine was."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return float(sum(values) - idle), float(sum(values))


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    sipp_version = "unknown"
    with contextlib.suppress(OSError):
        import subprocess

        out = subprocess.run(["sipp", "-v"], capture_output=True, text=True, timeout=5).stdout
        if match := re.search(r"v\d+\.\d+(\.\d+)?", out):
            sipp_version = match.group(0)
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gib": ram_gib,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "sipp": sipp_version,
        # Other work on the machine shares the CPUs with the benchmark: say how much there was.
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def scenario(workdir: Path, source: Path, name: str, **values: object) -> Path:
    text = source.read_text()
    for key, value in values.items():
        text = text.replace(key, str(value))
    path = workdir / name
    path.write_text(text)
    return path


def sipp_stats(path: Path) -> dict[str, str]:
    """The last row of a sipp -trace_stat CSV (sipp writes a final row as it exits)."""
    rows = sipp_rows(path)
    return rows[-1] if rows else {}


def sipp_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [row for row in csv.DictReader(handle, delimiter=";") if row.get("StartTime")]


def sipp_duration_ms(value: str | None) -> float | None:
    """sipp writes durations as HH:MM:SS:microseconds."""
    if not value:
        return None
    parts = value.split(":")
    if len(parts) != 4:
        return None
    hours, minutes, seconds, micros = (int(p) for p in parts)
    return round((hours * 3600 + minutes * 60 + seconds) * 1000 + micros / 1000, 1)


def epoch_of(stamp: str) -> float:
    """sipp writes times as 'date<TAB>time<TAB>epoch'."""
    return float(stamp.split("\t")[-1])


def creation_span(path: Path, calls: int) -> float | None:
    """Seconds sipp took to create `calls` calls, interpolated between its 1 s stat rows."""
    rows = sipp_rows(path)
    if not rows:
        return None
    start = epoch_of(rows[0]["StartTime"])
    previous_time, previous_count = start, 0
    for row in rows:
        now, count = epoch_of(row["CurrentTime"]), int(row.get("OutgoingCall(C)", "0") or 0)
        if count >= calls:
            if count == previous_count:
                return now - start
            fraction = (calls - previous_count) / (count - previous_count)
            return previous_time + fraction * (now - previous_time) - start
        previous_time, previous_count = now, count
    return None


class Processes:
    """Every subprocess this benchmark starts, so that all of them end on exit."""

    def __init__(self) -> None:
        self._running: list[asyncio.subprocess.Process] = []

    async def start(self, *args: str, log_path: Path, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
        with log_path.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, cwd=str(log_path.parent), env=env
            )
        self._running.append(process)
        return process

    async def wait(self, process: asyncio.subprocess.Process, timeout: float) -> int | None:
        """The exit code, or None when it had to be killed after `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                code = await process.wait()
        except TimeoutError:
            await self.stop(process, grace=2.0)
            return None
        self._forget(process)
        return code

    async def stop(self, process: asyncio.subprocess.Process, grace: float = 5.0) -> None:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                async with asyncio.timeout(grace):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await process.wait()
        self._forget(process)

    def _forget(self, process: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ValueError):
            self._running.remove(process)

    async def stop_all(self) -> None:
        for process in list(self._running):
            await self.stop(process, grace=5.0)


# --- the hub -------------------------------------------------------------------------


async def recreate_postgres(url: str) -> None:
    """Drop and create the PostgreSQL database `url` names (through the server's
    `postgres` database): every run seeds an empty one."""
    import asyncpg
    from sqlalchemy.engine import make_url

    target = make_url(url)
    if not target.database or not re.fullmatch(r"[A-Za-z0-9_]+", target.database):
        raise SystemExit(f"bench/sip.py: --database-url must name a plain database, not {target.database!r}")
    admin_dsn = target.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{target.database}"')
    finally:
        await admin.close()


def database_url(data_dir: Path, configured: str | None) -> str:
    return configured or f"sqlite+aiosqlite:///{(data_dir / 'ctihub.db').resolve()}"


async def seed_directory(data_dir: Path, agents: list[str], *, url: str | None = None) -> None:
    """A bench queue on 1000 and `agents` agents with its skill and a SIP password, written
    with the project's own migrations and directory store before the hub starts, into
    SQLite in `data_dir` or, with `url`, into that PostgreSQL database (emptied first)."""
    from cti.db import make_engine, make_sessionmaker, migrate
    from cti.directory.store import DirectoryStore, hash_password

    data_dir.mkdir(parents=True, exist_ok=True)
    if url is not None:
        await recreate_postgres(url)
    engine = make_engine(database_url(data_dir, url))
    try:
        await migrate(engine)
        store = DirectoryStore(make_sessionmaker(engine))
        await store.ensure_queue(name="bench", display_name="Benchmark", required_skills=("bench",), numbers=(SERVICE,))
        login_hash = await hash_password(AGENT_PASSWORD)  # one argon2 hash for all: seeding stays fast
        for username in agents:
            await store.add_user(
                username=username,
                display_name=f"Bench {username}",
                role="agent",
                password=AGENT_PASSWORD,
                password_hash=login_hash,
                skills=("bench",),
                languages=("en",),
            )
            await store.set_sip_password(username, realm=SIP_REALM, password=SIP_PASSWORD)
    finally:
        await engine.dispose()


@dataclass
class Hub:
    process: asyncio.subprocess.Process
    sip_port: int
    http_port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    async def metrics(self, http: aiohttp.ClientSession) -> dict[str, float]:
        async with asyncio.timeout(10):
            async with http.get(f"{self.base}/metrics") as resp:
                text = await resp.text()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, _, value = line.partition(" ")
                with contextlib.suppress(ValueError):
                    values[name] = float(value)
        return values


async def start_hub(
    procs: Processes, workdir: Path, data_dir: Path, *, rtp_ports: str, extra_args: tuple[str, ...] = ()
) -> Hub:
    sip_port, http_port = free_port(), free_port(socket.SOCK_STREAM)
    args = [
        str(CTIHUB), "serve",
        "--data-dir", str(data_dir),
        "--sip-host", "127.0.0.1", "--sip-port", str(sip_port),
        "--http-host", "127.0.0.1", "--http-port", str(http_port),
        "--rtp-ports", rtp_ports,
        "--log-level", "WARNING",
        "--answer-delay", "0",
        "--offer-timeout", "20",
        "--sip-digest-algorithms", "MD5",  # sipp answers digest challenges with MD5 only
        *extra_args,
    ]
    process = await procs.start(*args, log_path=workdir / "hub.log")
    hub = Hub(process=process, sip_port=sip_port, http_port=http_port)
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"the hub exited with {process.returncode}: see {workdir / 'hub.log'}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with asyncio.timeout(2):
                    async with http.get(f"{hub.base}/healthz") as resp:
                        if resp.status == 200:
                            return hub
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the hub did not become healthy within 60 s: see {workdir / 'hub.log'}")


# --- the agents' desktops ------------------------------------------------------------


@dataclass
class Desks:
    """Every agent logged in with one websocket each; counts what arrives on them."""

    answered: int = 0
    ended: int = 0
    pops: int = 0
    withdrawn: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    closed: int = 0
    available: set[str] = field(default_factory=set)
    _sockets: list[aiohttp.ClientWebSocketResponse] = field(default_factory=list)
    _readers: list[asyncio.Task[None]] = field(default_factory=list)

    async def open(self, http: aiohttp.ClientSession, hub: Hub, usernames: list[str], *, parallel: int = 8) -> None:
        gate = asyncio.Semaphore(parallel)

        async def one(username: str) -> None:
            async with gate:
                async with http.post(f"{hub.base}/api/login", json={"username": username, "password": AGENT_PASSWORD}) as resp:
                    body = await resp.json()
                    if resp.status != 200:
                        raise RuntimeError(f"login of {username} failed: {resp.status} {body}")
                ws = await http.ws_connect(f"ws://127.0.0.1:{hub.http_port}/ws/agent?token={body['token']}", autoping=True)
                self._sockets.append(ws)
                self._readers.append(asyncio.create_task(self._read(username, ws)))
                await ws.send_json({"type": "set_state", "state": "available"})

        async with asyncio.timeout(30 + 0.5 * len(usernames)):
            await asyncio.gather(*(one(u) for u in usernames))
            while len(self.available) < len(usernames):
                await asyncio.sleep(0.1)

    async def _read(self, username: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            kind = data.get("type")
            if kind == "call.answered":
                self.answered += 1
            elif kind == "call.ended":
                self.ended += 1
            elif kind == "screen_pop":
                self.pops += 1
            elif kind == "offer_withdrawn":
                reason = str(data.get("reason"))
                self.withdrawn[reason] = self.withdrawn.get(reason, 0) + 1
            elif kind == "error":
                self.errors += 1
            elif kind == "agent.state_changed":
                if (data.get("data") or {}).get("state") == "available":
                    self.available.add(username)
        self.closed += 1

    async def close(self) -> None:
        for ws in self._sockets:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await ws.close()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


async def register_phones(procs: Processes, workdir: Path, hub: Hub, usernames: list[str], phone_port: int) -> None:
    """One sipp run registers every agent's phone (digest MD5), all at `phone_port`."""
    users = workdir / "phones.csv"
    users.write_text(
        "SEQUENTIAL\n" + "".join(f"{u};[authentication username={u} password={SIP_PASSWORD}];\n" for u in usernames)
    )
    path = scenario(workdir, BENCH_SIPP / "register.xml", "register.xml", PHONE_PORT=phone_port)
    process = await procs.start(
        "sipp", f"127.0.0.1:{hub.sip_port}", "-sf", str(path), "-inf", str(users),
        "-i", "127.0.0.1", "-p", str(free_port()), "-m", str(len(usernames)), "-r", "100", "-l", "50",
        "-nostdin", "-timeout", "120s", "-timeout_error", "-recv_timeout", "10000",
        "-trace_err", "-error_file", str(workdir / "register_errors.log"), "-max_log_size", "1000000",
        log_path=workdir / "register.out",
    )
    code = await procs.wait(process, timeout=150)
    if code != 0:
        raise RuntimeError(f"registering the phones failed (sipp exit {code}): see {workdir / 'register_errors.log'}")


# --- the call-rate ladder ------------------------------------------------------------


@dataclass
class RateStep:
    rate: int
    calls: int
    passed: bool
    failed_calls: int
    achieved_per_s: float | None
    bridged: int | None = None
    hub_cpu_s: float | None = None
    hub_cpu_ms_per_call: float | None = None
    hub_cpu_percent: float | None = None
    machine_busy_percent: float | None = None
    invite_to_200_ms: float | None = None
    retransmissions: int | None = None
    hub_http_latency_ms_max: float | None = None
    hub_sip_socket_drops: int | None = None
    hub_calls_left: int | None = None
    caller_exit: int | None = None
    phone_exit: int | None = None
    why: str = ""


async def rate_step(
    procs: Processes,
    workdir: Path,
    *,
    label: str,
    target_port: int,
    phone_port: int,
    rate: int,
    seconds: float,
    hold_ms: int,
    hub: Hub | None = None,
    desks: Desks | None = None,
    http: aiohttp.ClientSession | None = None,
) -> RateStep:
    calls = int(rate * seconds)
    tag = f"{label}_{rate}"
    caller = scenario(workdir, TESTS_SIPP / "uac_hangup.xml", f"caller_{tag}.xml", CALLER=CALLER, HOLD_MS=hold_ms)
    phones_csv, callers_csv = workdir / f"phones_{tag}.csv", workdir / f"callers_{tag}.csv"
    bound = seconds * 1.5 + hold_ms / 1000 + 60
    phone = scenario(workdir, BENCH_SIPP / "phone.xml", f"phone_{tag}.xml", LINGER_MS=PHONE_LINGER_MS)
    phones = await start_phones(
        procs, workdir, phone, port=phone_port, calls=calls, timeout_s=bound + 30, tag=tag, echo=False
    )
    answered0 = desks.answered if desks else 0
    failed0 = (await hub.metrics(http)).get("ctihub_sip_datagrams_failed_total", 0.0) if hub and http else 0.0
    cpu0, wall0, busy0 = (hub.cpu() if hub else 0.0), time.monotonic(), system_busy()
    sip_drops0 = udp_drops({target_port})
    latencies: list[float] = []
    probe = asyncio.create_task(probe_hub(hub, http, latencies)) if hub and http else None
    try:
        callers = await procs.start(
            "sipp", f"127.0.0.1:{target_port}", "-sf", str(caller), "-s", SERVICE, "-i", "127.0.0.1",
            "-p", str(free_port()), "-mp", str(free_media_port()),
            "-r", str(rate), "-rp", "1000", "-m", str(calls), "-nostdin",
            "-timeout", f"{int(bound)}s", "-timeout_error", "-recv_timeout", "15000",
            "-trace_stat", "-stf", str(callers_csv), "-fd", "1",
            "-trace_err", "-error_file", str(workdir / f"callers_{tag}_errors.log"), "-max_log_size", "1000000",
            log_path=workdir / f"callers_{tag}.out",
        )
        caller_exit = await procs.wait(callers, timeout=bound + 10)
        # The load itself, without the waits below.
        cpu_busy, wall_busy, busy1 = (hub.cpu() if hub else 0.0), time.monotonic(), system_busy()
        phone_exit = await procs.wait(phones, timeout=20)
        bridged = None
        if desks is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    while desks.answered - answered0 < calls:
                        await asyncio.sleep(0.1)
            bridged = desks.answered - answered0
        cpu1 = hub.cpu() if hub else 0.0
    finally:
        if probe is not None:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
    caller_stats, phone_stats = sipp_stats(callers_csv), sipp_stats(phones_csv)
    failed = int(caller_stats.get("FailedCall(C)") or 0) + int(phone_stats.get("FailedCall(C)") or 0)
    span = creation_span(callers_csv, calls)
    achieved = round((calls - 1) / span, 1) if span else None
    why = []
    if caller_exit != 0:
        why.append(f"callers' sipp exit {caller_exit}")
    if phone_exit != 0:
        why.append(f"phones' sipp exit {phone_exit}")
    if failed:
        why.append(f"{failed} failed calls")
    if bridged is not None and bridged < calls:
        why.append(f"{calls - bridged} calls never bridged to a phone")
    if achieved is None or achieved < 0.9 * rate:
        why.append(f"sipp created calls at {achieved}/s only")
    step = RateStep(
        rate=rate,
        calls=calls,
        passed=not why,
        failed_calls=failed + (calls - bridged if bridged is not None and bridged < calls else 0),
        achieved_per_s=achieved,
        bridged=bridged,
        caller_exit=caller_exit,
        phone_exit=phone_exit,
        machine_busy_percent=round(100 * (busy1[0] - busy0[0]) / max(1.0, busy1[1] - busy0[1]), 1),
        invite_to_200_ms=sipp_duration_ms(caller_stats.get("ResponseTime1(C)")),
        retransmissions=int(caller_stats.get("Retransmissions(C)") or 0) + int(phone_stats.get("Retransmissions(C)") or 0),
        hub_http_latency_ms_max=round(max(latencies), 1) if latencies else None,
        hub_sip_socket_drops=udp_drops({target_port}) - sip_drops0,
        why="; ".join(why),
    )
    if hub is not None and http is not None:
        step.hub_cpu_s = round(cpu1 - cpu0, 2)
        step.hub_cpu_ms_per_call = round(1000 * (cpu1 - cpu0) / calls, 2)
        step.hub_cpu_percent = round(100 * (cpu_busy - cpu0) / (wall_busy - wall0), 1)
        metrics = await hub.metrics(http)
        if metrics.get("ctihub_sip_datagrams_failed_total", 0.0) > failed0:
            step.why = (step.why + "; " if step.why else "") + "the hub failed to process some datagrams"
            step.passed = False
        step.hub_calls_left = await drain(hub, http)
        if step.hub_calls_left:
            step.why = (step.why + "; " if step.why else "") + f"{step.hub_calls_left} calls still held by the hub 30 s later"
            step.passed = False
    return step


async def probe_hub(hub: Hub, http: aiohttp.ClientSession, latencies: list[float]) -> None:
    """How long the hub takes to serve /metrics while under load: a view of its event-loop lag."""
    for _ in range(7200):  # bounded: twice a second for at most an hour
        started = time.monotonic()
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            await hub.metrics(http)
            latencies.append(1000 * (time.monotonic() - started))
        await asyncio.sleep(0.5)


async def drain(hub: Hub, http: aiohttp.ClientSession, timeout: float = 30.0) -> int:
    """Wait (bounded) until the hub holds no call and no RTP port, so steps do not overlap;
    the calls still held when the time is up."""
    left = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while True:
                metrics = await hub.metrics(http)
                left = int(metrics.get("ctihub_active_calls", 0))
                if not left and not metrics.get("ctihub_rtp_endpoints_open"):
                    break
                await asyncio.sleep(0.25)
    await asyncio.sleep(2.0)  # and let the last transactions (BYE retransmissions) finish
    return left


def describe_rate(label: str, step: RateStep, seconds: float) -> str:
    line = f"{label} {step.rate}/s x {seconds:g} s: {'PASS' if step.passed else 'FAIL'} ({step.calls} calls"
    if step.bridged is not None:
        line += f", {step.bridged} bridged"
    line += f", {step.failed_calls} failed, sipp created {step.achieved_per_s}/s"
    line += f", INVITE->200 avg {step.invite_to_200_ms} ms, {step.retransmissions} retransmissions"
    line += f", {step.hub_sip_socket_drops} datagrams dropped at the {'hub' if step.hub_cpu_s is not None else 'UAS'}'s SIP socket"
    if step.hub_cpu_ms_per_call is not None:
        line += f", hub CPU {step.hub_cpu_percent}% = {step.hub_cpu_ms_per_call} ms/call"
        line += f", /metrics latency max {step.hub_http_latency_ms_max} ms"
    line += f", machine busy {step.machine_busy_percent}%)"
    return line + (f": {step.why}" if step.why else "")


# --- media: the callers' RTP, played and counted by this process ---------------------


class Stream:
    """One caller's RTP: sends 50 packets/s to the hub and records which came back."""

    __slots__ = ("sock", "port", "hub_port", "started", "stop_at", "next_seq", "capacity", "sent_at", "echoed", "ssrc", "ssrc_bytes", "extra")

    def __init__(self, sock: socket.socket, capacity: int) -> None:
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.hub_port = 0
        self.started = 0.0
        self.stop_at = 0.0
        self.next_seq = 0
        self.capacity = capacity
        self.sent_at = array.array("d", bytes(8 * capacity))
        self.echoed = bytearray(capacity)
        self.ssrc = self.port * 7919 & 0xFFFFFFFF
        self.ssrc_bytes = struct.pack("!I", self.ssrc)
        self.extra = 0  # echoes with an unexpected sequence number (duplicates, strays)

    def send_due(self, now: float) -> None:
        due = min(self.capacity, int((now - self.started) / RTP_PTIME) + 1)
        while self.next_seq < due:
            seq = self.next_seq
            packet = struct.pack("!BBHII", 0x80, PT_PCMA, seq, seq * 160, self.ssrc) + RTP_PAYLOAD
            try:
                self.sock.sendto(packet, ("127.0.0.1", self.hub_port))
            except (BlockingIOError, OSError):
                pass  # counted as lost: it never came back
            self.sent_at[seq] = now
            self.next_seq += 1

    def readable(self) -> None:
        for _ in range(256):
            try:
                data = self.sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(data) < 12 or data[8:12] != self.ssrc_bytes:
                continue  # not our packet coming back (the hub's music on hold, say)
            seq = (data[2] << 8) | data[3]
            if seq < self.next_seq and not self.echoed[seq]:
                self.echoed[seq] = 1
            else:
                self.extra += 1

    def first_echo_sent_at(self) -> float | None:
        index = self.echoed.find(1)
        return self.sent_at[index] if index >= 0 else None


@dataclass
class MediaLevel:
    calls: int
    passed: bool
    bridged_with_rtp: int
    plateau_s: float
    sent_in_plateau: int
    lost_in_plateau: int
    loss_percent: float | None
    max_hub_active_calls: int
    max_hub_rtp_endpoints: int
    hub_cpu_percent: float | None
    bench_cpu_percent: float | None
    machine_busy_percent: float | None
    pump_late_ms_max: float
    hub_relayed_packets: int
    bench_sent_packets: int
    bench_echoed_packets: int
    caller_exit: int | None
    phone_exit: int | None
    why: str = ""


async def media_level(
    procs: Processes,
    workdir: Path,
    *,
    hub: Hub,
    http: aiohttp.ClientSession,
    phone_port: int,
    calls: int,
    plateau_s: float,
    ramp_per_s: int,
) -> MediaLevel:
    loop = asyncio.get_running_loop()
    ramp_s = calls / ramp_per_s
    hold_s = ramp_s + plateau_s + 4.0
    talk_s = hold_s - 1.5  # stop sending before sipp's BYE, so that every echo is back
    capacity = int(talk_s / RTP_PTIME) + 2
    streams: dict[int, Stream] = {}
    tag = f"media_{calls}"
    ports_csv = workdir / f"{tag}_ports.csv"
    caller = scenario(
        workdir, BENCH_SIPP / "caller_media.xml", f"caller_{tag}.xml", CALLER=CALLER, HOLD_MS=int(hold_s * 1000)
    )
    media_log = workdir / f"{tag}_calls.log"
    bound = hold_s + ramp_s + 60
    active: list[Stream] = []
    samples: list[dict[str, float]] = []
    late_max = 0.0
    helpers: list[asyncio.Task[Any]] = []
    try:
        phone = scenario(workdir, BENCH_SIPP / "phone.xml", f"phone_{tag}.xml", LINGER_MS=PHONE_LINGER_MS)
        phones = await start_phones(
            procs, workdir, phone, port=phone_port, calls=calls, timeout_s=bound + 30, tag=tag, echo=True
        )
        # The callers' sockets, bound after the phones' sipp so that none takes its ports.
        for _ in range(calls):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            stream = Stream(sock, capacity)
            streams[stream.port] = stream
            loop.add_reader(sock.fileno(), stream.readable)
        ports_csv.write_text("SEQUENTIAL\n" + "".join(f"{port};\n" for port in streams))
        relayed0 = (await hub.metrics(http)).get("ctihub_rtp_packets_relayed_total", 0.0)
        callers = await procs.start(
            "sipp", f"127.0.0.1:{hub.sip_port}", "-sf", str(caller), "-s", SERVICE, "-i", "127.0.0.1",
            "-p", str(free_port()), "-mp", str(free_media_port()), "-inf", str(ports_csv),
            "-r", str(ramp_per_s), "-rp", "1000", "-m", str(calls), "-l", str(calls), "-nostdin",
            "-timeout", f"{int(bound)}s", "-timeout_error", "-recv_timeout", "15000",
            "-trace_logs", "-log_file", str(media_log),
            "-trace_stat", "-stf", str(workdir / f"callers_{tag}.csv"), "-fd", "1",
            "-trace_err", "-error_file", str(workdir / f"callers_{tag}_errors.log"), "-max_log_size", "1000000",
            log_path=workdir / f"callers_{tag}.out",
        )
        caller_done = asyncio.create_task(callers.wait())
        sampler = asyncio.create_task(sample_hub(hub, http, samples))
        helpers += [caller_done, sampler]
        offset = 0
        pending = ""
        tick = loop.time()
        deadline = loop.time() + bound
        started = 0
        while loop.time() < deadline:
            now = loop.time()
            late_max = max(late_max, now - tick)
            # New calls: sipp logs "MEDIA <our port> <hub port>" as each 200 OK arrives.
            if started < calls and media_log.exists():
                with media_log.open("r") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                    offset = handle.tell()
                pending += chunk
                *lines, pending = pending.split("\n")
                for line in lines:
                    match = re.search(r"MEDIA (\d+) (\d+)", line)
                    if match and int(match.group(1)) in streams:
                        stream = streams[int(match.group(1))]
                        if not stream.hub_port:
                            stream.hub_port = int(match.group(2))
                            stream.started, stream.stop_at = now, now + talk_s
                            active.append(stream)
                            started += 1
            for stream in active:
                if now < stream.stop_at:
                    stream.send_due(now)
            active = [s for s in active if now < s.stop_at]
            if caller_done.done() and not active:
                break
            tick += RTP_PTIME
            await asyncio.sleep(max(0.0, tick - loop.time()))
            if loop.time() - tick > 1.0:
                tick = loop.time()  # far behind: do not burst seconds of packets at once
        caller_exit = await procs.wait(callers, timeout=max(1.0, deadline - loop.time()) + 20)
        phone_exit = await procs.wait(phones, timeout=20)
        await asyncio.sleep(0.5)
        await drain(hub, http)
        relayed1 = (await hub.metrics(http)).get("ctihub_rtp_packets_relayed_total", 0.0)
    finally:
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        for stream in streams.values():
            with contextlib.suppress(Exception):
                loop.remove_reader(stream.sock.fileno())
            stream.sock.close()

    # The plateau: every call bridged (the newest first echo) until the first call stopped talking.
    firsts = [s.first_echo_sent_at() for s in streams.values() if s.hub_port]
    bridged = sum(1 for f in firsts if f is not None)
    plateau_start = max((f for f in firsts if f is not None), default=0.0)
    plateau_end = min((s.started + talk_s for s in streams.values() if s.hub_port), default=0.0)
    sent_window = lost_window = 0
    for stream in streams.values():
        for seq in range(stream.next_seq):
            if plateau_start <= stream.sent_at[seq] < plateau_end:
                sent_window += 1
                lost_window += 0 if stream.echoed[seq] else 1
    plateau = max(0.0, plateau_end - plateau_start)
    loss = lost_window / sent_window if sent_window else None
    in_plateau = [s for s in samples if plateau_start <= s["t"] <= plateau_end]
    hub_cpu = bench_cpu = machine_busy = None
    if len(in_plateau) >= 2:
        first, last = in_plateau[0], in_plateau[-1]
        machine_busy = round(100 * (last["busy"] - first["busy"]) / max(1.0, last["total"] - first["total"]), 1)
        hub_cpu = round(100 * (last["hub_cpu"] - first["hub_cpu"]) / (last["t"] - first["t"]), 1)
        bench_cpu = round(100 * (last["bench_cpu"] - first["bench_cpu"]) / (last["t"] - first["t"]), 1)
    why = []
    if caller_exit != 0:
        why.append(f"callers' sipp exit {caller_exit}")
    if phone_exit != 0:
        why.append(f"phones' sipp exit {phone_exit}")
    if started < calls:
        why.append(f"only {started} calls answered")
    if bridged < calls:
        why.append(f"{calls - bridged} calls never carried RTP both ways")
    if plateau < plateau_s / 2:
        why.append(f"all {calls} calls were up together for {plateau:.1f} s only")
    if loss is None or loss >= MAX_LOSS:
        why.append(f"loss {100 * loss:.2f}%" if loss is not None else "no packets in the plateau")
    return MediaLevel(
        calls=calls,
        passed=not why,
        bridged_with_rtp=bridged,
        plateau_s=round(plateau, 1),
        sent_in_plateau=sent_window,
        lost_in_plateau=lost_window,
        loss_percent=round(100 * loss, 3) if loss is not None else None,
        max_hub_active_calls=int(max((s["calls"] for s in samples), default=0)),
        max_hub_rtp_endpoints=int(max((s["endpoints"] for s in samples), default=0)),
        hub_cpu_percent=hub_cpu,
        bench_cpu_percent=bench_cpu,
        machine_busy_percent=machine_busy,
        pump_late_ms_max=round(1000 * late_max, 1),
        hub_relayed_packets=int(relayed1 - relayed0),
        bench_sent_packets=sum(s.next_seq for s in streams.values()),
        bench_echoed_packets=sum(s.echoed.count(1) for s in streams.values()),
        caller_exit=caller_exit,
        phone_exit=phone_exit,
        why="; ".join(why),
    )


async def sample_hub(hub: Hub, http: aiohttp.ClientSession, samples: list[dict[str, float]]) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(3600):  # bounded: one sample a second for at most an hour
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            metrics = await hub.metrics(http)
            times = os.times()
            busy, total = system_busy()
            samples.append(
                {
                    "t": loop.time(),
                    "calls": metrics.get("ctihub_active_calls", 0.0),
                    "endpoints": metrics.get("ctihub_rtp_endpoints_open", 0.0),
                    "hub_cpu": hub.cpu(),
                    "bench_cpu": times.user + times.system,
                    "busy": busy,
                    "total": total,
                }
            )
        await asyncio.sleep(1.0)


def describe_media(level: MediaLevel) -> str:
    line = (
        f"media {level.calls} calls: {'PASS' if level.passed else 'FAIL'} ({level.bridged_with_rtp} with RTP both ways, "
        f"plateau {level.plateau_s} s, loss {level.loss_percent}% of {level.sent_in_plateau} packets, "
        f"hub active calls max {level.max_hub_active_calls}, hub CPU {level.hub_cpu_percent}%, "
        f"bench CPU {level.bench_cpu_percent}%, machine busy {level.machine_busy_percent}%, "
        f"RTP pump late max {level.pump_late_ms_max} ms)"
    )
    return line + (f": {level.why}" if level.why else "")


# --- the run -------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 s steps, shorter ladders, fewer agents")
    parser.add_argument("--step-seconds", type=float, help="seconds each call rate is held (default 60, quick 10)")
    parser.add_argument("--rates", help="call-rate ladder, calls/s, comma-separated")
    parser.add_argument("--direct-rates", help="ladder for sipp to sipp (default 50,100,200,400,600,800,1000; quick 100,300,600)")
    parser.add_argument("--media-levels", help="concurrent media call levels, comma-separated")
    parser.add_argument("--media-plateau", type=float, help="seconds every call of a level is up at once (default 20, quick 8)")
    parser.add_argument(
        "--media-ramp", type=int, default=20,
        help="calls/s while a media level ramps up (default 20: well under the call rate the hub sustains, "
        "so that a media level measures media, not call set-up)",
    )
    parser.add_argument("--agents", type=int, help="agents (and phones) to create (default 500, quick 150)")
    parser.add_argument("--hold-ms", type=int, default=1000, help="how long callers stay after the answer in the rate steps")
    parser.add_argument("--rtp-ports", default="20000-29999", help="the hub's RTP port range")
    parser.add_argument("--skip", default="", help="phases to skip: rate, media, direct (comma-separated)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, sipp statistics)")
    parser.add_argument(
        "--database-url",
        help="the hub's database (default SQLite in the work directory). A PostgreSQL URL "
        "(postgresql+asyncpg://user@host/name) names a database that is dropped, created and seeded",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.step_seconds = args.step_seconds or (10.0 if quick else 60.0)
    default_rates = "10,20,40,60,100" if quick else "10,20,30,40,50,60,80,100,150,200,250,300"
    args.rates = [int(r) for r in (args.rates or default_rates).split(",")]
    default_direct = "100,300,600" if quick else "50,100,200,400,600,800,1000"
    args.direct_rates = [int(r) for r in (args.direct_rates or default_direct).split(",")]
    args.media_levels = [int(n) for n in (args.media_levels or ("50,100" if quick else "50,100,150,200,300,400")).split(",")]
    args.media_plateau = args.media_plateau or (8.0 if quick else 20.0)
    args.agents = args.agents or (150 if quick else 500)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    # This benchmark measures the call path without recordings (bench/recordings.py
    # measures what they add); other benchmarks reusing these phases set their own.
    args.hub_args = ["--recording-default", "never"]
    if args.database_url:
        if not args.database_url.startswith("postgresql+asyncpg://"):
            parser.error("--database-url: only postgresql+asyncpg:// URLs (SQLite is the default)")
        args.hub_args += ["--database-url", args.database_url]
    if "media" not in args.skip and max(args.media_levels) > args.agents:
        parser.error("--agents must be at least the largest media level (one agent per call)")
    return args


@contextlib.asynccontextmanager
async def hub_phase(
    procs: Processes,
    workdir: Path,
    data_dir: Path,
    args: argparse.Namespace,
    usernames: list[str],
    events: dict[str, Any],
) -> AsyncIterator[tuple[Hub, Desks, aiohttp.ClientSession, int]]:
    """A fresh hub process with every agent logged in, available, and its phone registered."""
    t0 = time.monotonic()
    hub = await start_hub(procs, workdir, data_dir, rtp_ports=args.rtp_ports, extra_args=tuple(args.hub_args))
    log(f"hub pid {hub.process.pid}: SIP 127.0.0.1:{hub.sip_port}, HTTP {hub.base} ({time.monotonic() - t0:.0f} s)")
    phone_port = free_port()
    desks = Desks()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            await desks.open(http, hub, usernames)
            log(f"{len(usernames)} agents logged in and available ({time.monotonic() - t0:.0f} s)")
            await register_phones(procs, workdir, hub, usernames, phone_port)
            log(f"their phones registered at 127.0.0.1:{phone_port} ({time.monotonic() - t0:.0f} s)")
            try:
                yield hub, desks, http, phone_port
            finally:
                for key, value in {
                    "screen_pops": desks.pops, "answered": desks.answered, "ended": desks.ended,
                    "errors": desks.errors, "sockets_closed_early": desks.closed,
                }.items():
                    events[key] = events.get(key, 0) + value
                withdrawn = events.setdefault("offers_withdrawn", {})
                for reason, count in desks.withdrawn.items():
                    withdrawn[reason] = withdrawn.get(reason, 0) + count
                await desks.close()
    finally:
        await procs.stop(hub.process, grace=15.0)
        log(f"hub stopped (exit {hub.process.returncode})")


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    procs = Processes()
    events: dict[str, Any] = {}
    usernames = [f"bench{i:04d}" for i in range(1, args.agents + 1)]
    rate_steps: list[RateStep] = []
    media_levels: list[MediaLevel] = []
    direct_steps: list[RateStep] = []
    try:
        data_dir = workdir / "var"
        t0 = time.monotonic()
        await seed_directory(data_dir, usernames, url=args.database_url)
        log(f"{args.agents} agents seeded ({time.monotonic() - t0:.0f} s)")
        hold_s = args.hold_ms / 1000
        # Each hub phase gets a fresh hub process: the rate ladder ends on an overloaded
        # step, and what that leaves behind must not count against the media levels.
        if "rate" not in args.skip:
            async with hub_phase(procs, workdir, data_dir, args, usernames, events) as (hub, desks, http, phone_port):
                for rate in args.rates:
                    if rate * (hold_s + 0.5) > args.agents:
                        log(f"rate {rate}/s would need more than {args.agents} agents at once; stopping the ladder")
                        break
                    step = await rate_step(
                        procs, workdir, label="hub", target_port=hub.sip_port, phone_port=phone_port, rate=rate,
                        seconds=args.step_seconds, hold_ms=args.hold_ms, hub=hub, desks=desks, http=http,
                    )
                    rate_steps.append(step)
                    log(describe_rate("hub", step, args.step_seconds))
                    if not step.passed:
                        break
        if "media" not in args.skip:
            async with hub_phase(procs, workdir, data_dir, args, usernames, events) as (hub, desks, http, phone_port):
                for calls in args.media_levels:
                    level = await media_level(
                        procs, workdir, hub=hub, http=http, phone_port=phone_port, calls=calls,
                        plateau_s=args.media_plateau, ramp_per_s=args.media_ramp,
                    )
                    media_levels.append(level)
                    log(describe_media(level))
                    if not level.passed:
                        break
        if "direct" not in args.skip:
            direct_port = free_port()
            for rate in args.direct_rates:
                step = await rate_step(
                    procs, workdir, label="direct", target_port=direct_port, phone_port=direct_port, rate=rate,
                    seconds=args.step_seconds, hold_ms=args.hold_ms,
                )
                direct_steps.append(step)
                log(describe_rate("sipp direct", step, args.step_seconds))
                if not step.passed:
                    break
                await asyncio.sleep(1.0)
    finally:
        await procs.stop_all()

    best = max((s for s in rate_steps if s.passed), key=lambda s: s.rate, default=None)
    best_media = max((m for m in media_levels if m.passed), key=lambda m: m.calls, default=None)
    best_direct = max((s for s in direct_steps if s.passed), key=lambda s: s.rate, default=None)
    calls_per_s = best.rate if best else 0
    media_calls = best_media.calls if best_media else 0
    direct = best_direct.rate if best_direct else 0
    result = {
        "calls_per_s": calls_per_s,
        "concurrent_media_calls": media_calls,
        "hub_cpu_ms_per_call": best.hub_cpu_ms_per_call if best else None,
        "hub_cpu_percent_per_media_call": (
            round(best_media.hub_cpu_percent / best_media.calls, 3) if best_media and best_media.hub_cpu_percent else None
        ),
        "sipp_direct_calls_per_s": direct,
        # Each ladder stops at its first failing step; a ladder that never failed hit its ceiling.
        "calls_per_s_capped": bool(rate_steps) and all(s.passed for s in rate_steps),
        "concurrent_media_calls_capped": bool(media_levels) and all(m.passed for m in media_levels),
        "sipp_direct_capped": bool(direct_steps) and all(s.passed for s in direct_steps),
        "hub_over_direct": round(calls_per_s / direct, 3) if direct else None,
        "targets": {"calls_per_s": TARGET_CALLS_PER_S, "concurrent_media_calls": TARGET_MEDIA_CALLS},
        "targets_met": {
            "calls_per_s": calls_per_s >= TARGET_CALLS_PER_S,
            "concurrent_media_calls": media_calls >= TARGET_MEDIA_CALLS,
        },
        "quick": args.quick,
        "step_seconds": args.step_seconds,
        "hold_ms": args.hold_ms,
        "agents": args.agents,
        "database": "postgresql" if args.database_url else "sqlite",
        "media_plateau_s": args.media_plateau,
        "max_loss_percent": 100 * MAX_LOSS,
        "machine": machine(),
        "rate_steps": [asdict(s) for s in rate_steps],
        "media_levels": [asdict(m) for m in media_levels],
        "direct_steps": [asdict(s) for s in direct_steps],
        "agent_events": events,
    }
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("sipp") is None:
        print("bench/sip.py: sipp is needed (Debian package sip-tester)", file=sys.stderr)
        return 2
    if not CTIHUB.exists():
        print(f"bench/sip.py: {CTIHUB} is missing: pip install -e . in the virtualenv first", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="ctihub-bench-"))
    log(f"work directory {workdir} (logs and sipp statistics)")

    async def guarded() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run(args, workdir)

    try:
        result = asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        log(f"interrupted; every subprocess was stopped; logs kept in {workdir}")
        return 130
    except Exception as exc:
        log(f"bench/sip.py failed: {exc!r}; logs kept in {workdir}")
        return 1
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    log(
        f"calls_per_s {result['calls_per_s']} (target {TARGET_CALLS_PER_S}), "
        f"concurrent_media_calls {result['concurrent_media_calls']} (target {TARGET_MEDIA_CALLS}), "
        f"hub CPU {result['hub_cpu_ms_per_call']} ms/call, sipp direct {result['sipp_direct_calls_per_s']}/s"
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
