"""The operator registry: one entry adds a function to every stage of the compiler."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sympy
import torch
import z3

from combiner_dsl import CombinerError, load, operators
from combiner_dsl.codegen.render import render
from combiner_dsl.cost import cost_at, cost_from_layout
from combiner_dsl.evaluate import evaluate, let_values
from combiner_dsl.exhaustive import check_lengths
from combiner_dsl.growth import Lsym, candidate_orders
from combiner_dsl.runtime.intervals import Bounds, Interval
from combiner_dsl.runtime.ops import Exact
from combiner_dsl.smt import Encoder

SPEC = """pattern doubled:
    causal
    let s = twice(isqrt(L) // 2 + 1)
    direct: j // s == i // s
    partition block[r in 0 .. cdiv(L, s)]:
        member: j // s == r
        select: r < i // s
"""


@pytest.fixture
def twice() -> Iterator[operators.Operator]:
    """`twice(x)`, 2 * x, declared once: arity, exact, interval, z3, growth (rendering follows the method)."""
    op = operators.register(
        operators.Operator(
            "twice",
            "call",
            "twice",
            (1, 1),
            smt=lambda enc, node, x: 2 * x,
            growth=lambda g, x: x,
            exact=lambda x: Exact.mul(x, 2),
            bounds=lambda x: Bounds.mul(x, 2),
        )
    )
    yield op
    operators.unregister(op)


def test_unknown_until_registered() -> None:
    with pytest.raises(CombinerError, match="unknown function `twice`"):
        load(text=SPEC)


def test_one_entry_reaches_every_stage(twice: operators.Operator) -> None:
    pattern = load(text=SPEC).pattern  # parse and analyze: a known function of one argument
    with pytest.raises(CombinerError, match="`twice` takes 1 argument, found 2"):
        load(text=SPEC.replace("twice(isqrt(L) // 2 + 1)", "twice(1, 2)"))
    # exact evaluation on ints and tensors
    assert let_values(pattern, 100)["s"] == 12
    call = pattern.lets[0].value
    assert evaluate(pattern, call, {"L": torch.tensor([1, 100])}, 100).tolist() == [2, 12]
    # intervals
    got = Bounds.twice(Interval(torch.tensor([-3]), torch.tensor([5])))  # type: ignore[attr-defined]
    assert (int(got.lo), int(got.hi)) == (-6, 10)
    # z3: the encoding is 2 * x
    enc, x = Encoder(), z3.Int("x")
    s = z3.Solver()
    s.add(enc.term(call.args[0], {"L": x}) * 2 != enc.term(call, {"L": x}), *enc.constraints())
    assert s.check() == z3.unsat
    # growth: s ~ sqrt(L) suggests L**(3/2)
    assert Lsym ** sympy.Rational(3, 2) in candidate_orders(pattern)
    # rendering, and the rendered code run on the domain
    code = render(call)
    assert code.startswith("d.twice(")
    fn = eval(f"lambda d, e: {code}")  # our own rendered text, not user input
    assert fn(Exact, {"L": 100}) == 12
    # the checker and the cost model use it through the same evaluator
    assert check_lengths(pattern, [1, 7, 100]).status == "checked"
    assert cost_at(pattern, 100) == cost_from_layout(pattern, 100)


def test_entries_are_complete() -> None:
    for op in operators.REGISTRY.values():
        for dom in operators.DOMAINS:
            assert callable(getattr(dom, op.method)), (op.name, dom)
    assert set(operators.functions()) == {"min", "max", "abs", "isqrt", "ilog2", "clog2", "cdiv"}
