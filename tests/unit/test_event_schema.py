"""The published event schemas accept exactly what `to_wire` produces, and the wire form
round-trips through JSON back to an equal event."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
import typing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.event_schema import all_schemas, markdown, schema_document, schema_for
from cti.events import Event, event_types, from_wire

ROOT = Path(__file__).resolve().parents[2]
EVENT_CLASSES = sorted(event_types().values(), key=lambda c: c.topic)
IDS = [c.topic for c in EVENT_CLASSES]


def _data_fields(cls: type[Event]) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.name not in ("occurred_at", "event_id")]


def strategy_for(hint: Any) -> st.SearchStrategy[Any]:
    if hint is str:
        return st.text(max_size=20)
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(min_value=-(2**53), max_value=2**53)
    if hint is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        return st.lists(strategy_for(args[0]), max_size=5).map(tuple)
    non_null = [a for a in args if a is not type(None)]
    if len(non_null) == 1:
        return st.none() | strategy_for(non_null[0])
    raise TypeError(f"no strategy for {hint!r}")


def events_of(cls: type[Event]) -> st.SearchStrategy[Event]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: strategy_for(hints[f.name]) for f in _data_fields(cls)}
    return st.builds(
        cls,
        occurred_at=st.datetimes(timezones=st.just(timezone.utc)),
        event_id=st.uuids().map(lambda u: u.hex),
        **fields,
    )


SAMPLE_VALUES: dict[Any, Any] = {str: "x-1", int: 7, float: 12.5, bool: True}


def sample(cls: type[Event]) -> Event:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in _data_fields(cls):
        hint = hints[f.name]
        if typing.get_origin(hint) is tuple:
            kwargs[f.name] = ("fx", "kyc")
        else:
            base = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
            kwargs[f.name] = SAMPLE_VALUES[base[0]]
    return cls(occurred_at=datetime(2024, 5, 1, 9, 30, 15, 123456, tzinfo=timezone.utc), **kwargs)


def wire(ev: Event) -> dict[str, Any]:
    """What a receiver actually gets: the wire form after a JSON trip."""
    message: dict[str, Any] = json.loads(json.dumps(ev.to_wire()))
    return message


_validators: dict[str, jsonschema.Draft202012Validator] = {}


def validator(cls: type[Event]) -> jsonschema.Draft202012Validator:
    if cls.topic not in _validators:  # building one is slow; hypothesis asks often
        schema = schema_for(cls)
        jsonschema.Draft202012Validator.check_schema(schema)
        _validators[cls.topic] = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    return _validators[cls.topic]


def test_every_event_class_has_a_schema() -> None:
    assert set(all_schemas()) == set(event_types())


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=IDS)
def test_sample_validates_and_round_trips(cls: type[Event]) -> None:
    ev = sample(cls)
    message = wire(ev)
    validator(cls).validate(message)
    assert from_wire(message) == ev


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=IDS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_generated_events_validate_and_round_trip(cls: type[Event], data: st.DataObject) -> None:
    ev = data.draw(events_of(cls))
    message = wire(ev)
    validator(cls).validate(message)
    assert from_wire(message) == ev


def _wrong_value(prop: dict[str, Any]) -> Any:
    """A JSON value that the property's schema must refuse."""
    if "anyOf" in prop:
        return {"not": "a scalar"}
    kind = prop["type"]
    if kind == "array":
        return [1, 2]
    return "not-a-number" if kind in ("integer", "number", "boolean") else 42


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=IDS)
def test_wrong_field_type_is_rejected(cls: type[Event]) -> None:
    v = validator(cls)
    good = wire(sample(cls))
    data_schema = schema_for(cls)["properties"]["data"]
    for name, prop in data_schema["properties"].items():
        bad = copy.deepcopy(good)
        bad["data"][name] = _wrong_value(prop)
        assert not v.is_valid(bad), f"{cls.topic}.{name} accepted {bad['data'][name]!r}"


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=IDS)
def test_missing_required_field_is_rejected(cls: type[Event]) -> None:
    v = validator(cls)
    good = wire(sample(cls))
    required = schema_for(cls)["properties"]["data"]["required"]
    assert required, "every event carries at least one required field"
    for name in required:
        bad = copy.deepcopy(good)
        del bad["data"][name]
        assert not v.is_valid(bad), f"{cls.topic} accepted a message without {name}"
    for name in ("type", "version", "id", "occurred_at", "data"):
        bad = copy.deepcopy(good)
        del bad[name]
        assert not v.is_valid(bad)


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=IDS)
def test_envelope_is_strict(cls: type[Event]) -> None:
    v = validator(cls)
    good = wire(sample(cls))
    variants = [
        {**good, "type": "some.other"},
        {**good, "version": good["version"] + 1},
        {**good, "occurred_at": "yesterday"},
        {**good, "extra": 1},
        {**good, "data": {**good["data"], "unexpected": "x"}},
    ]
    for bad in variants:
        assert not v.is_valid(bad), bad


def test_optional_fields_may_be_left_out() -> None:
    from cti.events import CallEnded

    message = wire(sample(CallEnded))
    del message["data"]["agent_id"]
    validator(CallEnded).validate(message)
    assert from_wire(message).agent_id is None  # type: ignore[attr-defined]


def test_nullable_field_accepts_null() -> None:
    from cti.events import CallOffered

    message = wire(sample(CallOffered))
    message["data"]["caller_e164"] = None
    validator(CallOffered).validate(message)


def test_combined_document_dispatches_on_type() -> None:
    doc = schema_document()
    jsonschema.Draft202012Validator.check_schema(doc)
    v = jsonschema.Draft202012Validator(doc)
    for cls in EVENT_CLASSES:
        message = wire(sample(cls))
        v.validate(message)
        message["type"] = "nobody.knows"
        assert not v.is_valid(message)


def test_published_docs_are_up_to_date() -> None:
    """docs/ is generated from the classes; regenerate with `python -m cti.event_schema`."""
    assert json.loads((ROOT / "docs/events.schema.json").read_text()) == schema_document()
    assert (ROOT / "docs/events.md").read_text() == markdown()


def test_cli_prints_the_document() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cti.event_schema"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == schema_document()
