"""Admin routes of the CRM outbox: what waits, what died, and sending dead letters again.

Thin: each route checks the admin permission, reads its input, calls `OutboxStore`
and shapes the answer. Replays are logged with who asked (the audit trail of the CRM
sync). Must never change a message other than by `OutboxStore.replay*` (a replayed
message keeps its idempotency key, so the CRM cannot apply it twice).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone

from aiohttp import web

from crm_sync.outbox import OutboxStore
from crm_sync.sync_schema import OUTBOX_STATES
from cti.web.auth import Permission
from cti.web.errors import ApiError
from cti.web.guard import require

log = logging.getLogger("cti.audit")

OUTBOX = web.AppKey("crm_outbox", OutboxStore)
WAKE: web.AppKey[Callable[[], None]] = web.AppKey("crm_outbox_wake")
MAX_LIMIT = 1000


def add_outbox_routes(app: web.Application, outbox: OutboxStore, *, wake: Callable[[], None] = lambda: None) -> None:
    app[OUTBOX] = outbox
    app[WAKE] = wake
    app.router.add_get("/api/crm/outbox", list_messages)
    app.router.add_get("/api/crm/outbox/{id}", get_message)
    app.router.add_post("/api/crm/outbox/{id}/replay", replay_message)
    app.router.add_post("/api/crm/outbox/replay-dead", replay_all_dead)


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(422, "bad_field", f"limit must be a whole number from 1 to {MAX_LIMIT}", field="limit")
    return int(raw)


def _message_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise ApiError(422, "bad_field", "the message id is a whole number", field="id")
    return int(raw)


async def list_messages(request: web.Request) -> web.Response:
    """GET /api/crm/outbox?state=dead&limit=100: counts per state and the messages of one state."""
    await require(request, Permission.CRM_OUTBOX_ADMIN)
    state = request.query.get("state", "dead")
    if state not in OUTBOX_STATES:
        raise ApiError(422, "bad_field", f"state must be one of {', '.join(OUTBOX_STATES)}", field="state")
    outbox = request.app[OUTBOX]
    messages = await outbox.list_in_state(state, limit=_limit(request))
    return web.json_response({
        "counts": await outbox.counts(),
        "state": state,
        "messages": [m.to_dict() for m in messages],
    })


async def get_message(request: web.Request) -> web.Response:
    await require(request, Permission.CRM_OUTBOX_ADMIN)
    entry = await request.app[OUTBOX].get(_message_id(request))
    if entry is None:
        raise ApiError(404, "unknown_message", "no outbox message with this id", field="id")
    return web.json_response(entry.to_dict())


async def replay_message(request: web.Request) -> web.Response:
    """POST /api/crm/outbox/{id}/replay: a dead letter goes back to the delivery queue."""
    session = await require(request, Permission.CRM_OUTBOX_ADMIN)
    message_id = _message_id(request)
    outbox = request.app[OUTBOX]
    if not await outbox.replay(message_id, now=datetime.now(timezone.utc)):
        entry = await outbox.get(message_id)
        if entry is None:
            raise ApiError(404, "unknown_message", "no outbox message with this id", field="id")
        raise ApiError(409, "not_dead", f"message {message_id} is {entry.state}, not dead: nothing to replay")
    log.info("CRM outbox message %d replayed by %s", message_id, session.username)
    request.app[WAKE]()
    return web.json_response({"replayed": 1, "id": message_id})


async def replay_all_dead(request: web.Request) -> web.Response:
    session = await require(request, Permission.CRM_OUTBOX_ADMIN)
    count = await request.app[OUTBOX].replay_all(now=datetime.now(timezone.utc))
    log.info("%d dead CRM outbox messages replayed by %s", count, session.username)
    if count:
        request.app[WAKE]()
    return web.json_response({"replayed": count})


__all__ = ["add_outbox_routes"]
