"""Query filters: the grammar, its errors, and that what the user typed never becomes SQL text."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from nas.search import WhereError, parse_where
from nas.search._where import Compare, Logic, evaluate, monotone_bounds, names_in, to_sql

NAMES = {"accuracy", "latency_ms@local-cpu", "latency_ms", "macs", "params", "number"}


def p(text: str) -> Compare | Logic:
    return parse_where(text, NAMES)


def test_single_comparisons() -> None:
    assert p("latency_ms<5") == Compare("latency_ms", "<", 5.0)
    assert p("  macs >= 3e8 ") == Compare("macs", ">=", 3e8)
    assert p("5 > latency_ms") == Compare(5.0, ">", "latency_ms")
    assert p("accuracy==70") == Compare("accuracy", "==", 70.0)
    assert p("accuracy = 70") == Compare("accuracy", "=", 70.0)
    assert p("accuracy != 70") == Compare("accuracy", "!=", 70.0)
    assert p("macs <= params") == Compare("macs", "<=", "params")
    assert p("latency_ms@local-cpu<5") == Compare("latency_ms@local-cpu", "<", 5.0)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3e8", 3e8),
        ("1.5E-3", 1.5e-3),
        (".5", 0.5),
        ("5.", 5.0),
        ("-2", -2.0),
        ("+1e+2", 100.0),
        ("2.5e0", 2.5),
        ("-.25e1", -2.5),
        ("0", 0.0),
    ],
)
def test_numbers(text: str, value: float) -> None:
    assert p(f"macs < {text}") == Compare("macs", "<", value)


def test_precedence_parentheses_and_not() -> None:
    a, b, c = Compare("macs", "<", 1.0), Compare("params", "<", 2.0), Compare("accuracy", ">", 3.0)
    assert p("macs<1 or params<2 and accuracy>3") == Logic("or", (a, Logic("and", (b, c))))
    assert p("(macs<1 or params<2) and accuracy>3") == Logic("and", (Logic("or", (a, b)), c))
    assert p("macs<1 and params<2 and accuracy>3") == Logic("and", (a, b, c))
    assert p("not macs<1 and params<2") == Logic("and", (Logic("not", (a,)), b))
    assert p("not (macs<1 and params<2)") == Logic("not", (Logic("and", (a, b)),))
    assert p("NOT not macs<1") == Logic("not", (Logic("not", (a,)),))
    assert p("macs<1 AND params<2 Or accuracy>3") == Logic("or", (Logic("and", (a, b)), c))
    assert p("((((macs<1))))") == a


def test_chained_ranges() -> None:
    assert p("1 < latency_ms <= 5") == Logic(
        "and", (Compare(1.0, "<", "latency_ms"), Compare("latency_ms", "<=", 5.0))
    )
    assert p("3e8>macs>1e8 and accuracy>60") == Logic(
        "and",
        (
            Logic("and", (Compare(3e8, ">", "macs"), Compare("macs", ">", 1e8))),
            Compare("accuracy", ">", 60.0),
        ),
    )
    assert names_in(p("1 < latency_ms@local-cpu < 5 or macs > params")) == {
        "latency_ms@local-cpu",
        "macs",
        "params",
    }


def test_without_names_any_identifier_is_allowed() -> None:
    assert parse_where("anything_at_all < 3") == Compare("anything_at_all", "<", 3.0)
    assert parse_where("latency_ms@jetson-orin.gpu_0 < 3") == Compare(
        "latency_ms@jetson-orin.gpu_0", "<", 3.0
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", ["Empty filter"]),
        ("   ", ["Empty filter"]),
        ("macs < 5 ; drop", ["unexpected", "position 9"]),
        ("macs<5 and", ["expected a name or a number", "at the end"]),
        ("(macs<5", ["expected )", "at the end"]),
        ("macs<5)", ["unexpected ')'", "position 6"]),
        ("macs<5 params<3", ["unexpected 'params'", "position 7"]),
        ("macs 5", ["expected op", "position 5"]),
        ("< 5", ["expected a name or a number", "position 0"]),
        ("macs < < 5", ["expected a name or a number", "position 7"]),
        ("and < 5", ["expected a name or a number", "position 0", "'and'"]),
        ("()", ["expected a name or a number", "position 1"]),
        ("3 < 5", ["compare a name with a number"]),
        ("macs < 1 < 5", ["compare a name with a number"]),  # 1 < 5 is a constant, not a bound
        ("1 < 2 < macs", ["compare a name with a number"]),
        ("macs < 'x'", ["unexpected", "position 7"]),
        ("macs < 5 -- comment", ["unexpected", "position 9"]),
        ("macs < 0x10", ["unexpected 'x10'", "position 8"]),
        ("macs @ 5", ["unexpected", "position 5"]),
    ],
)
def test_syntax_errors_name_the_position(text: str, words: list[str]) -> None:
    with pytest.raises(WhereError) as info:
        p(text)
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


@pytest.mark.parametrize(
    "text", ["latency<5", "macs<1 and foo>2", "1 < bar < 3", "latency_ms@gpu < 1", "DROP < 1"]
)
def test_unknown_names_are_named_with_the_allowed_ones(text: str) -> None:
    with pytest.raises(WhereError) as info:
        p(text)
    msg = str(info.value)
    unknown = next(w for w in ("latency_ms@gpu", "latency", "foo", "bar", "DROP") if w in text)
    assert f"Unknown name {unknown!r}" in msg
    assert "allowed: " + ", ".join(sorted(NAMES)) in msg


@pytest.mark.parametrize(
    "text",
    [
        "1; DROP TABLE x",
        "macs < 1; DROP TABLE nas_trials",
        "macs < 1 or 1=1; --",
        "macs < (select 1)",
        "macs < 1 union select * from nas_jobs",
        "macs<1\x00",
        'macs < "5"',
        "macs < 5e",
        "macs < 1 /* x */",
    ],
)
def test_injection_attempts_are_rejected(text: str) -> None:
    with pytest.raises(WhereError):
        p(text)


def test_deep_nesting_is_a_where_error_not_a_crash() -> None:
    assert p("(" * 50 + "macs<1" + ")" * 50) == Compare("macs", "<", 1.0)
    for text in ("(" * 3000 + "macs<1" + ")" * 3000, "not " * 3000 + "macs<1"):
        with pytest.raises(WhereError, match="nested deeper"):
            p(text)


def test_random_garbage_only_ever_raises_where_error() -> None:
    rng = random.Random(0)
    atoms = [
        "macs",
        "params",
        "accuracy",
        "latency_ms@local-cpu",
        "foo",
        "<",
        "<=",
        ">",
        "==",
        "!=",
        "=",
        "(",
        ")",
        "and",
        "or",
        "not",
        "1",
        "2.5e3",
        "-1",
        ";",
        "'",
        "@",
        ",",
        " ",
        "*",
        "+",
    ]
    parsed = 0
    for _ in range(3000):
        text = "".join(rng.choice(atoms) + rng.choice(["", " "]) for _ in range(rng.randint(0, 9)))
        try:
            tree = p(text)
        except WhereError:
            continue
        parsed += 1
        assert names_in(tree) <= NAMES
    assert parsed > 0


# ----------------------------------------------------------------------- SQL and Python semantics
@pytest.fixture(scope="module")
def table() -> tuple[sa.Engine, sa.Table, list[dict[str, Any]]]:
    rng = random.Random(1)
    md = sa.MetaData()
    t = sa.Table(
        "t",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        *(sa.Column(c, sa.Float, nullable=True) for c in ("acc", "lat", "macs", "params")),
    )
    eng = sa.create_engine("sqlite://")
    md.create_all(eng)
    rows = []
    for i in range(300):
        rows.append(
            {
                "id": i,
                "acc": float(rng.randint(40, 90)),
                "lat": round(rng.uniform(0.5, 9.5), 1),
                "macs": float(rng.choice([1e7, 5e7, 1e8, 3e8, 6e8])),
                "params": float(rng.randint(1, 9) * 1e5),
            }
        )
    rows[0]["lat"] = None  # a missing value fails every comparison
    with eng.begin() as c:
        c.execute(sa.insert(t), rows)
    return eng, t, rows


CASES: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [
    ("latency_ms@local-cpu < 5", lambda r: r["lat"] < 5),
    ("latency_ms < 5 and macs <= 1e8", lambda r: r["lat"] < 5 and r["macs"] <= 1e8),
    ("2.5 < latency_ms <= 7.5", lambda r: 2.5 < r["lat"] <= 7.5),
    ("accuracy >= 70 or macs == 3e8", lambda r: r["acc"] >= 70 or r["macs"] == 3e8),
    (
        "not (accuracy < 60 or latency_ms > 8) and params != 5e5",
        lambda r: not (r["acc"] < 60 or r["lat"] > 8) and r["params"] != 5e5,
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_sql_and_python_agree_with_the_meaning(
    table: tuple[sa.Engine, sa.Table, list[dict[str, Any]]],
    text: str,
    expected: Callable[[dict[str, Any]], bool],
) -> None:
    eng, t, rows = table
    cols = {
        "accuracy": t.c.acc,
        "latency_ms@local-cpu": t.c.lat,
        "latency_ms": t.c.lat,
        "macs": t.c.macs,
        "params": t.c.params,
        "number": t.c.id,
    }
    tree = parse_where(text, set(cols))
    with eng.connect() as c:
        got = {r.id for r in c.execute(sa.select(t.c.id).where(to_sql(tree, cols)))}

    def value_row(r: dict[str, Any]) -> dict[str, Any]:
        return {
            "accuracy": r["acc"],
            "latency_ms@local-cpu": r["lat"],
            "latency_ms": r["lat"],
            "macs": r["macs"],
            "params": r["params"],
            "number": r["id"],
        }

    complete = [r for r in rows if r["lat"] is not None]
    want = {r["id"] for r in complete if expected(r)}
    assert {i for i in got if i != 0} == want
    assert {r["id"] for r in complete if evaluate(tree, value_row(r))} == want
    assert 0 < len(want) < len(rows)


def test_numbers_are_bound_parameters_never_sql_text() -> None:
    t = sa.table("t", sa.column("lat"))
    tree = parse_where("lat < 123.5 and lat > -7e-3", {"lat"})
    compiled = to_sql(tree, {"lat": t.c.lat}).compile()
    sql = str(compiled)
    assert "123.5" not in sql and "0.007" not in sql and "e-3" not in sql
    assert sorted(compiled.params.values()) == [-7e-3, 123.5]


def test_missing_values_fail_every_comparison() -> None:
    assert not evaluate(p("macs < 5"), {"macs": None})
    assert not evaluate(p("macs < 5"), {})
    assert not evaluate(p("macs != 5"), {"macs": float("nan")})
    assert evaluate(p("not macs < 5"), {"macs": None})


@pytest.mark.parametrize(
    ("text", "monotone"),
    [
        ("latency_ms < 5", True),
        ("5 > latency_ms", True),
        ("accuracy >= 60 and latency_ms <= 5", True),
        ("latency_ms > 5", False),
        ("1 < latency_ms < 5", False),  # the lower bound keeps the worse side
        ("latency_ms < 5 or accuracy > 60", False),
        ("not latency_ms > 5", False),
        ("macs < 1e8", False),  # not an objective
        ("latency_ms == 5", False),
        ("latency_ms < accuracy", False),
    ],
)
def test_monotone_bounds(text: str, monotone: bool) -> None:
    assert monotone_bounds(p(text), {"latency_ms": "minimize", "accuracy": "maximize"}) is monotone
