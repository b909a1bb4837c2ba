"""What the hub tells the router about one contact, and what it tells the agent about
the router's choice.

Owns: the contact's routing attributes taken from the CRM profile (tier, language,
effective KYC status, EDD flags, customer id), the choice of a preferred agent (the
customer's account manager, only when they could take the contact inside the window),
and the screen pop's `why_you`. Pure: no asyncio, no I/O, no clock; the router's
current view comes in as arguments. Must never decide routing itself: the rules that
turn these attributes into requirements and priorities are configuration
(routing.config), applied by the router.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from crm_sync.profile import CustomerProfile
from routing import AgentProfile, AgentState, QueueConfig, Rule
from routing.agents import agent_lookup
from routing.expressions import Value, bind, compile_predicate, evaluate, parse
from routing.matching import compile_queue, standing

# States in which an account manager is worth waiting for: they are at their desk.
_PRESENT = (AgentState.AVAILABLE, AgentState.RESERVED, AgentState.BUSY, AgentState.WRAP_UP)


def contact_attributes(profile: CustomerProfile | None) -> dict[str, Value]:
    """The routing attributes of a caller identified as exactly one customer; empty
    for an unknown caller or a number several customers share (routing then knows
    nothing about them, and no rule applies)."""
    if profile is None:
        return {}
    kyc = profile.kyc
    attributes: dict[str, Value] = {
        "customer_id": profile.customer_id,
        "tier": profile.tier,
        "language": profile.language,
        "country": profile.country,
        "kyc_status": kyc.status,  # effective: a lapsed review reads 'expired'
        "edd": kyc.edd_required,
        "edd_reasons": frozenset(kyc.edd_reasons),
        "pep": kyc.pep,
        "sanctions_hit": kyc.sanctions_hit,
    }
    if kyc.risk_rating is not None:
        attributes["risk_rating"] = kyc.risk_rating
    return attributes


def rules_applying(rules: Iterable[Rule], attributes: Mapping[str, Value]) -> tuple[str, ...]:
    """The names of the arrival rules whose `when` holds for these attributes (the
    router applies the same ones; this names them for the agent and the logs)."""
    names = []
    for rule in rules:
        try:
            holds = compile_predicate(parse(rule.when))(attributes.get)
        except ValueError:  # validated when configured; a bad one never applies
            continue
        if holds:
            names.append(rule.name)
    return tuple(names)


def preferred_agent(
    *,
    account_manager: str | None,
    queue: QueueConfig,
    profile: AgentProfile | None,
    state: AgentState,
    rules: Iterable[Rule],
    attributes: Mapping[str, Value],
    window_s: float,
) -> str | None:
    """The account manager, when giving them the first offer can pay off: they are at
    their desk, meet the queue's base requirement and a routing step reached within
    the window, and every requirement the rules add for this customer (compliance...).
    Otherwise None: while the window runs the router offers the contact to nobody
    else, so a manager who cannot take it would only make the customer wait."""
    if account_manager is None or profile is None or window_s <= 0 or state not in _PRESENT:
        return None
    compiled = compile_queue(queue)
    lookup = agent_lookup(profile)
    member, step = standing(compiled, lookup)
    if not member or step is None:
        return None
    if compiled.step_times and compiled.step_times[step] >= window_s:
        return None
    for rule in rules:
        if rule.require is None or rule.name not in rules_applying((rule,), attributes):
            continue
        bound = bind(parse(rule.require), attributes)
        if bound is not None and not evaluate(bound, lookup):
            return None
    return account_manager


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferReason:
    """Why the router chose this agent, as the screen pop shows it."""

    queue: str
    strategy: str
    matched_skills: tuple[str, ...]
    step: int
    step_requirement: str | None  # the widening step's requirement; None without steps
    step_after_s: float
    preferred_agent: bool  # the customer's account manager, offered first
    rules: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "strategy": self.strategy,
            "matched_skills": list(self.matched_skills),
            "step": self.step,
            "step_requirement": self.step_requirement,
            "step_after_s": self.step_after_s,
            "preferred_agent": self.preferred_agent,
            "rules": list(self.rules),
        }


def offer_reason(
    queue: QueueConfig, *, matched_skills: tuple[str, ...], step: int, preferred: bool, rules: tuple[str, ...]
) -> OfferReason:
    widening = queue.steps[step] if 0 <= step < len(queue.steps) else None
    return OfferReason(
        queue=queue.name,
        strategy=queue.strategy.value,
        matched_skills=matched_skills,
        step=step,
        step_requirement=widening.requirement if widening is not None else None,
        step_after_s=widening.after_s if widening is not None else 0.0,
        preferred_agent=preferred,
        rules=rules,
    )
