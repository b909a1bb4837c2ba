"""QA evaluation forms and scores: the form an admin defines, the answers an evaluator
gives, and the weighted score they make.

Owns the form definition format (sections of questions, weights, answer kinds), its
checks, the checks of a set of answers against a form, and the score. Pure: no I/O, no
database, no clock; the store (recordings.qa_store) keeps forms and evaluations, the
web layer turns `FormError` into a 422 naming `field`.
Must never: score answers that were not checked against the same form, or count a
"not applicable" answer in a denominator (it would lower the score of a call for a
question that did not arise in it).

The format (docs/qa.md):

    {"name": "Sales call", "sections": [
      {"id": "opening", "title": "Opening", "weight": 1, "questions": [
        {"id": "greeting", "text": "Greeted the caller", "kind": "yes_no", "weight": 2},
        {"id": "rapport", "text": "Built rapport", "kind": "scale", "scale_max": 5,
         "weight": 1, "na_allowed": true}]}]}

Answers name every question by id: "yes" / "no" for yes_no, a whole number 1..scale_max
for scale, "na" where the question allows it.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "NOT_APPLICABLE",
    "AnswerKind",
    "Answers",
    "Form",
    "FormError",
    "Question",
    "Score",
    "Section",
    "SectionScore",
    "check_answers",
    "parse_form",
    "score",
]

NOT_APPLICABLE = "na"
YES, NO = "yes", "no"

IDENTIFIER = re.compile(r"[a-z][a-z0-9_]{0,39}")
MAX_NAME = 120
MAX_TITLE = 120
MAX_TEXT = 500
MAX_SECTIONS = 30
MAX_QUESTIONS = 50  # per section
MAX_WEIGHT = 1000.0
SCALE_MAX_RANGE = (2, 10)

# A checked answer: "yes", "no", "na" or a scale value.
Answer = str | int
Answers = dict[str, Answer]


class AnswerKind(enum.StrEnum):
    YES_NO = "yes_no"
    SCALE = "scale"


class FormError(ValueError):
    """A form or a set of answers that does not hold; `field` is the path at fault
    (`sections[0].questions[2].weight`, `answers.greeting`), `code` a stable slug."""

    def __init__(self, field: str, detail: str, *, code: str = "bad_field") -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail
        self.code = code


@dataclass(frozen=True, slots=True, kw_only=True)
class Question:
    id: str
    text: str
    kind: AnswerKind
    weight: float
    scale_max: int | None  # for scale questions: answers are 1..scale_max
    na_allowed: bool

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "text": self.text, "kind": self.kind.value, "weight": self.weight}
        if self.scale_max is not None:
            out["scale_max"] = self.scale_max
        out["na_allowed"] = self.na_allowed
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Section:
    id: str
    title: str
    weight: float
    questions: tuple[Question, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "weight": self.weight, "questions": [q.to_dict() for q in self.questions]}


@dataclass(frozen=True, slots=True, kw_only=True)
class Form:
    name: str
    sections: tuple[Section, ...]

    def questions(self) -> dict[str, Question]:
        return {q.id: q for s in self.sections for q in s.questions}

    def to_dict(self) -> dict[str, Any]:
        """The canonical definition: what is stored, and what parse_form reads back."""
        return {"name": self.name, "sections": [s.to_dict() for s in self.sections]}


@dataclass(frozen=True, slots=True, kw_only=True)
class SectionScore:
    id: str
    score: float | None  # percent; None when every question of the section was not applicable


@dataclass(frozen=True, slots=True, kw_only=True)
class Score:
    total: float | None  # percent, two decimals; None when nothing was applicable
    sections: tuple[SectionScore, ...]


# --- the form ------------------------------------------------------------------------


def parse_form(raw: object) -> Form:
    """The form an admin sent, checked; FormError naming the first field at fault."""
    body = _object(raw, "form")
    name = _text(body, "name", "name", MAX_NAME)
    raw_sections = body.get("sections")
    if not isinstance(raw_sections, list) or not raw_sections:
        raise FormError("sections", "a form has a non-empty list of sections", code=_missing_or_bad(raw_sections))
    if len(raw_sections) > MAX_SECTIONS:
        raise FormError("sections", f"a form has at most {MAX_SECTIONS} sections")
    sections: list[Section] = []
    seen_sections: set[str] = set()
    seen_questions: set[str] = set()
    for i, raw_section in enumerate(raw_sections):
        where = f"sections[{i}]"
        section = _object(raw_section, where)
        section_id = _identifier(section, where)
        if section_id in seen_sections:
            raise FormError(f"{where}.id", f"section id {section_id!r} is used twice")
        seen_sections.add(section_id)
        raw_questions = section.get("questions")
        if not isinstance(raw_questions, list) or not raw_questions:
            raise FormError(f"{where}.questions", "a section has a non-empty list of questions",
                            code=_missing_or_bad(raw_questions))
        if len(raw_questions) > MAX_QUESTIONS:
            raise FormError(f"{where}.questions", f"a section has at most {MAX_QUESTIONS} questions")
        questions: list[Question] = []
        for j, raw_question in enumerate(raw_questions):
            question = _question(raw_question, f"{where}.questions[{j}]")
            if question.id in seen_questions:
                raise FormError(f"{where}.questions[{j}].id", f"question id {question.id!r} is used twice in the form")
            seen_questions.add(question.id)
            questions.append(question)
        sections.append(Section(
            id=section_id,
            title=_text(section, "title", f"{where}.title", MAX_TITLE),
            weight=_weight(section, where),
            questions=tuple(questions),
        ))
    return Form(name=name, sections=tuple(sections))


def _question(raw: object, where: str) -> Question:
    body = _object(raw, where)
    question_id = _identifier(body, where)
    kind_raw = body.get("kind")
    try:
        kind = AnswerKind(str(kind_raw)) if isinstance(kind_raw, str) else AnswerKind("")
    except ValueError:
        raise FormError(f"{where}.kind", f"kind must be one of {', '.join(k.value for k in AnswerKind)}",
                        code=_missing_or_bad(kind_raw)) from None
    scale_max: int | None = None
    if kind is AnswerKind.SCALE:
        low, high = SCALE_MAX_RANGE
        value = body.get("scale_max")
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise FormError(f"{where}.scale_max", f"a scale question needs scale_max, a whole number from {low} to {high}",
                            code=_missing_or_bad(value))
        scale_max = value
    elif "scale_max" in body:
        raise FormError(f"{where}.scale_max", "only scale questions have a scale_max")
    na_allowed = body.get("na_allowed", False)
    if not isinstance(na_allowed, bool):
        raise FormError(f"{where}.na_allowed", "na_allowed is true or false")
    return Question(
        id=question_id,
        text=_text(body, "text", f"{where}.text", MAX_TEXT),
        kind=kind,
        weight=_weight(body, where),
        scale_max=scale_max,
        na_allowed=na_allowed,
    )


def _object(raw: object, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise FormError(where, "must be a JSON object", code=_missing_or_bad(raw))
    return raw


def _text(body: Mapping[str, Any], key: str, where: str, longest: int) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise FormError(where, "is required: non-empty text", code=_missing_or_bad(value))
    if len(value) > longest:
        raise FormError(where, f"is longer than {longest} characters")
    return value.strip()


def _identifier(body: Mapping[str, Any], where: str) -> str:
    value = body.get("id")
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise FormError(f"{where}.id", "an id is 1 to 40 lower-case letters, digits or _, starting with a letter",
                        code=_missing_or_bad(value))
    return value


def _weight(body: Mapping[str, Any], where: str) -> float:
    value = body.get("weight", 1)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not 0 < value <= MAX_WEIGHT:
        raise FormError(f"{where}.weight", f"a weight is a number above 0 and at most {MAX_WEIGHT:g}")
    return float(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _missing_or_bad(value: object) -> str:
    return "missing_field" if value is None else "bad_field"


# --- answers -------------------------------------------------------------------------


def check_answers(form: Form, raw: object) -> Answers:
    """The answers, checked against `form`: every question answered, in its kind, "na"
    only where allowed, nothing else; FormError naming `answers.<question id>` otherwise."""
    if not isinstance(raw, Mapping):
        raise FormError("answers", "answers are a JSON object: question id -> answer", code=_missing_or_bad(raw))
    questions = form.questions()
    for key in raw:
        if key not in questions:
            raise FormError(f"answers.{key}", f"the form {form.name!r} has no question {key!r}")
    checked: Answers = {}
    for question_id, question in questions.items():
        where = f"answers.{question_id}"
        if question_id not in raw or raw[question_id] is None:
            raise FormError(where, "every question needs an answer", code="missing_field")
        value = raw[question_id]
        if value == NOT_APPLICABLE:
            if not question.na_allowed:
                raise FormError(where, "this question does not allow 'na' (not applicable)")
            checked[question_id] = NOT_APPLICABLE
        elif question.kind is AnswerKind.YES_NO:
            if value not in (YES, NO):
                raise FormError(where, "answer 'yes' or 'no'" + (" or 'na'" if question.na_allowed else ""))
            checked[question_id] = value
        else:
            assert question.scale_max is not None
            if not _is_int(value) or not 1 <= value <= question.scale_max:
                raise FormError(
                    where,
                    f"answer a whole number from 1 to {question.scale_max}" + (" or 'na'" if question.na_allowed else ""),
                )
            checked[question_id] = value
    return checked


# --- the score -----------------------------------------------------------------------


def _fraction(question: Question, answer: Answer) -> float | None:
    """How much of the question's weight the answer earns, 0..1; None: not applicable."""
    if answer == NOT_APPLICABLE:
        return None
    if question.kind is AnswerKind.YES_NO:
        return 1.0 if answer == YES else 0.0
    assert question.scale_max is not None and isinstance(answer, int)
    return (answer - 1) / (question.scale_max - 1)


def _weighted(parts: list[tuple[float, float]]) -> float | None:
    total = sum(weight for weight, _ in parts)
    if not parts or total == 0:
        return None
    return sum(weight * value for weight, value in parts) / total


def score(form: Form, answers: Answers) -> Score:
    """Weighted percent: each section is the weighted mean of its applicable questions,
    the total the weighted mean of the sections that had any. Answers must come from
    `check_answers(form, ...)`."""
    section_scores: list[SectionScore] = []
    totals: list[tuple[float, float]] = []
    for section in form.sections:
        parts = [
            (question.weight, fraction)
            for question in section.questions
            if (fraction := _fraction(question, answers[question.id])) is not None
        ]
        value = _weighted(parts)
        section_scores.append(SectionScore(id=section.id, score=None if value is None else _percent(value)))
        if value is not None:
            totals.append((section.weight, value))
    total = _weighted(totals)
    return Score(total=None if total is None else _percent(total), sections=tuple(section_scores))


def _percent(fraction: float) -> float:
    return round(100 * fraction, 2)
