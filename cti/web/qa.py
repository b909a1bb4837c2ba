"""The QA console's HTTP side: the page, recording search and playback, waveform peaks,
evaluation forms, evaluations, pinned comments, the CSV export and the access audit.

Thin: every route checks its permission (cti.web.auth, through `require`), reads and
checks its input (422 naming the parameter), calls `QaStore` or `RecordingStore` and
shapes the answer. Every playback and download goes through `RecordingStore.open_for`,
which writes the audit row before the file is handed out; an audio request the browser
sends for a seek (a Range request) is an access of its own and is recorded as one.
Must never: serve a recording's bytes any other way, let an agent read an evaluation
of someone else, or decide a score (recordings.scoring does).
The contract is in docs/qa.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cti.agents.sessions import Session
from cti.center import ContactCenter
from cti.web.auth import Permission, may
from cti.web.desktop import PAGE_HEADERS
from cti.web.errors import ApiError
from cti.web.guard import require, requires
from recordings.peaks import MAX_BUCKETS, NotWav, wav_peaks
from recordings.qa_store import (
    QaConflict,
    QaNotFound,
    QaStore,
    RecordingSearch,
    csv_header,
    csv_line,
)
from recordings.scoring import FormError, parse_form
from recordings.store import (
    NoObjectStore,
    RecordingNotFound,
    RecordingPurged,
    RecordingStore,
)

__all__ = ["QaServices", "add_qa_routes"]

audit = logging.getLogger("cti.audit")

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS = {"qa.js": "text/javascript", "qa.css": "text/css"}  # nothing else in the folder is reachable here
PRIVATE = {"Cache-Control": "no-store"}  # recordings and scores are personal data: no copy in any cache

RECORDING_ID = re.compile(r"[A-Za-z0-9_.:-]{1,40}")
USERNAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
MAX_TEXT_FILTER = 100
MAX_OFFSET = 100_000
DEFAULT_LIMIT, MAX_LIMIT = 50, 200
DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT = 100, 1000
DEFAULT_PEAKS = 800
MAX_DURATION_S = 24 * 3600.0
SEARCH_PARAMS = frozenset({
    "from", "to", "agent", "queue", "customer", "disposition",
    "min_duration", "max_duration", "min_score", "max_score",
})


@dataclass(slots=True)
class QaServices:
    """What the routes use; None when the hub has no recording store (routes answer 503)."""

    qa: QaStore | None
    recordings: RecordingStore | None


SERVICES = web.AppKey("qa_services", QaServices)


def add_qa_routes(
    app: web.Application,
    center: ContactCenter,
    *,
    recordings: RecordingStore | None = None,
    sessions: async_sessionmaker[AsyncSession] | None = None,
) -> None:
    recordings = recordings or _hub_recording_store(center)
    if sessions is None and recordings is not None:
        # The QA tables live in the recordings' database: the store's sessions serve both.
        sessions = recordings.sessions
    app[SERVICES] = QaServices(qa=QaStore(sessions) if sessions is not None else None, recordings=recordings)
    app.router.add_get("/qa", page)
    app.router.add_get("/qa/static/{name}", asset)
    # Plain paths before /api/recordings/{recording_id}, which would match them too.
    app.router.add_get("/api/recordings", search_recordings)
    app.router.add_get("/api/recordings/export.csv", export_recordings)
    app.router.add_get("/api/recordings/audit", access_audit)
    app.router.add_get("/api/recordings/{recording_id}", read_recording)
    app.router.add_get("/api/recordings/{recording_id}/audio", play_recording)
    app.router.add_get("/api/recordings/{recording_id}/download", download_recording)
    app.router.add_get("/api/recordings/{recording_id}/peaks", recording_peaks)
    app.router.add_get("/api/recordings/{recording_id}/comments", list_comments)
    app.router.add_post("/api/recordings/{recording_id}/comments", add_comment)
    app.router.add_get("/api/qa/forms", list_forms)
    app.router.add_post("/api/qa/forms", create_form)
    app.router.add_get("/api/qa/forms/{form_id}", read_form)
    app.router.add_post("/api/qa/forms/{form_id}/{action:activate|deactivate}", set_form_active)
    app.router.add_get("/api/evaluations", list_evaluations)
    app.router.add_post("/api/evaluations", create_evaluation)
    app.router.add_get("/api/evaluations/{evaluation_id}", read_evaluation)
    app.router.add_put("/api/evaluations/{evaluation_id}", revise_evaluation)


def _hub_recording_store(center: ContactCenter) -> RecordingStore | None:
    """The hub's RecordingStore, which its RecordingService holds. Reached here so that
    the QA routes register with one line and share the store (and its storage) that the
    recorders write through, never a second one built beside it."""
    store = getattr(center.recordings, "store", None)
    return store if isinstance(store, RecordingStore) else None


def _services(request: web.Request) -> tuple[QaStore, RecordingStore]:
    services = request.app[SERVICES]
    if services.qa is None or services.recordings is None:
        raise ApiError(503, "recordings_unavailable", "this hub has no recording store")
    return services.qa, services.recordings


# --- the page: open to all, it holds no data (the login form is on it) ---------------


async def page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "qa.html", headers={**PAGE_HEADERS, "Content-Type": "text/html; charset=utf-8"})


async def asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    kind = ASSETS.get(name)
    if kind is None:
        raise ApiError(404, "not_found", f"there is no static file {name!r}")
    return web.FileResponse(STATIC_DIR / name, headers={**PAGE_HEADERS, "Content-Type": f"{kind}; charset=utf-8"})


# --- reading parameters (each refusal names its parameter) ---------------------------


def _bad(name: str, detail: str, code: str = "bad_field") -> ApiError:
    return ApiError(422, code, detail, field=name)


def _only(request: web.Request, allowed: frozenset[str]) -> None:
    for name in request.query:
        if name not in allowed:
            raise _bad(name, f"unknown parameter {name!r}; this route takes {', '.join(sorted(allowed)) or 'none'}")


def _int(query: Mapping[str, str], name: str, low: int, high: int, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"-?\d{1,12}", raw.strip()):
        raise _bad(name, f"{name} must be a whole number from {low} to {high}")
    value = int(raw)
    if not low <= value <= high:
        raise _bad(name, f"{name} must be from {low} to {high}; got {value}")
    return value


def _number(query: Mapping[str, str], name: str, low: float, high: float) -> float | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise _bad(name, f"{name} must be a number from {low:g} to {high:g}") from None
    if not low <= value <= high:  # NaN fails here too
        raise _bad(name, f"{name} must be from {low:g} to {high:g}; got {raw}")
    return value


def _text(query: Mapping[str, str], name: str) -> str | None:
    raw = query.get(name)
    if raw is None or not raw.strip():
        return None
    if len(raw) > MAX_TEXT_FILTER:
        raise _bad(name, f"{name} is longer than {MAX_TEXT_FILTER} characters")
    return raw.strip()


def _moment(query: Mapping[str, str], name: str, *, end_of_day: bool = False) -> datetime | None:
    """A date (YYYY-MM-DD) or an ISO 8601 date and time; without an offset it is UTC.
    A bare date as an upper bound means the whole of that day."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            day = date.fromisoformat(raw)
            moment = datetime.combine(day + timedelta(days=1 if end_of_day else 0), time(), UTC)
        else:
            moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _bad(name, f"{name} must be a date (2026-11-24) or a date and time (2026-11-24T09:30:00Z)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _search(query: Mapping[str, str]) -> RecordingSearch:
    search = RecordingSearch(
        started_from=_moment(query, "from"),
        started_before=_moment(query, "to", end_of_day=True),
        agent_id=_text(query, "agent"),
        queue=_text(query, "queue"),
        customer=_text(query, "customer"),
        disposition=_text(query, "disposition"),
        min_duration_s=_number(query, "min_duration", 0, MAX_DURATION_S),
        max_duration_s=_number(query, "max_duration", 0, MAX_DURATION_S),
        min_score=_number(query, "min_score", 0, 100),
        max_score=_number(query, "max_score", 0, 100),
    )
    if search.started_from and search.started_before and search.started_before <= search.started_from:
        raise _bad("to", "to must be after from")
    if search.min_duration_s is not None and search.max_duration_s is not None and search.max_duration_s < search.min_duration_s:
        raise _bad("max_duration", "max_duration must not be below min_duration")
    if search.min_score is not None and search.max_score is not None and search.max_score < search.min_score:
        raise _bad("max_score", "max_score must not be below min_score")
    return search


def _recording_id(request: web.Request) -> str:
    recording_id = request.match_info["recording_id"]
    if not RECORDING_ID.fullmatch(recording_id):
        raise _bad("recording_id", "a recording id is 1 to 40 letters, digits or _.:-")
    return recording_id


def _path_int(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit() or len(raw) > 12:
        raise _bad(name, f"{name} is a whole number")
    return int(raw)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    return body


def _form_error(err: FormError) -> ApiError:
    return ApiError(422, err.code, err.detail, field=err.field)


def _not_found(err: QaNotFound) -> ApiError:
    return ApiError(404, f"unknown_{err.what}", str(err), field=f"{err.what}_id")


def _now() -> datetime:
    return datetime.now(UTC)


# --- search, metadata and the export -------------------------------------------------


@requires(Permission.RECORDINGS_PLAY)
async def search_recordings(request: web.Request, session: Session) -> web.Response:
    """GET /api/recordings?from&to&agent&queue&customer&disposition&min_duration&
    max_duration&min_score&max_score&offset&limit: newest first."""
    qa, _ = _services(request)
    _only(request, SEARCH_PARAMS | {"offset", "limit"})
    search = _search(request.query)
    offset = _int(request.query, "offset", 0, MAX_OFFSET, 0)
    limit = _int(request.query, "limit", 1, MAX_LIMIT, DEFAULT_LIMIT)
    found = await qa.search(search, offset=offset, limit=limit)
    return web.json_response(
        {
            "recordings": [row.to_dict() for row in found.rows],
            "offset": found.offset,
            "limit": found.limit,
            "has_more": found.has_more,
        },
        headers=PRIVATE,
    )


@requires(Permission.RECORDINGS_PLAY)
async def export_recordings(request: web.Request, session: Session) -> web.StreamResponse:
    """GET /api/recordings/export.csv?<the search's filters>: every match, streamed."""
    qa, _ = _services(request)
    _only(request, SEARCH_PARAMS)
    search = _search(request.query)
    stamp = _now().strftime("%Y%m%dT%H%M%SZ")
    response = web.StreamResponse(headers={
        **PRIVATE,
        "Content-Type": "text/csv; charset=utf-8; header=present",
        "Content-Disposition": f'attachment; filename="recordings-{stamp}.csv"',
    })
    await response.prepare(request)
    await response.write(csv_header().encode())
    rows = 0
    batch: list[str] = []
    async for row in qa.export(search):
        batch.append(csv_line(row))
        rows += 1
        if len(batch) >= 200:
            await response.write("".join(batch).encode())
            batch.clear()
    if batch:
        await response.write("".join(batch).encode())
    await response.write_eof()
    audit.info("recordings exported as CSV by %s (%s) at %s: %d row(s), filters %s",
               session.username, session.role, _now().isoformat(timespec="seconds"), rows, dict(request.query))
    return response


@requires(Permission.RECORDINGS_PLAY)
async def read_recording(request: web.Request, session: Session) -> web.Response:
    """GET /api/recordings/{id}: the recording's metadata (paused stretches, context),
    its comments and its evaluations."""
    qa, _ = _services(request)
    recording_id = _recording_id(request)
    try:
        row = await qa.recording(recording_id)
    except QaNotFound as err:
        raise _not_found(err) from None
    comments = await qa.comments(recording_id)
    evaluations = await qa.evaluations(recording_id=recording_id, limit=MAX_LIMIT)
    base = f"/api/recordings/{recording_id}"
    return web.json_response(
        {
            **row.to_dict(),
            "audio_url": f"{base}/audio",
            "download_url": f"{base}/download",
            "peaks_url": f"{base}/peaks",
            "comments": [c.to_dict() for c in comments],
            "evaluations": [e.to_dict() for e in evaluations],
        },
        headers=PRIVATE,
    )


# --- playback, download, peaks -------------------------------------------------------


AUDIO_TYPES = {".wav": "audio/wav", ".flac": "audio/flac"}


def _content_type(path: Path) -> str:
    known = AUDIO_TYPES.get(path.suffix.lower())
    if known is not None:
        return known
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


async def _hand_out(request: web.Request, session: Session, action: str) -> web.StreamResponse:
    _, recordings = _services(request)
    recording_id = _recording_id(request)
    try:
        target = await recordings.open_for(
            recording_id, actor=session.username, action=action, at=_now(), client=request.remote
        )
    except RecordingNotFound:
        raise ApiError(404, "unknown_recording", f"there is no recording {recording_id!r}", field="recording_id") from None
    except RecordingPurged:
        raise ApiError(410, "recording_purged", f"recording {recording_id} was purged under its retention rules") from None
    except NoObjectStore:
        raise ApiError(503, "object_store_unavailable", f"recording {recording_id} is in the S3 store, which this hub is not configured for") from None
    audit.info("recording %s %s by %s (%s) from %s%s", recording_id, "played" if action == "play" else "downloaded",
               session.username, session.role, request.remote,
               f" ({request.headers['Range']})" if "Range" in request.headers else "")
    if isinstance(target, str):
        # Object storage: the presigned URL serves the bytes (and the Range requests).
        raise web.HTTPFound(target, headers=PRIVATE)
    path = target
    if not await asyncio.to_thread(path.is_file):
        raise ApiError(404, "file_missing", f"the file of recording {recording_id} is missing; run `ctihub recordings verify`")
    headers = {**PRIVATE, "Content-Type": _content_type(path), "Accept-Ranges": "bytes"}
    if action == "download":
        headers["Content-Disposition"] = f'attachment; filename="{recording_id}{path.suffix}"'
    # FileResponse answers Range requests with 206 and exactly the bytes asked for.
    return web.FileResponse(path, headers=headers)


@requires(Permission.RECORDINGS_PLAY)
async def play_recording(request: web.Request, session: Session) -> web.StreamResponse:
    return await _hand_out(request, session, "play")


@requires(Permission.RECORDINGS_PLAY)
async def download_recording(request: web.Request, session: Session) -> web.StreamResponse:
    return await _hand_out(request, session, "download")


@requires(Permission.RECORDINGS_PLAY)
async def recording_peaks(request: web.Request, session: Session) -> web.Response:
    """GET /api/recordings/{id}/peaks?n=800: the waveform, per channel. Not an access of
    the audio (a waveform carries no words), so not in the audit."""
    _, recordings = _services(request)
    recording_id = _recording_id(request)
    _only(request, frozenset({"n"}))
    n = _int(request.query, "n", 1, MAX_BUCKETS, DEFAULT_PEAKS)
    try:
        info = await recordings.get(recording_id)
    except RecordingNotFound:
        raise ApiError(404, "unknown_recording", f"there is no recording {recording_id!r}", field="recording_id") from None
    if info.deleted_at is not None:
        raise ApiError(410, "recording_purged", f"recording {recording_id} was purged under its retention rules")
    path = recordings.storage.resolve(info.path)
    if not await asyncio.to_thread(path.is_file):
        if getattr(info, "storage", "file") != "file":
            raise ApiError(415, "waveform_unavailable", "this recording is in the S3 store: the waveform is drawn "
                           "only from files on the hub; the recording itself plays")
        raise ApiError(404, "file_missing", f"the file of recording {recording_id} is missing")
    try:
        peaks = await asyncio.to_thread(wav_peaks, path, n)
    except NotWav as err:
        raise ApiError(415, "not_wav", f"no waveform for this recording: {err}") from None
    return web.json_response({"recording_id": recording_id, **peaks.to_dict()}, headers=PRIVATE)


# --- comments ------------------------------------------------------------------------


@requires(Permission.RECORDINGS_PLAY)
async def list_comments(request: web.Request, session: Session) -> web.Response:
    qa, _ = _services(request)
    recording_id = _recording_id(request)
    return web.json_response({"comments": [c.to_dict() for c in await qa.comments(recording_id)]}, headers=PRIVATE)


@requires(Permission.RECORDINGS_EVALUATE)
async def add_comment(request: web.Request, session: Session) -> web.Response:
    """POST /api/recordings/{id}/comments {"offset_ms": 61500, "text": "..."}."""
    qa, _ = _services(request)
    recording_id = _recording_id(request)
    body = await _json_object(request)
    offset_ms, text = body.get("offset_ms"), body.get("text")
    if offset_ms is None:
        raise _bad("offset_ms", "offset_ms is required: milliseconds from the start", "missing_field")
    if not isinstance(offset_ms, int) or isinstance(offset_ms, bool):
        raise _bad("offset_ms", "offset_ms is a whole number of milliseconds")
    if text is None:
        raise _bad("text", "text is required", "missing_field")
    if not isinstance(text, str):
        raise _bad("text", "text must be a string")
    try:
        comment = await qa.add_comment(recording_id, offset_ms=offset_ms, text=text, author=session.username, at=_now())
    except FormError as err:
        raise _form_error(err) from None
    except QaNotFound as err:
        raise _not_found(err) from None
    return web.json_response(comment.to_dict(), status=201, headers=PRIVATE)


# --- forms ---------------------------------------------------------------------------


@requires(Permission.RECORDINGS_PLAY)
async def list_forms(request: web.Request, session: Session) -> web.Response:
    """GET /api/qa/forms[?all=true]: the active forms (every version with all=true)."""
    qa, _ = _services(request)
    _only(request, frozenset({"all"}))
    raw = request.query.get("all", "false")
    if raw not in ("true", "false"):
        raise _bad("all", "all is true or false")
    forms = await qa.forms(include_inactive=raw == "true")
    return web.json_response({"forms": [f.to_dict() for f in forms]}, headers=PRIVATE)


@requires(Permission.RECORDINGS_PLAY)
async def read_form(request: web.Request, session: Session) -> web.Response:
    qa, _ = _services(request)
    try:
        form = await qa.form(_path_int(request, "form_id"))
    except QaNotFound as err:
        raise _not_found(err) from None
    return web.json_response(form.to_dict(), headers=PRIVATE)


@requires(Permission.QA_FORMS_MANAGE)
async def create_form(request: web.Request, session: Session) -> web.Response:
    """POST /api/qa/forms {"name", "sections": [...]}: a new form, or the next version of
    the form of that name (the older versions retire)."""
    qa, _ = _services(request)
    body = await _json_object(request)
    try:
        form = parse_form(body)
    except FormError as err:
        raise _form_error(err) from None
    try:
        stored = await qa.create_form(form, actor=session.username, at=_now())
    except QaConflict as err:
        raise ApiError(409, err.code, err.detail) from None
    audit.info("QA form %r version %d saved by %s", stored.name, stored.version, session.username)
    return web.json_response(stored.to_dict(), status=201, headers=PRIVATE)


@requires(Permission.QA_FORMS_MANAGE)
async def set_form_active(request: web.Request, session: Session) -> web.Response:
    qa, _ = _services(request)
    form_id = _path_int(request, "form_id")
    active = request.match_info["action"] == "activate"
    try:
        form = await qa.set_form_active(form_id, active)
    except QaNotFound as err:
        raise _not_found(err) from None
    audit.info("QA form %r version %d %s by %s", form.name, form.version, "activated" if active else "retired", session.username)
    return web.json_response(form.to_dict(), headers=PRIVATE)


# --- evaluations ---------------------------------------------------------------------


def _evaluation_body(body: Mapping[str, Any]) -> tuple[object, str | None]:
    if "answers" not in body:
        raise _bad("answers", "answers are required: question id -> answer", "missing_field")
    summary = body.get("summary")
    if summary is not None and not isinstance(summary, str):
        raise _bad("summary", "summary must be a string")
    return body["answers"], summary


@requires(Permission.RECORDINGS_EVALUATE)
async def create_evaluation(request: web.Request, session: Session) -> web.Response:
    """POST /api/evaluations {"recording_id", "form_id", "answers", "summary"}."""
    qa, _ = _services(request)
    body = await _json_object(request)
    recording_id, form_id = body.get("recording_id"), body.get("form_id")
    if recording_id is None:
        raise _bad("recording_id", "recording_id is required", "missing_field")
    if not isinstance(recording_id, str) or not RECORDING_ID.fullmatch(recording_id):
        raise _bad("recording_id", "a recording id is 1 to 40 letters, digits or _.:-")
    if form_id is None:
        raise _bad("form_id", "form_id is required", "missing_field")
    if not isinstance(form_id, int) or isinstance(form_id, bool):
        raise _bad("form_id", "form_id is a whole number")
    answers, summary = _evaluation_body(body)
    try:
        stored = await qa.evaluate(
            recording_id=recording_id, form_id=form_id, answers=answers, summary=summary,
            evaluator=session.username, at=_now(),
        )
    except FormError as err:
        raise _form_error(err) from None
    except QaNotFound as err:
        raise _not_found(err) from None
    except QaConflict as err:
        raise ApiError(409, err.code, err.detail, field="form_id") from None
    audit.info("recording %s evaluated by %s on form %r v%d: %s", recording_id, session.username,
               stored.form_name, stored.form_version, stored.score)
    return web.json_response(stored.to_dict(), status=201, headers=PRIVATE)


@requires(Permission.RECORDINGS_EVALUATE)
async def revise_evaluation(request: web.Request, session: Session) -> web.Response:
    """PUT /api/evaluations/{id} {"answers", "summary"}: only by its evaluator."""
    qa, _ = _services(request)
    evaluation_id = _path_int(request, "evaluation_id")
    answers, summary = _evaluation_body(await _json_object(request))
    try:
        stored = await qa.revise(evaluation_id, answers=answers, summary=summary, actor=session.username, at=_now())
    except FormError as err:
        raise _form_error(err) from None
    except QaNotFound as err:
        raise _not_found(err) from None
    except QaConflict as err:
        raise ApiError(403 if err.code == "not_your_evaluation" else 409, err.code, err.detail) from None
    return web.json_response(stored.to_dict(), headers=PRIVATE)


async def list_evaluations(request: web.Request) -> web.Response:
    """GET /api/evaluations?agent=me: an agent's own evaluations (evaluations.read_own);
    with any other filter (agent=<name>, recording=<id>) recordings.play is needed."""
    agent = request.query.get("agent")
    own = agent == "me"
    session = await require(request, Permission.EVALUATIONS_READ_OWN if own else Permission.RECORDINGS_PLAY)
    qa, _ = _services(request)
    _only(request, frozenset({"agent", "recording", "evaluator", "offset", "limit"}))
    if own and len(request.query.keys() - {"agent", "offset", "limit"}) > 0:
        extra = min(request.query.keys() - {"agent", "offset", "limit"})
        raise _bad(extra, "agent=me lists your own evaluations and takes only offset and limit")
    if agent is not None and not own and not USERNAME.fullmatch(agent):
        raise _bad("agent", "agent is me or a username")
    recording = request.query.get("recording")
    if recording is not None and not RECORDING_ID.fullmatch(recording):
        raise _bad("recording", "a recording id is 1 to 40 letters, digits or _.:-")
    evaluator = request.query.get("evaluator")
    if evaluator is not None and not USERNAME.fullmatch(evaluator):
        raise _bad("evaluator", "evaluator is a username")
    offset = _int(request.query, "offset", 0, MAX_OFFSET, 0)
    limit = _int(request.query, "limit", 1, MAX_LIMIT, DEFAULT_LIMIT)
    found = await qa.evaluations(
        agent_id=session.username if own else agent, recording_id=recording, evaluator=evaluator,
        offset=offset, limit=limit,
    )
    return web.json_response({"evaluations": [e.to_dict() for e in found], "offset": offset, "limit": limit},
                             headers=PRIVATE)


async def read_evaluation(request: web.Request) -> web.Response:
    """GET /api/evaluations/{id}: with its form. An agent gets only their own (404 for
    anyone else's: an agent learns nothing about other agents' evaluations)."""
    session = await require(request, None)
    qa, _ = _services(request)
    reviewer = may(session.role, Permission.RECORDINGS_PLAY)
    if not reviewer and not may(session.role, Permission.EVALUATIONS_READ_OWN):
        await require(request, Permission.RECORDINGS_PLAY)  # the standard 403 naming the permission
    evaluation_id = _path_int(request, "evaluation_id")
    try:
        found = await qa.evaluation(evaluation_id)
    except QaNotFound as err:
        raise _not_found(err) from None
    if not reviewer and found.agent_id != session.username:
        raise ApiError(404, "unknown_evaluation", f"there is no evaluation {evaluation_id}", field="evaluation_id")
    return web.json_response(found.to_dict(), headers=PRIVATE)


# --- the access audit (admins) -------------------------------------------------------


@requires(Permission.RECORDINGS_AUDIT)
async def access_audit(request: web.Request, session: Session) -> web.Response:
    """GET /api/recordings/audit?recording&actor&since&limit: plays and downloads, newest first."""
    _, recordings = _services(request)
    _only(request, frozenset({"recording", "actor", "since", "limit"}))
    recording = request.query.get("recording") or None
    if recording is not None and not RECORDING_ID.fullmatch(recording):
        raise _bad("recording", "a recording id is 1 to 40 letters, digits or _.:-")
    actor = request.query.get("actor") or None
    if actor is not None and not USERNAME.fullmatch(actor):
        raise _bad("actor", "actor is a username")
    since = _moment(request.query, "since")
    limit = _int(request.query, "limit", 1, MAX_AUDIT_LIMIT, DEFAULT_AUDIT_LIMIT)
    entries = await recordings.access_log(recording_id=recording, actor=actor, since=since, limit=limit)
    return web.json_response(
        {
            "entries": [
                {"recording_id": e.recording_id, "actor": e.actor, "action": e.action, "at": e.at.isoformat(),
                 "client": e.client}
                for e in entries
            ]
        },
        headers=PRIVATE,
    )
