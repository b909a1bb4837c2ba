"""Changing the routing configuration of a running hub: check, save, then apply live.

Owns: the current configuration document and its revision, one change at a time (a
lock: two admins' changes never interleave), and the order of a change: checked in
full (routing.config, the directory, the live router), saved in the database, then
carried to the live router through the center (which carries out the router's
commands). A change that fails a check changes nothing; one the database refuses is
not applied. Must never: speak HTTP (cti.web.routing_api does) or decide routing.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cti.center import ContactCenter
from cti.directory.store import Directory
from cti.routing_config import (
    Effective,
    apply_change,
    change_facts,
    check_live_change,
    effective,
)
from cti.routing_store import RoutingConfigStore
from routing import ConfigError

log = logging.getLogger("cti.audit")

SECTIONS = {"queues": "name", "agents": "id", "rules": "name"}  # per-item sections and their keys


class ItemError(LookupError):
    """No such item in a section (the API answers 404)."""

    def __init__(self, *, section: str, key: str) -> None:
        super().__init__(f"no {section[:-1]} {key!r}")
        self.section = section
        self.key = key


class RoutingAdmin:
    def __init__(
        self,
        *,
        center: ContactCenter,
        store: RoutingConfigStore,
        directory: Directory,
        current: Effective,
        reservation_timeout_s: float,
        source: str,
        revision: int = 0,
        updated_at: datetime | None = None,
        updated_by: str | None = None,
    ) -> None:
        self.center = center
        self.store = store
        self.directory = directory
        self.current = current
        self.reservation_timeout_s = reservation_timeout_s
        self.source = source  # where the configuration in force came from
        self.revision = revision
        self.updated_at = updated_at
        self.updated_by = updated_by
        self._lock = asyncio.Lock()

    def document(self) -> dict[str, Any]:
        return copy.deepcopy(self.current.document)

    def item(self, section: str, key: str) -> dict[str, Any]:
        for item in self.current.document.get(section, []):
            if isinstance(item, Mapping) and item.get(SECTIONS[section]) == key:
                return copy.deepcopy(dict(item))
        raise ItemError(section=section, key=key)

    async def replace(self, document: Any, *, by: str) -> Effective:
        """The whole configuration; ConfigError naming the field path."""
        async with self._lock:
            return await self._change(document, by=by, what="replaced the routing configuration")

    async def put_item(self, section: str, key: str, body: Any, *, by: str) -> tuple[Effective, bool]:
        """Add or replace one queue, agent or rule; the key in the path wins over the
        body's. Returns the new configuration and whether the item is new. A
        ConfigError's path is relative to the item (`max_length`, `steps[1].requirement`)."""
        if not isinstance(body, Mapping):
            raise ConfigError("$", "must be a JSON object")
        async with self._lock:
            document = self.document()
            items = list(document.get(section, []))
            item = {**body, SECTIONS[section]: key}
            index = next(
                (i for i, old in enumerate(items) if isinstance(old, Mapping) and old.get(SECTIONS[section]) == key), None
            )
            created = index is None
            if index is None:
                index = len(items)
                items.append(item)
            else:
                items[index] = item
            document[section] = items
            try:
                new = await self._change(document, by=by, what=f"{'added' if created else 'changed'} {section} {key!r}")
            except ConfigError as err:
                raise _relative(err, f"{section}[{index}]") from None
            return new, created

    async def delete_rule(self, name: str, *, by: str) -> Effective:
        """Queues and agents stay (contacts may wait in a queue; the directory says who
        the agents are); a rule can go."""
        async with self._lock:
            document = self.document()
            rules = [r for r in document.get("rules", []) if not (isinstance(r, Mapping) and r.get("name") == name)]
            if len(rules) == len(document.get("rules", [])):
                raise ItemError(section="rules", key=name)
            document["rules"] = rules
            return await self._change(document, by=by, what=f"deleted rule {name!r}")

    async def set_skills(self, skills: Any, *, by: str) -> Effective:
        async with self._lock:
            document = self.document()
            document["skills"] = skills
            return await self._change(document, by=by, what="replaced the skills")

    async def _change(self, document: Any, *, by: str, what: str) -> Effective:
        new = effective(document, self.directory, reservation_timeout_s=self.reservation_timeout_s, strict=True)
        router = self.center.router
        check_live_change(router, new)
        if self.center.shared and new.config.max_missed_offers != router.max_missed_offers:
            # No routing fact carries it, so the hubs' replicas could not change it at
            # one point of the log.
            raise ConfigError(
                "routing.max_missed_offers",
                f"cannot change while hubs share routing through Redis (it stays {router.max_missed_offers})",
            )
        saved = await self.store.save(new.document, by=by)
        if self.center.shared:
            facts = change_facts(router, new.config, self.center.clock(), rules_before=self.current.config.rules)
            await self.center.apply_routing_facts(facts, new.config)
        else:
            self.center.apply_routing_change(lambda now: apply_change(router, new.config, now), new.config)
        self.current = new
        self.revision, self.updated_at, self.updated_by = saved.revision, saved.updated_at, saved.updated_by
        self.source = f"the copy saved in the database (revision {saved.revision})"
        log.info("routing: %s %s (revision %d)", by, what, saved.revision)
        return new


    async def reload(self) -> None:
        """Shared routing: another hub changed the configuration (saved in the database
        before it went live); this hub's document and the center's rules follow it."""
        async with self._lock:
            saved = await self.store.load()
            if saved is None or saved.revision <= self.revision:
                return
            try:
                new = effective(saved.document, self.directory, reservation_timeout_s=self.reservation_timeout_s, strict=False)
            except ConfigError as err:
                log.error("routing: revision %d saved by another hub cannot be read here: %s", saved.revision, err)
                return
            self.current = new
            self.center.routing = new.config
            self.revision, self.updated_at, self.updated_by = saved.revision, saved.updated_at, saved.updated_by
            self.source = f"the copy saved in the database (revision {saved.revision})"
            log.info("routing: revision %d (changed on another hub) in force here", saved.revision)


def _relative(err: ConfigError, prefix: str) -> ConfigError:
    """`queues[3].max_length` -> `max_length` for a route about queue 3 alone."""
    if err.path == prefix:
        return ConfigError("$", err.message)
    if err.path.startswith(prefix + "."):
        return ConfigError(err.path[len(prefix) + 1:], err.message)
    if err.path.startswith(prefix + "["):
        return ConfigError(err.path[len(prefix):], err.message)
    return err  # a problem elsewhere the item caused (an overflow target...): the full path
