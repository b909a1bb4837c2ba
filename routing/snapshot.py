"""A router's whole state as plain data, and a router rebuilt from it.

Owns: `export_state` and `restore_router`, the snapshot a shared store keeps so that a
new process does not replay the log from the beginning. The only module besides
`router.py` that reads and writes the router's private records; what the router only
derives (indexes, timers, per-queue standing, requirement verdicts) is rebuilt, not
stored, except what the next input's pass must look at (`pending`: normally nothing,
since every input ends with a pass), and timers: eligibility changes the router already
acted on are not made due again. A restored router makes the same decisions as the
original from then on, as cheaply. Must never:
import asyncio, do I/O or read a clock.
"""

from __future__ import annotations

from typing import Any

from routing.codec import (
    profile_data,
    profile_from,
    queue_data,
    queue_from,
    rule_data,
    rule_from,
)
from routing.model import AgentState
from routing.queueing import ContactRecord
from routing.router import Router
from routing.stats import RoutingStats

FORMAT = 1


def export_state(router: Router) -> dict[str, Any]:
    """JSON-ready (every collection is new: the result may be encoded on another
    thread while the router goes on)."""
    r = router
    return {
        "format": FORMAT,
        "options": {"max_missed_offers": r.max_missed_offers, "publish_stats": r.publish_stats},
        "queues": [queue_data(q) for q in r._queues.values()],
        "rules": [rule_data(c.rule) for c in r._rules],
        "agents": [
            {
                "profile": profile_data(a.profile),
                "state": a.state.value,
                "since": a.since,
                "reason": a.reason,
                "wants": a.wants.value,
                "wants_reason": a.wants_reason,
                "idle_since": a.idle_since,
                "offered": a.offered,
                "handling": list(a.handling),
                "wrap_until": a.wrap_until,
                "wrap_of": list(a.wrap_of) if a.wrap_of is not None else None,
                "missed": a.missed,
                "declined": sorted(a.declined),
            }
            for a in r._agents.values()  # in agent order: `order` is the position
        ],
        "contacts": [
            {
                "contact_id": c.contact_id,
                "queue": c.queue,
                "channel": c.channel,
                "arrived": c.arrived,
                "entered": c.entered,
                "seq": c.seq,
                "priority": c.priority,
                "requirements": [[req.text, relaxed_at] for req, relaxed_at in c.requirements],
                "sig": list(c.sig),
                "preferred_agent": c.preferred_agent,
                "prefer_until": c.prefer_until,
                "declined": sorted(c.declined),
                "agent": c.agent,
                "accepted": c.accepted,
                "expires": c.expires,
                "accepted_at": c.accepted_at,
            }
            for c in r._contacts.values()
        ],
        "seq": r._seq,
        "stamp": r._stamp,
        "now": r._now,
        "last_pick": dict(r._last_pick),
        "pending": {
            "full": r._full,
            "agents": sorted(r._dirty_agents),
            "contacts": sorted(r._dirty_contacts),
        },
        "stats": r.stats.export(),
    }


def restore_router(state: dict[str, Any]) -> Router:
    """The router `export_state` was taken from; raises ValueError for another format."""
    if state.get("format") != FORMAT:
        raise ValueError(f"routing snapshot format {state.get('format')!r}, expected {FORMAT}")
    options = state["options"]
    r = Router(
        [queue_from(q) for q in state["queues"]],
        [profile_from(a["profile"]) for a in state["agents"]],
        rules=[rule_from(d) for d in state["rules"]],
        max_missed_offers=options["max_missed_offers"],
        publish_stats=options["publish_stats"],
        stats_window_s=state["stats"]["window_s"],
    )
    for d in state["contacts"]:
        reqs = r._reqs
        r._contacts[d["contact_id"]] = ContactRecord(
            contact_id=d["contact_id"],
            queue=d["queue"],
            channel=d["channel"],
            arrived=d["arrived"],
            entered=d["entered"],
            seq=d["seq"],
            priority=d["priority"],
            requirements=[(reqs.of(reqs.parse(text)), relaxed_at) for text, relaxed_at in d["requirements"]],
            sig=tuple(d["sig"]),
            preferred_agent=d["preferred_agent"],
            prefer_until=d["prefer_until"],
            declined=set(d["declined"]),
            agent=d["agent"],
            accepted=d["accepted"],
            expires=d["expires"],
            accepted_at=d["accepted_at"],
        )
    for d in state["agents"]:
        a = r._agents[d["profile"]["agent_id"]]
        a.state, a.since, a.reason = AgentState(d["state"]), d["since"], d["reason"]
        a.wants, a.wants_reason = AgentState(d["wants"]), d["wants_reason"]
        a.idle_since, a.offered, a.handling = d["idle_since"], d["offered"], list(d["handling"])
        a.wrap_until = d["wrap_until"]
        a.wrap_of = (d["wrap_of"][0], d["wrap_of"][1]) if d["wrap_of"] is not None else None
        a.missed, a.declined = d["missed"], set(d["declined"])
    # Derived: waiting lists, timers, the free-agent index.
    now = state["now"]
    for c in r._contacts.values():
        r._stamp += 1
        c.version = r._stamp
        if c.agent is None:
            r._waiting.add(c)
            q = r._queues[c.queue]
            r._timers.contact_waiting(c, r._compiled[c.queue].step_times, q.max_wait_s, seen_at=now)
        elif not c.accepted:
            r._timers.offer_made(c)
    r._stamp = max(r._stamp, state["stamp"])
    r._seq, r._now, r._last_pick = state["seq"], now, dict(state["last_pick"])
    for a in r._agents.values():
        if a.wrap_until is not None:
            r._timers.wrap_started(a)
        r._refresh(a)
    r.stats = RoutingStats.restore(state["stats"])
    pending = state["pending"]
    r._full = pending["full"]
    r._dirty_agents = set(pending["agents"])
    r._dirty_contacts = set(pending["contacts"])
    return r
