"""Recording benchmark (issue 7): what recording adds to the media relay's CPU, at 200
concurrent recorded calls through one `ctihub serve` process. Not a test: it prints one
line per phase and, last, one line of JSON.

    .venv/bin/python bench/recordings.py            # 200 calls, 20 s plateau (about 4 minutes)
    .venv/bin/python bench/recordings.py --quick    # 50 calls, 8 s plateau

How: the media level of bench/sip.py (sipp callers whose RTP comes from this process,
sipp phones echoing it, the hub relaying both ways; its loss and plateau rules) is run
twice against fresh hub processes that differ only in `--recording-default`:
`never`, then `always` (every bridged call recorded in two channels, WAV, written by
the recorders' worker threads as the call goes). The recording notice is a 0.2 s tone,
so that set-up timing stays as in bench/sip.py.

- `recording_cpu_overhead_pct`: 100 * (hub CPU% recording - hub CPU% not recording) /
  hub CPU% not recording, each the hub process's CPU (utime + stime) over the plateau
  with every call of the level bridged and talking.
- `disk_write_mb_per_s`: what the hub process wrote to storage (/proc/PID/io
  write_bytes) over the recording level, per second of that level's wall time; and
  `recorded_mb_per_call_minute` from the files themselves (stereo 16-bit 8 kHz is
  1.92 MB a minute).
- `recordings`: files found after the recording hub stopped; `loss_percent` per run.
- Per run, `hub_threads_cpu_percent`: the hub's CPU split into its main thread (the
  event loop: relay, tap, collection) and its other threads (the recorders' worker),
  from /proc/PID/task over the samples with every call of the level up; and
  `hub_cpu_us_per_relayed_packet`, the hub's CPU over the plateau divided by the
  packets it relayed there (each echoed packet was relayed twice): unlike a
  percentage, it does not drop when a busy machine makes the hub relay less.
- Per run, `machine_busy_percent` (both CPUs, over the plateau) and `bench_cpu_percent`:
  on a shared machine, a run whose machine was busier than the hub, this process and
  sipp account for had other work competing for the CPUs, which inflates the hub's CPU
  figure; compare the runs' figures before trusting the overhead. The load average at
  the start is in `machine`.
Target: `recording_cpu_overhead_pct` at most 20.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import math
import os
import shutil
import signal
import struct
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# Run as a script, this file's folder comes first on sys.path, and this file's name
# would then hide the hub's `recordings` package from everything imported below.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
TARGET_OVERHEAD_PCT = 20.0

_spec = importlib.util.spec_from_file_location("bench_sip", HERE / "sip.py")
assert _spec is not None and _spec.loader is not None
sipbench = importlib.util.module_from_spec(_spec)
sys.modules["bench_sip"] = sipbench
_spec.loader.exec_module(sipbench)
log = sipbench.log


def write_tone(path: Path, seconds: float) -> Path:
    frames = round(8000 * seconds)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"".join(struct.pack("<h", round(6000 * math.sin(2 * math.pi * 440 * n / 8000))) for n in range(frames)))
    return path


def write_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/io") as io:
        for line in io:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


def thread_cpu_seconds(pid: int) -> tuple[float, float]:
    """(main thread, all other threads) CPU seconds of process `pid`, from /proc."""
    main = others = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue  # a thread that ended meanwhile
        fields = text[text.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick
        if int(tid) == pid:
            main += seconds
        else:
            others += seconds
    return main, others


_samples_by_hub: dict[int, list[dict[str, float]]] = {}
_sample_hub = sipbench.sample_hub


async def sample_hub_and_threads(hub: Any, http: Any, samples: list[dict[str, float]]) -> None:
    """bench/sip.py's one-a-second sampler, each sample also split by thread."""
    _samples_by_hub[hub.process.pid] = samples

    class WithThreads(list[dict[str, float]]):
        def append(self, sample: dict[str, float]) -> None:
            with contextlib.suppress(OSError):
                sample["main_cpu"], sample["other_cpu"] = thread_cpu_seconds(hub.process.pid)
            samples.append(sample)

    await _sample_hub(hub, http, WithThreads())


sipbench.sample_hub = sample_hub_and_threads


def threads_percent(pid: int, calls: int) -> dict[str, float] | None:
    """The hub's main thread and other threads' CPU% over the samples with every call up."""
    full = [s for s in _samples_by_hub.get(pid, []) if s["calls"] >= calls and "main_cpu" in s]
    if len(full) < 2:
        return None
    first, last = full[0], full[-1]
    seconds = last["t"] - first["t"]
    return {
        "main": round(100 * (last["main_cpu"] - first["main_cpu"]) / seconds, 1),
        "other_threads": round(100 * (last["other_cpu"] - first["other_cpu"]) / seconds, 1),
    }


def us_per_relayed_packet(level: Any) -> float | None:
    relayed = 2 * (level.sent_in_plateau - level.lost_in_plateau)
    if level.hub_cpu_percent is None or not relayed or not level.plateau_s:
        return None
    return round(level.hub_cpu_percent / 100 * level.plateau_s / relayed * 1e6, 2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 calls, 8 s plateau")
    parser.add_argument("--calls", type=int, help="concurrent recorded calls (default 200, quick 50)")
    parser.add_argument("--plateau", type=float, help="seconds every call is up at once (default 20, quick 8)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    args.calls = args.calls or (50 if args.quick else 200)
    args.plateau = args.plateau or (8.0 if args.quick else 20.0)
    return args


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    load_at_start = round(os.getloadavg()[0], 2)
    sip_args = sipbench.parse_args([
        "--agents", str(args.calls), "--media-levels", str(args.calls), "--media-plateau", str(args.plateau),
    ])
    notice = write_tone(workdir / "notice.wav", 0.2)
    usernames = [f"bench{i:04d}" for i in range(1, args.calls + 1)]
    procs = sipbench.Processes()
    events: dict[str, Any] = {}
    runs: dict[str, dict[str, Any]] = {}
    try:
        data_dir = workdir / "var"
        await sipbench.seed_directory(data_dir, usernames)
        for mode in ("never", "always"):
            # Each run in a folder of its own: sipp's logs and injection files are named
            # after the level, and a run must not read the other's.
            rundir = workdir / mode
            rundir.mkdir()
            recordings_dir = rundir / "recordings"
            sip_args.hub_args = [
                "--recording-default", mode, "--recording-notice", str(notice), "--recordings-dir", str(recordings_dir),
            ]
            async with sipbench.hub_phase(procs, rundir, data_dir, sip_args, usernames, events) as (
                hub, _desks, http, phone_port,
            ):
                written_before, t0 = write_bytes(hub.process.pid), time.monotonic()
                level = await sipbench.media_level(
                    procs, rundir, hub=hub, http=http, phone_port=phone_port, calls=args.calls,
                    plateau_s=args.plateau, ramp_per_s=sip_args.media_ramp,
                )
                written, elapsed = write_bytes(hub.process.pid) - written_before, time.monotonic() - t0
            log(f"recording {mode}: " + sipbench.describe_media(level))
            log(f"recording {mode}: hub threads {threads_percent(hub.process.pid, args.calls)}, "
                f"{us_per_relayed_packet(level)} µs of hub CPU per relayed packet")
            files = sorted(recordings_dir.rglob("*.wav")) if recordings_dir.exists() else []
            file_bytes = sum(f.stat().st_size for f in files)
            durations = []
            for f in files:
                with wave.open(str(f), "rb") as wav:
                    durations.append(wav.getnframes() / wav.getframerate())
            runs[mode] = {
                "passed": level.passed,
                "why": level.why,
                "hub_cpu_percent": level.hub_cpu_percent,
                "bench_cpu_percent": level.bench_cpu_percent,
                "hub_threads_cpu_percent": threads_percent(hub.process.pid, args.calls),
                "hub_cpu_us_per_relayed_packet": us_per_relayed_packet(level),
                "machine_busy_percent": level.machine_busy_percent,
                "loss_percent": level.loss_percent,
                "bridged_with_rtp": level.bridged_with_rtp,
                "plateau_s": level.plateau_s,
                "disk_write_mb_per_s": round(written / elapsed / 1e6, 3),
                "recordings": len(files),
                "recorded_seconds": round(sum(durations), 1),
                "recorded_mb_per_call_minute": round(file_bytes / 1e6 / (sum(durations) / 60), 3) if durations else None,
            }
    finally:
        await procs.stop_all()
    plain, recorded = runs["never"], runs["always"]
    overhead = per_packet_overhead = None
    if plain["hub_cpu_percent"] and recorded["hub_cpu_percent"] is not None:
        overhead = round(100 * (recorded["hub_cpu_percent"] - plain["hub_cpu_percent"]) / plain["hub_cpu_percent"], 1)
    plain_us, recorded_us = plain["hub_cpu_us_per_relayed_packet"], recorded["hub_cpu_us_per_relayed_packet"]
    if plain_us and recorded_us is not None:
        per_packet_overhead = round(100 * (recorded_us - plain_us) / plain_us, 1)
    return {
        "recording_cpu_overhead_pct": overhead,
        "recording_cpu_overhead_per_packet_pct": per_packet_overhead,
        "disk_write_mb_per_s": recorded["disk_write_mb_per_s"],
        "recorded_mb_per_call_minute": recorded["recorded_mb_per_call_minute"],
        "concurrent_recorded_calls": args.calls,
        "hub_cpu_percent_not_recording": plain["hub_cpu_percent"],
        "hub_cpu_percent_recording": recorded["hub_cpu_percent"],
        "recordings": recorded["recordings"],
        "both_levels_passed": plain["passed"] and recorded["passed"],
        "target": {"recording_cpu_overhead_pct": TARGET_OVERHEAD_PCT},
        "target_met": overhead is not None and overhead <= TARGET_OVERHEAD_PCT and plain["passed"] and recorded["passed"],
        "runs": runs,
        "machine": {**sipbench.machine(), "load_average_1m_at_start": load_at_start},
        "quick": args.quick,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("sipp") is None:
        print("bench/recordings.py: sipp is needed (Debian package sip-tester)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="ctihub-bench-rec-"))
    log(f"work directory {workdir}")

    async def guarded() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run(args, workdir)

    try:
        result = asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        log(f"interrupted; logs kept in {workdir}")
        return 130
    except Exception as exc:  # noqa: BLE001 -- whatever failed: say so, keep the logs
        log(f"bench/recordings.py failed: {exc!r}; logs kept in {workdir}")
        return 1
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    log(
        f"recording_cpu_overhead_pct {result['recording_cpu_overhead_pct']} (target <= {TARGET_OVERHEAD_PCT}), "
        f"disk {result['disk_write_mb_per_s']} MB/s at {result['concurrent_recorded_calls']} calls"
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
