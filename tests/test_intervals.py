"""The interval domain is sound: every exact value lies in the interval computed for its box."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from combiner_dsl.runtime.intervals import Bounds, Interval, Tri
from combiner_dsl.runtime.ops import DomainError, Exact

UNARY = ["abs", "isqrt", "ilog2", "clog2", "neg"]
BINARY = ["add", "sub", "mul", "floordiv", "mod", "cdiv", "min", "max", "pow", "eq", "ne", "lt", "le", "gt", "ge"]
LEAST = {"isqrt": 0, "ilog2": 1, "clog2": 1}


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(UNARY + BINARY), st.integers(-40, 40), st.integers(0, 20), st.integers(-8, 8), st.integers(0, 8))
def test_bounds_contain_every_exact_value(op: str, a0: int, da: int, b0: int, db: int) -> None:
    if op in LEAST:
        a0 = max(a0, LEAST[op])
    if op == "pow":
        b0 = max(b0, 0)
    a = Interval(torch.tensor(a0), torch.tensor(a0 + da))
    b = Interval(torch.tensor(b0), torch.tensor(b0 + db))
    try:
        box = getattr(Bounds, op)(a) if op in UNARY else getattr(Bounds, op)(a, b)
    except DomainError:
        return
    for x in range(a0, a0 + da + 1):
        for y in range(b0, b0 + db + 1):
            try:
                v = getattr(Exact, op)(x) if op in UNARY else getattr(Exact, op)(x, y)
            except DomainError:
                continue
            if not isinstance(v, bool) and abs(v) >= 2**62:
                continue  # tensors hold int64: the interval domain saturates beyond 2**62
            if isinstance(box, Tri):
                assert bool(box.can_true) if v else bool(box.can_false), (op, a, b, x, y)
            else:
                assert int(box.lo) <= v <= int(box.hi), (op, a, b, x, y, v)


def test_exact_tensor_ops_match_python() -> None:
    xs = torch.arange(1, 5000)
    assert Exact.isqrt(xs).tolist() == [Exact.isqrt(int(x)) for x in xs]
    assert Exact.ilog2(xs).tolist() == [int(x).bit_length() - 1 for x in xs]
    assert Exact.clog2(xs).tolist() == [(int(x) - 1).bit_length() for x in xs]
    ys = torch.arange(-50, 50)
    assert Exact.floordiv(ys, 7).tolist() == [int(y) // 7 for y in ys]
    assert Exact.mod(ys, -7).tolist() == [int(y) % -7 for y in ys]
    assert Exact.cdiv(ys, 7).tolist() == [-(-int(y) // 7) for y in ys]


def test_domain_errors() -> None:
    with pytest.raises(DomainError):
        Exact.floordiv(torch.arange(3), torch.tensor([1, 0, 2]))
    with pytest.raises(DomainError):
        Exact.isqrt(-1)
    with pytest.raises(DomainError):
        Exact.pow(2, -1)
