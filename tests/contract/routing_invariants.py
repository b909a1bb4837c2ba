"""Checks shared by the routing store tests: what must hold of any router replica after
every fact, of every offer when it is made, and of the Redis reservation ledger once
every claim has landed."""

from __future__ import annotations

import math
from typing import Any

from routing import AgentState, OfferContact, Router
from routing.agents import has_room

S = AgentState


def effective_priority(router: Router, contact: dict[str, Any], now: float) -> int:
    q = router.queue(contact["queue"])
    aging = max(0, math.floor((now - contact["arrived"]) / q.aging_step_s)) if q.aging_step_s else 0
    return int(q.priority + contact["priority"] + aging)


def check_replica(router: Router, now: float) -> None:
    """No contact held twice; no agent over capacity (voice exclusivity included);
    RESERVED exactly while an offer is pending; a waiting contact and a free agent with
    room who is eligible for it never coexist."""
    dump = router.dump()
    holders: dict[str, str] = {}
    for agent_id in router.agents():
        a = dump["agents"][agent_id]
        held = router.contacts_of(agent_id)
        state = router.agent_state(agent_id)
        assert (state is S.RESERVED) == (a["offered"] is not None), (agent_id, state)
        profile = router.profile(agent_id)
        channels = [router.channel_of(c) or "" for c in held]
        for channel in set(channels):
            assert channels.count(channel) <= profile.capacity.get(channel, 0), (agent_id, channels)
        if profile.voice_exclusive and "voice" in channels:
            assert len(channels) == 1, (agent_id, channels)
        for cid in held:
            assert cid not in holders, f"{cid} held by {holders[cid]} and {agent_id}"
            holders[cid] = agent_id
            assert router.agent_for(cid) == agent_id
    for cid, c in dump["contacts"].items():
        assert (c["agent"] is not None) == (cid in holders), cid
    records = router._agents  # the router's own room test, on its own records
    for agent_id in router.agents():
        a = dump["agents"][agent_id]
        free = (
            a["state"] in ("available", "busy")
            and a["wants"] == "available"
            and a["offered"] is None
            and a["wrap_until"] is None
        )
        if not free:
            continue
        for queue in router.queues():
            for cid in router.waiting(queue):
                if has_room(records[agent_id], router.channel_of(cid) or "", router._contacts):
                    assert router.eligible(cid, agent_id, now) is None, f"{cid} waits while {agent_id} is free"


def check_no_offer_outlives_its_reservation(router: Router, now: float) -> None:
    """Right after `TimePassed(now)`."""
    for cid, c in router.dump()["contacts"].items():
        if c["agent"] is not None and not c["accepted"]:
            assert c["expires"] > now, f"offer of {cid} outlived its reservation"


def check_offer_order(router: Router, offer: OfferContact, now: float) -> None:
    """Right after the fact that made the offer: no waiting contact of the same channel
    that comes before it (higher effective priority, or the same and earlier arrival)
    was eligible for the agent."""
    dump = router.dump()["contacts"]
    mine = dump.get(offer.contact_id)
    if mine is None:
        return
    key = (effective_priority(router, mine, now), -mine["arrived"])
    for queue in router.queues():
        for cid in router.waiting(queue):
            other = dump[cid]
            if other["channel"] != mine["channel"]:
                continue
            if (effective_priority(router, other, now), -other["arrived"]) > key:
                assert router.eligible(cid, offer.agent_id, now) is None, (
                    f"{offer.contact_id} offered to {offer.agent_id} before {cid}"
                )


async def check_ledger(client: Any, namespace: str, router: Router, *, exact: bool = True) -> None:
    """The Redis reservation ledger holds exactly the router's offers and assignments
    (with `exact=False`: none that the router does not hold)."""
    prefix = "{" + namespace + "}:r:"
    claims: dict[str, tuple[str, bool]] = {}
    async for key in client.scan_iter(match=prefix + "c:*", count=1000):
        name = key.decode() if isinstance(key, bytes) else key
        h = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
             for k, v in (await client.hgetall(name)).items()}
        claims[name[len(prefix) + 2 :]] = (h["a"], h["x"] == "")
    held = {
        cid: (router.agent_for(cid) or "", router.is_accepted(cid))
        for agent_id in router.agents()
        for cid in router.contacts_of(agent_id)
    }
    if exact:
        assert claims == held
    else:
        assert claims.items() <= held.items(), (claims, held)
    for agent_id in router.agents():
        by_agent = sorted(k.decode() if isinstance(k, bytes) else k for k in await client.hkeys(prefix + "a:" + agent_id))
        assert by_agent == sorted(c for c, (a, _) in claims.items() if a == agent_id), agent_id
