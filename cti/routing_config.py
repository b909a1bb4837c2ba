"""The hub's routing configuration: one document (the YAML format of routing.config)
joined with the directory, and the changes that carry a new document to a live router.

Owns: reading a routing file, the shipped demo file, the merge with the directory
(the directory says who exists; the document adds the routing model; agents and
queues the document leaves out route with the directory's skills at level 1), the
checks a live change needs beyond routing.config (agents must exist, queues cannot
disappear, capacity in use), and applying a checked change to a router. Must never:
touch the database or the network (cti.routing_store keeps the document), or decide
routing (the router does).

Precedence at start-up (see `cti.app`): the copy saved through the API in the
database, else the file of CTIHUB_ROUTING_CONFIG ("demo": the shipped file), else
the directory alone.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import routing
from cti.directory.store import Directory
from routing import (
    AgentProfile,
    Command,
    ConfigError,
    QueueConfig,
    Router,
    RoutingConfig,
    Rule,
    load_config,
)
from routing.facts import AgentConfigured, Fact, QueueConfigured, RulesChanged

DEMO_ROUTING_FILE = Path(routing.__file__).resolve().parent / "demo.yaml"


class RoutingFileError(ValueError):
    """A routing file that cannot be used; `str()` is one line naming the field path."""


def read_routing_file(path: Path) -> dict[str, Any]:
    """The parsed, validated document of a routing file (YAML or JSON)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise RoutingFileError(f"cannot be read: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "not valid YAML"
        raise RoutingFileError(f"not valid YAML{where}: {problem}") from None
    try:
        load_config(data)
    except ConfigError as err:
        raise RoutingFileError(str(err)) from None
    assert isinstance(data, dict)  # load_config accepts only a mapping
    return data


@dataclass(frozen=True, slots=True, kw_only=True)
class Effective:
    """A document completed with the directory, and its validated configuration."""

    document: dict[str, Any]
    config: RoutingConfig
    dropped: tuple[str, ...] = ()  # agents of the document the directory does not know


def effective(
    document: Mapping[str, Any],
    directory: Directory,
    *,
    reservation_timeout_s: float,
    strict: bool,
) -> Effective:
    """Join `document` with the directory and validate the result (ConfigError naming
    the field path). `strict`: an agent the directory does not know is an error (an
    admin's change); otherwise it is dropped (a file or saved copy that predates a
    user's removal must not stop the hub). Items keep their places, so a path in an
    error points into the document as given; the directory's additions come last."""
    if not isinstance(document, Mapping):
        raise ConfigError("$", "must be a mapping")
    doc: dict[str, Any] = copy.deepcopy(dict(document))
    skills = doc.get("skills", [])
    if not isinstance(skills, list):
        raise ConfigError("skills", "must be a list")
    wanted = set(skills)
    for queue in directory.queues.values():
        wanted.update(queue.required_skills)
    for agent in directory.agents.values():
        wanted.update(agent.skills)
    doc["skills"] = [*skills, *sorted(wanted - set(skills))]

    agents = doc.get("agents", [])
    if not isinstance(agents, list):
        raise ConfigError("agents", "must be a list")
    kept: list[Any] = []
    dropped: list[str] = []
    for i, item in enumerate(agents):
        agent_id = item.get("id") if isinstance(item, Mapping) else None
        if isinstance(agent_id, str) and agent_id not in directory.agents:
            if strict:
                raise ConfigError(f"agents[{i}].id", f"no agent {agent_id!r} in the directory (add the user first)")
            dropped.append(agent_id)
            continue
        kept.append(item)
    named = {item.get("id") for item in kept if isinstance(item, Mapping)}
    for username, record in directory.agents.items():
        if username not in named:
            entry: dict[str, Any] = {"id": username, "skills": list(record.skills)}
            if record.languages:
                entry["languages"] = list(record.languages)
            kept.append(entry)
    doc["agents"] = kept

    queues = doc.get("queues", [])
    if not isinstance(queues, list):
        raise ConfigError("queues", "must be a list")
    listed = {item.get("name") for item in queues if isinstance(item, Mapping)}
    doc["queues"] = [
        *queues,
        *(
            {"name": q.name, "required_skills": list(q.required_skills), "reservation_timeout_s": reservation_timeout_s}
            for q in directory.queues.values()
            if q.name not in listed
        ),
    ]
    return Effective(document=doc, config=load_config(doc), dropped=tuple(dropped))


def directory_document(directory: Directory, *, reservation_timeout_s: float) -> dict[str, Any]:
    """Routing from the directory alone: queues with their required skills, agents
    with theirs at level 1, no rules."""
    return effective({}, directory, reservation_timeout_s=reservation_timeout_s, strict=False).document


# --- live changes -----------------------------------------------------------------------


def check_live_change(router: Router, new: Effective) -> None:
    """What routing.config cannot know: a queue the router has must stay (contacts may
    wait in it, and overflows name it), and an agent's capacity may not drop below what
    they hold now. ConfigError naming the field path."""
    queues = {q.name for q in new.config.queues}
    for name in router.queues():
        if name not in queues:
            raise ConfigError("queues", f"queue {name!r} cannot be removed while the hub runs")
    for i, profile in enumerate(new.config.agents):
        if not router.has_agent(profile.agent_id):
            continue
        held: dict[str, int] = {}
        for contact_id in router.contacts_of(profile.agent_id):
            channel = router.channel_of(contact_id) or "voice"
            held[channel] = held.get(channel, 0) + 1
        for channel, count in held.items():
            if profile.capacity.get(channel, 0) < count:
                raise ConfigError(
                    f"agents[{i}].capacity.{channel}",
                    f"agent {profile.agent_id!r} holds {count} {channel} contact(s) now; capacity cannot drop below that",
                )


def apply_change(router: Router, new: RoutingConfig, now: float) -> list[Command]:
    """Carry a checked configuration to the live router; returns the router's
    commands (offers that the change made possible...) for the shell to carry out.
    New queues first, as changed queues and agents may name them."""
    out: list[Command] = []
    for q in new.queues:
        if not router.has_queue(q.name):
            router.add_queue(q)
    for q in new.queues:
        if router.queue(q.name) != q:
            out.extend(router.update_queue(q, now))
    for profile in new.agents:
        if not router.has_agent(profile.agent_id):
            router.add_agent(profile)
        elif not _same_profile(router.profile(profile.agent_id), profile):
            out.extend(router.update_agent(profile, now))
    router.set_rules(new.rules)
    router.max_missed_offers = new.max_missed_offers
    return out


def change_facts(router: Router, new: RoutingConfig, now: float, *, rules_before: Sequence[Rule] | None) -> list[Fact]:
    """The same change as `apply_change`, as routing facts for a shared store (every
    hub's replica applies them at one point of the log), in the same order: new
    queues, changed queues, new or changed agents, then the rules (when they differ
    from `rules_before`; None: unknown, always). Nothing when the router already has
    the configuration. `max_missed_offers` has no fact: the caller checks it."""
    out: list[Fact] = []
    for q in new.queues:
        if not router.has_queue(q.name):
            out.append(QueueConfigured(queue=q, now=now))
    for q in new.queues:
        if router.has_queue(q.name) and router.queue(q.name) != q:
            out.append(QueueConfigured(queue=q, now=now))
    for profile in new.agents:
        if not router.has_agent(profile.agent_id) or not _same_profile(router.profile(profile.agent_id), profile):
            out.append(AgentConfigured(profile=profile, now=now))
    if rules_before is None or tuple(rules_before) != tuple(new.rules):
        out.append(RulesChanged(rules=tuple(new.rules), now=now))
    return out


def _same_profile(a: AgentProfile, b: AgentProfile) -> bool:
    return (
        a.skills == b.skills
        and dict(a.proficiency) == dict(b.proficiency)
        and dict(a.attributes) == dict(b.attributes)
        and dict(a.capacity) == dict(b.capacity)
        and a.voice_exclusive == b.voice_exclusive
    )


def queue_item(document: Mapping[str, Any], name: str) -> tuple[int, dict[str, Any]] | None:
    return _item(document, "queues", "name", name)


def agent_item(document: Mapping[str, Any], agent_id: str) -> tuple[int, dict[str, Any]] | None:
    return _item(document, "agents", "id", agent_id)


def rule_item(document: Mapping[str, Any], name: str) -> tuple[int, dict[str, Any]] | None:
    return _item(document, "rules", "name", name)


def _item(document: Mapping[str, Any], section: str, key: str, value: str) -> tuple[int, dict[str, Any]] | None:
    for i, item in enumerate(document.get(section, [])):
        if isinstance(item, Mapping) and item.get(key) == value:
            return i, dict(item)
    return None


def queue_configs(config: RoutingConfig) -> dict[str, QueueConfig]:
    return {q.name: q for q in config.queues}
