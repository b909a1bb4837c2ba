"""recordings.scoring: the form format, the answers' checks and the weighted score."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recordings.scoring import (
    AnswerKind,
    FormError,
    check_answers,
    parse_form,
    score,
)

FORM: dict[str, Any] = {
    "name": "Sales call",
    "sections": [
        {
            "id": "opening",
            "title": "Opening",
            "weight": 1,
            "questions": [
                {"id": "greeting", "text": "Greeted the caller by name", "kind": "yes_no", "weight": 2},
                {"id": "rapport", "text": "Built rapport", "kind": "scale", "scale_max": 5, "weight": 1, "na_allowed": True},
            ],
        },
        {
            "id": "compliance",
            "title": "Compliance",
            "weight": 3,
            "questions": [
                {"id": "risk_warning", "text": "Read the CFD risk warning", "kind": "yes_no", "weight": 1, "na_allowed": True},
                {"id": "pci", "text": "Paused the recording for card details", "kind": "yes_no", "na_allowed": True},
            ],
        },
    ],
}


def form_with(**changes: Any) -> dict[str, Any]:
    """FORM with one value replaced, addressed by a path like sections.0.questions.1.kind."""
    raw = copy.deepcopy(FORM)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node: Any = raw
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is ...:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return raw


# --- the form ------------------------------------------------------------------------


def test_a_form_parses_and_its_canonical_form_reads_back_the_same() -> None:
    form = parse_form(FORM)
    assert form.name == "Sales call"
    assert [s.id for s in form.sections] == ["opening", "compliance"]
    rapport = form.questions()["rapport"]
    assert rapport.kind is AnswerKind.SCALE and rapport.scale_max == 5 and rapport.na_allowed
    assert form.questions()["pci"].weight == 1.0  # the default weight
    assert not form.questions()["greeting"].na_allowed  # N/A is off unless allowed
    assert parse_form(form.to_dict()) == form


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"name": ...}, "name", "missing_field"),
        ({"name": "   "}, "name", "bad_field"),
        ({"name": "x" * 121}, "name", "bad_field"),
        ({"sections": []}, "sections", "bad_field"),
        ({"sections": ...}, "sections", "missing_field"),
        ({"sections__0": "opening"}, "sections[0]", "bad_field"),
        ({"sections__0__id": "Opening"}, "sections[0].id", "bad_field"),
        ({"sections__1__id": "opening"}, "sections[1].id", "bad_field"),
        ({"sections__0__title": ...}, "sections[0].title", "missing_field"),
        ({"sections__0__weight": 0}, "sections[0].weight", "bad_field"),
        ({"sections__0__weight": -1}, "sections[0].weight", "bad_field"),
        ({"sections__0__weight": True}, "sections[0].weight", "bad_field"),
        ({"sections__0__weight": "2"}, "sections[0].weight", "bad_field"),
        ({"sections__0__weight": float("nan")}, "sections[0].weight", "bad_field"),
        ({"sections__0__questions": []}, "sections[0].questions", "bad_field"),
        ({"sections__0__questions__1__kind": "stars"}, "sections[0].questions[1].kind", "bad_field"),
        ({"sections__0__questions__1__kind": ...}, "sections[0].questions[1].kind", "missing_field"),
        ({"sections__0__questions__1__scale_max": ...}, "sections[0].questions[1].scale_max", "missing_field"),
        ({"sections__0__questions__1__scale_max": 1}, "sections[0].questions[1].scale_max", "bad_field"),
        ({"sections__0__questions__1__scale_max": 11}, "sections[0].questions[1].scale_max", "bad_field"),
        ({"sections__0__questions__1__scale_max": 4.0}, "sections[0].questions[1].scale_max", "bad_field"),
        ({"sections__0__questions__0__scale_max": 5}, "sections[0].questions[0].scale_max", "bad_field"),
        ({"sections__0__questions__0__na_allowed": "yes"}, "sections[0].questions[0].na_allowed", "bad_field"),
        ({"sections__0__questions__0__text": ""}, "sections[0].questions[0].text", "bad_field"),
        ({"sections__0__questions__0__weight": 1001}, "sections[0].questions[0].weight", "bad_field"),
        # Answers name questions by id across the whole form: a repeat in another section is refused.
        ({"sections__1__questions__1__id": "greeting"}, "sections[1].questions[1].id", "bad_field"),
    ],
)
def test_a_bad_form_names_the_field(changes: dict[str, Any], field: str, code: str) -> None:
    with pytest.raises(FormError) as caught:
        parse_form(form_with(**changes))
    assert (caught.value.field, caught.value.code) == (field, code)


def test_a_form_is_a_json_object() -> None:
    with pytest.raises(FormError) as caught:
        parse_form(["not", "a", "form"])
    assert caught.value.field == "form"


def test_limits_on_size() -> None:
    many = form_with(sections__0__questions=[
        {"id": f"q{i}", "text": "?", "kind": "yes_no"} for i in range(51)
    ])
    with pytest.raises(FormError) as caught:
        parse_form(many)
    assert caught.value.field == "sections[0].questions"


# --- answers -------------------------------------------------------------------------

GOOD = {"greeting": "yes", "rapport": 4, "risk_warning": "yes", "pci": "na"}


def test_good_answers_pass_unchanged() -> None:
    assert check_answers(parse_form(FORM), GOOD) == GOOD


@pytest.mark.parametrize(
    ("answers", "field", "code"),
    [
        ({**GOOD, "greeting": "na"}, "answers.greeting", "bad_field"),  # N/A not allowed there
        ({**GOOD, "greeting": True}, "answers.greeting", "bad_field"),
        ({**GOOD, "greeting": "Yes"}, "answers.greeting", "bad_field"),
        ({**GOOD, "rapport": 0}, "answers.rapport", "bad_field"),
        ({**GOOD, "rapport": 6}, "answers.rapport", "bad_field"),
        ({**GOOD, "rapport": 2.5}, "answers.rapport", "bad_field"),
        ({**GOOD, "rapport": "4"}, "answers.rapport", "bad_field"),
        ({**GOOD, "rapport": True}, "answers.rapport", "bad_field"),
        ({k: v for k, v in GOOD.items() if k != "pci"}, "answers.pci", "missing_field"),
        ({**GOOD, "pci": None}, "answers.pci", "missing_field"),
        ({**GOOD, "smile": "yes"}, "answers.smile", "bad_field"),
    ],
)
def test_bad_answers_name_the_question(answers: dict[str, Any], field: str, code: str) -> None:
    with pytest.raises(FormError) as caught:
        check_answers(parse_form(FORM), answers)
    assert (caught.value.field, caught.value.code) == (field, code)


def test_answers_are_a_json_object() -> None:
    with pytest.raises(FormError) as caught:
        check_answers(parse_form(FORM), [["greeting", "yes"]])
    assert caught.value.field == "answers"


# --- the score -----------------------------------------------------------------------


def scored(answers: dict[str, Any]) -> tuple[float | None, dict[str, float | None]]:
    form = parse_form(FORM)
    result = score(form, check_answers(form, answers))
    return result.total, {s.id: s.score for s in result.sections}


def test_all_best_is_100_and_all_worst_is_0() -> None:
    assert scored({"greeting": "yes", "rapport": 5, "risk_warning": "yes", "pci": "yes"})[0] == 100.0
    assert scored({"greeting": "no", "rapport": 1, "risk_warning": "no", "pci": "no"})[0] == 0.0


def test_weights_within_and_between_sections() -> None:
    # Opening: greeting yes (w2) and rapport 3 of 5 = 0.5 (w1): (2*1 + 1*0.5) / 3 = 83.33 %.
    # Compliance: one yes, one no (w1 each): 50 %. Total: (1*83.33 + 3*50) / 4 = 58.33 %.
    total, sections = scored({"greeting": "yes", "rapport": 3, "risk_warning": "yes", "pci": "no"})
    assert sections == {"opening": 83.33, "compliance": 50.0}
    assert total == 58.33


def test_not_applicable_leaves_the_denominator() -> None:
    # PCI did not arise: compliance is the risk warning alone (100 %), not 50 %.
    total, sections = scored({"greeting": "yes", "rapport": 5, "risk_warning": "yes", "pci": "na"})
    assert sections["compliance"] == 100.0 and total == 100.0


def test_a_section_with_nothing_applicable_leaves_the_total() -> None:
    total, sections = scored({"greeting": "no", "rapport": "na", "risk_warning": "na", "pci": "na"})
    assert sections == {"opening": 0.0, "compliance": None}
    assert total == 0.0  # the opening alone, not (1*0 + 3*nothing) / 4


def test_nothing_applicable_has_no_score() -> None:
    raw = {"name": "N/A only", "sections": [{"id": "s", "title": "S", "questions": [
        {"id": "a", "text": "A", "kind": "yes_no", "na_allowed": True},
    ]}]}
    form = parse_form(raw)
    result = score(form, check_answers(form, {"a": "na"}))
    assert result.total is None and result.sections[0].score is None


@given(
    greeting=st.sampled_from(["yes", "no"]),
    rapport=st.one_of(st.integers(1, 5), st.just("na")),
    risk=st.sampled_from(["yes", "no", "na"]),
    pci=st.sampled_from(["yes", "no", "na"]),
)
def test_a_score_is_a_percent_and_more_yes_never_lowers_it(greeting: str, rapport: Any, risk: str, pci: str) -> None:
    answers = {"greeting": greeting, "rapport": rapport, "risk_warning": risk, "pci": pci}
    total, _ = scored(answers)
    assert total is not None and 0.0 <= total <= 100.0  # greeting always applies
    if greeting == "no":
        better, _ = scored({**answers, "greeting": "yes"})
        assert better is not None and better >= total
