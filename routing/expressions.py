"""A small, safe expression language for routing requirements and rules.

    language == "de" and crypto >= 3
    "de" in languages and not (tier in ["retail", "lead"])
    $language in languages            # $name: a contact attribute, bound on arrival

Owns: the tokenizer, the recursive-descent parser (text -> AST), the printer (AST ->
text, so that `parse(to_text(e)) == e`), binding of `$params` and the evaluator over a
lookup function (an agent's skills and attributes, or a contact's attributes). Must
never: call eval/exec, import asyncio, do I/O, or raise while evaluating (a type
mismatch is simply false: routing must not crash on a customer's odd attribute).

Grammar (lowest precedence first):
    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := operand [("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not" "in") operand]
    operand    := NUMBER | STRING | "true" | "false" | NAME | "$" NAME
                | "[" [literal ("," literal)*] "]" | "(" expr ")"
Comparisons do not chain (`a < b < c` is an error). A bare operand is true when its
value is truthy (a skill with proficiency > 0, a non-empty string or set).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

Scalar = str | int | float | bool
Value = Scalar | frozenset[str] | tuple[Scalar, ...] | None

KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false"})
COMPARISONS = ("==", "!=", "<=", ">=", "<", ">", "in", "not in")


class ParseError(ValueError):
    """The text is not a valid expression; `position` is the 0-based offset of the
    offending character in `text`."""

    def __init__(self, text: str, position: int, message: str) -> None:
        super().__init__(f"{message} at position {position}: {text!r}")
        self.text = text
        self.position = position
        self.message = message


# --- AST ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Literal:
    value: Scalar


@dataclass(frozen=True, slots=True, kw_only=True)
class Name:
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Param:
    """`$name`: a contact attribute, replaced by a Literal when a rule is applied."""

    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ListLit:
    items: tuple[Literal, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Compare:
    op: str  # one of COMPARISONS
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class And:
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class Or:
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class Not:
    operand: Expr


Expr = Literal | Name | Param | ListLit | Compare | And | Or | Not

# --- tokenizer ---------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<param>\$[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # number | string | param | name | kw | op | end
    text: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos] in "\"'":
                raise ParseError(text, pos, "unterminated string")
            raise ParseError(text, pos, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            word = m.group()
            if kind == "name" and word in KEYWORDS:
                kind = "kw"
            out.append(_Tok(kind, word, pos))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


# --- parser ------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def error(self, message: str, tok: _Tok | None = None) -> ParseError:
        return ParseError(self.text, (tok or self.tok).pos, message)

    def accept(self, kind: str, text: str) -> bool:
        if self.tok.kind == kind and self.tok.text == text:
            self.i += 1
            return True
        return False

    def expect(self, kind: str, text: str) -> None:
        if not self.accept(kind, text):
            found = self.tok.text or "end of expression"
            raise self.error(f"expected {text!r}, found {found!r}")

    def parse(self) -> Expr:
        if self.tok.kind == "end":
            raise self.error("empty expression")
        expr = self.or_()
        if self.tok.kind != "end":
            raise self.error(f"unexpected {self.tok.text!r}")
        return expr

    def or_(self) -> Expr:
        left = self.and_()
        while self.accept("kw", "or"):
            left = Or(left=left, right=self.and_())
        return left

    def and_(self) -> Expr:
        left = self.not_()
        while self.accept("kw", "and"):
            left = And(left=left, right=self.not_())
        return left

    def not_(self) -> Expr:
        if self.accept("kw", "not"):
            return Not(operand=self.not_())
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.operand()
        op = self._comparison_op()
        if op is None:
            return left
        right = self.operand()
        if self._comparison_op(peek=True) is not None:
            raise self.error("comparisons cannot be chained; use 'and'")
        return Compare(op=op, left=left, right=right)

    def _comparison_op(self, *, peek: bool = False) -> str | None:
        tok = self.tok
        if tok.kind == "op" and tok.text in COMPARISONS:
            op = tok.text
            width = 1
        elif tok.kind == "kw" and tok.text == "in":
            op, width = "in", 1
        elif tok.kind == "kw" and tok.text == "not" and self.toks[self.i + 1].text == "in":
            op, width = "not in", 2
        else:
            return None
        if not peek:
            self.i += width
        return op

    def operand(self) -> Expr:
        tok = self.tok
        if tok.kind in ("number", "string") or (tok.kind == "kw" and tok.text in ("true", "false")):
            return self.literal()
        if tok.kind == "name":
            self.i += 1
            return Name(name=tok.text)
        if tok.kind == "param":
            self.i += 1
            return Param(name=tok.text[1:])
        if self.accept("op", "("):
            inner = self.or_()
            self.expect("op", ")")
            return inner
        if self.accept("op", "["):
            items: list[Literal] = []
            if not self.accept("op", "]"):
                items.append(self.literal())
                while self.accept("op", ","):
                    items.append(self.literal())
                self.expect("op", "]")
            return ListLit(items=tuple(items))
        found = tok.text or "end of expression"
        raise self.error(f"expected a value, found {found!r}")

    def literal(self) -> Literal:
        tok = self.tok
        if tok.kind == "number":
            self.i += 1
            is_float = any(ch in tok.text for ch in ".eE")
            return Literal(value=float(tok.text) if is_float else int(tok.text))
        if tok.kind == "string":
            self.i += 1
            return Literal(value=_ESCAPE.sub(r"\1", tok.text[1:-1]))
        if tok.kind == "kw" and tok.text in ("true", "false"):
            self.i += 1
            return Literal(value=tok.text == "true")
        found = tok.text or "end of expression"
        raise self.error(f"expected a literal, found {found!r}")


def parse(text: str) -> Expr:
    """Text -> AST; raises ParseError with the position of the problem."""
    return _Parser(text).parse()


# --- printer -----------------------------------------------------------------------------

_PRECEDENCE = {Or: 1, And: 2, Not: 3, Compare: 4}


def _prec(e: Expr) -> int:
    return _PRECEDENCE.get(type(e), 5)


def _literal_text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def to_text(e: Expr) -> str:
    """AST -> text, with parentheses only where precedence needs them."""

    def wrap(child: Expr, at_least: int) -> str:
        text = to_text(child)
        return f"({text})" if _prec(child) < at_least else text

    match e:
        case Literal(value=v):
            return _literal_text(v)
        case Name(name=n):
            return n
        case Param(name=n):
            return "$" + n
        case ListLit(items=items):
            return "[" + ", ".join(_literal_text(i.value) for i in items) + "]"
        case Compare(op=op, left=left, right=right):
            return f"{wrap(left, 5)} {op} {wrap(right, 5)}"
        case Not(operand=operand):
            return f"not {wrap(operand, 3)}"
        case And(left=left, right=right):
            return f"{wrap(left, 2)} and {wrap(right, 3)}"
        case Or(left=left, right=right):
            return f"{wrap(left, 1)} or {wrap(right, 2)}"
    raise TypeError(f"not an expression: {e!r}")


# --- analysis and binding ------------------------------------------------------------------


def _walk(e: Expr) -> Iterator[Expr]:
    yield e
    match e:
        case Compare(left=left, right=right) | And(left=left, right=right) | Or(left=left, right=right):
            yield from _walk(left)
            yield from _walk(right)
        case Not(operand=operand):
            yield from _walk(operand)
        case ListLit(items=items):
            yield from items


def names(e: Expr) -> frozenset[str]:
    """The identifiers the expression reads (skills or attributes)."""
    return frozenset(n.name for n in _walk(e) if isinstance(n, Name))


def params(e: Expr) -> frozenset[str]:
    return frozenset(n.name for n in _walk(e) if isinstance(n, Param))


def bind(e: Expr, values: Mapping[str, Value]) -> Expr | None:
    """Replace every `$name` with the contact's value as a literal (a set becomes a
    list). None when a parameter is missing or has no literal form: the caller then
    skips the rule rather than guessing."""
    match e:
        case Param(name=n):
            v = values.get(n)
            if isinstance(v, (str, int, float, bool)):
                return Literal(value=v)
            if isinstance(v, (frozenset, tuple)) and all(isinstance(i, (str, int, float, bool)) for i in v):
                return ListLit(items=tuple(Literal(value=i) for i in sorted(v, key=str)))
            return None
        case Compare(op=op, left=left, right=right):
            bl, br = bind(left, values), bind(right, values)
            return None if bl is None or br is None else Compare(op=op, left=bl, right=br)
        case And(left=left, right=right):
            bl, br = bind(left, values), bind(right, values)
            return None if bl is None or br is None else And(left=bl, right=br)
        case Or(left=left, right=right):
            bl, br = bind(left, values), bind(right, values)
            return None if bl is None or br is None else Or(left=bl, right=br)
        case Not(operand=operand):
            b = bind(operand, values)
            return None if b is None else Not(operand=b)
    return e


# --- evaluation ----------------------------------------------------------------------------

Lookup = Callable[[str], Value]


def _value(e: Expr, lookup: Lookup) -> Value:
    match e:
        case Literal(value=v):
            return v
        case Name(name=n):
            return lookup(n)
        case Param():
            return None  # unbound: never matches
        case ListLit(items=items):
            return tuple(i.value for i in items)
    return evaluate(e, lookup)


def _is_number(v: Value) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _compare(op: str, a: Value, b: Value) -> bool:
    if op in ("in", "not in"):
        if not isinstance(b, (frozenset, tuple)):
            # not even "not in": a string is not a collection here (no substring
            # surprises), and an absent one proves nothing
            return False
        found = a in b
        return found if op == "in" else not found
    if op == "==":
        return _same(a, b)
    if op == "!=":
        return not _same(a, b)
    if not ((_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str))):
        return False
    x, y = a, b
    if op == "<":
        return x < y  # type: ignore[operator]
    if op == "<=":
        return x <= y  # type: ignore[operator]
    if op == ">":
        return x > y  # type: ignore[operator]
    return x >= y  # type: ignore[operator]


def _same(a: Value, b: Value) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, tuple) or isinstance(b, tuple):
        return isinstance(a, (tuple, frozenset)) and isinstance(b, (tuple, frozenset)) and set(a) == set(b)
    return a == b


def evaluate(e: Expr, lookup: Lookup) -> bool:
    """True when `e` holds for the values `lookup` gives its names. Never raises for
    any value a lookup may return."""
    match e:
        case And(left=left, right=right):
            return evaluate(left, lookup) and evaluate(right, lookup)
        case Or(left=left, right=right):
            return evaluate(left, lookup) or evaluate(right, lookup)
        case Not(operand=operand):
            return not evaluate(operand, lookup)
        case Compare(op=op, left=left, right=right):
            return _compare(op, _value(left, lookup), _value(right, lookup))
    return bool(_value(e, lookup))


# --- compilation ---------------------------------------------------------------------------

Predicate = Callable[[Lookup], bool]


def _value_fn(e: Expr) -> Callable[[Lookup], Value]:
    match e:
        case Literal(value=v):
            return lambda lookup: v
        case Name(name=n):
            return lambda lookup: lookup(n)
        case Param():
            return lambda lookup: None
        case ListLit(items=items):
            values = tuple(i.value for i in items)
            return lambda lookup: values
    return compile_predicate(e)


def compile_predicate(e: Expr) -> Predicate:
    """`e` as a function of a lookup, with exactly `evaluate`'s meaning (it never raises
    either). The router evaluates the same few expressions against thousands of agents;
    walking the tree with `match` each time was most of its decision time."""
    match e:
        case And(left=left, right=right):
            fl, fr = compile_predicate(left), compile_predicate(right)
            return lambda lookup: fl(lookup) and fr(lookup)
        case Or(left=left, right=right):
            fl, fr = compile_predicate(left), compile_predicate(right)
            return lambda lookup: fl(lookup) or fr(lookup)
        case Not(operand=operand):
            f = compile_predicate(operand)
            return lambda lookup: not f(lookup)
        case Compare(op=op, left=left, right=right):
            va, vb = _value_fn(left), _value_fn(right)
            return lambda lookup: _compare(op, va(lookup), vb(lookup))
    v = _value_fn(e)
    return lambda lookup: bool(v(lookup))
