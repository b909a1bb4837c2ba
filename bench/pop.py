"""Screen-pop latency benchmark (issue 6, item 6): how long after a caller's INVITE the
agent's websocket receives the `screen_pop`, with agents free, at 20 calls/s, with
1,000,000 customers in PostgreSQL. Not a test: it prints one line per phase and, last,
one line of JSON.

    .venv/bin/python bench/pop.py            # 60 s at 20 calls/s (1,200 calls)
    .venv/bin/python bench/pop.py --quick    # 15 s at 20 calls/s (300 calls)

The data: bench/crm.py's PostgreSQL database `ctihub_bench_crm` (1,000,000 customers
built by the real `ctihub demo-data` process; built on the first run, which takes
several minutes, then reused). Each run copies it (CREATE DATABASE ... TEMPLATE) to
`ctihub_bench_pop`, adds a bench queue on 1000 and `--agents` agents, and points a real
`ctihub serve` process at the copy with `--database-url`: the hub's directory, CRM and
interactions all live there, as in production, and the CRM database bench/crm.py
measures stays untouched. `--database-url` runs against an existing database instead
(any the hub can use, SQLite included; agents are added to it, nothing else changes).
The hub is bench/sip.py's (`--answer-delay 0`, `--recording-default never`, no Redis);
see the note on the answer delay below.

The callers: `--unknown-share` (10%) of the calls come from well-formed numbers in no
customer's record (UK numbers from Ofcom's drama ranges, checked against the database);
the others from the phones of random customers (generator ids drawn with
`--sample-seed`, so that a re-run calls the same people), each sent in one of the forms
a trunk may deliver: E.164, international with spaces, '00' for '+', and for British
numbers the national form (the hub reads national numbers as GB). Every call has its own
number, sent as the From user (spaces %-escaped); sipp reads them from an injection file.

The agents are free: every agent is logged in over HTTP with a websocket (bench/sip.py's
desks) and available, and has a phone registered (one sipp playing every phone). A call
goes to the longest-idle agent, whose phone answers at once; the caller hangs up
`--hold-ms` (1000) after the hub's answer, and the agent is available again (queues
have no wrap-up time). With 100 agents at 20 calls/s an agent takes a call every 5 s and
holds it for about 1.1 s, so some 75 agents are free whenever an INVITE arrives; the JSON
says how many were free at the fewest (`fewest_free_agents`, from the agents' own
`agent.state_changed` events over the load). A call that found no free agent would
queue, and its pop would be late: none may.

What is measured, on one clock (CLOCK_REALTIME; everything runs on this machine):

- `pop_*_ms`: for every call, the time from its INVITE reaching the hub to this process
  reading the call's `screen_pop` off the agent's websocket (`time.time()` as the frame
  is read, before its JSON is decoded). Calls and pops are matched by Call-ID (the pop's
  `call_id`). The INVITE's time is the kernel's: a packet socket on `lo` with a BPF
  filter for the hub's SIP port gets each datagram's receive timestamp
  (SO_TIMESTAMPNS, nanoseconds) as the loopback device delivers it to the hub's side
  (`invite_clock: {"kernel": n}`). Without CAP_NET_RAW (not root) it falls back to the
  timestamp sipp writes into its `-trace_msg` log (microseconds), which sipp takes just
  after sendto() returns: a sipp that loses the CPU right then (the hub woken on the same
  core) stamps late, so the figures would read low; `sipp_stamp_minus_kernel` says by
  how much when both are there, and a stamp later than the hub's own arrival time is
  replaced by the latter (`invite_stamp_after_arrival` counts those). Included: the
  hub's SIP receive, parsing and call set-up, its answer (the routing starts at the
  answer), the CRM lookup and profile query on PostgreSQL (which the pop, and the
  routing, wait for), the routing, the websocket send, and this process's own delay in reading the frame (it holds every agent's
  socket; at 20 pops a second it is idle, but on a busy machine it waits for a CPU like
  anyone). Not included: any network between a real trunk and the hub, and the
  browser's rendering of the pop.
- `invite_to_arrival` and `arrival_to_pop`: the same interval split at the pop's
  `started_at` (the hub's wall clock when its call model saw the call): SIP receive and
  parsing before it, the lookup, the answer, the routing and the websocket after it.
- `pops_*`: the first pop of each call, by what the agent saw: `known_customer` (one
  customer, whose phones hold the caller's number), `several_customers` (a shared line:
  the matches are listed), `unknown_caller`. `pops_wrong` counts pops that contradict the
  database: a customer's number that popped as unknown, an unknown number that popped a
  customer, a customer who does not own the number. `pops_repeated`: further pops of a
  call (an offer that moved to another agent).
- `pop_by_kind`: the pop figures of known customers (lookup, then profile), shared
  lines and unknown callers (the lookup only) apart.
- `crm_identify_alone`: the hub's CRM work for a pop (cti/center.py's `_identify`:
  `lookup_by_phone`, then `get_profile` when one customer matched) timed on its own for
  every caller in turn, from this process after the hub stopped, on the same database
  with the hub's engine settings: the share of the pop the CRM takes without the load.
- `rate_achieved`: INVITEs sent divided by the time from the first to the last.
- `hub_cpu_percent`: the hub process's CPU (utime + stime) while sipp placed the calls,
  and `hub_cpu_ms_per_call`.
- `machine`: bench/sip.py's machine description, plus the load averages at the start and
  how busy both CPUs were during the load (the machine may be shared: read these first).

The answer delay: the hub routes a call, and so pops it, once it has answered the
caller. bench/sip.py's hub answers at once (`--answer-delay 0`); `ctihub serve`'s default
is 0.5 s of ringing first, which would add 500 ms to every pop. `--answer-delay` sets it.

Target: `pop_p99_ms` at most 50 (`target_met`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
# Run as a script, this file's folder comes first on sys.path, and bench/recordings.py
# would then hide the hub's `recordings` package from everything imported below.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]


def _bench_module(name: str, filename: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, HERE / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sipbench = _bench_module("bench_sip", "sip.py")
crmbench = _bench_module("bench_crm", "crm.py")  # puts the project root on sys.path too

import aiohttp
import phonenumbers
import sqlalchemy as sa
from alembic.util.exc import CommandError

from cti.db import make_engine, make_sessionmaker, migrate
from cti.directory.store import DirectoryStore, hash_password

log = sipbench.log
TARGET_POP_P99_MS = 50.0
POP_DATABASE = "ctihub_bench_pop"
COPY_ATTEMPTS = 120  # 5 s apart: wait up to 10 minutes for the source database to be free
HUB_REGION = "GB"  # the hub's default region: national numbers are read as British
# Ofcom's ranges for drama (020 7946 0xxx, 0113 496 0xxx, 0161 496 0xxx...): valid
# numbers no real line has; the database is still asked which of them a customer holds.
UNKNOWN_PREFIXES = ("+4420794600", "+4411349600", "+4411449600", "+4411549600", "+4411649600", "+4416149600")


def sip_user(number: str) -> str:
    """`number` as a SIP URI user part: visual separators stay, spaces are %-escaped."""
    return urllib.parse.quote(number, safe="+-.()")


# --- the callers -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    number: str  # as sent
    form: str  # e164, international, 00, national, unknown
    e164: str
    customers: int  # customers holding the number (0: unknown)


def caller_forms(e164: str, country: str) -> dict[str, str]:
    """The forms in which a trunk may deliver a customer's number to this hub."""
    parsed = phonenumbers.parse(e164)
    forms = {
        "e164": e164,
        "international": phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
        "00": "00" + e164[1:],
    }
    if country == HUB_REGION:
        forms["national"] = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return forms


async def sample_callers(url: str, *, calls: int, customers: int, seed: int, unknown_share: float,
                         rng: random.Random) -> list[Caller]:
    """`calls` callers with distinct numbers: random customers' phones, and unknown numbers."""
    unknown_wanted = round(calls * unknown_share)
    known_wanted = calls - unknown_wanted
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            # The demo generator names its customers cus_<seed>_<index>; the last few of
            # a build are fixed demo people, left out as bench/crm.py does.
            generated = max(customers - 4, 1)
            ids = [f"cus_{seed}_{i:07d}" for i in rng.sample(range(generated), min(generated, 2 * known_wanted + 10))]
            rows = (await conn.execute(
                sa.text(
                    "SELECT p.e164, c.country, "
                    "(SELECT count(DISTINCT q.customer_id) FROM customer_phones q WHERE q.e164 = p.e164) AS holders "
                    "FROM customer_phones p JOIN customers c ON c.id = p.customer_id WHERE p.customer_id IN :ids"
                ).bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": ids},
            )).all()
            candidates = [f"{prefix}{i:02d}" for prefix in UNKNOWN_PREFIXES for i in range(100)]
            held = {row[0] for row in (await conn.execute(
                sa.text("SELECT DISTINCT e164 FROM customer_phones WHERE e164 IN :numbers").bindparams(
                    sa.bindparam("numbers", expanding=True)),
                {"numbers": candidates},
            )).all()}
    finally:
        await engine.dispose()
    rows = sorted(rows)  # the database's order is not the sample's
    rng.shuffle(rows)
    callers: list[Caller] = []
    seen: set[str] = set()
    for e164, country, holders in rows:
        if len(callers) >= known_wanted:
            break
        if e164 in seen:
            continue
        seen.add(e164)
        form, number = rng.choice(sorted(caller_forms(e164, country).items()))
        callers.append(Caller(number=number, form=form, e164=e164, customers=int(holders)))
    free = [n for n in candidates if n not in held]
    if len(callers) < known_wanted or len(free) < unknown_wanted:
        raise SystemExit(f"the database gave {len(callers)} customers' numbers for {known_wanted} callers "
                         f"and {len(free)} unknown numbers for {unknown_wanted}: too few customers?")
    callers += [Caller(number=n, form="unknown", e164=n, customers=0) for n in rng.sample(free, unknown_wanted)]
    rng.shuffle(callers)
    return callers


def write_injection(path: Path, callers: Sequence[Caller]) -> None:
    path.write_text("SEQUENTIAL\n" + "".join(f"{sip_user(c.number)};\n" for c in callers))


# --- the database ----------------------------------------------------------------------


async def pop_database(customers: int, seed: int) -> tuple[str, dict[str, Any]]:
    """A fresh copy of bench/crm.py's database for the hub; its URL and the build's record."""
    import asyncpg

    source = "ctihub_bench_crm" if customers == 1_000_000 else f"ctihub_bench_crm_{customers}"
    built = await crmbench.build(source, customers, seed, False)
    started = time.monotonic()  # of the copy that succeeds (set again before each attempt)
    admin = await asyncpg.connect(crmbench.ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{POP_DATABASE}" WITH (FORCE)')
        for attempt in range(COPY_ATTEMPTS):
            started = time.monotonic()
            try:
                # FILE_COPY: a copy of the files after a checkpoint, much faster than
                # WAL-logging every page of a database this size.
                await admin.execute(f'CREATE DATABASE "{POP_DATABASE}" TEMPLATE "{source}" STRATEGY FILE_COPY')
                break
            except asyncpg.ObjectInUseError:
                # A template must have no other session: bench/crm.py may be reading it.
                if attempt == COPY_ATTEMPTS - 1:
                    raise SystemExit(f"{source} stayed in use by other sessions; try again later") from None
                if attempt == 0:
                    log(f"database: {source} is in use by another session (bench/crm.py?); waiting for it")
                await asyncio.sleep(5)
    finally:
        await admin.close()
    log(f"database: {source} copied to {POP_DATABASE} in {time.monotonic() - started:.1f} s")
    return crmbench.url_for(POP_DATABASE), {"source": source, **built}


async def seed_agents(url: str, usernames: Sequence[str]) -> None:
    """The bench queue on 1000 and its agents with SIP passwords, in the hub's database."""
    engine = make_engine(url)
    try:
        await migrate(engine)
        store = DirectoryStore(make_sessionmaker(engine))
        await store.ensure_queue(name="bench", display_name="Benchmark", required_skills=("bench",),
                                 numbers=(sipbench.SERVICE,))
        login_hash = await hash_password(sipbench.AGENT_PASSWORD)  # one argon2 hash for all
        for username in usernames:
            await store.add_user(username=username, display_name=f"Bench {username}", role="agent",
                                 password=sipbench.AGENT_PASSWORD, password_hash=login_hash,
                                 skills=("bench",), languages=("en",))
            await store.set_sip_password(username, realm=sipbench.SIP_REALM, password=sipbench.SIP_PASSWORD)
    finally:
        await engine.dispose()


def redacted(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//", url)


# --- the agents' desktops --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pop:
    call_id: str
    agent: str
    received: float  # epoch seconds, as the frame was read
    started_at: float  # the pop's `started_at`, epoch seconds
    caller: str
    caller_e164: str | None
    known_caller: bool
    matches: int
    customer_phones: frozenset[str]


@dataclass
class PopDesks(sipbench.Desks):  # type: ignore[name-defined]
    """bench/sip.py's desks (login, one websocket per agent), reading each pop's time and
    content, and how many agents were available at the fewest."""

    pops_seen: list[Pop] = field(default_factory=list)
    watching: bool = False
    fewest_free: int | None = None

    async def _read(self, username: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            received = time.time()
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            kind = data.get("type")
            if kind == "screen_pop":
                self.pops += 1
                self.pops_seen.append(read_pop(username, data, received))
            elif kind == "agent.state_changed":
                if (data.get("data") or {}).get("state") == "available":
                    self.available.add(username)
                else:
                    self.available.discard(username)
                if self.watching:
                    free = len(self.available)
                    self.fewest_free = free if self.fewest_free is None else min(self.fewest_free, free)
            elif kind == "call.answered":
                self.answered += 1
            elif kind == "offer_withdrawn":
                reason = str(data.get("reason"))
                self.withdrawn[reason] = self.withdrawn.get(reason, 0) + 1
            elif kind == "error":
                self.errors += 1
        self.closed += 1


def read_pop(agent: str, data: dict[str, Any], received: float) -> Pop:
    customer = data.get("customer") or {}
    return Pop(
        call_id=str(data.get("call_id")),
        agent=agent,
        received=received,
        started_at=datetime.fromisoformat(str(data["started_at"])).timestamp(),
        caller=str(data.get("caller")),
        caller_e164=data.get("caller_e164"),
        known_caller=bool(data.get("known_caller")),
        matches=len(data.get("matches") or []),
        customer_phones=frozenset(str(p.get("e164")) for p in customer.get("phones", [])),
    )


# --- sipp's message log ----------------------------------------------------------------

_TRACE_HEADER = "----------------------------------------------- "
_CALL_ID = re.compile(r"^Call-ID:\s*(\S+)", re.MULTILINE | re.IGNORECASE)
_FROM_USER = re.compile(r"^From:[^<\n]*<sip:([^@>]+)@", re.MULTILINE | re.IGNORECASE)


def invites_sent(path: Path) -> dict[str, tuple[float, str]]:
    """Call-ID -> (epoch seconds sipp sent its first INVITE, the From user as sent), from a
    sipp `-trace_msg` log. sipp stamps each message with the local time, microseconds."""
    sent: dict[str, tuple[float, str]] = {}
    text = path.read_text(errors="replace") if path.exists() else ""
    for block in text.split(_TRACE_HEADER)[1:]:
        stamp, _, rest = block.partition("\n")
        kind, _, message = rest.partition("\n\n")
        if "message sent" not in kind or not message.startswith("INVITE "):
            continue
        call_id, user = _CALL_ID.search(message), _FROM_USER.search(message)
        if call_id is None or call_id.group(1) in sent:
            continue  # a retransmission: the first copy is when the call reached the hub
        when = datetime.strptime(stamp.strip(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        sent[call_id.group(1)] = (when, user.group(1) if user else "")
    return sent


# --- the kernel's clock: INVITEs as they reached the hub --------------------------------

ETH_P_ALL = 0x0003  # every protocol, and the outgoing copies too
PACKET_HOST = 0  # the copy the loopback device delivers (the other is the sender's)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
_INVITE_CALL_ID = re.compile(rb"^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)", re.MULTILINE | re.IGNORECASE)


def udp_to_port_filter(port: int) -> bytes:
    """A classic BPF program keeping IPv4 UDP datagrams to `port` (offsets from the IP
    header: the socket is a cooked one), so that the rest of the loopback traffic of a
    shared machine never reaches this process."""
    program = [
        (0x30, 0, 0, 9),  # ldb [9]: the IP protocol
        (0x15, 0, 4, 17),  # jeq UDP, else drop
        (0xB1, 0, 0, 0),  # ldxb 4*([0]&0xf): the IP header's length
        (0x48, 0, 0, 2),  # ldh [x+2]: the UDP destination port
        (0x15, 0, 1, port),  # jeq port, else drop
        (0x06, 0, 0, 0xFFFF),  # keep it
        (0x06, 0, 0, 0),  # drop
    ]
    return b"".join(struct.pack("HBBI", *instruction) for instruction in program)


class InviteSniffer:
    """When each INVITE to the hub's SIP port was delivered on the loopback device: the
    kernel's timestamp of the packet, read off a packet socket on `lo` (CAP_NET_RAW).
    Independent of sipp's and of this process's scheduling."""

    def __init__(self, port: int) -> None:
        self.arrived: dict[str, float] = {}
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            code = ctypes.create_string_buffer(udp_to_port_filter(port))
            program = struct.pack("HL", len(code.raw) // 8, ctypes.addressof(code))
            self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program)
            # The kernel stamps packets only once some socket asked for it, and turns
            # that on a moment later: open this well before the first INVITE.
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.sock.bind(("lo", 0))
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise

    def start(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while True:  # what passed before the filter was attached
                self.sock.recv(65535)
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(1000):
            try:
                data, ancillary, _, address = self.sock.recvmsg(65535, 64)
            except (BlockingIOError, InterruptedError):
                return
            if address[2] != PACKET_HOST:
                continue
            payload = data[(data[0] & 0x0F) * 4 + 8:]
            if not payload.startswith(b"INVITE "):
                continue
            match = _INVITE_CALL_ID.search(payload)
            stamps = [item[2] for item in ancillary if item[0] == socket.SOL_SOCKET and item[1] == SO_TIMESTAMPNS]
            if match and stamps:
                seconds, nanoseconds = struct.unpack("qq", stamps[0][:16])
                self.arrived.setdefault(match.group(1).decode(errors="replace"), seconds + nanoseconds / 1e9)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


def open_sniffer(port: int) -> InviteSniffer | None:
    try:
        return InviteSniffer(port)
    except (OSError, AttributeError) as err:  # no CAP_NET_RAW, no AF_PACKET (not Linux)
        log(f"no packet socket on lo ({err}): the INVITEs' times come from sipp's message log")
        return None


def invite_times(sipp: dict[str, tuple[float, str]], kernel: dict[str, float]) -> dict[str, tuple[float, str, str]]:
    """Call-ID -> (when the INVITE reached the hub, the From user, which clock said so):
    the kernel's stamp where the sniffer saw it, sipp's otherwise."""
    return {call_id: (kernel[call_id], user, "kernel") if call_id in kernel else (stamp, user, "sipp")
            for call_id, (stamp, user) in sipp.items()}


# --- the figures -----------------------------------------------------------------------


def ms_figures(seconds: Sequence[float]) -> dict[str, float] | None:
    return crmbench.percentiles([round(s * 1e9) for s in seconds]) if seconds else None


def pop_is_wrong(pop: Pop, caller: Caller | None) -> bool:
    """The pop contradicts the database (None caller: a number this bench did not send)."""
    if caller is None:
        return True
    if caller.customers == 0:
        return pop.known_caller or pop.matches > 0
    if caller.customers == 1:
        return not pop.known_caller or caller.e164 not in pop.customer_phones
    return pop.known_caller or pop.matches != caller.customers


def summarize(invites: dict[str, tuple[float, str, str]], pops: Sequence[Pop], callers: Sequence[Caller]) -> dict[str, Any]:
    by_user = {sip_user(c.number): c for c in callers}
    first: dict[str, Pop] = {}
    for each in sorted(pops, key=lambda p: p.received):
        first.setdefault(each.call_id, each)
    latencies, before, after = [], [], []
    by_kind: dict[str, list[float]] = {"known_customer": [], "several_customers": [], "unknown_caller": []}
    wrong: list[dict[str, Any]] = []
    stamped_late = 0
    for call_id, (stamped_at, user, _) in invites.items():
        pop = first.get(call_id)
        if pop is None:
            continue
        # sipp stamps its log line after sendto() returns; when it lost the CPU in
        # between (the hub woke up on it), the stamp is later than the hub's arrival.
        # The INVITE was sent before the hub saw it: take the earlier of the two.
        sent_at = min(stamped_at, pop.started_at)
        stamped_late += stamped_at > pop.started_at
        latencies.append(pop.received - sent_at)
        before.append(pop.started_at - sent_at)
        after.append(pop.received - pop.started_at)
        kind = "known_customer" if pop.known_caller else "several_customers" if pop.matches else "unknown_caller"
        by_kind[kind].append(pop.received - sent_at)
        caller = by_user.get(user)
        if pop_is_wrong(pop, caller):
            wrong.append({"call_id": call_id, "sent": user, "caller_e164": pop.caller_e164,
                          "known_caller": pop.known_caller, "matches": pop.matches,
                          "expected_customers": caller.customers if caller else None})
    pop_ms = ms_figures(latencies)
    return {
        "pop": pop_ms,
        "invite_to_arrival": ms_figures(before),
        "arrival_to_pop": ms_figures(after),
        "pops_received": len(latencies),
        "pops_repeated": len(pops) - len(first),
        "pops_without_invite": len(set(first) - set(invites)),
        "calls_without_pop": len(set(invites) - set(first)),
        "pops_known_customer": len(by_kind["known_customer"]),
        "pops_several_customers": len(by_kind["several_customers"]),
        "pops_unknown_caller": len(by_kind["unknown_caller"]),
        # A known customer's pop waits for the lookup and the profile, an unknown
        # caller's for the lookup only: the difference is the profile's share.
        "pop_by_kind": {kind: ms_figures(values) for kind, values in by_kind.items()},
        "pops_wrong": len(wrong),
        "invite_stamp_after_arrival": stamped_late,
        "invite_clock": dict(Counter(clock for _, _, clock in invites.values())),
        "wrong_examples": wrong[:5],
        "slowest_calls": [
            {"call_id": c, "pop_ms": round(1000 * (first[c].received - t), 2),
             "invite_to_arrival_ms": round(1000 * (first[c].started_at - t), 2)}
            for t, c in sorted(((min(t, first[c].started_at), c) for c, (t, _, _) in invites.items() if c in first),
                               key=lambda tc: tc[0] - first[tc[1]].received)[:5]
        ],
    }


async def time_identify(url: str, callers: Sequence[Caller], *, warmup: int = 20) -> dict[str, Any]:
    """The hub's CRM work for one pop on its own (cti/center.py's `_identify`:
    lookup_by_phone, then get_profile when exactly one customer matched), for every
    caller in turn, from this process after the hub stopped, on the same database with
    the hub's engine settings (crm_sync's store on cti.db's engine)."""
    from crm_sync.store import CrmStore

    engine = make_engine(url)
    store = CrmStore(make_sessionmaker(engine))
    lookups, profiles, both = [], [], []
    try:
        for index, caller in enumerate(callers):
            started = time.perf_counter()
            matches = await store.lookup_by_phone(caller.number, default_region=HUB_REGION)
            looked_up = time.perf_counter()
            if len(matches) == 1:
                await store.get_profile(matches[0].customer_id)
            done = time.perf_counter()
            if index >= warmup:
                lookups.append(looked_up - started)
                both.append(done - started)
                if len(matches) == 1:
                    profiles.append(done - looked_up)
    finally:
        await engine.dispose()
    return {"identify": ms_figures(both), "lookup": ms_figures(lookups), "profile": ms_figures(profiles)}


# --- the run ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_hub(procs: Any, workdir: Path, args: argparse.Namespace, url: str, usernames: list[str]) -> Any:
    """A `ctihub serve` on the bench database, every agent logged in and available with
    a registered phone; yields (hub, desks, http session, the phones' port, the INVITE
    sniffer or None)."""
    hub_args = ("--recording-default", "never", "--database-url", url, "--log-level", args.hub_log_level,
                "--answer-delay", str(args.answer_delay))
    for attempt in range(1, 4):
        try:
            hub = await sipbench.start_hub(procs, workdir, workdir / "var", rtp_ports=args.rtp_ports,
                                           extra_args=hub_args)
            break
        except RuntimeError as err:
            # Its ports are picked free, then bound by the hub: on a shared machine another
            # program may take one in between ("address already in use" in hub.log).
            if attempt == 3:
                raise
            log(f"the hub did not start ({err}); again")
    log(f"hub pid {hub.process.pid}: SIP 127.0.0.1:{hub.sip_port}, HTTP {hub.base}")
    desks = PopDesks()
    sniffer = open_sniffer(hub.sip_port)  # long before the first INVITE: see InviteSniffer
    try:
        if sniffer is not None:
            sniffer.start()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            await desks.open(http, hub, usernames)
            log(f"{len(usernames)} agents logged in and available")
            phone_port = sipbench.free_port()
            await sipbench.register_phones(procs, workdir, hub, usernames, phone_port)
            log(f"their phones registered at 127.0.0.1:{phone_port}")
            try:
                yield hub, desks, http, phone_port, sniffer
            finally:
                await desks.close()
    finally:
        if sniffer is not None:
            sniffer.close()
        await procs.stop(hub.process, grace=15.0)
        log(f"hub stopped (exit {hub.process.returncode})")


async def place_calls(procs: Any, workdir: Path, args: argparse.Namespace, hub: Any, desks: PopDesks,
                      http: aiohttp.ClientSession, phone_port: int, callers: Sequence[Caller]) -> dict[str, Any]:
    calls = len(callers)
    injection = workdir / "callers.csv"
    write_injection(injection, callers)
    # bench/sip.py's caller (INVITE, ACK, hold, BYE), with each call's own number.
    caller_xml = sipbench.scenario(workdir, sipbench.TESTS_SIPP / "uac_hangup.xml", "caller_pop.xml",
                                   CALLER="[field0]", HOLD_MS=args.hold_ms)
    phone_xml = sipbench.scenario(workdir, sipbench.BENCH_SIPP / "phone.xml", "phone_pop.xml",
                                  LINGER_MS=sipbench.PHONE_LINGER_MS)
    bound = args.seconds * 1.5 + args.hold_ms / 1000 + 60
    phones = await sipbench.start_phones(procs, workdir, phone_xml, port=phone_port, calls=calls,
                                         timeout_s=bound + 30, tag="pop", echo=False)
    messages, stats = workdir / "callers_messages.log", workdir / "callers_stats.csv"
    cpu0, busy0 = hub.cpu(), sipbench.system_busy()
    wall0 = time.monotonic()
    desks.watching, desks.fewest_free = True, len(desks.available)
    callers_sipp = await procs.start(
        "sipp", f"127.0.0.1:{hub.sip_port}", "-sf", str(caller_xml), "-s", sipbench.SERVICE, "-i", "127.0.0.1",
        "-p", str(sipbench.free_port()), "-mp", str(sipbench.free_media_port()), "-inf", str(injection),
        "-r", str(args.rate), "-rp", "1000", "-m", str(calls), "-nostdin",
        "-timeout", f"{int(bound)}s", "-timeout_error", "-recv_timeout", "15000",
        "-trace_msg", "-message_file", str(messages),
        "-trace_stat", "-stf", str(stats), "-fd", "1",
        "-trace_err", "-error_file", str(workdir / "callers_errors.log"), "-max_log_size", "100000000",
        log_path=workdir / "callers.out",
    )
    caller_exit = await procs.wait(callers_sipp, timeout=bound + 10)
    desks.watching = False
    cpu1, busy1, wall1 = hub.cpu(), sipbench.system_busy(), time.monotonic()
    phone_exit = await procs.wait(phones, timeout=20)
    left = await sipbench.drain(hub, http)
    failed = sum(int(sipbench.sipp_stats(path).get("FailedCall(C)") or 0)
                 for path in (stats, workdir / "phones_pop.csv"))
    return {
        "caller_exit": caller_exit, "phone_exit": phone_exit, "failed_calls": failed, "hub_calls_left": left,
        "hub_cpu_s": cpu1 - cpu0, "wall_s": wall1 - wall0,
        "machine_busy_percent": round(100 * (busy1[0] - busy0[0]) / max(1.0, busy1[1] - busy0[1]), 1),
        "messages": messages,
    }


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    log(f"machine: {os.cpu_count()} CPUs, load {' '.join(map(str, load_at_start))}")
    if args.database_url:
        url, database = args.database_url, {"url": redacted(args.database_url), "customers": args.customers,
                                            "seed": args.seed, "copied": False}
    else:
        url, built = await pop_database(args.customers, args.seed)
        database = {"url": redacted(url), "copied": True, **built}
    usernames = [f"bench{i:04d}" for i in range(1, args.agents + 1)]
    try:
        await seed_agents(url, usernames)
    except CommandError as err:
        # A database built by a tree with other migrations than this one.
        raise SystemExit(f"the database's schema is not this tree's ({err}): rebuild it with "
                         f"`.venv/bin/python bench/crm.py --rebuild`, or give --database-url") from None
    calls = round(args.rate * args.seconds)
    callers = await sample_callers(url, calls=calls, customers=args.customers, seed=args.seed,
                                   unknown_share=args.unknown_share, rng=random.Random(args.sample_seed))
    forms = Counter(c.form for c in callers)
    log(f"{calls} callers: " + ", ".join(f"{form} {n}" for form, n in sorted(forms.items()))
        + f"; {sum(c.customers > 1 for c in callers)} shared lines")
    procs = sipbench.Processes()
    try:
        async with running_hub(procs, workdir, args, url, usernames) as (hub, desks, http, phone_port, sniffer):
            log(f"placing {calls} calls at {args.rate}/s ...")
            placed = await place_calls(procs, workdir, args, hub, desks, http, phone_port, callers)
            await asyncio.sleep(0.5)  # the last pops were sent before the last answers; a margin all the same
            pops = list(desks.pops_seen)
            fewest_free, answered, withdrawn, errors = desks.fewest_free, desks.answered, dict(desks.withdrawn), desks.errors
            kernel = dict(sniffer.arrived) if sniffer is not None else {}
    finally:
        await procs.stop_all()

    identify = await time_identify(url, callers)
    log("the CRM work of a pop alone (lookup, profile), p50 / p99 ms: " + ", ".join(
        f"{name} {f['p50_ms']} / {f['p99_ms']}" for name, f in identify.items() if f))
    logged = invites_sent(placed["messages"])
    invites = invite_times(logged, kernel)
    figures = summarize(invites, pops, callers)
    # How much later than the kernel sipp stamps its INVITEs: what the figures would be
    # off by with sipp's log alone.
    sipp_lag = ms_figures([stamp - kernel[c] for c, (stamp, _) in logged.items() if c in kernel])
    sent_times = sorted(t for t, _, _ in invites.values())
    span = sent_times[-1] - sent_times[0] if len(sent_times) > 1 else 0.0
    pop = figures.pop("pop") or {}
    hub_cpu_s = placed["hub_cpu_s"]
    result = {
        "pop_p50_ms": pop.get("p50_ms"), "pop_p99_ms": pop.get("p99_ms"), "pop_max_ms": pop.get("max_ms"),
        "target_pop_p99_ms": TARGET_POP_P99_MS,
        "target_met": pop.get("p99_ms") is not None and pop["p99_ms"] <= TARGET_POP_P99_MS
        and figures["calls_without_pop"] == 0 and figures["pops_wrong"] == 0,
        "calls": calls, "invites_sent": len(invites),
        "pops_received": figures.pop("pops_received"),
        "pops_known_customer": figures.pop("pops_known_customer"),
        "rate_target": args.rate,
        "rate_achieved": round((len(sent_times) - 1) / span, 2) if span else None,
        "hub_cpu_percent": round(100 * hub_cpu_s / placed["wall_s"], 1) if placed["wall_s"] else None,
        "hub_cpu_ms_per_call": round(1000 * hub_cpu_s / calls, 2) if calls else None,
        "pop": pop, **figures, "sipp_stamp_minus_kernel": sipp_lag, "crm_identify_alone": identify,
        "fewest_free_agents": fewest_free, "agents": args.agents, "calls_answered_by_agents": answered,
        "offers_withdrawn": withdrawn, "websocket_errors": errors,
        "failed_calls": placed["failed_calls"], "caller_exit": placed["caller_exit"],
        "phone_exit": placed["phone_exit"], "hub_calls_left": placed["hub_calls_left"],
        "callers": {"forms": dict(sorted(forms.items())), "shared_lines": sum(c.customers > 1 for c in callers),
                    "unknown_share": args.unknown_share, "sample_seed": args.sample_seed},
        "seconds": args.seconds, "hold_ms": args.hold_ms, "answer_delay_s": args.answer_delay, "quick": args.quick,
        "database": database,
        "machine": {**sipbench.machine(), "load_average_at_start": load_at_start,
                    "machine_busy_percent_during_load": placed["machine_busy_percent"]},
    }
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="15 s of calls instead of 60")
    parser.add_argument("--seconds", type=float, help="how long calls are placed (default 60, quick 15)")
    parser.add_argument("--rate", type=int, default=20, help="calls per second (20)")
    parser.add_argument("--agents", type=int, default=100, help="agents logged in and available (100)")
    parser.add_argument("--hold-ms", type=int, default=1000, help="how long a caller stays after the answer (1000)")
    parser.add_argument("--unknown-share", type=float, default=0.1, help="share of calls from unknown numbers (0.1)")
    parser.add_argument("--customers", type=int, default=1_000_000, help="customers in the database (1,000,000)")
    parser.add_argument("--seed", type=int, default=7, help="demo-data seed of the database (7)")
    parser.add_argument("--sample-seed", type=int, default=1, help="seed of the callers' sample (1)")
    parser.add_argument("--database-url", help="use this existing database (with --customers/--seed of its "
                        "demo data) instead of a copy of bench/crm.py's")
    parser.add_argument("--answer-delay", type=float, default=0.0, help="the hub's --answer-delay (0)")
    parser.add_argument("--hub-log-level", default="WARNING", help="the hub's --log-level (WARNING)")
    parser.add_argument("--rtp-ports", default="20000-29999", help="the hub's RTP port range")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, sipp traces)")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (15.0 if args.quick else 60.0)
    if not 0 <= args.unknown_share < 1:
        parser.error("--unknown-share must be at least 0 and below 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("sipp") is None:
        print("bench/pop.py: sipp is needed (Debian package sip-tester)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="ctihub-bench-pop-"))
    log(f"work directory {workdir} (hub log, sipp traces)")

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
    except Exception as exc:  # noqa: BLE001 - reported with where the logs are
        log(f"bench/pop.py failed: {exc!r}; logs kept in {workdir}")
        return 1
    if args.keep:
        result["workdir"] = str(workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    log(f"pop p50 {result['pop_p50_ms']} ms, p99 {result['pop_p99_ms']} ms (target {TARGET_POP_P99_MS:g}), "
        f"max {result['pop_max_ms']} ms; {result['pops_received']} pops for {result['invites_sent']} calls at "
        f"{result['rate_achieved']}/s; {result['pops_wrong']} wrong; fewest free agents {result['fewest_free_agents']}")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
