"""The supervisor wallboard's HTTP side: the page, the snapshot, its websocket, and the
supervisor's change of an agent's state.

Owns: serving the wallboard page (cti/web/static/wallboard.*: plain HTML, JS and CSS,
no build step); `GET /api/wallboard` (one JSON snapshot) and `GET /api/wallboard/ws`
(a websocket that pushes a new snapshot whenever the view changed), both for
`wallboard.read`; `POST /api/agents/{username}/state` for `agent.state.manage`, audited
on the `cti.audit` logger; and the one sampling loop that feeds the view. Must never:
compute a figure (cti.wallboard_model does, from the router's statistics), decide who
may do what (cti.web.auth does, through `require`), or change routing state other than
through the center. The contract is docs/wallboard.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from sqlalchemy.exc import SQLAlchemyError

from cti.agents.sessions import Session
from cti.center import CenterError, ContactCenter
from cti.directory.store import DirectoryStore
from cti.wallboard_model import AgentFacts, ContactFacts, Wallboard
from cti.web.auth import Permission
from cti.web.desktop import PAGE_HEADERS, STATIC_DIR
from cti.web.errors import ApiError
from cti.web.guard import AUTH, require, requires
from routing import AgentState

__all__ = ["WALLBOARD", "WallboardFeed", "add_wallboard_routes"]

log = logging.getLogger(__name__)
audit = logging.getLogger("cti.audit")

ASSETS = {"wallboard.js": "text/javascript", "wallboard.css": "text/css"}
PRIVATE = {"Cache-Control": "no-store"}
# Why a sampling loop and not events: the router has no change notification this side of
# the center can subscribe to yet, and one pass over the queues and agents every 250 ms
# costs little next to a call, bounds the delay from any change to the screen well under
# the one second asked for, and sends nothing while nothing changes (the view is compared,
# not the clock). With no wallboard open, the loop slows to once a second: it still keeps
# the last hour's history for the charts.
SAMPLE_S = 0.25
IDLE_SAMPLE_S = 1.0
NAMES_EVERY_S = 60.0  # display names of agents and queues, read again from the directory
SEND_TIMEOUT_S = 5.0  # a wall screen that cannot take a snapshot in this long is dropped
SETTABLE_STATES = ("available", "away", "offline")
MAX_REASON = 64
DEFAULT_AWAY_REASON = "supervisor"


@dataclass(slots=True, kw_only=True)
class _Watcher:
    socket: web.WebSocketResponse
    sent: int = -1  # the feed version last sent on this socket


@dataclass(slots=True)
class WallboardFeed:
    """The wallboard's model, fed from the center every tick, and the open websockets."""

    center: ContactCenter
    directory: DirectoryStore
    wall_clock: Callable[[], float] = time.time
    model: Wallboard = field(default_factory=Wallboard)
    version: int = 0  # bumped whenever the view changed
    watchers: dict[web.WebSocketResponse, _Watcher] = field(default_factory=dict)
    agent_names: dict[str, str] = field(default_factory=dict)
    queue_names: dict[str, str] = field(default_factory=dict)
    _names_at: float | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _text: tuple[int, str] | None = None

    def sample(self) -> dict[str, Any]:
        """Read the router and the center now; the view."""
        center = self.center
        router = center.router
        now = center.clock()
        queues = {name: router.stats.queue_snapshot(name, now) for name in router.queues()}
        agents = [self._agent(agent_id) for agent_id in router.agents()]
        changed = self.model.update(
            now=now, wall_now=self.wall_clock(), queues=queues, agents=agents,
            names=self.queue_names, targets=configured_targets(center),
        )
        if changed:
            self.version += 1
        return self.model.view

    def _agent(self, agent_id: str) -> AgentFacts:
        router = self.center.router
        state = router.agent_state(agent_id)
        since = router.state_since(agent_id)
        contact_id = router.contact_of(agent_id)
        contact = None
        if contact_id is not None:
            live = self.center.contact(contact_id)
            answered = live.answered_at if live is not None else None
            contact = ContactFacts(
                contact_id=contact_id,
                queue=router.queue_of(contact_id),
                channel=router.channel_of(contact_id),
                answered_at=round(answered.timestamp(), 3) if answered is not None else None,
            )
        return AgentFacts(
            agent_id=agent_id,
            name=self.agent_names.get(agent_id, agent_id),
            state=state.value,
            reason=router.agent_reason(agent_id),
            # The router starts every agent OFFLINE "since 0.0": not a time to show.
            since=None if state is AgentState.OFFLINE and since == 0.0 else since,
            contact=contact,
            handled=self.center.contacts_handled.get(agent_id, 0),
        )

    def wake(self) -> None:
        """Sample at once (after a change made through the API)."""
        self._wake.set()

    async def refresh_names(self) -> None:
        now = self.wall_clock()
        if self._names_at is not None and now - self._names_at < NAMES_EVERY_S:
            return
        self._names_at = now
        try:
            directory = await self.directory.load()
        except (SQLAlchemyError, OSError) as exc:  # names are a nicety: keep the old ones
            log.warning("wallboard: could not read display names: %s", exc)
            return
        self.agent_names = {a.username: a.display_name for a in directory.agents.values()}
        self.queue_names = {q.name: q.display_name for q in directory.queues.values()}

    def message(self) -> tuple[int, str]:
        """The websocket message of the current view, serialised once per version."""
        if self._text is None or self._text[0] != self.version:
            self._text = (self.version, json.dumps({"type": "snapshot", **self.model.view}, separators=(",", ":")))
        return self._text

    async def run(self) -> None:
        while True:
            try:
                await self.refresh_names()
                self.sample()
                await self.broadcast()
            except Exception:  # the wallboard must outlive any one bad sample
                log.exception("wallboard: sampling failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SAMPLE_S if self.watchers else IDLE_SAMPLE_S)
            self._wake.clear()

    async def broadcast(self) -> None:
        """Send the view to every socket that has not had this version yet. The only
        place that sends on wallboard sockets, so a socket never gets two at once."""
        late = [w for w in self.watchers.values() if w.sent < self.version]
        if not late:
            return
        version, text = self.message()
        for watcher in late:
            watcher.sent = version
        results = await asyncio.gather(
            *(asyncio.wait_for(w.socket.send_str(text), SEND_TIMEOUT_S) for w in late), return_exceptions=True
        )
        for watcher, result in zip(late, results, strict=True):
            if isinstance(result, BaseException):
                log.info("wallboard: dropping a websocket that failed a send: %r", result)
                self.watchers.pop(watcher.socket, None)
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await watcher.socket.close(code=WSCloseCode.GOING_AWAY, message=b"too slow")

    async def close_sockets(self, app: web.Application) -> None:
        """At shutdown: 1001 going away on every wallboard socket."""
        sockets = list(self.watchers)
        self.watchers.clear()
        await asyncio.gather(
            *(s.close(code=WSCloseCode.GOING_AWAY, message=b"hub shutting down") for s in sockets), return_exceptions=True
        )


def configured_targets(center: ContactCenter) -> dict[str, float]:
    """Service-level targets (percent) by queue from the routing configuration. The
    configuration has none yet, so every queue gets the model's default (80 %)."""
    return {}


WALLBOARD = web.AppKey("wallboard", WallboardFeed)


def add_wallboard_routes(app: web.Application, center: ContactCenter, directory: DirectoryStore) -> None:
    app[WALLBOARD] = WallboardFeed(center=center, directory=directory)
    app.router.add_get("/wallboard", page)
    app.router.add_get("/wallboard/{name}", asset)
    app.router.add_get("/api/wallboard", snapshot)
    app.router.add_get("/api/wallboard/ws", wallboard_socket)
    app.router.add_post("/api/agents/{username}/state", set_agent_state)
    app.cleanup_ctx.append(_sampling)
    app.on_shutdown.append(app[WALLBOARD].close_sockets)


async def _sampling(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[WALLBOARD].run())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# --- the page: open to all, it holds no data (the login form is on it) ----------------


async def page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "wallboard.html", headers={**PAGE_HEADERS, "Content-Type": "text/html; charset=utf-8"})


async def asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    kind = ASSETS.get(name)
    if kind is None:
        raise ApiError(404, "not_found", f"there is no wallboard file {name!r}")
    return web.FileResponse(STATIC_DIR / name, headers={**PAGE_HEADERS, "Content-Type": f"{kind}; charset=utf-8"})


# --- the view ----------------------------------------------------------------------------


@requires(Permission.WALLBOARD_READ)
async def snapshot(request: web.Request, session: Session) -> web.Response:
    feed = request.app[WALLBOARD]
    view = feed.sample()
    feed.wake()  # open wallboards get it too, if it changed
    return web.json_response(view, headers=PRIVATE)


async def wallboard_socket(request: web.Request) -> web.StreamResponse:
    """Server to client only: a `snapshot` message at once, then one per change."""
    session = await require(request, Permission.WALLBOARD_READ, websocket=True)
    feed = request.app[WALLBOARD]
    socket = web.WebSocketResponse(heartbeat=20.0)
    await socket.prepare(request)
    auth = request.app[AUTH]
    auth.watch(socket, session)  # closed (1008) when the session ends
    feed.watchers[socket] = _Watcher(socket=socket)
    feed.wake()  # the first snapshot goes out from the loop, like every other one
    try:
        async for message in socket:
            if message.type == WSMsgType.ERROR:
                log.info("wallboard websocket of %s failed: %s", session.username, socket.exception())
    finally:
        feed.watchers.pop(socket, None)
        auth.unwatch(socket)
    return socket


# --- a supervisor changes an agent's state -------------------------------------------


@requires(Permission.AGENT_STATE_MANAGE)
async def set_agent_state(request: web.Request, session: Session) -> web.Response:
    """Set another agent's state: `offline` logs them out (a forgotten agent), `away`
    stops offers to them. An agent on a call is logged out when the call ends."""
    username = request.match_info["username"]
    center = request.app[WALLBOARD].center
    router = center.router
    if not router.has_agent(username):
        raise ApiError(404, "unknown_agent", f"there is no agent {username!r}", field="username")
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    state = body.get("state")
    if state is None or state == "":
        raise ApiError(422, "missing_field", "state is required: available, away or offline", field="state")
    if not isinstance(state, str) or state not in SETTABLE_STATES:
        raise ApiError(422, "bad_field", f"state must be available, away or offline; got {state!r}", field="state")
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON):
        raise ApiError(422, "bad_field", f"reason must be a non-empty string of at most {MAX_REASON} characters", field="reason")
    if state == "away" and reason is None:
        reason = DEFAULT_AWAY_REASON
    before = router.agent_state(username).value
    try:
        center.set_state(username, state, reason.strip() if reason is not None else None)
    except CenterError as err:
        raise ApiError(409, err.code, err.detail, field=err.field) from None
    await center.routed()  # hubs sharing routing: the state below is the one applied
    after = router.agent_state(username).value
    audit.info(
        "agent state set by %s (%s) at %s: agent=%s state=%s->%s requested=%s reason=%s",
        session.username, session.role, datetime.now(UTC).isoformat(timespec="seconds"),
        username, before, after, state, reason or "-",
    )
    request.app[WALLBOARD].wake()
    return web.json_response(
        {
            "agent_id": username,
            "requested": state,
            "reason": reason if state == "away" else None,
            "previous": before,
            "state": after,
            # On a call, a logout or away waits for the call (and its wrap-up) to end.
            "pending": after != state,
        },
        headers=PRIVATE,
    )
