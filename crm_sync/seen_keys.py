"""Where the webhook edge remembers what it has already taken: signatures and event ids.

Owns the async "seen once" store behind replay protection, in two implementations:
in the process and in Redis (`SET NX PX`), which several hub processes behind one
balancer must share, or a request replayed to the other process would be accepted.
Must never keep a key longer than its window (memory stays bounded) and never store a
body or a signature as is.

A key is first *claimed* for a short hold, then *confirmed* for the whole window once
the work it guards is done. A hub that dies between the two loses only the hold: when
it runs out, the sender's retry is taken instead of being called a duplicate forever.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from redis.asyncio import Redis

PENDING = "pending"
DONE = "done"


class SeenKeys(Protocol):
    async def claim(self, key: str, now: float) -> str | None:
        """Take `key` for the hold; None if taken now, else its state (PENDING or DONE)."""
        ...

    async def confirm(self, key: str, now: float) -> None:
        """Mark `key` DONE for the whole window."""
        ...

    async def forget(self, key: str) -> None:
        """Release `key`, so that the same request may come again (our failure, not a replay)."""
        ...


class MemorySeenKeys:
    """One process's memory: a dict of expiry times, pruned when it grows."""

    def __init__(self, *, window_s: float, hold_s: float = 60.0, max_entries: int = 200_000) -> None:
        self.window_s = window_s
        self.hold_s = min(hold_s, window_s)
        self.max_entries = max_entries
        self._entries: dict[str, tuple[str, float]] = {}

    def _live(self, key: str, now: float) -> tuple[str, float] | None:
        entry = self._entries.get(key)
        if entry is not None and entry[1] <= now:
            del self._entries[key]
            return None
        return entry

    def _prune(self, now: float) -> None:
        if len(self._entries) < self.max_entries:
            return
        for key in [k for k, (_, expires) in self._entries.items() if expires <= now]:
            del self._entries[key]
        # Still full of live keys: drop the soonest to expire. A replay of one of those
        # is still refused by the freshness check once its tolerance has passed.
        while len(self._entries) >= self.max_entries:
            del self._entries[min(self._entries, key=lambda k: self._entries[k][1])]

    async def claim(self, key: str, now: float) -> str | None:
        entry = self._live(key, now)
        if entry is not None:
            return entry[0]
        self._prune(now)
        self._entries[key] = (PENDING, now + self.hold_s)
        return None

    async def confirm(self, key: str, now: float) -> None:
        self._entries[key] = (DONE, now + self.window_s)

    async def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class RedisSeenKeys:
    """Keys in Redis; their time to live is the hold, then the window.

    Redis' own clock expires them, not `now`: hubs' clocks may differ a little, and the
    freshness check already bounds how old a signed request can be. Keys are hashed so a
    signature (a credential within its window) is never stored as is.
    """

    def __init__(self, client: Redis, *, namespace: str, window_s: float, hold_s: float = 60.0) -> None:
        self._client = client
        self._prefix = f"ctihub:crm:webhook:{namespace}:"
        self._window_ms = max(1, int(window_s * 1000))
        self._hold_ms = max(1, int(min(hold_s, window_s) * 1000))

    def _key(self, key: str) -> str:
        return self._prefix + hashlib.sha256(key.encode()).hexdigest()

    async def claim(self, key: str, now: float) -> str | None:
        name = self._key(key)
        if await self._client.set(name, PENDING, nx=True, px=self._hold_ms):
            return None
        state = await self._client.get(name)
        if state is None:  # expired between the two calls: try once more
            return None if await self._client.set(name, PENDING, nx=True, px=self._hold_ms) else PENDING
        return state.decode() if isinstance(state, bytes) else str(state)

    async def confirm(self, key: str, now: float) -> None:
        await self._client.set(self._key(key), DONE, px=self._window_ms)

    async def forget(self, key: str) -> None:
        await self._client.delete(self._key(key))


__all__ = ["DONE", "PENDING", "MemorySeenKeys", "RedisSeenKeys", "SeenKeys"]
