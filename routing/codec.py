"""JSON forms of routing facts and configuration, for a store's log and snapshots.

Owns: `fact_to_json` / `fact_from_json` and the plain-data forms of `AgentProfile`,
`QueueConfig` and `Rule` (`profile_data`, `queue_data`, `rule_data` and back). Every
form round-trips exactly: floats through `repr`, sets as {"set": [...]} so that they
come back as frozensets, tuples as lists. The `now` of a fact is kept apart
(`fact_to_json` leaves it out; `fact_from_json` takes it) because a shared log stamps
the time itself. Must never: import asyncio, do I/O or read a clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from routing.expressions import Value
from routing.facts import (
    AgentConfigured,
    AgentLoggedIn,
    AgentLoggedOut,
    AgentStateRequested,
    ContactAbandoned,
    ContactArrived,
    ContactFinished,
    Fact,
    OfferAccepted,
    OfferRejected,
    OutboundStarted,
    QueueConfigured,
    RulesChanged,
    TimePassed,
    WrapUpDone,
)
from routing.model import (
    ActionKind,
    AgentProfile,
    AgentState,
    QueueAction,
    QueueConfig,
    RoutingStep,
    Rule,
    Strategy,
)

# The `kind` each fact is logged under (the Redis store's ledger reads it too).
KINDS: dict[type, str] = {
    ContactArrived: "contact_arrived",
    ContactAbandoned: "contact_abandoned",
    OutboundStarted: "outbound_started",
    OfferAccepted: "offer_accepted",
    OfferRejected: "offer_rejected",
    ContactFinished: "contact_finished",
    AgentLoggedIn: "agent_logged_in",
    AgentLoggedOut: "agent_logged_out",
    AgentStateRequested: "agent_state_requested",
    WrapUpDone: "wrap_up_done",
    TimePassed: "time_passed",
    AgentConfigured: "agent_configured",
    QueueConfigured: "queue_configured",
    RulesChanged: "rules_changed",
}


class CodecError(ValueError):
    """The JSON is not a routing fact or configuration this version understands."""


# --- values ------------------------------------------------------------------------------


def value_data(v: Value) -> Any:
    if isinstance(v, frozenset):
        return {"set": sorted(v)}
    if isinstance(v, tuple):
        return list(v)
    return v


def value_from(d: Any) -> Value:
    if isinstance(d, dict):
        return frozenset(d["set"])
    if isinstance(d, list):
        return tuple(d)
    if d is None or isinstance(d, (str, int, float, bool)):
        return d
    raise CodecError(f"not an attribute value: {d!r}")


def _values(m: Mapping[str, Value]) -> dict[str, Any]:
    return {k: value_data(v) for k, v in m.items()}


def _values_from(d: Mapping[str, Any]) -> dict[str, Value]:
    return {k: value_from(v) for k, v in d.items()}


# --- configuration -----------------------------------------------------------------------


def profile_data(p: AgentProfile) -> dict[str, Any]:
    return {
        "agent_id": p.agent_id,
        "skills": sorted(p.skills),
        "proficiency": dict(p.proficiency),
        "attributes": _values(p.attributes),
        "capacity": dict(p.capacity),
        "voice_exclusive": p.voice_exclusive,
    }


def profile_from(d: Mapping[str, Any]) -> AgentProfile:
    return AgentProfile(
        agent_id=d["agent_id"],
        skills=frozenset(d["skills"]),
        proficiency=dict(d["proficiency"]),
        attributes=_values_from(d["attributes"]),
        capacity=dict(d["capacity"]),
        voice_exclusive=d["voice_exclusive"],
    )


def _action_data(a: QueueAction) -> dict[str, Any]:
    return {"kind": a.kind.value, "to_queue": a.to_queue, "message": a.message}


def _action_from(d: Mapping[str, Any]) -> QueueAction:
    return QueueAction(kind=ActionKind(d["kind"]), to_queue=d["to_queue"], message=d["message"])


def queue_data(q: QueueConfig) -> dict[str, Any]:
    return {
        "name": q.name,
        "required_skills": sorted(q.required_skills),
        "requirement": q.requirement,
        "steps": [[s.after_s, s.requirement] for s in q.steps],
        "priority": q.priority,
        "aging_step_s": q.aging_step_s,
        "strategy": q.strategy.value,
        "service_level_s": q.service_level_s,
        "max_length": q.max_length,
        "on_full": _action_data(q.on_full),
        "max_wait_s": q.max_wait_s,
        "on_timeout": _action_data(q.on_timeout),
        "reservation_timeout_s": q.reservation_timeout_s,
        "wrap_up_s": q.wrap_up_s,
    }


def queue_from(d: Mapping[str, Any]) -> QueueConfig:
    return QueueConfig(
        name=d["name"],
        required_skills=frozenset(d["required_skills"]),
        requirement=d["requirement"],
        steps=tuple(RoutingStep(after_s=a, requirement=r) for a, r in d["steps"]),
        priority=d["priority"],
        aging_step_s=d["aging_step_s"],
        strategy=Strategy(d["strategy"]),
        service_level_s=d["service_level_s"],
        max_length=d["max_length"],
        on_full=_action_from(d["on_full"]),
        max_wait_s=d["max_wait_s"],
        on_timeout=_action_from(d["on_timeout"]),
        reservation_timeout_s=d["reservation_timeout_s"],
        wrap_up_s=d["wrap_up_s"],
    )


def rule_data(r: Rule) -> dict[str, Any]:
    return {
        "name": r.name,
        "when": r.when,
        "require": r.require,
        "priority": r.priority,
        "relax_after_s": r.relax_after_s,
    }


def rule_from(d: Mapping[str, Any]) -> Rule:
    return Rule(
        name=d["name"], when=d["when"], require=d["require"], priority=d["priority"], relax_after_s=d["relax_after_s"]
    )


# --- facts -------------------------------------------------------------------------------


def fact_data(fact: Fact) -> dict[str, Any]:
    """The fact as plain data, without its `now`, with its kind under "k"."""
    kind = KINDS.get(type(fact))
    if kind is None:
        raise CodecError(f"not a routing fact: {fact!r}")
    match fact:
        case ContactArrived():
            d: dict[str, Any] = {
                "contact_id": fact.contact_id,
                "queue": fact.queue,
                "channel": fact.channel,
                "priority": fact.priority,
                "requirements": fact.requirements,
                "attributes": _values(fact.attributes),
                "preferred_agent": fact.preferred_agent,
                "preferred_for_s": fact.preferred_for_s,
            }
        case ContactAbandoned() | ContactFinished():
            d = {"contact_id": fact.contact_id}
        case OutboundStarted():
            d = {"contact_id": fact.contact_id, "agent_id": fact.agent_id, "queue": fact.queue}
        case OfferAccepted() | OfferRejected():
            d = {"contact_id": fact.contact_id, "agent_id": fact.agent_id}
        case AgentLoggedIn() | AgentLoggedOut() | WrapUpDone():
            d = {"agent_id": fact.agent_id}
        case AgentStateRequested():
            d = {"agent_id": fact.agent_id, "state": fact.state.value, "reason": fact.reason}
        case TimePassed():
            d = {}
        case AgentConfigured():
            d = {"profile": profile_data(fact.profile)}
        case QueueConfigured():
            d = {"queue": queue_data(fact.queue)}
        case RulesChanged():
            d = {"rules": [rule_data(r) for r in fact.rules]}
    d["k"] = kind
    return d


def fact_to_json(fact: Fact) -> str:
    return json.dumps(fact_data(fact), separators=(",", ":"), allow_nan=False)


def fact_from_data(d: Mapping[str, Any], now: float) -> Fact:
    try:
        kind = d["k"]
        if kind == "contact_arrived":
            return ContactArrived(
                contact_id=d["contact_id"],
                queue=d["queue"],
                now=now,
                channel=d["channel"],
                priority=d["priority"],
                requirements=d["requirements"],
                attributes=_values_from(d["attributes"]),
                preferred_agent=d["preferred_agent"],
                preferred_for_s=d["preferred_for_s"],
            )
        if kind == "contact_abandoned":
            return ContactAbandoned(contact_id=d["contact_id"], now=now)
        if kind == "outbound_started":
            return OutboundStarted(contact_id=d["contact_id"], agent_id=d["agent_id"], queue=d["queue"], now=now)
        if kind == "contact_finished":
            return ContactFinished(contact_id=d["contact_id"], now=now)
        if kind == "offer_accepted":
            return OfferAccepted(contact_id=d["contact_id"], agent_id=d["agent_id"], now=now)
        if kind == "offer_rejected":
            return OfferRejected(contact_id=d["contact_id"], agent_id=d["agent_id"], now=now)
        if kind == "agent_logged_in":
            return AgentLoggedIn(agent_id=d["agent_id"], now=now)
        if kind == "agent_logged_out":
            return AgentLoggedOut(agent_id=d["agent_id"], now=now)
        if kind == "wrap_up_done":
            return WrapUpDone(agent_id=d["agent_id"], now=now)
        if kind == "agent_state_requested":
            return AgentStateRequested(agent_id=d["agent_id"], state=AgentState(d["state"]), now=now, reason=d["reason"])
        if kind == "time_passed":
            return TimePassed(now=now)
        if kind == "agent_configured":
            return AgentConfigured(profile=profile_from(d["profile"]), now=now)
        if kind == "queue_configured":
            return QueueConfigured(queue=queue_from(d["queue"]), now=now)
        if kind == "rules_changed":
            return RulesChanged(rules=tuple(rule_from(r) for r in d["rules"]), now=now)
    except (KeyError, TypeError, ValueError) as err:
        raise CodecError(f"bad routing fact {dict(d)!r}: {err}") from None
    raise CodecError(f"unknown routing fact kind {d.get('k')!r}")


def fact_from_json(text: str | bytes, now: float) -> Fact:
    try:
        d = json.loads(text)
    except ValueError as err:
        raise CodecError(f"not JSON: {err}") from None
    if not isinstance(d, dict):
        raise CodecError(f"not a routing fact: {d!r}")
    return fact_from_data(d, now)
