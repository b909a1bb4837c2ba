"""bench/pop.py end to end, tiny: a SQLite database of 200 demo customers, 4 agents, 10
calls. Proves the bench's measuring path (sipp's INVITE times, the pops read off the
agents' websockets, matched by Call-ID, checked against the database) on a real hub; the
latency figures themselves are the benchmark's business, not this test's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sipp

ROOT = Path(__file__).resolve().parents[2]


def test_bench_pop_measures_every_pop_of_a_tiny_run(sipp_path: str, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
    subprocess.run(
        [sys.executable, "-m", "cti.cli", "demo-data", "--customers", "200", "--seed", "3", "--database-url", url],
        cwd=ROOT, check=True, capture_output=True, timeout=60,
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pop.py"), "--database-url", url, "--customers", "200", "--seed", "3",
         "--seconds", "2", "--rate", "5", "--agents", "4", "--hold-ms", "200", "--unknown-share", "0.2",
         "--rtp-ports", "39200-39299"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])

    assert figures["calls"] == figures["invites_sent"] == figures["pops_received"] == 10
    assert figures["calls_without_pop"] == 0 and figures["pops_wrong"] == 0 and figures["failed_calls"] == 0
    # 2 of the 10 callers are unknown numbers; the 8 others are customers (a shared line
    # pops its matches instead of one customer).
    assert figures["pops_unknown_caller"] == 2
    assert figures["pops_known_customer"] + figures["pops_several_customers"] == 8
    assert 0 < figures["pop_p50_ms"] <= figures["pop_p99_ms"] <= figures["pop_max_ms"] < 5000
    # The two halves of each interval add up to it (same clock on both sides).
    assert abs(figures["invite_to_arrival"]["mean_ms"] + figures["arrival_to_pop"]["mean_ms"]
               - figures["pop"]["mean_ms"]) < 0.05
    assert figures["fewest_free_agents"] >= 1 and figures["rate_achieved"] > 4
    # Every INVITE got a time, from the kernel (root) or from sipp's log.
    assert sum(figures["invite_clock"].values()) == 10
