"""Hubs that share routing tell each other things through one Redis pub/sub channel.

Owns: the envelope of what goes between hubs (`encode`, `decode`: pure), and `HubLink`,
the thin asyncio adapter that publishes envelopes in order and hands those of the
other hubs to the center. Three kinds go through it:
- a message for an agent (a screen pop, an offer withdrawn, an event naming them): the
  hub that holds the call or submitted the fact does not know which hub holds the
  agent's websocket, so it sends to every hub and the ones where the agent has a
  session deliver it;
- an agent's request about a call another hub holds (hang up, hold, transfer): the hub
  holding the call carries it out;
- a nudge: this hub logged routing facts, so the others bring their replicas up to
  date now instead of at their next poll.
Must never: decide anything about the message it carries, or keep messages (pub/sub
delivers to whoever listens now; a desktop's journal lives in its own hub's sessions).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToAgent:
    sender: str  # the hub that sent it
    agent_id: str
    message: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRequest:
    """An agent's request about a call another hub holds (hang up, hold, transfer):
    the hub holding the call carries it out and answers the agent with a ToAgent."""

    sender: str
    agent_id: str
    request: str
    contact_id: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Nudge:
    sender: str


Envelope = ToAgent | AgentRequest | Nudge


def encode(envelope: Envelope) -> str:
    match envelope:
        case ToAgent():
            return json.dumps({"k": "agent", "h": envelope.sender, "a": envelope.agent_id, "m": envelope.message},
                              separators=(",", ":"), default=str)
        case AgentRequest():
            return json.dumps({"k": "request", "h": envelope.sender, "a": envelope.agent_id, "r": envelope.request,
                               "c": envelope.contact_id, "x": envelope.args}, separators=(",", ":"), default=str)
        case Nudge():
            return json.dumps({"k": "nudge", "h": envelope.sender}, separators=(",", ":"))
    raise TypeError(f"not an envelope: {envelope!r}")


def decode(raw: bytes | str) -> Envelope | None:
    """The envelope, or None for anything this hub does not understand (a newer hub's
    kind, or garbage): ignored, never fatal."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("h"), str):
        return None
    kind = data.get("k")
    if kind == "nudge":
        return Nudge(sender=data["h"])
    if kind == "agent" and isinstance(data.get("a"), str) and isinstance(data.get("m"), dict):
        return ToAgent(sender=data["h"], agent_id=data["a"], message=data["m"])
    if kind == "request" and all(isinstance(data.get(k), str) for k in "arc") and isinstance(data.get("x"), dict):
        return AgentRequest(sender=data["h"], agent_id=data["a"], request=data["r"], contact_id=data["c"], args=data["x"])
    return None


class HubLink:
    """Publishes this hub's envelopes in order (one sender task) and passes the other
    hubs' to `on_envelope`. `client` is a `redis.asyncio.Redis`."""

    def __init__(self, client: Any, *, channel: str, hub_id: str, on_envelope: Callable[[Envelope], None]) -> None:
        self._client = client
        self.channel = channel
        self.hub_id = hub_id
        self._on_envelope = on_envelope
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._pubsub: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self.channel)
        self._tasks = [
            asyncio.create_task(self._listen(), name="hub-link-listen"),
            asyncio.create_task(self._send(), name="hub-link-send"),
        ]

    def to_agent(self, agent_id: str, message: dict[str, Any]) -> None:
        self._outbox.put_nowait(encode(ToAgent(sender=self.hub_id, agent_id=agent_id, message=message)))

    def to_hubs(self, agent_id: str, request: str, contact_id: str, **args: Any) -> None:
        self._outbox.put_nowait(encode(AgentRequest(
            sender=self.hub_id, agent_id=agent_id, request=request, contact_id=contact_id, args=args
        )))

    def nudge(self) -> None:
        if self._outbox.empty():  # one queued nudge is as good as several
            self._outbox.put_nowait(encode(Nudge(sender=self.hub_id)))

    async def close(self, timeout_s: float = 2.0) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox.join(), timeout_s)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()

    async def _send(self) -> None:
        while True:
            text = await self._outbox.get()
            try:
                await self._client.publish(self.channel, text)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a lost message is logged; the link goes on
                log.warning("message to the other hubs lost: %s", exc)
            finally:
                self._outbox.task_done()

    async def _listen(self) -> None:
        while True:
            try:
                async for item in self._pubsub.listen():
                    if item.get("type") != "message":
                        continue
                    envelope = decode(item["data"])
                    if envelope is None or envelope.sender == self.hub_id:
                        continue
                    try:
                        self._on_envelope(envelope)
                    except Exception:
                        log.exception("handling a message from another hub failed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis went away: listen again
                log.warning("hub link lost its subscription (%s); subscribing again", exc)
                await asyncio.sleep(0.5)
