"""Routing configuration from a parsed YAML (or JSON) document: skills, queues, agents,
rules, and router options, validated into the typed configs of `routing.model`.

Owns: the document's schema and every check on it; `ConfigError` names the field path
(`queues[2].service_level_s: must be a positive number`). Must never: read files, import
yaml or asyncio (the caller parses the file and passes the dict), or build half a
config: it returns everything or raises on the first problem.

    skills: [sales, support, kyc, compliance, crypto]
    routing: {max_missed_offers: 3, preferred_agent_s: 15}   # the account manager's window
    queues:
      - name: sales
        required_skills: [sales]          # base requirement, never relaxed
        requirement: 'sales >= 1'         # optional expression, also base
        steps: [{after_s: 0, requirement: 'sales >= 4'}, {after_s: 30, requirement: 'sales >= 2'}]
        priority: 0
        aging_step_s: 30
        strategy: longest_idle            # best_proficiency | round_robin | least_occupied
        service_level_s: 20
        max_length: 50
        on_full: {action: overflow, to_queue: support}   # reject | callback | disconnect
        max_wait_s: 600
        on_timeout: {action: disconnect, message: 'Please call again later'}
        reservation_timeout_s: 20
        wrap_up_s: 15
    agents:
      - id: agent01
        skills: {sales: 4, support: 3}    # or a list: level 1
        languages: [de, en]               # attributes `language` (the first) and `languages`
        attributes: {desk: zurich}
        capacity: {voice: 1, chat: 3}
        voice_exclusive: true
    rules:
      - {name: vip, when: 'tier == "vip"', priority: 2}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from routing.expressions import Expr, ParseError, Value, names, parse
from routing.model import (
    ActionKind,
    AgentProfile,
    QueueAction,
    QueueConfig,
    RoutingStep,
    Rule,
    Strategy,
)
from routing.router import Router


class ConfigError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingConfig:
    skills: frozenset[str]
    queues: tuple[QueueConfig, ...]
    agents: tuple[AgentProfile, ...]
    rules: tuple[Rule, ...]
    max_missed_offers: int | None = 3
    # How long the customer's account manager alone is offered the contact (0: never);
    # the shell passes it with the contact, the router only sees `preferred_for_s`.
    preferred_agent_s: float = 15.0


def build_router(config: RoutingConfig, **options: Any) -> Router:
    """A router for `config`; `options` are Router's keyword options (publish_stats...)."""
    return Router(
        config.queues, config.agents, rules=config.rules, max_missed_offers=config.max_missed_offers, **options
    )


# --- field readers ---------------------------------------------------------------------


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(path, "must be a mapping")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(path, "must be a list")
    return value


def _unknown_keys(d: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in d:
        if key not in allowed:
            raise ConfigError(f"{path}.{key}", f"unknown field (expected one of {', '.join(sorted(allowed))})")


def _name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(path, "must be a non-empty string")
    return value


def _number(value: Any, path: str, *, positive: bool = False, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(path, "must be a positive number" if positive else "must be a number >= 0")
    if positive and not value > 0:
        raise ConfigError(path, "must be a positive number")
    if not positive and value < 0:
        raise ConfigError(path, "must be a number >= 0")
    return float(value)


def _int(value: Any, path: str, *, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, "must be an integer")
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            raise ConfigError(path, f"must be at least {low}")
        raise ConfigError(path, f"must be from {low} to {high}")
    return value


def _expression(value: Any, path: str) -> tuple[str, Expr]:
    text = _name(value, path)
    try:
        return text, parse(text)
    except ParseError as err:
        raise ConfigError(path, f"{err.message} at position {err.position} in {text!r}") from None


def _check_names(expr: Expr, known: frozenset[str], path: str) -> None:
    unknown = sorted(names(expr) - known)
    if unknown:
        raise ConfigError(path, f"unknown skill or attribute {unknown[0]!r}")


# --- sections --------------------------------------------------------------------------

_QUEUE_KEYS = {
    "name", "required_skills", "requirement", "steps", "priority", "aging_step_s", "strategy",
    "service_level_s", "max_length", "on_full", "max_wait_s", "on_timeout",
    "reservation_timeout_s", "wrap_up_s", "display_name", "numbers",
}
_AGENT_KEYS = {"id", "skills", "languages", "attributes", "capacity", "voice_exclusive", "display_name"}
_RULE_KEYS = {"name", "when", "require", "priority", "relax_after_s"}


def _action(value: Any, path: str, queue_names: set[str]) -> QueueAction:
    d = _mapping(value, path)
    _unknown_keys(d, {"action", "to_queue", "message"}, path)
    try:
        kind = ActionKind(d.get("action"))
    except ValueError:
        raise ConfigError(f"{path}.action", f"must be one of {', '.join(k.value for k in ActionKind)}") from None
    to_queue = d.get("to_queue")
    if kind is ActionKind.OVERFLOW:
        if to_queue not in queue_names:
            raise ConfigError(f"{path}.to_queue", f"must name a configured queue, not {to_queue!r}")
    elif to_queue is not None:
        raise ConfigError(f"{path}.to_queue", "only an overflow has a target queue")
    message = d.get("message")
    if message is not None and not isinstance(message, str):
        raise ConfigError(f"{path}.message", "must be a string")
    return QueueAction(kind=kind, to_queue=to_queue, message=message)


def _queue(value: Any, path: str, skills: frozenset[str], known: frozenset[str], queue_names: set[str]) -> QueueConfig:
    d = _mapping(value, path)
    _unknown_keys(d, _QUEUE_KEYS, path)
    name = _name(d.get("name"), f"{path}.name")
    required = _list(d.get("required_skills", []), f"{path}.required_skills")
    for i, skill in enumerate(required):
        if skill not in skills:
            raise ConfigError(f"{path}.required_skills[{i}]", f"unknown skill {skill!r}")
    requirement = None
    if d.get("requirement") is not None:
        requirement, expr = _expression(d["requirement"], f"{path}.requirement")
        _check_names(expr, known, f"{path}.requirement")
    steps: list[RoutingStep] = []
    for i, step in enumerate(_list(d.get("steps", []), f"{path}.steps")):
        sp = f"{path}.steps[{i}]"
        sd = _mapping(step, sp)
        _unknown_keys(sd, {"after_s", "requirement"}, sp)
        after = _number(sd.get("after_s"), f"{sp}.after_s") or 0.0
        if i == 0 and after != 0:
            raise ConfigError(f"{sp}.after_s", "the first step must start at 0")
        if steps and after < steps[-1].after_s:
            raise ConfigError(f"{sp}.after_s", "steps must be in increasing after_s order")
        text, expr = _expression(sd.get("requirement"), f"{sp}.requirement")
        _check_names(expr, known, f"{sp}.requirement")
        steps.append(RoutingStep(after_s=after, requirement=text))
    try:
        strategy = Strategy(d.get("strategy", "longest_idle"))
    except ValueError:
        raise ConfigError(f"{path}.strategy", f"must be one of {', '.join(s.value for s in Strategy)}") from None
    max_length = d.get("max_length")
    config = QueueConfig(
        name=name,
        required_skills=frozenset(required),
        requirement=requirement,
        steps=tuple(steps),
        priority=_int(d.get("priority", 0), f"{path}.priority"),
        aging_step_s=_number(d.get("aging_step_s"), f"{path}.aging_step_s", positive=True, optional=True),
        strategy=strategy,
        service_level_s=_number(d.get("service_level_s", 20), f"{path}.service_level_s", positive=True) or 20.0,
        max_length=None if max_length is None else _int(max_length, f"{path}.max_length", low=0),
        on_full=_action(d.get("on_full", {"action": "reject"}), f"{path}.on_full", queue_names),
        max_wait_s=_number(d.get("max_wait_s"), f"{path}.max_wait_s", positive=True, optional=True),
        on_timeout=_action(d.get("on_timeout", {"action": "disconnect"}), f"{path}.on_timeout", queue_names),
        reservation_timeout_s=_number(
            d.get("reservation_timeout_s", 20), f"{path}.reservation_timeout_s", positive=True
        ) or 20.0,
        wrap_up_s=_number(d.get("wrap_up_s", 0), f"{path}.wrap_up_s") or 0.0,
    )
    for field_name, action in (("on_full", config.on_full), ("on_timeout", config.on_timeout)):
        if action.to_queue == name:
            raise ConfigError(f"{path}.{field_name}.to_queue", "a queue cannot overflow into itself")
    return config


def _attribute(value: Any, path: str) -> Value:
    if isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    raise ConfigError(path, "must be a string, number, boolean or list of strings")


def _agent(value: Any, path: str, skills: frozenset[str]) -> AgentProfile:
    d = _mapping(value, path)
    _unknown_keys(d, _AGENT_KEYS, path)
    agent_id = _name(d.get("id"), f"{path}.id")
    raw = d.get("skills", {})
    levels: dict[str, int] = {}
    if isinstance(raw, list):
        raw = {s: 1 for s in raw}
    for skill, level in _mapping(raw, f"{path}.skills").items():
        if skill not in skills:
            raise ConfigError(f"{path}.skills.{skill}", f"unknown skill {skill!r}")
        levels[skill] = _int(level, f"{path}.skills.{skill}", low=1, high=5)
    attributes: dict[str, Value] = {}
    for key, attr in _mapping(d.get("attributes", {}), f"{path}.attributes").items():
        if key in skills:
            raise ConfigError(f"{path}.attributes.{key}", "an attribute cannot share a skill's name")
        attributes[key] = _attribute(attr, f"{path}.attributes.{key}")
    if "languages" in d:
        languages = _list(d["languages"], f"{path}.languages")
        for i, lang in enumerate(languages):
            _name(lang, f"{path}.languages[{i}]")
        attributes["languages"] = frozenset(languages)
        if languages:
            attributes.setdefault("language", languages[0])
    capacity = {
        channel: _int(cap, f"{path}.capacity.{channel}", low=0)
        for channel, cap in _mapping(d.get("capacity", {"voice": 1}), f"{path}.capacity").items()
    }
    exclusive = d.get("voice_exclusive", True)
    if not isinstance(exclusive, bool):
        raise ConfigError(f"{path}.voice_exclusive", "must be true or false")
    return AgentProfile(
        agent_id=agent_id,
        skills=frozenset(levels),
        proficiency=levels,
        attributes=attributes,
        capacity=capacity,
        voice_exclusive=exclusive,
    )


def _rule(value: Any, path: str, known: frozenset[str]) -> Rule:
    d = _mapping(value, path)
    _unknown_keys(d, _RULE_KEYS, path)
    name = _name(d.get("name"), f"{path}.name")
    when, _ = _expression(d.get("when"), f"{path}.when")  # over contact attributes: any name
    require = None
    if d.get("require") is not None:
        require, expr = _expression(d["require"], f"{path}.require")
        _check_names(expr, known, f"{path}.require")
    priority = _int(d.get("priority", 0), f"{path}.priority")
    if require is None and priority == 0:
        raise ConfigError(path, "a rule must require something or change the priority")
    relax = _number(d.get("relax_after_s"), f"{path}.relax_after_s", positive=True, optional=True)
    return Rule(name=name, when=when, require=require, priority=priority, relax_after_s=relax)


def load_config(data: Any) -> RoutingConfig:
    """Validate a parsed document; raises ConfigError at the first problem."""
    d = _mapping(data, "$")
    _unknown_keys(d, {"skills", "queues", "agents", "rules", "routing"}, "$")
    skills_list = _list(d.get("skills", []), "skills")
    for i, skill in enumerate(skills_list):
        _name(skill, f"skills[{i}]")
        if skill in skills_list[:i]:
            raise ConfigError(f"skills[{i}]", f"duplicate skill {skill!r}")
    skills = frozenset(skills_list)

    agents_raw = _list(d.get("agents", []), "agents")
    agents: list[AgentProfile] = []
    for i, raw in enumerate(agents_raw):
        agent = _agent(raw, f"agents[{i}]", skills)
        if any(a.agent_id == agent.agent_id for a in agents):
            raise ConfigError(f"agents[{i}].id", f"duplicate agent {agent.agent_id!r}")
        agents.append(agent)
    known = skills | {"language", "languages"} | {k for a in agents for k in a.attributes}

    queues_raw = _list(d.get("queues", []), "queues")
    queue_names: set[str] = set()
    for q in queues_raw:
        if isinstance(q, Mapping) and isinstance(q.get("name"), str):
            queue_names.add(q["name"])
    queues: list[QueueConfig] = []
    for i, raw in enumerate(queues_raw):
        queue = _queue(raw, f"queues[{i}]", skills, known, queue_names)
        if any(q.name == queue.name for q in queues):
            raise ConfigError(f"queues[{i}].name", f"duplicate queue {queue.name!r}")
        queues.append(queue)

    rules = tuple(_rule(raw, f"rules[{i}]", known) for i, raw in enumerate(_list(d.get("rules", []), "rules")))
    for i, rule in enumerate(rules):
        if rule.name in (r.name for r in rules[:i]):
            raise ConfigError(f"rules[{i}].name", f"duplicate rule {rule.name!r}")

    options = _mapping(d.get("routing", {}), "routing")
    _unknown_keys(options, {"max_missed_offers", "preferred_agent_s"}, "routing")
    missed = options.get("max_missed_offers", 3)
    max_missed = None if missed is None else _int(missed, "routing.max_missed_offers", low=1)
    preferred = _number(options.get("preferred_agent_s", 15), "routing.preferred_agent_s") or 0.0
    return RoutingConfig(
        skills=skills, queues=tuple(queues), agents=tuple(agents), rules=rules, max_missed_offers=max_missed,
        preferred_agent_s=preferred,
    )
