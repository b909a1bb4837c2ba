"""The agent desktop's HTTP side: the page itself and the customer search and view routes.

Owns: serving the desktop page (cti/web/static: plain HTML, JS and CSS, no build step,
nothing fetched from elsewhere) and its security headers; `GET /api/customers` (search)
and `GET /api/customers/{id}` (one profile, masked unless the role may read sensitive
fields), the audit every customer read leaves (a `profile_access` row, see
cti.audit, and a line on the `cti.audit` logger), and the admins' listing of that
trail, `GET /api/audit/customer-reads`.
Must never: decide who may do what (cti.web.auth does, through `require`), assemble a
profile (crm_sync does), or let a full account number reach a role without
`customer.read_sensitive`. The live desktop protocol is the agent websocket
(cti.web.server, docs/websocket.md); the contract of these routes is in docs/api.md.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from crm_sync.store import CrmStore
from cti.agents.sessions import Session
from cti.audit import MAX_LISTED, ProfileAudit
from cti.center import CenterError, ContactCenter
from cti.web.auth import Permission, may
from cti.web.errors import ApiError
from cti.web.guard import requires

__all__ = ["add_desktop_routes", "customer_view", "search_limit"]

audit = logging.getLogger("cti.audit")

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS = {  # the only files served: nothing else in the folder is reachable
    "common.js": "text/javascript",  # shared with the wallboard and the QA console
    "desktop.js": "text/javascript",
    "desktop.css": "text/css",
}
PAGE_HEADERS = {
    # Everything the page needs comes from the hub itself; no inline script, no frames
    # (an agent's Accept button must not be clickable through someone else's page).
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
PRIVATE = {"Cache-Control": "no-store"}  # personal data: no copy in any cache

MAX_QUERY = 100
DEFAULT_LIMIT, MAX_LIMIT = 20, 50
DEFAULT_RECENT, MAX_RECENT = 5, 50
CUSTOMER_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
SENSITIVE_ACCOUNT_FIELDS = ("number",)  # the full trading-account number

CENTER = web.AppKey("desktop_center", ContactCenter)
CRM = web.AppKey("desktop_crm", CrmStore)
REGION = web.AppKey("desktop_region", str)
AUDIT = web.AppKey("desktop_audit", ProfileAudit)


def add_desktop_routes(app: web.Application, center: ContactCenter) -> None:
    app[CENTER] = center
    app[CRM] = center.crm
    app[AUDIT] = ProfileAudit(center.crm.sessions)
    app[REGION] = center.default_region
    app.router.add_get("/", page)
    app.router.add_get("/desktop", page)
    app.router.add_get("/static/{name}", asset)
    app.router.add_get("/api/customers", search_customers)
    app.router.add_get("/api/customers/{customer_id}", read_customer)
    app.router.add_get("/api/audit/customer-reads", customer_reads)
    app.router.add_post("/api/calls/dial", dial)


# --- the page: open to all, it holds no data (the login form is on it) ----------------


async def page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "desktop.html", headers={**PAGE_HEADERS, "Content-Type": "text/html; charset=utf-8"})


async def asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    kind = ASSETS.get(name)
    if kind is None:
        raise ApiError(404, "not_found", f"there is no static file {name!r}")
    return web.FileResponse(STATIC_DIR / name, headers={**PAGE_HEADERS, "Content-Type": f"{kind}; charset=utf-8"})


# --- pure rules ---------------------------------------------------------------------


def customer_view(profile: Mapping[str, Any], *, sensitive: bool) -> dict[str, Any]:
    """The profile as a role sees it: without `customer.read_sensitive`, accounts keep
    only their masked number. `masked` tells the client which view it got."""
    view = dict(profile)
    view["accounts"] = [
        {k: v for k, v in account.items() if sensitive or k not in SENSITIVE_ACCOUNT_FIELDS}
        for account in profile.get("accounts", [])
    ]
    view["masked"] = not sensitive
    return view


def search_limit(raw: str | None) -> int:
    """`limit` of a search: 1..50, default 20; ApiError 422 naming the field otherwise."""
    if raw is None:
        return DEFAULT_LIMIT
    return _bounded_int("limit", raw, 1, MAX_LIMIT)


def _bounded_int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(422, "bad_field", f"{name} must be a whole number from {low} to {high}", field=name) from None
    if not low <= value <= high:
        raise ApiError(422, "bad_field", f"{name} must be from {low} to {high}; got {value}", field=name)
    return value


# --- routes -------------------------------------------------------------------------


@requires(Permission.CUSTOMER_READ)
async def search_customers(request: web.Request, session: Session) -> web.Response:
    """The agent's search box: a phone number in any common format, an email address,
    a trading-account number or a customer id (crm_sync's `find_customers`)."""
    query = request.query.get("q")
    if query is None or not query.strip():
        raise ApiError(422, "missing_field", "q is required: a phone number, email, account number or customer id", field="q")
    if len(query) > MAX_QUERY:
        raise ApiError(422, "bad_field", f"q is longer than {MAX_QUERY} characters", field="q")
    limit = search_limit(request.query.get("limit"))
    found = await request.app[CRM].find_customers(query, default_region=request.app[REGION], limit=limit)
    # Summaries are personal data too (name, KYC status): each customer listed is audited.
    await request.app[AUDIT].record(
        [c.customer_id for c in found], actor=session.username, role=session.role, action="search",
        view="masked", found=True, at=datetime.now(UTC), client=request.remote,
    )
    audit.info(
        "customer search by %s (%s) at %s: %d match(es): %s",
        session.username, session.role, _now(), len(found), ",".join(c.customer_id for c in found) or "-",
    )
    return web.json_response({"query": query, "customers": [c.to_dict() for c in found]}, headers=PRIVATE)


@requires(Permission.CUSTOMER_READ)
async def read_customer(request: web.Request, session: Session) -> web.Response:
    customer_id = request.match_info["customer_id"]
    if not CUSTOMER_ID.fullmatch(customer_id):
        raise ApiError(422, "bad_field", "customer_id must be 1 to 64 letters, digits or _.:-", field="customer_id")
    raw_recent = request.query.get("recent")
    recent = DEFAULT_RECENT if raw_recent is None else _bounded_int("recent", raw_recent, 0, MAX_RECENT)
    sensitive = may(session.role, Permission.CUSTOMER_READ_SENSITIVE)
    profile = await request.app[CRM].get_profile(customer_id, recent=recent)
    # Every read is audited, a miss too: probing for ids is an access pattern worth seeing.
    # The row is written before the profile is sent: no audit, no data.
    await request.app[AUDIT].record(
        [customer_id], actor=session.username, role=session.role, action="view",
        view="full" if sensitive else "masked", found=profile is not None, at=datetime.now(UTC),
        client=request.remote,
    )
    audit.info(
        "customer profile read by %s (%s) at %s: customer=%s view=%s%s",
        session.username, session.role, _now(), customer_id, "full" if sensitive else "masked",
        "" if profile is not None else " (no such customer)",
    )
    if profile is None:
        raise ApiError(404, "unknown_customer", f"there is no customer {customer_id!r}", field="customer_id")
    return web.json_response(customer_view(profile.to_dict(), sensitive=sensitive), headers=PRIVATE)


# What a refused click-to-dial answers: the agent's state or the hub's set-up is in the
# way (409), the customer is unknown (404), a field is wrong (422).
DIAL_STATUS = {
    "no_trunk": 409, "not_logged_in": 409, "agent_busy": 409, "no_phone": 409, "no_queue": 409,
    "unknown_customer": 404, "missing_field": 422, "bad_field": 422, "no_voice": 503, "no_media": 503,
}


@requires(Permission.AGENT_DESKTOP)
async def dial(request: web.Request, session: Session) -> web.Response:
    """Click-to-dial from the customer card: `{"customer_id", "phone"?}`. The number
    comes from the card (one of the customer's own), never typed; reading it is a
    profile read, audited as one."""
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(422, "bad_json", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(422, "bad_json", "the body must be a JSON object")
    customer_id = body.get("customer_id")
    if isinstance(customer_id, str) and not CUSTOMER_ID.fullmatch(customer_id):
        raise ApiError(422, "bad_field", "customer_id must be 1 to 64 letters, digits or _.:-", field="customer_id")
    try:
        placed = await request.app[CENTER].dial(session.username, customer_id, body.get("phone"))
    except CenterError as err:
        raise ApiError(DIAL_STATUS.get(err.code, 409), err.code, err.detail, field=err.field) from None
    await request.app[AUDIT].record(
        [placed["customer_id"]], actor=session.username, role=session.role, action="view", view="masked",
        found=True, at=datetime.now(UTC), client=request.remote,
    )
    audit.info(
        "click-to-dial by %s (%s) at %s: customer=%s call=%s",
        session.username, session.role, _now(), placed["customer_id"], placed["call_id"],
    )
    return web.json_response(placed, status=201, headers=PRIVATE)


@requires(Permission.AUDIT_READ)
async def customer_reads(request: web.Request, session: Session) -> web.Response:
    """Who was shown which customer, newest first: `customer_id`, `actor`, `since`
    (ISO 8601), `limit` (1..1000, default 100)."""
    query = request.query
    customer_id = query.get("customer_id")
    if customer_id is not None and not CUSTOMER_ID.fullmatch(customer_id):
        raise ApiError(422, "bad_field", "customer_id must be 1 to 64 letters, digits or _.:-", field="customer_id")
    actor = query.get("actor")
    if actor is not None and not 1 <= len(actor) <= 128:
        raise ApiError(422, "bad_field", "actor must be a username", field="actor")
    since = None
    if "since" in query:
        try:
            since = datetime.fromisoformat(query["since"])
        except ValueError:
            raise ApiError(422, "bad_field", "since must be an ISO 8601 time", field="since") from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    limit = 100 if "limit" not in query else _bounded_int("limit", query["limit"], 1, MAX_LISTED)
    entries = await request.app[AUDIT].entries(customer_id=customer_id, actor=actor, since=since, limit=limit)
    audit.info("customer-read audit listed by %s (%s) at %s: %d entries", session.username, session.role, _now(), len(entries))
    return web.json_response({"entries": [e.to_dict() for e in entries]}, headers=PRIVATE)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
