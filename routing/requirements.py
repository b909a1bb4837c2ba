"""Contacts' own requirements, compiled once per distinct text and remembered per agent.

Owns: `Requirement` (one agent expression a contact carries: its AST, compiled predicate,
the names it reads, and its verdicts so far per agent profile) and `Requirements`, the
registry that hands out one shared `Requirement` per printed text. Thousands of waiting
contacts carry the same few requirements ("en" in languages, compliance >= 1), and each
is tested against the same agents again and again, so the parse, the compilation and
the verdicts are shared. Must never: decide anything (it only answers "does this agent
meet this expression"), import asyncio, do I/O or read a clock.

Verdicts are keyed by the agent's `profile_key`, which the router draws from a counter
that never repeats: a changed profile gets a new key, so no verdict ever needs to be
invalidated, and a `Requirement` dropped from the registry but still held by a contact
stays correct.
"""

from __future__ import annotations

from collections.abc import Callable

from routing.expressions import Expr, Value, compile_predicate, names, parse, to_text

# Past this many distinct texts the registry starts afresh (contacts keep theirs): it is a
# cache, and contacts' own requirement texts may be arbitrary.
_REGISTRY_LIMIT = 4096
# Past this many remembered verdicts a requirement forgets them (stale profile keys pile
# up when agents are reconfigured often).
_MEMO_LIMIT = 65536


class Requirement:
    __slots__ = ("_fn", "_memo", "expr", "fails", "names", "text")

    def __init__(self, expr: Expr, text: str) -> None:
        self.expr = expr
        self.text = text
        self.names = names(expr)
        self._fn = compile_predicate(expr)
        self._memo: dict[int, bool] = {}
        # The profile keys known to fail it: set arithmetic against the free agents of a
        # queue (`FreeAgents.members`) drops them all at once.
        self.fails: set[int] = set()

    def holds(self, profile_key: int, lookup: Callable[[str], Value]) -> bool:
        """Whether the agent whose profile has `profile_key` (read through `lookup`)
        meets the expression."""
        verdict = self._memo.get(profile_key)
        if verdict is None:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
                self.fails.clear()
            verdict = self._memo[profile_key] = self._fn(lookup)
            if not verdict:
                self.fails.add(profile_key)
        return verdict


class Requirements:
    def __init__(self) -> None:
        self._by_text: dict[str, Requirement] = {}
        self._parsed: dict[str, Expr] = {}

    def parse(self, text: str) -> Expr:
        """`expressions.parse`, remembered (raises `ParseError` like it)."""
        expr = self._parsed.get(text)
        if expr is None:
            expr = parse(text)
            if len(self._parsed) >= _REGISTRY_LIMIT:
                self._parsed.clear()
            self._parsed[text] = expr
        return expr

    def of(self, expr: Expr) -> Requirement:
        """The shared requirement for `expr` (equal expressions print the same text)."""
        text = to_text(expr)
        req = self._by_text.get(text)
        if req is None:
            if len(self._by_text) >= _REGISTRY_LIMIT:
                self._by_text.clear()
            req = self._by_text[text] = Requirement(expr, text)
        return req
