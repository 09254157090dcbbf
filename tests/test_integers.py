"""One integer semantics: exact 64-bit values everywhere, an overflow is a located error in every
stage (checker, intervals, plan, prover), never a wrap-around; size limits checked before the work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from combiner_dsl import CombinerError, load
from combiner_dsl.codegen.torch_target import build_module
from combiner_dsl.errors import SpecEvaluationError
from combiner_dsl.exhaustive import check_lengths
from combiner_dsl.prove import prove
from combiner_dsl.runtime.intervals import Bounds, Interval
from combiner_dsl.runtime.ops import INT_MAX, INT_MIN, DomainError, Exact

WRAP2000 = """pattern wrap2000:
    causal
    let s = isqrt(L)
    direct: j // s == i // s
    partition block[r in 0 .. cdiv(L, s)]:
        member: j // s == r
        select: r < i // s or (r > i // s and L == 2000 and (i + 1) * 4611686018427387904 * 4 == 0)
"""


def test_wrap2000_is_an_error_in_every_stage() -> None:
    pattern = load(text=WRAP2000, name="wrap.cmb").pattern
    for lengths in (None, [2000]):
        with pytest.raises(SpecEvaluationError, match=r"wrap\.cmb:7:\d+: integer overflow .* at L = \d+"):
            check_lengths(pattern, lengths)
    outcome = prove(pattern, timeout_s=5)
    assert outcome.status == "unknown" and "integer overflow" in (outcome.reason or "")
    attn = build_module(pattern)
    q = torch.randn(1, 1, 2000, 4)
    with pytest.raises(ValueError, match=r"integer overflow .* at L = 2000"):
        attn(q, q, q)


def test_the_prover_proves_exactly_the_64_bit_semantics() -> None:
    small = WRAP2000.replace("(i + 1) * 4611686018427387904 * 4 == 0", "(i + 1) * 1000000 == 0")
    assert prove(load(text=small).pattern, timeout_s=5).status == "proved"
    # fits up to L = 2e9, overflows for longer lengths (up to MAX_LENGTH = 2**32): no proof
    large = WRAP2000.replace("(i + 1) * 4611686018427387904 * 4 == 0", "(i + 1) * 4611686018 == 0")
    outcome = prove(load(text=large).pattern, timeout_s=5)
    assert outcome.status == "unknown" and "undefined" in (outcome.reason or "")


def _cli(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    spec = tmp_path / "bomb.cmb"
    spec.write_text("pattern bomb:\n    causal\n" + body + "    direct: j <= i\n")
    return subprocess.run([sys.executable, "-m", "combiner_dsl.cli", "check", str(spec)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("    let a = 2 ** 4096\n    let b = a ** 4096\n", 3),
        ("    let a0 = L + 1\n" + "".join(f"    let a{k} = a{k - 1} * a{k - 1}\n" for k in range(1, 40)), 9),
        ("    let a = " + "7" * 4400 + "\n", 3),
        ("    let a = 9223372036854775808\n", 3),
    ],
    ids=["power", "squaring-chain", "long-literal", "literal-2**63"],
)
def test_integer_bombs_are_located_errors(tmp_path: Path, body: str, line: int) -> None:
    run = _cli(tmp_path, body)
    assert run.returncode == 2, run.stderr
    assert f"bomb.cmb:{line}:" in run.stderr and "64-bit range" in run.stderr
    assert "Traceback" not in run.stderr


def test_the_largest_literal_is_accepted() -> None:
    load(text=f"pattern p:\n    causal\n    let a = {INT_MAX}\n    direct: j <= i and a > 0\n")
    with pytest.raises(CombinerError, match="64-bit range"):
        load(text=f"pattern p:\n    causal\n    let a = {INT_MAX + 1}\n    direct: j <= i\n")


OPS = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b, "pow": lambda a, b: a**b, "floordiv": lambda a, b: a // b}
EDGE = st.sampled_from([0, 1, -1, 2, -2, 3, 2**31, 2**32 - 1, 3037000499, 3037000500, 2**62, INT_MAX, INT_MIN, INT_MIN + 1, -(2**62)])
INTS = st.one_of(EDGE, st.integers(INT_MIN, INT_MAX))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(OPS)), INTS, INTS)
def test_exact_is_exact_or_refuses_on_ints_and_tensors(op: str, a: int, b: int) -> None:
    if op == "pow":
        b = abs(b) % 70
    if op == "floordiv" and b == 0:
        return
    want = OPS[op](a, b) if op != "pow" or abs(a) < 2 or b * (abs(a).bit_length() - 1) <= 200 else None
    fits = want is not None and INT_MIN <= want <= INT_MAX
    for x, y in ((a, b), (torch.tensor([a]), b), (a, torch.tensor([b])), (torch.tensor([a, 1]), torch.tensor([b, 1]))):
        if fits:
            got = getattr(Exact, op)(x, y)
            assert int(got if isinstance(got, int) else got.flatten()[0]) == want, (op, a, b)
        else:
            with pytest.raises(DomainError, match="64-bit"):
                getattr(Exact, op)(x, y)


def test_bounds_refuse_instead_of_wrapping() -> None:
    big = Interval(torch.tensor([0]), torch.tensor([2**62]))
    with pytest.raises(DomainError, match="64-bit"):
        Bounds.mul(big, 4)
    with pytest.raises(DomainError, match="64-bit"):
        Bounds.add(big, INT_MAX)
    with pytest.raises(DomainError, match="64-bit"):
        Bounds.pow(Interval(torch.tensor([2]), torch.tensor([3])), Interval(torch.tensor([1]), torch.tensor([63])))
    got = Bounds.pow(Interval(torch.tensor([2]), torch.tensor([3])), Interval(torch.tensor([1]), torch.tensor([5])))
    assert (int(got.lo), int(got.hi)) == (2, 243)
