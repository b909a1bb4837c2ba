"""The field mapping of the generic REST connector: hub message -> CRM request.

Owns the mapping file format (YAML an admin edits; `mappings/generic.yaml` documents
it), its validation with errors that name the place in the file, and rendering one
outbox message into a method, a path and a JSON body. Pure: no I/O beyond parsing a
string the caller read, no network, no clock. Must never hold secrets: the mapping is
a plain file in the repository; credentials come from the environment (connector).

Per message kind:

    interaction.created:
      method: POST
      path: /activities                 # {field} is replaced by that payload value
      body:                             # target (dotted: nested objects) -> source
        external_id: id                 # a plain string: the payload field of that name
        contact.phone: caller_number    # -> {"contact": {"phone": ...}}
        type: {const: call}             # a constant
        kind: {from: channel, values: {voice: call, chat: chat}}   # translated
        owner: {from: agent_id, default: unassigned}
        customer: {from: customer_id, required: true}

A payload field that is absent or null is left out of the body unless it has a
default; `required: true` makes such a message a permanent failure instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import yaml

METHODS = ("POST", "PUT", "PATCH")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_MISSING = object()


class MappingError(ValueError):
    """The mapping file is wrong; `where` names the place ('kinds.note.added.body.x')."""

    def __init__(self, where: str, detail: str) -> None:
        super().__init__(f"{where}: {detail}")
        self.where = where


class UnmappableMessage(ValueError):
    """This message cannot be rendered (unknown kind, required field missing)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldRule:
    target: tuple[str, ...]
    source: str | None = None
    const: Any = None
    has_const: bool = False
    default: Any = None
    has_default: bool = False
    values: MappingABC[str, Any] | None = None
    required: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class KindRule:
    method: str
    path: str
    fields: tuple[FieldRule, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderedRequest:
    method: str
    path: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldMapping:
    kinds: MappingABC[str, KindRule]

    def render(self, kind: str, payload: MappingABC[str, Any]) -> RenderedRequest:
        """The request for one message; `UnmappableMessage` when it cannot be built."""
        rule = self.kinds.get(kind)
        if rule is None:
            raise UnmappableMessage(f"the mapping has no entry for kind {kind!r}")
        body: dict[str, Any] = {}
        for field in rule.fields:
            value = _value(field, payload)
            if value is _MISSING:
                continue
            _put(body, field.target, value)
        return RenderedRequest(method=rule.method, path=_path(rule.path, payload), body=body)


def _lookup(payload: MappingABC[str, Any], dotted: str) -> Any:
    value: Any = payload
    for part in dotted.split("."):
        if not isinstance(value, MappingABC) or part not in value:
            return None
        value = value[part]
    return value


def _value(field: FieldRule, payload: MappingABC[str, Any]) -> Any:
    if field.has_const:
        return field.const
    assert field.source is not None
    value = _lookup(payload, field.source)
    if value is not None and field.values is not None:
        # An unlisted value passes through unchanged rather than vanishing silently.
        value = field.values.get(str(value), value)
    if value is None:
        if field.has_default:
            return field.default
        if field.required:
            raise UnmappableMessage(f"required field {field.source!r} is missing")
        return _MISSING
    return value


def _put(body: dict[str, Any], target: tuple[str, ...], value: Any) -> None:
    node = body
    for part in target[:-1]:
        node = node.setdefault(part, {})
    node[target[-1]] = value


def _path(template: str, payload: MappingABC[str, Any]) -> str:
    def substitute(match: re.Match[str]) -> str:
        value = _lookup(payload, match.group(1))
        if value is None:
            raise UnmappableMessage(f"path needs {match.group(1)!r}, which the message lacks")
        return quote(str(value), safe="")

    return _PLACEHOLDER.sub(substitute, template)


def _field_rule(where: str, target: str, spec: Any) -> FieldRule:
    parts = tuple(target.split("."))
    if not target or any(not p for p in parts):
        raise MappingError(where, "a target must be a field name or a dotted path like contact.phone")
    if isinstance(spec, str):
        return FieldRule(target=parts, source=spec)
    if not isinstance(spec, dict):
        raise MappingError(where, "must be a payload field name or a {from: ...} / {const: ...} mapping")
    unknown = set(spec) - {"from", "const", "default", "values", "required"}
    if unknown:
        raise MappingError(where, f"unknown keys {sorted(unknown)}")
    if ("from" in spec) == ("const" in spec):
        raise MappingError(where, "needs exactly one of 'from' or 'const'")
    if "const" in spec:
        return FieldRule(target=parts, const=spec["const"], has_const=True)
    if not isinstance(spec["from"], str) or not spec["from"]:
        raise MappingError(f"{where}.from", "must be a payload field name")
    values = spec.get("values")
    if values is not None and not isinstance(values, dict):
        raise MappingError(f"{where}.values", "must map hub values to CRM values")
    required = spec.get("required", False)
    if not isinstance(required, bool):
        raise MappingError(f"{where}.required", "must be true or false")
    return FieldRule(
        target=parts, source=spec["from"], default=spec.get("default"), has_default="default" in spec,
        values={str(k): v for k, v in values.items()} if values else None, required=required,
    )


def _targets_clash(fields: list[FieldRule]) -> str | None:
    paths = sorted(f.target for f in fields)
    for a, b in zip(paths, paths[1:]):
        if a == b or b[: len(a)] == a:
            return ".".join(b)
    return None


def parse_mapping(text: str) -> FieldMapping:
    """A validated mapping from the YAML text of a mapping file (`MappingError` if wrong)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError("file", f"not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise MappingError("file", "must be a YAML mapping with a 'kinds' key")
    if document.get("version", 1) != 1:
        raise MappingError("version", "only version 1 is understood")
    kinds = document.get("kinds")
    if not isinstance(kinds, dict) or not kinds:
        raise MappingError("kinds", "must map message kinds to request rules")
    rules: dict[str, KindRule] = {}
    for kind, spec in kinds.items():
        where = f"kinds.{kind}"
        if not isinstance(spec, dict):
            raise MappingError(where, "must have method, path and body")
        method = str(spec.get("method", "POST")).upper()
        if method not in METHODS:
            raise MappingError(f"{where}.method", f"must be one of {', '.join(METHODS)}")
        path = spec.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise MappingError(f"{where}.path", "must be a path starting with '/'")
        body = spec.get("body", {})
        if not isinstance(body, dict):
            raise MappingError(f"{where}.body", "must map CRM fields to hub fields")
        fields = [_field_rule(f"{where}.body.{target}", str(target), rule) for target, rule in body.items()]
        clash = _targets_clash(fields)
        if clash is not None:
            raise MappingError(f"{where}.body.{clash}", "is set twice (or inside a field that is not an object)")
        rules[str(kind)] = KindRule(method=method, path=path, fields=tuple(fields))
    return FieldMapping(kinds=rules)


__all__ = [
    "FieldMapping", "FieldRule", "KindRule", "MappingError", "RenderedRequest", "UnmappableMessage", "parse_mapping",
]
