"""Inbound CRM webhooks: the aiohttp sub-application the external CRM posts events to.

Owns the HTTP edge of inbound sync: reading the body, refusing unsigned, stale and
replayed requests (401, logged), refusing malformed events (422 naming the field),
and handing valid events to `CrmStore.apply_inbound`. Thin: signature rules live in
`signing`, the event format in `inbound`, the writes in the store. Must never parse
or act on a body before its signature is checked, and never log a body or a
signature (personal data; a valid signature is a credential within its window).

Mount it with `app.add_subapp("/webhooks/", make_webhook_app(...))`; the CRM then
posts to /webhooks/crm.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from crm_sync import signing
from crm_sync.inbound import CustomerChanged, InvalidField, parse_event
from crm_sync.seen_keys import DONE, MemorySeenKeys, SeenKeys
from crm_sync.store import CrmStore

log = logging.getLogger(__name__)

UNKNOWN_CUSTOMER_POLICIES = ("create", "reject")
# Resends of an event (the CRM lost our answer) are acknowledged, not applied twice.
EVENT_ID_WINDOW_S = 24 * 3600.0
# How old a signed request may be; also how long its signature is remembered (twice).
WEBHOOK_TOLERANCE_S = 300.0


def _error(status: int, code: str, detail: str, *, field: str | None = None) -> web.Response:
    # The same shape as the hub's API errors (cti.web.errors), without importing the web layer.
    body: dict[str, Any] = {"error": code, "detail": detail}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status)


def _unavailable() -> web.Response:
    # Without the replay memory no request can be checked: refuse for now; the CRM retries.
    log.warning("CRM webhook refused: the shared replay memory (Redis) is unavailable")
    response = _error(503, "replay_store_unavailable", "cannot check for replays right now; send it again later")
    response.headers["Retry-After"] = "5"
    return response


async def _release(keys: SeenKeys, key: str) -> None:
    try:
        await keys.forget(key)
    except RedisError:
        log.warning("could not release a webhook replay key (Redis unavailable); it expires on its own")


def make_webhook_app(
    store: CrmStore,
    *,
    secret: bytes | tuple[bytes, ...],
    tolerance_s: float = WEBHOOK_TOLERANCE_S,
    unknown_customer: str = "create",
    clock: Callable[[], float] = time.time,
    seen_signatures: SeenKeys | None = None,
    seen_event_ids: SeenKeys | None = None,
    default_region: str = "GB",
    max_body_bytes: int = 256 * 1024,
) -> web.Application:
    """The webhook sub-application (route: POST /crm).

    `secret` is the shared HMAC key (a tuple during a rotation: any of them is
    accepted). `unknown_customer`: 'create' applies an update for a customer the hub
    does not have as a creation (it must then carry every required field), 'reject'
    answers 404. `clock` gives unix seconds. `seen_signatures` and `seen_event_ids`
    remember requests and events already taken (in the process by default; pass
    `RedisSeenKeys` when several hubs share the webhook address, with windows of at
    least 2 * `tolerance_s` and `EVENT_ID_WINDOW_S`).
    """
    secrets = (secret,) if isinstance(secret, bytes) else tuple(secret)
    if not secrets or any(len(s) < 16 for s in secrets):
        raise ValueError("the webhook secret must be at least 16 bytes")
    if unknown_customer not in UNKNOWN_CUSTOMER_POLICIES:
        raise ValueError(f"unknown_customer must be one of {', '.join(UNKNOWN_CUSTOMER_POLICIES)}")
    # A signature is refused for good once seen: the CRM signs every resend anew.
    signatures = seen_signatures or MemorySeenKeys(window_s=2 * tolerance_s, hold_s=2 * tolerance_s)
    event_ids = seen_event_ids or MemorySeenKeys(window_s=EVENT_ID_WINDOW_S)

    def refuse(request: web.Request, reason: str, detail: str) -> web.Response:
        log.warning("CRM webhook refused (%s) from %s", reason, request.remote)
        return _error(401, reason, detail)

    async def receive(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > max_body_bytes:
            return _error(413, "body_too_large", f"at most {max_body_bytes} bytes")
        body = await request.read()
        if len(body) > max_body_bytes:
            return _error(413, "body_too_large", f"at most {max_body_bytes} bytes")
        now = clock()
        header = request.headers.get(signing.HEADER)
        verdict = signing.verify(header, body, secrets=secrets, now=now, tolerance_s=tolerance_s)
        if verdict is not signing.Verdict.OK:
            return refuse(request, verdict.value, f"{signing.HEADER} check failed: {verdict.value}")
        parsed = signing.parse(header or "")
        assert parsed is not None  # verify() said OK, so the header parsed
        replay_key = "|".join(sorted(parsed.signatures))
        try:
            taken = await signatures.claim(replay_key, now)
        except RedisError:
            return _unavailable()
        if taken is not None:
            return refuse(request, "replayed", "this signed request was already received")
        try:
            decoded = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(422, "invalid_field", "the body must be a JSON object", field="body")
        try:
            event = parse_event(decoded, default_region=default_region)
        except InvalidField as exc:
            return _error(422, "invalid_field", exc.detail, field=exc.field)
        # Claimed before applying, so that two hubs given the same event at once
        # cannot both apply it; released again if it could not be applied.
        try:
            state = await event_ids.claim(event.event_id, now)
        except RedisError:
            await _release(signatures, replay_key)
            return _unavailable()
        if state == DONE:
            return web.json_response({"status": "duplicate", "event_id": event.event_id})
        if state is not None:
            # Another hub (or an earlier request) is applying it right now: not done yet,
            # so not a duplicate to acknowledge; the CRM should send it again shortly.
            return _error(409, "in_progress", "this event is being applied; send it again later")
        try:
            outcome = await store.apply_inbound(
                event, create_unknown=unknown_customer == "create",
                now=datetime.fromtimestamp(now, timezone.utc),
            )
        except InvalidField as exc:
            await _release(event_ids, event.event_id)
            return _error(422, "invalid_field", exc.detail, field=exc.field)
        except Exception:
            # Let the CRM send this very request again: our failure, not a replay.
            await _release(signatures, replay_key)
            await _release(event_ids, event.event_id)
            log.exception("CRM webhook event %s could not be applied", event.event_id)
            return _error(500, "apply_failed", "the event could not be applied; send it again")
        if outcome == "unknown_customer":
            await _release(event_ids, event.event_id)
            field = "customer.id" if isinstance(event, CustomerChanged) else "customer_id"
            return _error(404, "unknown_customer", "no customer with this id in the hub", field=field)
        try:
            await event_ids.confirm(event.event_id, now)
        except RedisError:
            # Applied; only the memory of it is missing: a resend would be applied once
            # more, which the store's upserts make harmless. Not worth failing for.
            log.warning("CRM webhook event %s applied but not remembered (Redis unavailable)", event.event_id)
        log.info("CRM webhook event %s (%s) %s", event.event_id, type(event).__name__, outcome)
        return web.json_response({"status": outcome, "event_id": event.event_id})

    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_post("/crm", receive)
    return app


__all__ = ["EVENT_ID_WINDOW_S", "UNKNOWN_CUSTOMER_POLICIES", "WEBHOOK_TOLERANCE_S", "make_webhook_app"]
