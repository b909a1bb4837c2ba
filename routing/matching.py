"""Who may take a contact, and who is best: eligibility and the queues' strategies.

Owns: compiled queue requirements (`CompiledQueue`), an agent's standing per queue
(`first_step`: the base requirement, and the first routing step they match), the full
eligibility test for one (contact, agent) pair at a time (`match`), the skills an offer
names, and `rank`, the order each `Strategy` puts candidates in. Must never: change
routing state, import asyncio, do I/O or read a clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from routing.agents import AgentRecord
from routing.expressions import (
    Expr,
    Name,
    ParseError,
    Predicate,
    Value,
    compile_predicate,
    names,
    parse,
)
from routing.model import ActionKind, AgentProfile, QueueConfig, RoutingError, Strategy
from routing.queueing import ContactRecord


@dataclass(frozen=True, slots=True)
class CompiledQueue:
    base: tuple[Expr, ...]
    steps: tuple[tuple[float, Expr], ...]
    base_checks: tuple[Predicate, ...]
    step_checks: tuple[Predicate, ...]
    step_times: tuple[float, ...]
    # The names the base requirement and each routing step read (one entry without steps).
    named: tuple[frozenset[str], ...]


def compile_expression(text: str, what: str) -> Expr:
    try:
        return parse(text)
    except ParseError as err:
        raise RoutingError("bad_expression", f"{what}: {err}") from None


def compile_queue(q: QueueConfig) -> CompiledQueue:
    """Validate and compile a queue's requirements; raises RoutingError."""
    base: list[Expr] = [Name(name=s) for s in sorted(q.required_skills)]
    if q.requirement:
        base.append(compile_expression(q.requirement, f"queue {q.name!r} requirement"))
    steps = tuple(
        (s.after_s, compile_expression(s.requirement, f"queue {q.name!r} step {i}")) for i, s in enumerate(q.steps)
    )
    if steps and (steps[0][0] != 0 or any(a[0] > b[0] for a, b in itertools.pairwise(steps))):
        raise RoutingError("bad_queue", f"queue {q.name!r}: steps must start at 0 and go up")
    for action in (q.on_full, q.on_timeout):
        if action.kind is ActionKind.OVERFLOW and not action.to_queue:
            raise RoutingError("bad_queue", f"queue {q.name!r}: overflow needs to_queue")
    base_names = frozenset(n for e in base for n in names(e))
    return CompiledQueue(
        base=tuple(base),
        steps=steps,
        base_checks=tuple(compile_predicate(e) for e in base),
        step_checks=tuple(compile_predicate(e) for _, e in steps),
        step_times=tuple(t for t, _ in steps),
        named=tuple(base_names | names(e) for _, e in steps) or (base_names,),
    )


def standing(compiled: CompiledQueue, lookup: Callable[[str], Value]) -> tuple[bool, int | None]:
    """(meets the base requirement, first step matched). Without steps the first step is
    0; with steps and none matched, None. Depends only on the profile and the queue, so
    the router keeps it per agent instead of evaluating it per contact."""
    if not all(check(lookup) for check in compiled.base_checks):
        return False, None
    if not compiled.step_checks:
        return True, 0
    for j, check in enumerate(compiled.step_checks):
        if check(lookup):
            return True, j
    return True, None


def match(compiled: CompiledQueue, contact: ContactRecord, agent: AgentRecord, now: float) -> int | None:
    """The routing step by which the agent qualifies for the contact at `now` (whether
    or not they have room), or None: the base requirement, the contact's own unrelaxed
    requirements, a routing step reached so far, no decline, the preferred window."""
    agent_id = agent.profile.agent_id
    if agent_id in contact.declined:
        return None
    if contact.preferred_agent is not None and now < contact.prefer_until and agent_id != contact.preferred_agent:
        return None
    step = agent.first_step.get(contact.queue)
    if step is None:
        return None
    key, lookup = agent.profile_key, agent.lookup
    for req, relaxed_at in contact.requirements:
        if (relaxed_at is None or now < relaxed_at) and not req.holds(key, lookup):
            return None
    # Steps are cumulative and their times ascending, so the first step the agent
    # matches is the one to report, and if it is not reached yet no later one is.
    if compiled.step_times and compiled.step_times[step] > now - contact.entered:
        return None
    return step


def contact_names(contact: ContactRecord, now: float) -> set[str]:
    """The names the contact's requirements in force at `now` read."""
    return {n for req, t in contact.requirements if t is None or now < t for n in req.names}


def skills_named(compiled: CompiledQueue, contact: ContactRecord, step: int, now: float) -> set[str]:
    return contact_names(contact, now) | compiled.named[step if compiled.steps else 0]


def step_score(compiled: CompiledQueue, step: int, profile: AgentProfile) -> int:
    """The agent's proficiency over the names the queue's base requirement and their
    step read (`rank` adds the contact's own for BEST_PROFICIENCY)."""
    return sum(profile.level(s) for s in compiled.named[step if compiled.steps else 0] if s not in profile.attributes)


def rank(
    q: QueueConfig,
    agent: AgentRecord,
    named: set[str] | None,
    last_pick: int,
    agent_count: int,
) -> tuple[float, ...]:
    """Lower is better, by the queue's strategy; unique per agent. `named` is the
    skills the matched requirements name (BEST_PROFICIENCY only)."""
    strategy = q.strategy
    load = len(agent.handling) + (agent.offered is not None)
    if strategy is Strategy.LONGEST_IDLE:
        return (float(load > 0), agent.idle_since, float(agent.order))
    p = agent.profile
    if strategy is Strategy.BEST_PROFICIENCY:
        score = sum(p.level(s) for s in named or () if s not in p.attributes)
        return (-float(score), float(load > 0), agent.idle_since, float(agent.order))
    if strategy is Strategy.LEAST_OCCUPIED:
        total = sum(p.capacity.values()) or 1
        return (load / total, agent.idle_since, float(agent.order))
    return (float((agent.order - last_pick - 1) % agent_count),)
