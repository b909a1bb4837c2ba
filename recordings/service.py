"""The hub's recorders: which calls are recorded, and the life of each recording
(asyncio shell).

Owns one `CallRecorder` per recorded call, fed from the voice service's media tap:
started when the legs are bridged if the queue's policy says "always", or when the
agent asks if it says "on demand"; paused and resumed for PCI; stopped when the
agent's part of the call ends (hang-up or transfer), then registered in the hash chain
with its interaction. All its recorders share one `RecorderWorker`: one hand-off to a
worker thread per interval for every call recorded, not one per call. That thread is
the service's own (unless an executor is passed): the recording job never waits
behind the loop's default pool's other work (or holds it up), and each job wakes the
same thread instead of whichever of the pool's threads is idle.
With an S3 store, a registered recording is then uploaded from the spool (in the S3
store's own threads); a failed upload is retried with growing pauses for as long as
the hub runs, logged, and noted on the row (`upload_error`, listed by `ctihub
recordings verify`); `resume_uploads` at start-up sends what an earlier run left.
Must never: decide policy (that is `policy`), block the event loop (encoding, file
writes and uploads run in worker threads), or lose a finished file silently (a
database that fails is retried; the file stays on disk and `ctihub recordings verify`
reports it as unregistered if every retry fails; a file leaves the spool only once
its object is checked).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from cti import events as ev
from recordings.policy import RecordingPolicy
from recordings.recorder import CallRecorder, RecordingError
from recordings.storage import new_recording_id
from recordings.store import RecordingNotFound, RecordingStore, UploadOutcome
from recordings.worker import RecorderWorker

log = logging.getLogger(__name__)

MediaTap = Callable[[str, bytes], None]
# A database that blinks must not cost a finished recording its place in the chain.
STORE_BACKOFF_S = (0.2, 1.0, 5.0, 15.0, 60.0)
# A bucket that is down: try again after these pauses, then every last one, forever.
UPLOAD_BACKOFF_S = (1.0, 5.0, 30.0, 120.0, 600.0)
# At shutdown, uploads in progress get this long before they are left for the next start.
UPLOAD_GRACE_S = 10.0


class TapPoint(Protocol):
    def add_tap(self, call_id: str, tap: MediaTap) -> bool: ...
    def remove_tap(self, call_id: str, tap: MediaTap) -> None: ...


class RecordingRefused(Exception):
    """A request the policy or the call's state does not allow; `code` is a stable slug."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(slots=True, kw_only=True)
class ActiveRecording:
    recording_id: str
    call_id: str
    queue: str
    agent_id: str | None
    interaction_id: str | None
    policy: RecordingPolicy
    recorder: CallRecorder

    def status(self) -> dict[str, Any]:
        return {
            "recording_id": self.recording_id,
            "recording": True,
            "paused": self.recorder.paused,
            "may_stop": self.policy.agent_may_stop,
        }


class RecordingService:
    def __init__(
        self,
        *,
        store: RecordingStore,
        taps: TapPoint,
        policies: Mapping[str, RecordingPolicy],
        default_policy: RecordingPolicy,
        publish: Callable[[ev.Event], None],
        executor: Executor | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        file_format: str = "wav",
        upload_backoff_s: tuple[float, ...] = UPLOAD_BACKOFF_S,
    ) -> None:
        self._store = store
        self._taps = taps
        self._policies = dict(policies)
        self._default = default_policy
        self._publish = publish
        self._own_executor: ThreadPoolExecutor | None = None
        if executor is None:
            executor = self._own_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recorder")
        self._worker = RecorderWorker(executor=executor)
        self._wall_clock = wall_clock
        self._active: dict[str, ActiveRecording] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._format = file_format
        self._upload_backoff = upload_backoff_s
        self._uploads: dict[str, asyncio.Task[None]] = {}  # by recording id

    # --- policy --------------------------------------------------------------------

    def policy_for(self, queue: str) -> RecordingPolicy:
        return self._policies.get(queue, self._default)

    def announcing_queues(self, queues: list[str]) -> set[str]:
        return {q for q in queues if self.policy_for(q).announces}

    def active(self, call_id: str) -> ActiveRecording | None:
        return self._active.get(call_id)

    def status(self, call_id: str, queue: str) -> dict[str, Any]:
        """What the agent desktop shows for a call: recording or not, and what is allowed."""
        current = self._active.get(call_id)
        policy = self.policy_for(queue)
        if current is not None:
            return {"mode": policy.mode.value, **current.status()}
        return {"mode": policy.mode.value, "recording": False, "paused": False, "may_start": policy.agent_may_start}

    # --- the call's life -------------------------------------------------------------

    def call_bridged(self, call_id: str, *, queue: str, agent_id: str | None, interaction_id: str | None) -> str | None:
        """The caller and an agent are connected: record if the queue always records."""
        if not self.policy_for(queue).starts_when_bridged or call_id in self._active:
            return None
        return self._start(call_id, queue=queue, agent_id=agent_id, interaction_id=interaction_id, by="policy")

    def start(self, call_id: str, *, queue: str, agent_id: str | None, interaction_id: str | None, by: str) -> str:
        """The agent asks to record (on-demand queues only)."""
        if call_id in self._active:
            raise RecordingRefused("already_recording", "this call is already being recorded")
        if not self.policy_for(queue).agent_may_start:
            raise RecordingRefused("not_allowed", f"queue {queue} does not record on demand")
        recording_id = self._start(call_id, queue=queue, agent_id=agent_id, interaction_id=interaction_id, by=by)
        if recording_id is None:
            raise RecordingRefused("no_media", "the call has no media at this hub to record")
        return recording_id

    def pause(self, call_id: str) -> bool:
        current = self._require(call_id)
        if not current.recorder.pause():
            return False
        self._publish(ev.RecordingPaused(
            occurred_at=self._wall_clock(), call_id=call_id, recording_id=current.recording_id, agent_id=current.agent_id,
        ))
        return True

    def resume(self, call_id: str) -> bool:
        current = self._require(call_id)
        if not current.recorder.resume():
            return False
        self._publish(ev.RecordingResumed(
            occurred_at=self._wall_clock(), call_id=call_id, recording_id=current.recording_id, agent_id=current.agent_id,
        ))
        return True

    def stop_on_request(self, call_id: str) -> None:
        """The agent stops an on-demand recording; an "always" recording cannot be stopped."""
        current = self._require(call_id)
        if not current.policy.agent_may_stop:
            raise RecordingRefused("not_allowed", "this queue records every call; pause it instead")
        self.segment_ended(call_id)

    def segment_ended(self, call_id: str) -> None:
        """The agent's part of the call is over (hang-up, transfer): close and register."""
        current = self._active.pop(call_id, None)
        if current is None:
            return
        self._taps.remove_tap(call_id, current.recorder.tap)
        self._spawn(self._finish(current))

    @property
    def store(self) -> RecordingStore:
        """The store the recorders write through (the QA console reads the same one)."""
        return self._store

    @property
    def uploads_in_progress(self) -> int:
        """Recordings being sent to (or waiting to retry) the S3 store."""
        return len(self._uploads)

    def resume_uploads(self) -> None:
        """At start-up: send what an earlier run left in the spool (S3 store only)."""
        if self._store.objects is not None:
            self._spawn(self._resume_uploads())

    async def drain(self) -> None:
        """At shutdown: every recording still running is closed and registered; uploads
        get a short grace, then stay in the spool for the next start."""
        for call_id in list(self._active):
            self.segment_ended(call_id)
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        self._worker.close()
        if self._own_executor is not None:
            self._own_executor.shutdown(wait=False)  # idle: every recording is closed
        if self._uploads:
            await asyncio.wait(list(self._uploads.values()), timeout=UPLOAD_GRACE_S)
            for task in list(self._uploads.values()):
                task.cancel()
            await asyncio.gather(*list(self._uploads.values()), return_exceptions=True)
        if self._store.objects is not None:
            self._store.objects.close()

    # --- internals -------------------------------------------------------------------

    def _require(self, call_id: str) -> ActiveRecording:
        current = self._active.get(call_id)
        if current is None:
            raise RecordingRefused("not_recording", "this call is not being recorded")
        return current

    def _start(self, call_id: str, *, queue: str, agent_id: str | None, interaction_id: str | None, by: str) -> str | None:
        recording_id = new_recording_id()
        path = self._store.storage.new_path(recording_id, self._wall_clock(), file_format=self._format)
        recorder = CallRecorder(path, worker=self._worker, wall_clock=self._wall_clock, file_format=self._format)
        if not self._taps.add_tap(call_id, recorder.tap):
            return None  # not a call of this hub process
        current = ActiveRecording(
            recording_id=recording_id, call_id=call_id, queue=queue, agent_id=agent_id,
            interaction_id=interaction_id, policy=self.policy_for(queue), recorder=recorder,
        )
        self._active[call_id] = current
        self._spawn(self._begin(current, by))
        return recording_id

    async def _begin(self, current: ActiveRecording, by: str) -> None:
        try:
            await current.recorder.start()
        except RecordingError as err:
            log.error("recording of call %s could not start: %s", current.call_id, err)
            if self._active.get(current.call_id) is current:
                del self._active[current.call_id]
            self._taps.remove_tap(current.call_id, current.recorder.tap)
            return
        log.info("recording %s of call %s started (%s)", current.recording_id, current.call_id, by)
        self._publish(ev.RecordingStarted(
            occurred_at=self._wall_clock(), call_id=current.call_id, recording_id=current.recording_id,
            queue=current.queue, agent_id=current.agent_id, started_by=by,
        ))

    async def _finish(self, current: ActiveRecording) -> None:
        try:
            result = await current.recorder.stop()
        except RecordingError as err:
            log.error("recording %s of call %s is lost: %s", current.recording_id, current.call_id, err)
            return
        for attempt, delay in enumerate((*STORE_BACKOFF_S, None), start=1):
            try:
                info = await self._store.add(
                    current.recording_id, result, call_id=current.call_id, policy=current.policy,
                    queue=current.queue, agent_id=current.agent_id, interaction_id=current.interaction_id,
                )
                break
            except Exception as exc:  # noqa: BLE001 -- the database: retried, the file is safe on disk meanwhile
                if delay is None:
                    log.error("recording %s (%s) NOT registered after %d attempts: %s",
                              current.recording_id, result.path, attempt, exc)
                    return
                log.warning("registering recording %s failed (attempt %d): %s", current.recording_id, attempt, exc)
                await asyncio.sleep(delay)
        self._publish(ev.RecordingStored(
            occurred_at=self._wall_clock(), call_id=current.call_id, recording_id=info.id,
            interaction_id=current.interaction_id, duration_ms=round(result.duration_s * 1000),
            sha256=result.sha256, agent_id=current.agent_id,
        ))
        if info.upload_pending:
            self._upload_soon(info.id)

    async def _resume_uploads(self) -> None:
        objects = self._store.objects
        assert objects is not None
        try:
            await asyncio.get_running_loop().run_in_executor(objects.executor, objects.check_bucket)
        except Exception as exc:  # noqa: BLE001 -- reported; the uploads retry on their own
            log.error("recordings' S3 store: %s; recordings stay in the spool until it works", exc)
        try:
            pending = await self._store.pending_uploads()
        except Exception:  # the database: the next start tries again
            log.exception("could not list the recordings waiting for upload")
            return
        if pending:
            log.info("%d recording(s) wait in the spool or an earlier upload: sending them", len(pending))
        for info in pending:
            self._upload_soon(info.id, first_pass=True)

    def _upload_soon(self, recording_id: str, *, first_pass: bool = False) -> None:
        if recording_id in self._uploads:
            return
        task = asyncio.get_running_loop().create_task(self._upload(recording_id, first_pass=first_pass))
        self._uploads[recording_id] = task
        task.add_done_callback(lambda _: self._uploads.pop(recording_id, None))

    async def _upload(self, recording_id: str, *, first_pass: bool) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                outcome = await self._store.upload(recording_id)
            except asyncio.CancelledError:
                raise
            except RecordingNotFound:
                log.error("recording %s has no row any more: nothing to upload", recording_id)
                return
            except Exception as exc:  # noqa: BLE001 -- the bucket or the network: the file is safe in the spool
                delay = self._upload_backoff[min(attempt, len(self._upload_backoff)) - 1]
                log.warning(
                    "upload of recording %s failed (attempt %d, next in %.0f s); it stays in the spool: %s",
                    recording_id, attempt, delay, exc,
                )
                await asyncio.sleep(delay)
                continue
            if outcome is UploadOutcome.NOT_HERE and not first_pass:
                log.error("recording %s is neither in this hub's spool nor in the bucket", recording_id)
            return

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


__all__ = ["ActiveRecording", "RecordingRefused", "RecordingService", "TapPoint"]
