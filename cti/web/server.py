"""Routes of the hub's HTTP server (aiohttp).

Thin: every route reads its input, checks it, calls one service and shapes the answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from cti.agents.sessions import Session, SessionRegistry
from cti.center import CenterError, ContactCenter
from cti.directory.store import DirectoryStore
from cti.web.errors import api_error

log = logging.getLogger(__name__)

HealthCheck = Callable[[], Awaitable[dict[str, Any]]]

SESSIONS = web.AppKey("sessions", SessionRegistry)
CENTER = web.AppKey("center", ContactCenter)
DIRECTORY = web.AppKey("directory", DirectoryStore)
REGISTRY = web.AppKey("registry", CollectorRegistry)
HEALTH: web.AppKey[HealthCheck] = web.AppKey("health")
WEBSOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("websockets")

COOKIE = "ctihub_session"


def make_app(
    *,
    sessions: SessionRegistry,
    center: ContactCenter,
    directory: DirectoryStore,
    registry: CollectorRegistry,
    health: HealthCheck,
    webhooks: web.Application | None = None,
) -> web.Application:
    app = web.Application(client_max_size=256 * 1024)
    app[SESSIONS] = sessions
    app[CENTER] = center
    app[DIRECTORY] = directory
    app[REGISTRY] = registry
    app[HEALTH] = health
    app[WEBSOCKETS] = set()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/me", me)
    app.router.add_get("/ws/agent", agent_socket)
    if webhooks is not None:
        app.add_subapp("/webhooks/", webhooks)  # POST /webhooks/crm: signed CRM changes
    return app


async def healthz(request: web.Request) -> web.Response:
    checks = await request.app[HEALTH]()
    ok = all(value is True for key, value in checks.items() if key in ("sip", "http", "database"))
    return web.json_response({"status": "ok" if ok else "unavailable", **checks}, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def login(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return api_error(400, "bad_json", "the body must be a JSON object")
    if not isinstance(body, dict):
        return api_error(400, "bad_json", "the body must be a JSON object")
    for name in ("username", "password"):
        if not isinstance(body.get(name), str) or not body[name]:
            return api_error(422, "missing_field", f"{name} is required and must be a non-empty string", field=name)
    user = await request.app[DIRECTORY].authenticate(body["username"], body["password"])
    if user is None:
        return api_error(401, "bad_credentials", "unknown user or wrong password")
    token = request.app[SESSIONS].create(username=user.username, role=user.role, display_name=user.display_name)
    response = web.json_response(
        {"token": token, "username": user.username, "role": user.role, "display_name": user.display_name}
    )
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
    return response


async def logout(request: web.Request) -> web.Response:
    token = _token_of(request)
    if token:
        request.app[SESSIONS].revoke(token)
    response = web.json_response({"ok": True})
    response.del_cookie(COOKIE, path="/")
    return response


async def me(request: web.Request) -> web.Response:
    session = _session_of(request)
    if session is None:
        return api_error(401, "not_logged_in", "log in first")
    return web.json_response({"username": session.username, "role": session.role, "display_name": session.display_name})


def _token_of(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query.get("token") or request.cookies.get(COOKIE)


def _session_of(request: web.Request) -> Session | None:
    token = _token_of(request)
    return request.app[SESSIONS].resolve(token) if token else None


# --- the agent websocket (protocol: docs/websocket.md) --------------------------------


async def agent_socket(request: web.Request) -> web.StreamResponse:
    session = _session_of(request)
    if session is None:
        return api_error(401, "not_logged_in", "open the websocket with a session token (?token= or Authorization: Bearer)")
    if session.role != "agent":
        return api_error(403, "wrong_role", f"the agent websocket is for agents; you are {session.role}")
    socket = web.WebSocketResponse(heartbeat=20.0)
    await socket.prepare(request)
    sessions = request.app[SESSIONS]
    center = request.app[CENTER]
    username = session.username
    request.app[WEBSOCKETS].add(socket)
    sessions.attach(username, socket)
    try:
        center.agent_connected(username)
        await socket.send_json({"type": "hello", "protocol": 1, **center.agent_status(username)})
        async for message in socket:
            if message.type == WSMsgType.TEXT:
                reply = _handle_agent_message(center, username, message.data)
                if reply is not None:
                    await socket.send_json(reply)
            elif message.type == WSMsgType.ERROR:
                log.info("websocket of %s failed: %s", username, socket.exception())
    finally:
        request.app[WEBSOCKETS].discard(socket)
        sessions.detach(username, socket)
        center.agent_disconnected(username)
    return socket


def _handle_agent_message(center: ContactCenter, username: str, text: str) -> dict[str, Any] | None:
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        return {"type": "error", "error": "bad_json", "detail": "messages are JSON objects"}
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return {"type": "error", "error": "missing_field", "field": "type", "detail": "every message has a string type"}
    kind = message["type"]
    try:
        if kind == "ping":
            return {"type": "pong"}
        if kind == "set_state":
            state = message.get("state")
            if not isinstance(state, str):
                return _field_error(kind, "state", "state is required: available, away or offline")
            reason = message.get("reason")
            if reason is not None and not isinstance(reason, str):
                return _field_error(kind, "reason", "reason must be a string")
            center.set_state(username, state, reason)
            return None  # the agent.state_changed event is the answer
        if kind in ("accept", "reject", "hangup"):
            contact_id = message.get("contact_id")
            if not isinstance(contact_id, str) or not contact_id:
                return _field_error(kind, "contact_id", "contact_id is required")
            {"accept": center.accept, "reject": center.reject, "hangup": center.hang_up}[kind](username, contact_id)
            return {"type": "ok", "request": kind, "contact_id": contact_id}
        return {"type": "error", "error": "unknown_type", "field": "type", "detail": f"unknown message type {kind!r}"}
    except CenterError as err:
        return {"type": "error", "error": err.code, "detail": err.detail, "request": kind}


def _field_error(kind: str, field: str, detail: str) -> dict[str, Any]:
    return {"type": "error", "error": "bad_field", "field": field, "detail": detail, "request": kind}


async def close_websockets(app: web.Application) -> None:
    """At shutdown: a close frame (1001 going away) on every open websocket."""
    open_sockets = app[WEBSOCKETS]
    sockets = list(open_sockets)
    await asyncio.gather(
        *(s.close(code=WSCloseCode.GOING_AWAY, message=b"hub shutting down") for s in sockets), return_exceptions=True
    )
