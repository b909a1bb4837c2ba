"""Routes of the hub's HTTP server (aiohttp).

Thin: every route reads its input, checks it, calls one service and shapes the answer.
Every route but /healthz, /metrics, POST /api/login and the desktop's static page asks
`require` (cti.web.guard) for a session allowed the route's permission (cti.web.auth);
the contract is in docs/api.md. The desktop page and the customer routes are in
cti.web.desktop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis.asyncio import Redis

from crm_sync.outbox import OutboxStore
from cti.agents.sessions import Session, SessionRegistry
from cti.center import CenterError, ContactCenter
from cti.directory.store import DirectoryStore
from cti.web.auth import Permission, permissions_of, same_origin
from cti.web.crm_outbox import add_outbox_routes
from cti.web.desktop import add_desktop_routes
from cti.web.errors import ApiError, api_error, api_errors
from cti.web.guard import (
    AUTH,
    COOKIE,
    AuthOptions,
    AuthService,
    credential_of,
    require,
    requires,
)
from cti.web.qa import add_qa_routes
from cti.web.retention import add_retention_routes
from cti.web.routing_api import add_routing_routes
from cti.web.throttle_store import make_throttle_store
from cti.web.wallboard import add_wallboard_routes

__all__ = ["AuthOptions", "close_websockets", "make_app"]

log = logging.getLogger(__name__)

HealthCheck = Callable[[], Awaitable[dict[str, Any]]]

SESSIONS = web.AppKey("sessions", SessionRegistry)
CENTER = web.AppKey("center", ContactCenter)
DIRECTORY = web.AppKey("directory", DirectoryStore)
REGISTRY = web.AppKey("registry", CollectorRegistry)
HEALTH: web.AppKey[HealthCheck] = web.AppKey("health")
WEBSOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("websockets")
WRAP_UPS: web.AppKey[set[asyncio.Task[None]]] = web.AppKey("wrap_ups")  # being stored
WRAP_UP_SHUTDOWN_WAIT_S = 5.0

MAX_USERNAME = 64
MAX_PASSWORD = 1024


def make_app(
    *,
    sessions: SessionRegistry,
    center: ContactCenter,
    directory: DirectoryStore,
    registry: CollectorRegistry,
    health: HealthCheck,
    webhooks: web.Application | None = None,
    outbox: OutboxStore | None = None,
    wake_outbox: Callable[[], None] = lambda: None,
    auth: AuthOptions | None = None,
    redis: Redis | None = None,
) -> web.Application:
    """`redis`: the hub's shared client when it has one; login failures are then counted
    there, for every hub process together."""
    options = auth or AuthOptions()
    app = web.Application(client_max_size=256 * 1024, middlewares=[api_errors])
    app[SESSIONS] = sessions
    app[CENTER] = center
    app[DIRECTORY] = directory
    app[REGISTRY] = registry
    app[HEALTH] = health
    app[WEBSOCKETS] = set()
    app[WRAP_UPS] = set()
    app.on_shutdown.append(_finish_wrap_ups)
    app[AUTH] = AuthService(
        sessions=sessions,
        directory=directory,
        throttle=options.throttle,
        failures=make_throttle_store(redis),
        recheck_s=options.recheck_s,
    )
    app.cleanup_ctx.append(_session_rechecks)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/me", me)
    app.router.add_get("/api/users", list_users)
    app.router.add_post("/api/users/{username}/{action:disable|enable}", set_user_disabled)
    app.router.add_get("/ws/agent", agent_socket)
    add_desktop_routes(app, center)  # the agent desktop page, customer search and view
    add_routing_routes(app)  # admin: queues, skills, agents and rules of the live router
    add_retention_routes(app)  # legal holds, retention extensions, the recordings' lifecycle log
    add_qa_routes(app, center)  # the QA console: recordings search, playback, evaluations, audit
    add_wallboard_routes(app, center, directory)  # supervisors: the wallboard, its websocket, agent states
    if outbox is not None:
        add_outbox_routes(app, outbox, wake=wake_outbox)  # admin: dead letters and replays
    if webhooks is not None:
        app.add_subapp("/webhooks/", webhooks)  # POST /webhooks/crm: signed CRM changes
    return app


async def _session_rechecks(app: web.Application) -> AsyncIterator[None]:
    auth = app[AUTH]
    task = asyncio.create_task(auth.run_rechecks())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await auth.close()


async def healthz(request: web.Request) -> web.Response:
    checks = await request.app[HEALTH]()
    ok = all(value is True for key, value in checks.items() if key in ("sip", "http", "database"))
    return web.json_response({"status": "ok" if ok else "unavailable", **checks}, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# --- sessions --------------------------------------------------------------------------


async def login(request: web.Request) -> web.Response:
    # A form on another site can POST text/plain that parses as JSON, which would log
    # the victim in as the attacker; forms cannot send application/json.
    if request.content_type != "application/json":
        return api_error(415, "unsupported_media_type", "send the credentials as Content-Type: application/json")
    if not same_origin(request.headers.get("Origin"), request.headers.get("Host")):
        return api_error(403, "bad_origin", "a browser may log in only from the hub's own pages")
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return api_error(400, "bad_json", "the body must be a JSON object")
    if not isinstance(body, dict):
        return api_error(400, "bad_json", "the body must be a JSON object")
    for name, longest in (("username", MAX_USERNAME), ("password", MAX_PASSWORD)):
        if not isinstance(body.get(name), str) or not body[name]:
            return api_error(422, "missing_field", f"{name} is required and must be a non-empty string", field=name)
        if len(body[name]) > longest:
            return api_error(422, "bad_field", f"{name} is longer than {longest} characters", field=name)
    token, session = await request.app[AUTH].log_in(body["username"], body["password"], address=request.remote)
    response = web.json_response({"token": token, **_session_view(session)})
    # Secure whenever the browser reached us over TLS; a plain-HTTP dev setup keeps
    # working, and production puts TLS in front.
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=request.secure, path="/")
    return response


async def logout(request: web.Request) -> web.Response:
    """Ends the session presented (idempotent: no valid session is not an error)."""
    found = credential_of(request, allow_query=False)
    if found is not None:
        try:
            await require(request, None)  # with a cookie, this is the CSRF check
        except ApiError as err:
            if err.status != 401:
                raise
        else:
            request.app[AUTH].log_out(found[1])
    response = web.json_response({"ok": True})
    response.del_cookie(COOKIE, path="/")
    return response


@requires(None)
async def me(request: web.Request, session: Session) -> web.Response:
    return web.json_response(_session_view(session))


def _session_view(session: Session) -> dict[str, Any]:
    return {
        "username": session.username,
        "role": session.role,
        "display_name": session.display_name,
        "permissions": sorted(p.value for p in permissions_of(session.role)),
        "csrf_token": session.csrf_token,
    }


# --- users (admin) ---------------------------------------------------------------------


@requires(Permission.USERS_MANAGE)
async def list_users(request: web.Request, session: Session) -> web.Response:
    users = await request.app[DIRECTORY].list_users()
    return web.json_response(
        {"users": [{"username": u.username, "display_name": u.display_name, "role": u.role, "disabled": u.disabled} for u in users]}
    )


@requires(Permission.USERS_MANAGE)
async def set_user_disabled(request: web.Request, session: Session) -> web.Response:
    username = request.match_info["username"]
    disabled = request.match_info["action"] == "disable"
    if disabled and username == session.username:
        raise ApiError(409, "cannot_disable_self", "an administrator cannot disable their own account here")
    if not await request.app[DIRECTORY].set_disabled(username, disabled):
        raise ApiError(404, "no_such_user", f"there is no user {username!r}")
    logging.getLogger("cti.auth").warning(
        "auth: %s %s user %r", session.username, "disabled" if disabled else "enabled", username
    )
    if disabled:
        await request.app[AUTH].revoke_user(username, f"the account was disabled by {session.username}")
    return web.json_response({"username": username, "disabled": disabled})


# --- the agent websocket (protocol: docs/websocket.md) --------------------------------


async def agent_socket(request: web.Request) -> web.StreamResponse:
    session = await require(request, Permission.AGENT_DESKTOP, websocket=True)
    socket = web.WebSocketResponse(heartbeat=20.0)
    await socket.prepare(request)
    sessions = request.app[SESSIONS]
    center = request.app[CENTER]
    username = session.username
    auth = request.app[AUTH]
    request.app[WEBSOCKETS].add(socket)
    auth.watch(socket, session)
    # Wrap-ups wait on the CRM: they run beside the reading loop, so that an offer can
    # be accepted while one is being stored, and they finish even if the agent closes
    # the tab right after saving.
    pending = request.app[WRAP_UPS]
    try:
        center.agent_connected(username)
        await _greet(socket, sessions, center, username, request.query.get("resume"))
        async for message in socket:
            if message.type == WSMsgType.TEXT:
                wrap = _wrap_up_request(message.data)
                if wrap is not None:
                    task = asyncio.create_task(_answer_wrap_up(socket, sessions, center, username, wrap))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    continue
                reply = _handle_agent_message(center, username, message.data)
                if reply is not None and reply["type"] == "ok":
                    await sessions.send(username, reply)  # every tab of the agent shows what was done
                elif reply is not None:
                    await socket.send_json(reply)
            elif message.type == WSMsgType.ERROR:
                log.info("websocket of %s failed: %s", username, socket.exception())
    finally:
        request.app[WEBSOCKETS].discard(socket)
        auth.unwatch(socket)
        sessions.detach(username, socket)
        center.agent_disconnected(username)
    return socket


async def _greet(
    socket: web.WebSocketResponse, sessions: SessionRegistry, center: ContactCenter, username: str, resume: str | None
) -> None:
    """`hello`, then what a reconnecting desktop missed, then live messages.

    `resume` is `<stream>:<seq>` from the desktop's last connection. The socket joins
    the live ones only once the journal has nothing newer than what was sent on it,
    with no await in between, so that no message falls between replay and live."""
    stream, _, number = (resume or "").partition(":")
    seq = int(number) if number.isdigit() else None
    first = sessions.resume(username, stream or None, seq)
    await socket.send_json(
        {
            "type": "hello",
            "protocol": 1,
            **center.agent_status(username),
            "dispositions": list(center.dispositions),
            "transfer_queues": sorted(center.router.queues()),
            "outbound": center.outbound_ready,
            "stream": first.stream,
            "seq": first.seq,
            "resumed": first.resumed,
            "missed": len(first.missed),
        }
    )
    sent_up_to = first.seq
    for text in first.missed:
        await socket.send_str(text)
    while True:
        more = sessions.resume(username, first.stream, sent_up_to)
        if not more.missed:
            break
        for text in more.missed:
            await socket.send_str(text)
        sent_up_to = more.seq
    sessions.attach(username, socket)


# Desktop requests about the call's recording; the answer is the recording's status.
RECORDING_ACTIONS = {
    "recording_start": "start",
    "recording_stop": "stop",
    "recording_pause": "pause",  # PCI: before the customer reads out a card number
    "recording_resume": "resume",
}


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
        if kind in RECORDING_ACTIONS:
            contact_id = message.get("contact_id")
            if not isinstance(contact_id, str) or not contact_id:
                return _field_error(kind, "contact_id", "contact_id is required")
            status = center.recording(username, contact_id, RECORDING_ACTIONS[kind])
            return {"type": "recording_status", "request": kind, "contact_id": contact_id, **status}
        if kind in ("hold", "unhold"):
            contact_id = message.get("contact_id")
            if not isinstance(contact_id, str) or not contact_id:
                return _field_error(kind, "contact_id", "contact_id is required")
            center.hold(username, contact_id, held=kind == "hold")
            return {"type": "ok", "request": kind, "contact_id": contact_id}
        if kind == "transfer":
            contact_id = message.get("contact_id")
            if not isinstance(contact_id, str) or not contact_id:
                return _field_error(kind, "contact_id", "contact_id is required")
            if "number" in message:  # an outside number, through the trunk
                number = center.transfer_to_number(username, contact_id, message.get("number"))
                return {"type": "ok", "request": kind, "contact_id": contact_id, "number": number}
            queue = message.get("queue")
            if not isinstance(queue, str) or not queue:
                return _field_error(kind, "queue", "queue is required: the queue to transfer the caller to")
            center.transfer(username, contact_id, queue)
            return {"type": "ok", "request": kind, "contact_id": contact_id, "queue": queue}
        if kind in ("accept", "reject", "hangup"):
            contact_id = message.get("contact_id")
            if not isinstance(contact_id, str) or not contact_id:
                return _field_error(kind, "contact_id", "contact_id is required")
            {"accept": center.accept, "reject": center.reject, "hangup": center.hang_up}[kind](username, contact_id)
            return {"type": "ok", "request": kind, "contact_id": contact_id}
        return {"type": "error", "error": "unknown_type", "field": "type", "detail": f"unknown message type {kind!r}"}
    except CenterError as err:
        return _center_error(kind, err)


def _center_error(kind: str, err: CenterError) -> dict[str, Any]:
    reply = {"type": "error", "error": err.code, "detail": err.detail, "request": kind}
    if err.field is not None:
        reply["field"] = err.field
    return reply


def _wrap_up_request(text: str) -> dict[str, Any] | None:
    """The message when it is a `wrap_up` (a JSON object of that type), else None."""
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        return None
    return message if isinstance(message, dict) and message.get("type") in ("wrap_up", "pick_customer") else None


async def _answer_wrap_up(
    socket: web.WebSocketResponse, sessions: SessionRegistry, center: ContactCenter, username: str, message: dict[str, Any]
) -> None:
    if message.get("type") == "pick_customer":
        try:
            picked = await center.pick_customer(
                username, customer_id=message.get("customer_id"), contact_id=message.get("contact_id"),
                interaction_id=message.get("interaction_id"),
            )
            answer: dict[str, Any] = {"type": "ok", "request": "pick_customer", **picked}
        except CenterError as err:
            answer = _center_error("pick_customer", err)
        try:
            await (sessions.send(username, answer) if answer["type"] == "ok" else socket.send_json(answer))
        except (ConnectionError, RuntimeError):
            log.info("pick answer for %s not delivered: the websocket closed", username)
        return
    try:
        stored = await center.wrap_up(
            username,
            interaction_id=message.get("interaction_id"),
            contact_id=message.get("contact_id"),
            disposition=message.get("disposition"),
            notes=message.get("notes"),
        )
        reply: dict[str, Any] = {"type": "ok", "request": "wrap_up", **stored}
    except CenterError as err:
        reply = _center_error("wrap_up", err)
    try:
        if reply["type"] == "ok":
            await sessions.send(username, reply)  # the other tabs close their wrap-up form too
            return
        await socket.send_json(reply)
    except (ConnectionError, RuntimeError):
        log.info("wrap-up answer for %s not delivered: the websocket closed", username)


async def _finish_wrap_ups(app: web.Application) -> None:
    """At shutdown: wrap-ups being stored get a few seconds to finish, then are cancelled."""
    running: set[asyncio.Task[None]] = app[WRAP_UPS]
    tasks = list(running)
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=WRAP_UP_SHUTDOWN_WAIT_S)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)


def _field_error(kind: str, field: str, detail: str) -> dict[str, Any]:
    return {"type": "error", "error": "bad_field", "field": field, "detail": detail, "request": kind}


async def close_websockets(app: web.Application) -> None:
    """At shutdown: a close frame (1001 going away) on every open websocket."""
    open_sockets = app[WEBSOCKETS]
    sockets = list(open_sockets)
    await asyncio.gather(
        *(s.close(code=WSCloseCode.GOING_AWAY, message=b"hub shutting down") for s in sockets), return_exceptions=True
    )
