"""The event bus over one Redis stream, shared by every hub process on that Redis.

Owns: appending events to the stream (XADD, field `e` = JSON of `to_wire()`, with
approximate MAXLEN trimming) and, per subscription, a reader task that XREADs from the
last id it has seen, decodes, filters by topic and buffers.

Must never: lose its place on a connection error (the reader reconnects with backoff and
resumes from its last seen id, so nothing is lost while the stream still holds the
entries), die on a message it cannot decode (an unknown type from a newer hub is logged
and skipped), or make a publisher wait for a subscriber.

Starting point: a subscription starts after the stream's last id at subscribe time. That
id is fetched by the reader task; `publish` on the same bus first waits for every
subscription still fetching it, and `async with bus.subscribe(...)` waits for it before
the body runs, so "subscribe, then publish" never misses the event. If Redis is down at
subscribe time the subscription starts from wherever the stream ends when Redis is back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cti.bus.base import DEFAULT_MAX_PENDING, Subscription
from cti.events import Event, UnknownEventError, from_wire

log = logging.getLogger(__name__)

_BLOCK_MS = 1_000
_BATCH = 500
_COMMAND_TIMEOUT_S = 5.0  # beyond XREAD's own BLOCK time
_BACKOFF_FIRST_S = 0.05
_BACKOFF_MAX_S = 2.0


class RedisStreamsBus:
    def __init__(
        self,
        redis_url: str,
        *,
        stream: str = "ctihub:events",
        maxlen: int = 100_000,
        max_pending: int = DEFAULT_MAX_PENDING,
        client_name: str = "ctihub-bus",
    ) -> None:
        self.stream = stream
        self.maxlen = maxlen
        self._max_pending = max_pending
        # No socket_timeout: redis-py implements it with asyncio.wait_for, which on
        # Python 3.11 can swallow a task cancellation and leave a closed subscription's
        # reader running. Commands are bounded with asyncio.timeout below instead.
        # A command that fails on a dropped connection is retried on a fresh one, so a
        # Redis restart costs publishers a reconnect, not an error. An XADD whose reply
        # was lost may then land twice: delivery is at least once (dedupe on event id).
        self._redis: aioredis.Redis = aioredis.from_url(
            redis_url,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), 3),
            retry_on_error=[RedisConnectionError],
            socket_connect_timeout=2,
            socket_keepalive=True,
            client_name=client_name,
        )
        self._subs: list[Subscription] = []
        self._closed = False

    async def publish(self, event: Event) -> None:
        if self._closed:
            raise RuntimeError("publish on a closed bus")
        starting = [sub.ready() for sub in self._subs if not sub.is_ready]
        if starting:
            await asyncio.gather(*starting)
        body = json.dumps(event.to_wire(), separators=(",", ":"))
        async with asyncio.timeout(_COMMAND_TIMEOUT_S):
            await self._redis.xadd(self.stream, {"e": body}, maxlen=self.maxlen, approximate=True)

    def publish_nowait(self, event: Event) -> bool:
        return False  # every event is a round trip to Redis: `publish` it

    def subscribe(self, topics: Iterable[str] | None = None) -> Subscription:
        if self._closed:
            raise RuntimeError("subscribe on a closed bus")
        sub = Subscription(topics, max_pending=self._max_pending, on_close=self._subs.remove)
        self._subs.append(sub)
        sub.attach_reader(asyncio.get_running_loop().create_task(self._read(sub), name=f"bus-reader:{self.stream}"))
        return sub

    async def close(self) -> None:
        self._closed = True
        for sub in tuple(self._subs):
            await sub.close()
        await self._redis.aclose()

    async def _last_id(self) -> str:
        newest: Any = await self._redis.xrevrange(self.stream, count=1)
        return newest[0][0].decode() if newest else "0-0"

    async def _read(self, sub: Subscription) -> None:
        last_id: str | None = None
        backoff = _BACKOFF_FIRST_S
        while not sub.closed:
            try:
                if last_id is None:
                    try:
                        async with asyncio.timeout(_COMMAND_TIMEOUT_S):
                            last_id = await self._last_id()
                    finally:
                        # Publishers on this bus wait for this; never leave them hanging
                        # because Redis happened to be down.
                        sub.set_ready()
                # The timeout catches a half-open connection that would otherwise
                # block this reader forever.
                async with asyncio.timeout(_BLOCK_MS / 1000 + _COMMAND_TIMEOUT_S):
                    reply: Any = await self._redis.xread({self.stream: last_id}, count=_BATCH, block=_BLOCK_MS)
                backoff = _BACKOFF_FIRST_S
            except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as exc:
                if sub.closed:
                    return
                log.warning("bus reader on %s lost Redis (%s); retrying in %.2fs", self.stream, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            except RedisError as exc:
                if sub.closed:
                    return
                log.error("bus reader on %s: Redis error %s; retrying in %.2fs", self.stream, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    last_id = entry_id.decode()
                    event = _decode(self.stream, last_id, fields)
                    if event is not None and sub.wants(event.topic):
                        await sub.push(event)


def _decode(stream: str, entry_id: str, fields: dict[bytes, bytes]) -> Event | None:
    try:
        message: Any = json.loads(fields[b"e"])
        return from_wire(message)
    except UnknownEventError as exc:
        # Likely a newer hub on the same Redis; this process just doesn't know the type.
        log.info("skipping %s entry %s: %s", stream, entry_id, exc)
    except (KeyError, ValueError, TypeError) as exc:
        log.warning("skipping undecodable %s entry %s: %r", stream, entry_id, exc)
    return None
