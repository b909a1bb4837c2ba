"""`PurgeJob`: the hub's own retention purge, run on a fixed cadence (asyncio shell).

Owns when the purge runs inside the hub: shortly after start-up (so a hub restarted
every night still purges), then every `every_s`; each run is one `RecordingStore.purge`
and a log line per recording purged, held or failed (the store also keeps them in
`recording_events`: `GET /api/recordings/events?action=purged` or `ctihub recordings
purge` list them). Several hubs may each run it: the store locks each row it purges, so
a recording is purged once. Must never: decide what is due (recordings.policy does),
or let a failed run stop the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from recordings.store import PurgeReport, RecordingStore

log = logging.getLogger(__name__)

FIRST_RUN_AFTER_S = 60.0


class PurgeJob:
    def __init__(
        self,
        store: RecordingStore,
        *,
        every_s: float,
        first_after_s: float = FIRST_RUN_AFTER_S,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if every_s <= 0:
            raise ValueError("every_s must be positive")
        self._store = store
        self._every_s = every_s
        self._first_after_s = first_after_s
        self._wall_clock = wall_clock
        self._task: asyncio.Task[None] | None = None
        self.runs = 0
        self.last_report: PurgeReport | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="recordings purge job")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> PurgeReport:
        report = await self._store.purge(self._wall_clock(), actor="retention job")
        for purged in report.purged:
            log.info(
                "purged recording %s (%s), retention until %s, at %s",
                purged.id, purged.path, purged.retention_until.isoformat(), purged.deleted_at.isoformat(),
            )
        for recording_id in report.held:
            log.info("kept recording %s past its retention: legal hold", recording_id)
        for recording_id, error in report.failed:
            log.error("purge of recording %s failed: %s", recording_id, error)
        self.runs += 1
        self.last_report = report
        return report

    async def _loop(self) -> None:
        await asyncio.sleep(self._first_after_s)
        while True:
            try:
                await self.run_once()
            except Exception:  # a database or store outage: the next run tries again
                log.exception("recordings purge run failed")
            await asyncio.sleep(self._every_s)
