"""Retention of call recordings over HTTP: legal holds, extensions, and the lifecycle log.

Owns `POST /api/recordings/{id}/legal-hold` (set, with the matter's reference),
`POST /api/recordings/{id}/legal-hold/release`, `POST /api/recordings/{id}/retention`
(keep longer: never shorter, at most seven years after the call, MiFID II's ceiling;
beyond that only a legal hold keeps a call) and `GET /api/recordings/events` (what
happened to recordings after they were written: holds, extensions, purges; the purge
log). Every change is also a line on the `cti.audit` logger.
Must never: decide retention policy (recordings.policy does) or delete anything (the
purge job and `ctihub recordings purge` do, through the store).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from cti.agents.sessions import Session
from cti.web.auth import Permission
from cti.web.errors import ApiError
from cti.web.guard import requires
from cti.web.qa import RECORDING_ID, SERVICES
from recordings.policy import PolicyError
from recordings.schema import EVENT_ACTIONS
from recordings.store import RecordingNotFound, RecordingPurged, RecordingStore

audit = logging.getLogger("cti.audit")

MAX_REASON = 500
MAX_EVENTS = 1000


def add_retention_routes(app: web.Application) -> None:
    """Uses the QA routes' services (the hub's recording store). Added before the QA
    routes, so that `/api/recordings/events` is not taken for a recording id."""
    app.router.add_get("/api/recordings/events", lifecycle_events)
    app.router.add_post("/api/recordings/{recording_id}/legal-hold", set_legal_hold)
    app.router.add_post("/api/recordings/{recording_id}/legal-hold/release", release_legal_hold)
    app.router.add_post("/api/recordings/{recording_id}/retention", extend_retention)


def _store(request: web.Request) -> RecordingStore:
    store = request.app[SERVICES].recordings
    if store is None:
        raise ApiError(503, "recordings_unavailable", "this hub has no recording store")
    return store


def _recording(request: web.Request) -> str:
    recording_id = request.match_info["recording_id"]
    if not RECORDING_ID.fullmatch(recording_id):
        raise ApiError(422, "bad_field", "a recording id is 1 to 40 letters, digits or _.:-", field="recording_id")
    return recording_id


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    return body


def _reason(body: dict[str, Any], *, required: bool) -> str:
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise ApiError(422, "bad_field", f"reason is a text of at most {MAX_REASON} characters", field="reason")
    if required and not reason.strip():
        raise ApiError(422, "missing_field", "reason is required: the case or matter the hold is for", field="reason")
    return reason.strip()


def _gone(recording_id: str, err: LookupError) -> ApiError:
    if isinstance(err, RecordingPurged):
        return ApiError(410, "recording_purged", f"recording {recording_id} was purged", field="recording_id")
    return ApiError(404, "unknown_recording", f"there is no recording {recording_id!r}", field="recording_id")


async def _state(store: RecordingStore, recording_id: str) -> dict[str, Any]:
    info = await store.get(recording_id)
    return {
        "recording_id": recording_id,
        "legal_hold": info.legal_hold,
        "legal_hold_reason": info.legal_hold_reason,
        "retention_until": info.retention_until.isoformat(),
    }


@requires(Permission.RECORDINGS_RETAIN)
async def set_legal_hold(request: web.Request, session: Session) -> web.Response:
    recording_id = _recording(request)
    reason = _reason(await _body(request), required=True)
    store = _store(request)
    try:
        await store.set_legal_hold(recording_id, actor=session.username, reason=reason, at=datetime.now(UTC))
        state = await _state(store, recording_id)
    except (RecordingNotFound, RecordingPurged) as err:
        raise _gone(recording_id, err) from None
    audit.info("legal hold set on recording %s by %s: %s", recording_id, session.username, reason)
    return web.json_response(state)


@requires(Permission.RECORDINGS_RETAIN)
async def release_legal_hold(request: web.Request, session: Session) -> web.Response:
    recording_id = _recording(request)
    reason = _reason(await _body(request), required=False)
    store = _store(request)
    try:
        await store.clear_legal_hold(recording_id, actor=session.username, reason=reason, at=datetime.now(UTC))
        state = await _state(store, recording_id)
    except (RecordingNotFound, RecordingPurged) as err:
        raise _gone(recording_id, err) from None
    audit.info("legal hold released on recording %s by %s: %s", recording_id, session.username, reason or "-")
    return web.json_response(state)


@requires(Permission.RECORDINGS_RETAIN)
async def extend_retention(request: web.Request, session: Session) -> web.Response:
    recording_id = _recording(request)
    raw = (await _body(request)).get("until")
    if not isinstance(raw, str):
        raise ApiError(422, "missing_field", "until is required: a date (YYYY-MM-DD) or ISO 8601 time", field="until")
    try:
        until = datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(422, "bad_field", "until must be a date (YYYY-MM-DD) or ISO 8601 time", field="until") from None
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    store = _store(request)
    try:
        await store.extend_retention(recording_id, until, actor=session.username, at=datetime.now(UTC))
        state = await _state(store, recording_id)
    except (RecordingNotFound, RecordingPurged) as err:
        raise _gone(recording_id, err) from None
    except PolicyError as err:
        raise ApiError(422, "bad_field", str(err), field="until") from None
    audit.info("retention of recording %s extended to %s by %s", recording_id, state["retention_until"], session.username)
    return web.json_response(state)


@requires(Permission.RECORDINGS_AUDIT)
async def lifecycle_events(request: web.Request, session: Session) -> web.Response:
    """`?recording_id=&action=&limit=`: oldest first, as the store keeps them."""
    query = request.query
    recording_id = query.get("recording_id")
    if recording_id is not None and not RECORDING_ID.fullmatch(recording_id):
        raise ApiError(422, "bad_field", "a recording id is 1 to 40 letters, digits or _.:-", field="recording_id")
    action = query.get("action")
    if action is not None and action not in EVENT_ACTIONS:
        raise ApiError(422, "bad_field", f"action must be one of {', '.join(EVENT_ACTIONS)}", field="action")
    raw_limit = query.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_EVENTS:
        raise ApiError(422, "bad_field", f"limit must be a whole number from 1 to {MAX_EVENTS}", field="limit")
    events = await _store(request).events(recording_id=recording_id, action=action, limit=int(raw_limit))
    return web.json_response({"events": [
        {"recording_id": e.recording_id, "action": e.action, "actor": e.actor, "at": e.at.isoformat(), "detail": e.detail}
        for e in events
    ]})
