"""The published JSON Schema (draft 2020-12) of every event's wire form.

Owns: turning an event class's dataclass fields into the schema of the message that
`Event.to_wire` produces, the combined schema document (`docs/events.schema.json`) and
the human-readable topic table (`docs/events.md`). Everything is derived from the event
classes in `cti.events`, so the docs cannot drift from the code.

Must never: hold a second, hand-written description of the events, or do I/O outside
the CLI entry point.

    python -m cti.event_schema > docs/events.schema.json
    python -m cti.event_schema --markdown > docs/events.md
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from typing import Any

from cti.events import SCHEMA_VERSION, Event, event_types

DRAFT = "https://json-schema.org/draft/2020-12/schema"
ID_PREFIX = "urn:ctihub:event:"

_ENVELOPE_FIELDS = ("occurred_at", "event_id")

# The `format` keyword is only an annotation unless a validator opts in to format
# checking, so the shape of the timestamp is pinned by a pattern as well.
_DATE_TIME_PATTERN = (
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
)

_SCALARS: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}

# Used only for event classes that have no docstring of their own; a docstring on the
# class always wins, so adding one there is the way to change this text.
_WHEN_FALLBACK: dict[str, str] = {
    "contact.queued": "Routing put the contact in a queue to wait for an agent.",
    "agent.logged_in": "An agent logged in to the hub.",
    "agent.logged_out": "An agent logged out of the hub.",
    "agent.state_changed": "An agent's routing state changed (available, away, reserved, busy, offline).",
}


def _field_schema(hint: Any, where: str) -> dict[str, Any]:
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        non_null = [a for a in args if a is not type(None)]
        if len(non_null) == 1 and len(args) == 2:
            inner = _field_schema(non_null[0], where)
            return {"anyOf": [inner, {"type": "null"}]}
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return {"type": "array", "items": _field_schema(args[0], where)}
    raise TypeError(f"{where}: no JSON Schema mapping for type {hint!r}")


def describe(cls: type[Event]) -> str:
    """When the event is emitted: the class docstring, or a fallback for bare classes."""
    doc = cls.__doc__ or ""
    # dataclass() invents a signature-like docstring for classes that have none.
    if not doc or doc.startswith(cls.__name__ + "("):
        return _WHEN_FALLBACK.get(cls.topic, "")
    return " ".join(doc.split())


def _data_fields(cls: type[Event]) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.name not in _ENVELOPE_FIELDS]


def _has_default(f: dataclasses.Field[Any]) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def schema_for(cls: type[Event]) -> dict[str, Any]:
    """The JSON Schema of `cls`'s wire form (`to_wire()` output)."""
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in _data_fields(cls):
        properties[f.name] = _field_schema(hints[f.name], f"{cls.__name__}.{f.name}")
        if not _has_default(f):
            required.append(f.name)
    return {
        "$schema": DRAFT,
        "$id": f"{ID_PREFIX}{cls.topic}:v{cls.version}",
        "title": cls.topic,
        "description": describe(cls),
        "type": "object",
        "properties": {
            "type": {"const": cls.topic},
            "version": {"const": cls.version},
            "id": {"type": "string", "minLength": 1},
            "occurred_at": {"type": "string", "format": "date-time", "pattern": _DATE_TIME_PATTERN},
            "data": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
        "required": ["type", "version", "id", "occurred_at", "data"],
        "additionalProperties": False,
    }


def all_schemas() -> dict[str, dict[str, Any]]:
    """Every registered event's schema, by topic, in a stable (sorted) order."""
    return {topic: schema_for(cls) for topic, cls in sorted(event_types().items())}


def schema_document() -> dict[str, Any]:
    """One schema that accepts any event message: a `oneOf` over the per-topic schemas."""
    schemas = all_schemas()
    return {
        "$schema": DRAFT,
        "$id": f"{ID_PREFIX}any:v{SCHEMA_VERSION}",
        "title": "CTI Hub events",
        "description": "Wire form of every event on the CTI Hub bus and websockets.",
        "oneOf": [{"$ref": f"#/$defs/{topic}"} for topic in schemas],
        "$defs": schemas,
    }


def _type_label(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " \\| ".join(_type_label(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"array of {_type_label(schema['items'])}"
    return str(schema["type"])


def markdown() -> str:
    """The topic table of docs/events.md."""
    lines = [
        "# Events",
        "",
        "<!-- generated by `python -m cti.event_schema --markdown`; do not edit by hand -->",
        "",
        f"Every event travels as JSON: `{{\"type\": topic, \"version\": {SCHEMA_VERSION}, "
        "\"id\": ..., \"occurred_at\": RFC 3339 UTC, \"data\": {...}}`. The schema of each "
        "message is in [events.schema.json](events.schema.json). A field marked optional "
        "may be left out of `data`; the hub itself always sends every field.",
        "",
        "| topic | emitted when | fields (`data`) |",
        "|---|---|---|",
    ]
    for topic, schema in all_schemas().items():
        data = schema["properties"]["data"]
        fields = []
        for name, prop in data["properties"].items():
            optional = "" if name in data["required"] else ", optional"
            fields.append(f"`{name}`: {_type_label(prop)}{optional}")
        when = schema["description"].replace("|", "\\|")
        lines.append(f"| `{topic}` | {when} | {'<br>'.join(fields)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--markdown"]:
        sys.stdout.write(markdown())
    elif not args:
        sys.stdout.write(json.dumps(schema_document(), indent=2) + "\n")
    else:
        sys.stderr.write("usage: python -m cti.event_schema [--markdown]\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
