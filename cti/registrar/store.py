"""Where bindings live: in the process, or in Redis so every hub process sees them.

Owns the storage of bindings per address-of-record and the atomic application of a
registrar decision's changes. Must never decide anything: which change to make is
the registrar's business, and how changes combine is `bindings.apply_changes`.

Redis layout: one hash per AOR at `<prefix><aor>`, field = the binding's contact
key, value = the binding as JSON (with `expires_at`). A Lua script applies a batch
of changes, drops expired fields and sets the key's TTL to the longest remaining
binding, all at once, so two processes never see half a REGISTER. TTLs are relative
to the `now` the caller passes, so the store works with any clock the caller uses.
Concurrent REGISTERs for one AOR on two processes are last-writer-wins per contact;
a phone sends its REGISTERs one at a time, so that is enough.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from cti.registrar.bindings import (
    AddBinding,
    Binding,
    BindingChange,
    RefreshBinding,
    RemoveAllBindings,
    RemoveBinding,
    apply_changes,
    binding_from_json,
    binding_to_json,
)

__all__ = ["BindingStore", "InMemoryBindingStore", "RedisBindingStore"]

_COMMAND_TIMEOUT_S = 5.0


class BindingStore(Protocol):
    async def get(self, aor: str) -> list[Binding]:
        """Every stored binding of `aor`, expired ones included until purged."""
        ...

    async def apply(self, aor: str, changes: Sequence[BindingChange], now: float) -> None: ...

    async def lookup(self, aor: str, now: float) -> list[Binding]:
        """The bindings of `aor` still alive at `now`: where to send a call."""
        ...

    async def purge_expired(self, now: float) -> int:
        """Drop expired bindings everywhere; returns how many were dropped."""
        ...

    async def close(self) -> None: ...


def _order(bindings: Sequence[Binding]) -> list[Binding]:
    return sorted(bindings, key=lambda b: (b.registered_at, b.key))


class InMemoryBindingStore:
    def __init__(self) -> None:
        self._by_aor: dict[str, dict[str, Binding]] = {}

    async def get(self, aor: str) -> list[Binding]:
        return _order(list(self._by_aor.get(aor, {}).values()))

    async def apply(self, aor: str, changes: Sequence[BindingChange], now: float) -> None:
        after = apply_changes(self._by_aor.get(aor, {}).values(), changes, now)
        if after:
            self._by_aor[aor] = {b.key: b for b in after}
        else:
            self._by_aor.pop(aor, None)

    async def lookup(self, aor: str, now: float) -> list[Binding]:
        return [b for b in await self.get(aor) if b.expires_at > now]

    async def purge_expired(self, now: float) -> int:
        dropped = 0
        for aor in list(self._by_aor):
            before = len(self._by_aor[aor])
            await self.apply(aor, (), now)
            dropped += before - len(self._by_aor.get(aor, {}))
        return dropped

    async def close(self) -> None:
        pass


# ARGV[1] = now (seconds), ARGV[2] = JSON list of ops. Returns the number of expired
# fields dropped. The key's TTL follows the longest-lived binding left.
_APPLY = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
for _, op in ipairs(cjson.decode(ARGV[2])) do
  if op[1] == 'clear' then
    redis.call('DEL', key)
  elseif op[1] == 'set' then
    redis.call('HSET', key, op[2], op[3])
  elseif op[1] == 'del' then
    redis.call('HDEL', key, op[2])
  end
end
local dropped = 0
local longest = nil
local all = redis.call('HGETALL', key)
for i = 1, #all, 2 do
  local ok, b = pcall(cjson.decode, all[i + 1])
  local at = ok and tonumber(b['expires_at']) or nil
  if at == nil or at <= now then
    redis.call('HDEL', key, all[i])
    dropped = dropped + 1
  elseif longest == nil or at > longest then
    longest = at
  end
end
if longest ~= nil then
  redis.call('PEXPIRE', key, math.max(1, math.ceil((longest - now) * 1000)))
end
return dropped
"""


class RedisBindingStore:
    def __init__(self, redis_url: str, *, prefix: str = "ctihub:reg:", client_name: str = "ctihub-registrar") -> None:
        self.prefix = prefix
        # As in the bus: a command that fails on a dropped connection is retried on a
        # fresh one; the script is idempotent for a given batch, so a retry is safe.
        self._redis: aioredis.Redis = aioredis.from_url(
            redis_url,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), 3),
            retry_on_error=[RedisConnectionError],
            socket_connect_timeout=2,
            client_name=client_name,
        )
        self._apply = self._redis.register_script(_APPLY)

    def _key(self, aor: str) -> str:
        return self.prefix + aor

    async def get(self, aor: str) -> list[Binding]:
        async with asyncio.timeout(_COMMAND_TIMEOUT_S):
            raw: Any = await self._redis.hgetall(self._key(aor))
        out = []
        for value in raw.values():
            try:
                out.append(binding_from_json(value))
            except (ValueError, KeyError, TypeError):
                continue  # a field written by a newer hub we cannot read: not ours to break on
        return _order(out)

    async def apply(self, aor: str, changes: Sequence[BindingChange], now: float) -> None:
        ops: list[list[str]] = []
        for change in changes:
            if isinstance(change, (AddBinding, RefreshBinding)):
                ops.append(["set", change.binding.key, binding_to_json(change.binding)])
            elif isinstance(change, RemoveBinding):
                ops.append(["del", change.key])
            elif isinstance(change, RemoveAllBindings):
                ops.append(["clear"])
        await self._run(self._key(aor), ops, now)

    async def _run(self, key: str | bytes, ops: list[list[str]], now: float) -> int:
        # json.dumps of an empty list is "[]", which cjson decodes as an empty table.
        async with asyncio.timeout(_COMMAND_TIMEOUT_S):
            result: Any = await self._apply(keys=[key], args=[repr(float(now)), json.dumps(ops)])
        return int(result)

    async def lookup(self, aor: str, now: float) -> list[Binding]:
        return [b for b in await self.get(aor) if b.expires_at > now]

    async def purge_expired(self, now: float) -> int:
        dropped = 0
        pattern = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in self.prefix) + "*"
        async for key in self._redis.scan_iter(match=pattern, count=500):
            dropped += await self._run(key, [], now)
        return dropped

    async def close(self) -> None:
        await self._redis.aclose()
