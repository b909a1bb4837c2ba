"""The routing expression language: parse, print, bind, evaluate; errors with positions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.expressions import (
    And,
    Compare,
    Expr,
    ListLit,
    Literal,
    Name,
    Not,
    Or,
    Param,
    ParseError,
    Value,
    bind,
    compile_predicate,
    evaluate,
    names,
    params,
    parse,
    to_text,
)

AGENT: dict[str, Value] = {
    "language": "de",
    "languages": frozenset({"de", "en"}),
    "crypto": 4,
    "compliance": 1,
    "tier": "senior",
}


def lookup(name: str) -> Value:
    return AGENT.get(name, 0)


def ev(text: str) -> bool:
    return evaluate(parse(text), lookup)


# --- parsing -------------------------------------------------------------------------


def test_parse_builds_the_tree_with_precedence() -> None:
    assert parse('language == "de" and crypto >= 3') == And(
        left=Compare(op="==", left=Name(name="language"), right=Literal(value="de")),
        right=Compare(op=">=", left=Name(name="crypto"), right=Literal(value=3)),
    )
    # and binds tighter than or; not tighter than and
    assert parse("a or b and not c") == Or(
        left=Name(name="a"), right=And(left=Name(name="b"), right=Not(operand=Name(name="c")))
    )
    assert parse("a and b and c") == And(left=And(left=Name(name="a"), right=Name(name="b")), right=Name(name="c"))
    assert parse("(a or b) and c") == And(left=Or(left=Name(name="a"), right=Name(name="b")), right=Name(name="c"))


def test_literals_lists_params_and_not_in() -> None:
    assert parse("x in ['a', \"b\", 3, 2.5, true]") == Compare(
        op="in",
        left=Name(name="x"),
        right=ListLit(
            items=(
                Literal(value="a"),
                Literal(value="b"),
                Literal(value=3),
                Literal(value=2.5),
                Literal(value=True),
            )
        ),
    )
    assert parse("$language not in languages") == Compare(
        op="not in", left=Param(name="language"), right=Name(name="languages")
    )
    assert parse("x == -1.5e3") == Compare(op="==", left=Name(name="x"), right=Literal(value=-1500.0))
    assert parse('s == "a \\"q\\" b\\\\"') == Compare(op="==", left=Name(name="s"), right=Literal(value='a "q" b\\'))
    assert parse("[]") == ListLit(items=())


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("", 0, "empty expression"),
        ("a and", 5, "expected a value, found 'end of expression'"),
        ("a == == b", 5, "expected a value, found '=='"),
        ("(a or b", 7, "expected ')', found 'end of expression'"),
        ("a b", 2, "unexpected 'b'"),
        ("a < b < c", 6, "comparisons cannot be chained; use 'and'"),
        ("a = 1", 2, "unexpected character '='"),
        ('x == "open', 5, "unterminated string"),
        ("x in [1, y]", 9, "expected a literal, found 'y'"),
        ("x in [1,", 8, "expected a literal, found 'end of expression'"),
        ("not", 3, "expected a value, found 'end of expression'"),
        ("a ! b", 2, "unexpected character '!'"),
    ],
)
def test_parse_errors_carry_position_and_message(text: str, position: int, message: str) -> None:
    with pytest.raises(ParseError) as err:
        parse(text)
    assert (err.value.position, err.value.message) == (position, message)
    assert str(position) in str(err.value)


def test_no_python_evaluation_sneaks_in() -> None:
    for text in ("__import__('os')", "a.b()", "x if y else z", "lambda: 1", "1 + 2"):
        with pytest.raises(ParseError):
            parse(text)


# --- evaluation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('language == "de" and crypto >= 3', True),
        ("crypto >= 5", False),
        ("crypto > 3 and crypto < 5 and crypto <= 4 and crypto != 2", True),
        ("options", False),  # absent skill: proficiency 0
        ("options >= 0", True),
        ("compliance", True),
        ('"de" in languages', True),
        ('"fr" in languages', False),
        ('"fr" not in languages', True),
        ('language in ["fr", "de"]', True),
        ('language not in ["fr", "de"]', False),
        ("not (crypto >= 3 or compliance)", False),
        ('tier < "z"', True),  # strings compare with strings
        ('crypto > "3"', False),  # a type mismatch is false, never an error
        ("languages > 1", False),
        ("crypto in 5", False),
        ("crypto not in 5", False),
        ("true", True),
        ("false or crypto == 4.0", True),
        ("compliance == true", False),  # a number is not a boolean
        ('"d" in language', False),  # a string is not a collection: no substrings
        ('"d" not in language', False),
        ("$language == 1", False),  # an unbound parameter matches nothing
        ('languages == ["en", "de"]', True),  # sets compare as sets
    ],
)
def test_evaluate(text: str, expected: bool) -> None:
    assert ev(text) is expected


def test_names_params_and_bind() -> None:
    e = parse('$language in languages and crypto >= $level and tier != "x"')
    assert names(e) == {"languages", "crypto", "tier"}
    assert params(e) == {"language", "level"}
    bound = bind(e, {"language": "de", "level": 3})
    assert bound == parse('"de" in languages and crypto >= 3 and tier != "x"')
    assert bind(e, {"language": "de"}) is None  # missing: the rule does not apply
    assert bind(parse("x in $langs"), {"langs": frozenset({"b", "a"})}) == parse('x in ["a", "b"]')
    assert bind(parse("not $x"), {"x": None}) is None


# --- round trip: printing then parsing gives the same tree -----------------------------

scalars = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(max_size=8),
    st.booleans(),
)
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,6}", fullmatch=True).filter(
    lambda s: s not in {"and", "or", "not", "in", "true", "false"}
)
literals = scalars.map(lambda v: Literal(value=v))
operands: st.SearchStrategy[Any] = st.one_of(
    literals,
    identifiers.map(lambda n: Name(name=n)),
    identifiers.map(lambda n: Param(name=n)),
    st.lists(literals, max_size=3).map(lambda items: ListLit(items=tuple(items))),
)
ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in"])


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(lambda o, a, b: Compare(op=o, left=a, right=b), ops, children, children),
        st.builds(lambda a, b: And(left=a, right=b), children, children),
        st.builds(lambda a, b: Or(left=a, right=b), children, children),
        children.map(lambda a: Not(operand=a)),
    )


expressions = st.recursive(operands, _extend, max_leaves=12)


def _strict(e: Expr) -> object:
    """Equality that tells True from 1 and 1 from 1.0 (dataclass == does not)."""
    match e:
        case Literal(value=v):
            return ("lit", type(v).__name__, v)
        case ListLit(items=items):
            return ("list", tuple(_strict(i) for i in items))
        case Compare(op=op, left=left, right=right):
            return ("cmp", op, _strict(left), _strict(right))
        case And(left=left, right=right):
            return ("and", _strict(left), _strict(right))
        case Or(left=left, right=right):
            return ("or", _strict(left), _strict(right))
        case Not(operand=operand):
            return ("not", _strict(operand))
    return e


@settings(max_examples=400)
@given(expressions)
def test_print_then_parse_is_the_identity(e: Expr) -> None:
    text = to_text(e)
    assert _strict(parse(text)) == _strict(e), text
    assert to_text(parse(text)) == text


@settings(max_examples=200)
@given(st.text(alphabet='ab ()[]=!<>"\'$,.01-nortdifuels', max_size=20))
def test_garbage_parses_or_fails_with_a_position_inside_the_text(text: str) -> None:
    try:
        e = parse(text)
    except ParseError as err:
        assert 0 <= err.position <= len(text)
    else:
        evaluate(e, lookup)  # whatever parses also evaluates without raising
        assert _strict(parse(to_text(e))) == _strict(e)


VALUES: list[Value] = [None, 0, 1, 3, 2.5, True, False, "", "de", "x", frozenset({"de", "en"}), ("de", 1)]


@settings(max_examples=400)
@given(expressions, st.dictionaries(identifiers, st.sampled_from(VALUES), max_size=4), st.sampled_from(VALUES))
def test_compiled_predicate_agrees_with_evaluate(e: Expr, values: dict[str, Value], default: Value) -> None:
    def look(name: str) -> Value:
        return values.get(name, default)

    assert compile_predicate(e)(look) is evaluate(e, look)
    for text in ("crypto >= 3 and not (tier in [\"a\", \"senior\"])", '"de" in languages or compliance'):
        assert compile_predicate(parse(text))(lookup) is ev(text)
