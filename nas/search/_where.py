"""Query filters like ``latency_ms<5 and macs<3e8``: parsed into a small tree, then turned into
SQLAlchemy expressions over known columns. Nothing the user typed is ever pasted into SQL.

Grammar::

    expr    := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | "(" expr ")" | compare
    compare := operand OP operand [OP operand]     # 1 < macs/1e6 is not allowed; a < x < b is
    operand := NAME | NUMBER
    OP      := < | <= | > | >= | == | = | !=
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

__all__ = ["Compare", "Logic", "WhereError", "parse_where", "to_sql"]


class WhereError(ValueError):
    """A malformed filter; the message points at the offending position."""


_TOKEN = re.compile(
    r"\s*(?:(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<op><=|>=|==|!=|<|>|=)"
    r"|(?P<paren>[()])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:@[A-Za-z0-9_.\-]+)?))"
)
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "=": operator.eq, "!=": operator.ne,
}
_KEYWORDS = {"and", "or", "not"}
_MAX_DEPTH = 50
"""Nesting limit for parentheses and `not` (deeper input is rejected, never a RecursionError)."""


@dataclass(frozen=True)
class Compare:
    """``left op right`` where each side is a column name (str) or a number (float)."""

    left: str | float
    op: str
    right: str | float


@dataclass(frozen=True)
class Logic:
    """``and`` / ``or`` over parts, or ``not`` over one."""

    kind: str
    parts: tuple[Any, ...]


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            at = pos + len(text[pos:]) - len(text[pos:].lstrip())  # the character, not the blank before it
            raise WhereError(f"Bad filter {text!r}: unexpected {text[at:].strip()[:12]!r} at position {at}.")
        kind = m.lastgroup or ""
        value = m.group(kind)
        start = m.start(kind)
        if kind == "name" and value.lower() in _KEYWORDS:
            kind, value = "kw", value.lower()
        out.append((kind, value, start))
        pos = m.end()
    return out


def parse_where(text: str, names: set[str] | None = None) -> Compare | Logic:
    """Parse a filter.

    Args:
        names: Allowed column names; an unknown one raises WhereError listing them.

    Raises:
        WhereError: a syntax error or an unknown name.
    """
    toks = _tokens(text)
    if not toks:
        raise WhereError("Empty filter; write e.g. \"latency_ms<5 and macs<3e8\".")
    pos = 0
    depth = 0

    def peek() -> tuple[str, str, int] | None:
        return toks[pos] if pos < len(toks) else None

    def take(kind: str | None = None, value: str | None = None) -> tuple[str, str, int]:
        nonlocal pos
        t = peek()
        if t is None or (kind and t[0] != kind) or (value and t[1] != value):
            want = value or kind or "more"
            where = f"at position {t[2]} ({t[1]!r})" if t else "at the end"
            raise WhereError(f"Bad filter {text!r}: expected {want} {where}.")
        pos += 1
        return t

    def operand() -> str | float:
        t = peek()
        if t is None or t[0] not in ("num", "name"):
            where = f"at position {t[2]} ({t[1]!r})" if t else "at the end"
            raise WhereError(f"Bad filter {text!r}: expected a name or a number {where}.")
        take()
        if t[0] == "num":
            return float(t[1])
        if names is not None and t[1] not in names:
            raise WhereError(f"Unknown name {t[1]!r} in filter {text!r}; allowed: {', '.join(sorted(names))}.")
        return t[1]

    def pair(left: str | float, op: str, right: str | float) -> Compare:
        if isinstance(left, float) and isinstance(right, float):
            raise WhereError(f"Bad filter {text!r}: compare a name with a number, not {left:g} {op} {right:g}.")
        return Compare(left, op, right)

    def compare() -> Compare | Logic:
        left = operand()
        op = take("op")[1]
        right = operand()
        t = peek()
        if t is not None and t[0] == "op":  # a chained range: 1 < x < 5
            op2 = take("op")[1]
            third = operand()
            return Logic("and", (pair(left, op, right), pair(right, op2, third)))
        return pair(left, op, right)

    def not_() -> Compare | Logic:
        nonlocal depth
        t = peek()
        if t is not None and ((t[0] == "kw" and t[1] == "not") or (t[0] == "paren" and t[1] == "(")):
            depth += 1
            if depth > _MAX_DEPTH:
                raise WhereError(f"Bad filter: nested deeper than {_MAX_DEPTH} levels at position {t[2]}.")
        if t is not None and t[0] == "kw" and t[1] == "not":
            take()
            negated = Logic("not", (not_(),))
            depth -= 1
            return negated
        if t is not None and t[0] == "paren" and t[1] == "(":
            take()
            inner = expr()
            take("paren", ")")
            depth -= 1
            return inner
        return compare()

    def and_() -> Compare | Logic:
        parts = [not_()]
        while (t := peek()) is not None and t[0] == "kw" and t[1] == "and":
            take()
            parts.append(not_())
        return parts[0] if len(parts) == 1 else Logic("and", tuple(parts))

    def expr() -> Compare | Logic:
        parts = [and_()]
        while (t := peek()) is not None and t[0] == "kw" and t[1] == "or":
            take()
            parts.append(and_())
        return parts[0] if len(parts) == 1 else Logic("or", tuple(parts))

    tree = expr()
    if pos != len(toks):
        t = toks[pos]
        raise WhereError(f"Bad filter {text!r}: unexpected {t[1]!r} at position {t[2]}.")
    return tree


def names_in(tree: Compare | Logic) -> set[str]:
    """Column names a filter mentions."""
    if isinstance(tree, Compare):
        return {x for x in (tree.left, tree.right) if isinstance(x, str)}
    return set().union(*(names_in(p) for p in tree.parts))


def to_sql(tree: Compare | Logic, columns: Mapping[str, Any]) -> Any:
    """A SQLAlchemy boolean expression; names map through `columns` (numbers become bound
    parameters, never SQL text)."""
    if isinstance(tree, Compare):
        def side(x: str | float) -> Any:
            return columns[x] if isinstance(x, str) else sa.literal(float(x))

        return _OPS[tree.op](side(tree.left), side(tree.right))
    parts = [to_sql(p, columns) for p in tree.parts]
    if tree.kind == "not":
        return sa.not_(parts[0])
    return sa.and_(*parts) if tree.kind == "and" else sa.or_(*parts)


def evaluate(tree: Compare | Logic, row: Mapping[str, float | None]) -> bool:
    """The filter on one row of values (a missing or None value fails every comparison)."""
    if isinstance(tree, Compare):
        a = row.get(tree.left) if isinstance(tree.left, str) else tree.left
        b = row.get(tree.right) if isinstance(tree.right, str) else tree.right
        if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
            return False
        return bool(_OPS[tree.op](a, b))
    if tree.kind == "not":
        return not evaluate(tree.parts[0], row)
    results = (evaluate(p, row) for p in tree.parts)
    return all(results) if tree.kind == "and" else any(results)


def monotone_bounds(tree: Compare | Logic, directions: Mapping[str, str]) -> bool:
    """Whether a filter is a conjunction of bounds that keep the better side of objectives
    (``latency_ms < 5`` when latency is minimised): then a trial passing it is never dominated
    by one failing it, so the constrained front is the stored front filtered."""
    if isinstance(tree, Logic):
        return tree.kind == "and" and all(monotone_bounds(p, directions) for p in tree.parts)
    name, num, op = (tree.left, tree.right, tree.op) if isinstance(tree.left, str) else (
        tree.right, tree.left, {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(tree.op, tree.op)
    )
    if not isinstance(name, str) or isinstance(num, str) or name not in directions:
        return False
    if directions[name] == "minimize":
        return op in ("<", "<=")
    return op in (">", ">=")
