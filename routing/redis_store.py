"""The shared routing store: several hub processes route from one Redis, safely.

Owns: `RedisRoutingStore`, a thin asyncio adapter (the one routing module that does
I/O) between the pure router and Redis, and its Lua scripts. Must never: decide
routing (the router does; no policy is written twice, in Python and in Lua), or carry
out an offer the reservation ledger refused.

Design: a replicated log of routing facts, with a reservation ledger beside it.
- The log. `submit(fact)` runs APPEND, which gives the fact the next sequence number,
  stamps its time (never earlier than the fact before it), adds it to a Redis Stream,
  and returns the entries logged since the caller's last one: one round trip. Each
  process applies the entries in sequence order to its own `Router` replica, then its
  own fact (decoded from the JSON it logged, exactly as the others will). The router
  is deterministic (same facts, same times, same order: same state, same commands),
  so every replica goes through the same states, and the process that submitted a
  fact carries out that fact's commands. Decisions stay in the pure core, exactly as
  in-process; the invariants tested on the router hold on every replica.
- The ledger. Before an offer is carried out, CLAIM records it in Redis, atomically:
  refused when the contact is already held (by another agent, or by a claim from a
  different fact) or when the agent has no room left on the channel (capacity, voice
  exclusivity), so even a replica that diverged through a bug can never have one
  contact offered twice or an agent overfilled. APPEND ends claims in log order, from
  the facts themselves, with the router's own validation of them: a finished
  (accepted) contact, an abandoned or rejected (offered) one, every contact of an agent
  logging out, and on `TimePassed` every offer whose reservation expired. A claim lands
  after its fact; CLAIM replays the facts logged in between from the log with the same
  tests, so an offer a later fact already ended is reported stale (and not carried
  out: that fact withdrew it), and one already accepted is recorded as accepted.
  After every fact, the landed claims are exactly the router's offers and assignments.
- Snapshots. Every `snapshot_every` entries a process stores its replica's state
  (`snapshot.export_state`) with the sequence number it stands for, and trims the log
  older than `trim_margin` entries before it. A process starting (or one that fell
  behind the trimmed part) loads the snapshot and replays the log after it. At 5,000
  agents and 20,000 waiting contacts a snapshot is 11 MB: exporting it holds the event
  loop for about 0.2 s (the JSON encoding runs on a thread), restoring one for 1 s.

The API (`store.RoutingStore`, plus): `await RedisRoutingStore.open(client, initial,
namespace=..., snapshot_every=..., on_applied=...)`; `await submit(fact)` (two round
trips when the fact makes an offer: APPEND, then CLAIM; an offer the ledger refuses is
left out of the returned commands, the rest are kept, and `refused` counts it by
status); `await sync()`; `router`; `applied` (the last sequence number applied);
`await snapshot_now()`; `await close()`. `RoutingError` as from the router;
`RoutingStoreError` when this process can no longer answer (see there).

Why not the routing state itself in Redis hashes with Lua-scripted reservations: the
policy (eligibility expressions, routing steps, strategies, aging, preferred agents,
rules, queue limits, statistics) would have to be written again in Lua, or every
decision would read thousands of agents over the network. Here each process does
every decision's CPU work itself (one core's routing throughput bounds the center,
thousands of decisions per second), and Redis only orders facts and guards offers.

Keys, all under the hash tag `{namespace}` (one Redis, or one cluster slot):
`:seq` the last sequence number, `:log` the stream (entry id `<seq>-1`, fields f fact,
n time, p submitter, r request), `:now` the log's time, `:snap` the snapshot (hash: seq,
data), and the ledger under `:r:`: `c:<contact>` (hash: a agent, ch channel, s claiming
seq, x offer expiry, '' once accepted), `a:<agent>` (hash: contact -> channel), `x`
(offers by expiry).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from routing.codec import KINDS, fact_from_json, fact_to_json
from routing.facts import Fact, apply
from routing.model import Command, OfferContact, RoutingError
from routing.router import Router
from routing.snapshot import export_state, restore_router
from routing.store import Applied

log = logging.getLogger(__name__)

# Shared by APPEND and READ: log entries from seq `from` to `upto` (a stream id bound),
# each flattened into one string "seq\ntime\nsubmitter\nrequest\nfact JSON" (JSON never
# holds a raw newline), which is much cheaper to parse than nested replies; nil when the
# entry `from` is not there although later ones are (trimmed: the caller reloads).
_READ_ENTRIES = r"""
local function read_entries(log, from, upto, count)
  local raw
  if count > 0 then
    raw = redis.call('XRANGE', log, from .. '-0', upto, 'COUNT', count)
  else
    raw = redis.call('XRANGE', log, from .. '-0', upto)
  end
  if #raw > 0 and raw[1][1] ~= from .. '-1' then return nil end
  local out = {}
  for i, e in ipairs(raw) do
    local f = {}
    for j = 1, #e[2], 2 do f[e[2][j]] = e[2][j + 1] end
    out[i] = string.sub(e[1], 1, -3) .. '\n' .. f.n .. '\n' .. f.p .. '\n' .. f.r .. '\n' .. f.f
  end
  return out
end
"""

# APPEND: log one fact and hand back what the caller has not applied yet.
# KEYS: 1 seq, 2 log, 3 now.  ARGV: 1 fact JSON (without time), 2 time (a float's repr),
# 3 last seq the caller applied, 4 submitter id, 5 request id, 6 fact kind, 7 contact id,
# 8 agent id, 9 ledger key prefix.
# Returns {seq, time, gap, entries...}: the entries between the caller's last one and
# this fact (not this fact: the caller has it), gap = 1 when some were trimmed.
# Times stay strings end to end: Lua would print a float with 14 digits.
APPEND = _READ_ENTRIES + """
local seq = redis.call('INCR', KEYS[1])
local now = ARGV[2]
local last = redis.call('GET', KEYS[3])
if last and tonumber(last) > tonumber(now) then now = last end  -- time never goes back
redis.call('SET', KEYS[3], now)
redis.call('XADD', KEYS[2], seq .. '-1', 'f', ARGV[1], 'n', now, 'p', ARGV[4], 'r', ARGV[5])

-- Ledger: the claims this fact ends, in log order. Each test mirrors the router's own
-- validation of the fact, so a fact the router refuses changes nothing here either.
-- (Claims not landed yet are judged by CLAIM, from the log.)
local P, kind, cid, aid = ARGV[9], ARGV[6], ARGV[7], ARGV[8]
local function release(c)
  local a = redis.call('HGET', P .. 'c:' .. c, 'a')
  if a then redis.call('HDEL', P .. 'a:' .. a, c) end
  redis.call('DEL', P .. 'c:' .. c)
  redis.call('ZREM', P .. 'x', c)
end
local held = redis.call('HMGET', P .. 'c:' .. cid, 'a', 'x')  -- agent, expiry ('' accepted)
local offered = held[2] and held[2] ~= ''
if kind == 'contact_finished' then
  if held[2] == '' then release(cid) end
elseif kind == 'contact_abandoned' then
  if offered then release(cid) end
elseif kind == 'offer_rejected' then
  if offered and held[1] == aid then release(cid) end
elseif kind == 'offer_accepted' then
  if offered and held[1] == aid then
    redis.call('HSET', P .. 'c:' .. cid, 'x', '')
    redis.call('ZREM', P .. 'x', cid)
  end
elseif kind == 'agent_logged_out' then
  for _, c in ipairs(redis.call('HKEYS', P .. 'a:' .. aid)) do release(c) end
elseif kind == 'time_passed' then
  for _, c in ipairs(redis.call('ZRANGEBYSCORE', P .. 'x', '-inf', now)) do release(c) end
end

local from = tonumber(ARGV[3]) + 1
local reply = {seq, now, 0}
if from < seq then
  local entries = read_entries(KEYS[2], from, (seq - 1) .. '-1', 0)
  if entries == nil or #entries == 0 then
    reply[3] = 1
  else
    for _, e in ipairs(entries) do reply[#reply + 1] = e end
  end
end
return reply
"""

# READ: the entries from ARGV[1] on (at most ARGV[2]), as APPEND returns them.
# KEYS: 1 seq, 2 log.  Returns {last seq, gap, entries...}.
READ = _READ_ENTRIES + """
local entries = read_entries(KEYS[2], tonumber(ARGV[1]), '+', tonumber(ARGV[2]))
local reply = {tonumber(redis.call('GET', KEYS[1]) or '0'), 0}
if entries == nil then
  reply[2] = 1
else
  for _, e in ipairs(entries) do reply[#reply + 1] = e end
end
return reply
"""

# CLAIM: record the offers one fact made, or refuse them.
# KEYS: 1 log.  ARGV: 1 ledger key prefix, 2 seq of the fact, then per offer: contact,
# agent, channel, expiry (a float's repr), the agent's capacity on the channel, voice
# exclusive (1/0).
# Returns one status per offer: ok | stale (a later fact already ended the offer, or the
# log no longer shows) | taken (the contact is held by another claim) | full (the agent
# has no room for it).
# The claim lands after its fact; facts logged in between (usually none) are replayed
# from the log, with the same tests as APPEND's, to find what became of the offer.
CLAIM = """
local P, seq = ARGV[1], tonumber(ARGV[2])
local later = {}
for i, e in ipairs(redis.call('XRANGE', KEYS[1], (seq + 1) .. '-0', '+')) do
  local body, now
  for j = 1, #e[2], 2 do
    if e[2][j] == 'f' then body = e[2][j + 1] elseif e[2][j] == 'n' then now = e[2][j + 1] end
  end
  local d = cjson.decode(body)
  later[i] = {d.k, d.contact_id, d.agent_id, tonumber(now)}
end
local trimmed = #redis.call('XRANGE', KEYS[1], seq .. '-1', seq .. '-1') == 0
local out = {}
for i = 3, #ARGV, 6 do
  local cid, aid, ch, exp = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local cap, excl = tonumber(ARGV[i + 4]), ARGV[i + 5]
  local state = 'offered'
  if trimmed then state = 'gone' end
  for _, f in ipairs(later) do
    if state == 'gone' then break end
    local k = f[1]
    if k == 'time_passed' then
      if state == 'offered' and f[4] >= exp then state = 'gone' end
    elseif k == 'agent_logged_out' then
      if f[3] == aid then state = 'gone' end
    elseif f[2] == cid then
      if k == 'offer_accepted' then
        if state == 'offered' and f[3] == aid then state = 'accepted' end
      elseif k == 'offer_rejected' then
        if state == 'offered' and f[3] == aid then state = 'gone' end
      elseif k == 'contact_abandoned' then
        if state == 'offered' then state = 'gone' end
      elseif k == 'contact_finished' then
        if state == 'accepted' then state = 'gone' end
      end
    end
  end
  local status
  local cur = redis.call('HMGET', P .. 'c:' .. cid, 'a', 's')
  if state == 'gone' then
    status = 'stale'
  elseif cur[1] then
    if cur[1] == aid and tonumber(cur[2]) == seq then status = 'ok' else status = 'taken' end
  else
    local held = redis.call('HGETALL', P .. 'a:' .. aid)
    local same, n, voice = 0, 0, false
    for j = 2, #held, 2 do
      n = n + 1
      if held[j] == ch then same = same + 1 end
      if held[j] == 'voice' then voice = true end
    end
    if same >= cap or (excl == '1' and n > 0 and (ch == 'voice' or voice)) then
      status = 'full'
    else
      local x = ARGV[i + 3]
      if state == 'accepted' then x = '' end
      redis.call('HSET', P .. 'c:' .. cid, 'a', aid, 'ch', ch, 's', ARGV[2], 'x', x)
      redis.call('HSET', P .. 'a:' .. aid, cid, ch)
      if x ~= '' then redis.call('ZADD', P .. 'x', x, cid) end
      status = 'ok'
    end
  end
  out[#out + 1] = status
end
return out
"""

# SNAPSHOT: keep the newer snapshot and trim the log below `trim_below`.
# KEYS: 1 snap, 2 log.  ARGV: 1 seq, 2 state JSON, 3 trim_below (seq).
# Returns the seq of the snapshot kept.
SNAPSHOT = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'seq') or '-1')
local seq = tonumber(ARGV[1])
if seq <= cur then return cur end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'data', ARGV[2])
if tonumber(ARGV[3]) > 1 then redis.call('XTRIM', KEYS[2], 'MINID', ARGV[3] .. '-0') end
return seq
"""

# BOOTSTRAP: the first process stores the initial state as snapshot 0; later ones keep
# whatever is there. KEYS: 1 snap, 2 seq.  ARGV: 1 state JSON.
BOOTSTRAP = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
  return redis.error_reply('routing log without a snapshot')
end
redis.call('HSET', KEYS[1], 'seq', '0', 'data', ARGV[1])
return 1
"""


class RoutingStoreError(Exception):
    """The store cannot answer for this process: the replica broke (a bug raised while
    applying a fact), the log in Redis went back (its keys were deleted or lost), or
    the process lagged so far that its own fact's commands are lost. `code`:
    'replica_broken' | 'log_reset' | 'lagged'. The first two stick: open a new store."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _log_failure(task: asyncio.Task[int]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # The next interval tries again; until then new processes replay a longer log.
        log.error("routing snapshot failed: %r", task.exception())


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class RedisRoutingStore:
    """Open with `await RedisRoutingStore.open(client, initial)`; see `store` for the
    contract and this module's docstring for the design."""

    def __init__(
        self,
        client: Any,
        *,
        namespace: str = "routing",
        snapshot_every: int = 10_000,
        trim_margin: int | None = None,
        on_applied: Callable[[Applied], None] | None = None,
    ) -> None:
        """Use `open`. `client` is a `redis.asyncio.Redis` (bytes or decoded replies)."""
        self._redis = client
        ns = "{" + namespace + "}"
        self._k_seq, self._k_log, self._k_now, self._k_snap = f"{ns}:seq", f"{ns}:log", f"{ns}:now", f"{ns}:snap"
        self._ledger = f"{ns}:r:"
        self._append = client.register_script(APPEND)
        self._claim = client.register_script(CLAIM)
        self._read = client.register_script(READ)
        self._snapshot = client.register_script(SNAPSHOT)
        self._bootstrap = client.register_script(BOOTSTRAP)
        self._snapshot_every = snapshot_every
        self._trim_margin = snapshot_every if trim_margin is None else trim_margin
        self._on_applied = on_applied
        self._me = uuid.uuid4().hex
        self._requests = itertools.count(1)
        self._router: Router | None = None
        self._applied = 0  # the last seq applied to the replica
        self._snap_seq = 0  # the newest snapshot known
        # Results of this process's facts, by request id, until their submitter reads them.
        self._results: dict[str, tuple[list[Command], RoutingError | None]] = {}
        self._reload_lock = asyncio.Lock()
        self._snapshot_task: asyncio.Task[int] | None = None
        self._broken: str | None = None
        self.refused: Counter[str] = Counter()  # offers not carried out, by CLAIM status

    @classmethod
    async def open(
        cls,
        client: Any,
        initial: Callable[[], Router],
        *,
        namespace: str = "routing",
        snapshot_every: int = 10_000,
        trim_margin: int | None = None,
        on_applied: Callable[[Applied], None] | None = None,
    ) -> RedisRoutingStore:
        """Join the shared state, creating it from `initial()` (queues, agents, rules:
        usually `config.build_router`) if this is the first process ever. Later
        configuration changes go through `submit` (AgentConfigured, QueueConfigured,
        RulesChanged), so that every replica sees them at the same point."""
        store = cls(
            client,
            namespace=namespace,
            snapshot_every=snapshot_every,
            trim_margin=trim_margin,
            on_applied=on_applied,
        )
        if not await client.exists(store._k_snap):
            state = json.dumps(export_state(initial()), separators=(",", ":"))
            await store._bootstrap(keys=[store._k_snap, store._k_seq], args=[state])
        await store._load_snapshot()
        await store.sync()
        return store

    # --- the contract -------------------------------------------------------------------

    @property
    def router(self) -> Router:
        self._check()
        assert self._router is not None
        return self._router

    @property
    def applied(self) -> int:
        """The sequence number of the last fact applied to this replica."""
        return self._applied

    async def submit(self, fact: Fact) -> list[Command]:
        self._check()
        request = f"{next(self._requests)}"
        applied_before = self._applied
        contact = getattr(fact, "contact_id", "")
        agent = getattr(fact, "agent_id", "")
        body = fact_to_json(fact)
        reply = await self._append(
            keys=[self._k_seq, self._k_log, self._k_now],
            args=[
                body,
                repr(float(fact.now)),
                applied_before,
                self._me,
                request,
                KINDS[type(fact)],
                contact,
                agent,
                self._ledger,
            ],
        )
        seq, now, gap = int(reply[0]), float(_text(reply[1])), int(reply[2])
        if seq <= applied_before:
            self._log_reset(seq)
        if not gap:
            self._apply_entries(reply[3:])
        if self._applied == seq - 1:
            # Ours is next: apply it as every replica will, from its JSON and the log's time.
            self._apply(seq, fact_from_json(body, now), mine=True, request=request)
        elif self._applied < seq:
            await self._catch_up()
        result = self._results.pop(request, None)
        if result is None:
            raise RoutingStoreError("lagged", f"fact {seq} was folded into a snapshot before this process applied it")
        commands, error = result
        if error is not None:
            raise error
        offers = [c for c in commands if isinstance(c, OfferContact)]
        if offers:
            commands = await self._guard(seq, commands, offers)
        self._maybe_snapshot()
        return commands

    async def sync(self) -> None:
        self._check()
        await self._catch_up()
        self._maybe_snapshot()

    async def close(self) -> None:
        """Wait for a snapshot being written; the client is the caller's to close."""
        if self._snapshot_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._snapshot_task

    async def snapshot_now(self) -> int:
        """Store a snapshot of this replica at once; the seq of the snapshot kept."""
        await self.sync()
        return await self._write_snapshot()

    # --- the log ------------------------------------------------------------------------

    def _check(self) -> None:
        if self._broken is not None:
            raise RoutingStoreError("replica_broken", self._broken)

    def _apply_entries(self, entries: list[Any]) -> None:
        """Apply flattened log entries in order; those applied already are skipped
        (replies of concurrent submits overlap). Stops at a gap."""
        for entry in entries:
            seq_s, now_s, submitter, request, body = _text(entry).split("\n", 4)
            seq = int(seq_s)
            if seq <= self._applied:
                continue
            if seq != self._applied + 1:
                return  # a gap: the caller catches up from the snapshot
            mine = submitter == self._me
            self._apply(seq, fact_from_json(body, float(now_s)), mine=mine, request=request if mine else None)

    def _apply(self, seq: int, fact: Fact, *, mine: bool, request: str | None) -> None:
        assert self._router is not None
        error: RoutingError | None = None
        commands: list[Command] = []
        try:
            commands = apply(self._router, fact)
        except RoutingError as err:
            error = err
        except Exception as err:
            # The router broke its own promise (validate before changing): its state can
            # no longer be trusted, and every replica will meet the same fact.
            self._broken = f"fact {seq} ({KINDS[type(fact)]}) raised {err!r}"
            log.exception("routing replica broken at fact %s", seq)
            raise RoutingStoreError("replica_broken", self._broken) from err
        self._applied = seq
        if request is not None:
            self._results[request] = (commands, error)
        if self._on_applied is not None:
            code = None if error is None else error.code
            self._on_applied(Applied(seq=seq, fact=fact, commands=tuple(commands), mine=mine, error=code))

    async def _catch_up(self) -> None:
        """Apply every logged entry after ours; from the snapshot if they were trimmed."""
        while True:
            start = self._applied + 1
            reply = await self._read(keys=[self._k_seq, self._k_log], args=[start, 1000])
            last, gap, entries = int(reply[0]), int(reply[1]), reply[2:]
            if last < self._applied:
                self._log_reset(last)
            if gap:
                await self._reload(start)
                continue
            if not entries:
                return
            self._apply_entries(entries)

    def _log_reset(self, seq: int) -> None:
        # The sequence went back: the keys were deleted (FLUSHDB) or a failover lost
        # writes. This replica is ahead of what Redis remembers; nobody can merge that.
        self._broken = f"the routing log went back from {self._applied} to {seq} (keys deleted or lost)"
        log.error("%s", self._broken)
        raise RoutingStoreError("log_reset", self._broken)

    async def _reload(self, needed: int) -> None:
        async with self._reload_lock:
            if self._applied >= needed:
                return  # another coroutine reloaded meanwhile
            seq = int(await self._redis.hget(self._k_snap, "seq") or -1)
            if seq < needed:
                # The entry we need is gone and no snapshot covers it: nothing can rebuild
                # this state (trimming never goes past the newest snapshot).
                self._broken = f"log entry {needed} is gone and the newest snapshot is {seq}"
                raise RoutingStoreError("replica_broken", self._broken)
            log.warning("routing replica behind the trimmed log (needs %s): loading snapshot %s", needed, seq)
            await self._load_snapshot()

    async def _load_snapshot(self) -> None:
        seq, data = await self._redis.hmget(self._k_snap, ["seq", "data"])
        if seq is None or data is None:
            raise RoutingStoreError("replica_broken", "no routing snapshot in Redis")
        state = await asyncio.to_thread(json.loads, data)
        self._router = restore_router(state)
        self._applied = self._snap_seq = int(seq)

    # --- the ledger ---------------------------------------------------------------------

    async def _guard(self, seq: int, commands: list[Command], offers: list[OfferContact]) -> list[Command]:
        """Claim the offers; drop those refused from the commands."""
        router = self.router
        args: list[Any] = [self._ledger, seq]
        for offer in offers:
            profile = router.profile(offer.agent_id)
            expires = router.offer_expires_at(offer.contact_id)
            args += [
                offer.contact_id,
                offer.agent_id,
                offer.channel,
                repr(float(expires if expires is not None else 0.0)),
                profile.capacity.get(offer.channel, 0),
                "1" if profile.voice_exclusive else "0",
            ]
        statuses = [_text(s) for s in await self._claim(keys=[self._k_log], args=args)]
        refused = {o.contact_id for o, s in zip(offers, statuses, strict=True) if s != "ok"}
        for offer, status in zip(offers, statuses, strict=True):
            if status == "ok":
                continue
            self.refused[status] += 1
            if status == "stale":
                log.info("offer of %s to %s (fact %s) already ended", offer.contact_id, offer.agent_id, seq)
            else:
                log.error(
                    "reservation ledger refused offer of %s to %s (fact %s): %s; this replica disagrees",
                    offer.contact_id,
                    offer.agent_id,
                    seq,
                    status,
                )
        if not refused:
            return commands
        return [c for c in commands if not (isinstance(c, OfferContact) and c.contact_id in refused)]

    # --- snapshots ----------------------------------------------------------------------

    def _maybe_snapshot(self) -> None:
        if self._applied - self._snap_seq < self._snapshot_every:
            return
        if self._snapshot_task is None or self._snapshot_task.done():
            self._snapshot_task = asyncio.create_task(self._write_snapshot())
            self._snapshot_task.add_done_callback(_log_failure)

    async def _write_snapshot(self) -> int:
        assert self._router is not None
        seq = self._applied
        state = export_state(self._router)  # on the loop: the replica must not move meanwhile
        data = await asyncio.to_thread(json.dumps, state, separators=(",", ":"))
        trim_below = max(0, seq - self._trim_margin + 1)
        kept = int(await self._snapshot(keys=[self._k_snap, self._k_log], args=[seq, data, trim_below]))
        self._snap_seq = max(self._snap_seq, kept)
        return kept
