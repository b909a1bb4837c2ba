"""RecordingService runs every recording's work in one thread of its own, never in the
event loop's default pool (which the database drivers and DNS share), and lets it go
at shutdown."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from recordings.policy import RecordingPolicy
from recordings.recorder import CallRecorder
from recordings.service import MediaTap, RecordingService
from recordings.storage import FileStorage
from tests.unit.test_recordings_assembler import AGENT_HZ, CALLER_HZ, tone_packets


class Taps:
    def __init__(self) -> None:
        self.taps: dict[str, MediaTap] = {}

    def add_tap(self, call_id: str, tap: MediaTap) -> bool:
        self.taps[call_id] = tap
        return True

    def remove_tap(self, call_id: str, tap: MediaTap) -> None:
        self.taps.pop(call_id, None)


@dataclass
class Registered:
    id: str
    upload_pending: bool = False


class Store:
    """Just what the service calls on a store; the real one is tested on real databases."""

    objects = None

    def __init__(self, root: Path) -> None:
        self.storage = FileStorage(root)
        self.added: list[Any] = []

    async def add(self, recording_id: str, result: Any, **_: Any) -> Registered:
        self.added.append(result)
        return Registered(id=recording_id)


async def test_recording_work_runs_in_the_services_own_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: set[str] = set()
    process = CallRecorder.process

    def spy(self: CallRecorder, collected: object) -> None:
        threads.add(threading.current_thread().name)
        process(self, collected)

    monkeypatch.setattr(CallRecorder, "process", spy)
    store, taps = Store(tmp_path), Taps()
    service = RecordingService(
        store=store, taps=taps, policies={}, default_policy=RecordingPolicy.parse("always"),  # type: ignore[arg-type]
        publish=lambda event: None,
    )
    for call in ("c1", "c2"):
        assert service.call_bridged(call, queue="sales", agent_id="a", interaction_id=None)
    await asyncio.sleep(0.1)  # the files are being created
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    packets = zip(tone_packets(CALLER_HZ, seconds=2.2, ssrc=1), tone_packets(AGENT_HZ, seconds=2.2, ssrc=2))
    for k, (caller, agent) in enumerate(packets):
        await asyncio.sleep(max(0.0, t0 + k * 0.02 - loop.time()))
        for tap in taps.taps.values():
            tap("caller", caller)
            tap("agent", agent)
    for call in ("c1", "c2"):
        service.segment_ended(call)
    await service.drain()
    assert len(store.added) == 2 and all(r.duration_s > 2 for r in store.added)
    assert len(threads) == 1 and next(iter(threads)).startswith("recorder")
    for _ in range(100):  # the thread was let go: it ends on its own, soon
        if not any(t.name.startswith("recorder") for t in threading.enumerate()):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the recorder thread outlived the service's drain")
