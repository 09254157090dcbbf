"""The cost model: exact figures against independent counts (plain-Python enumeration at small L,
the dense layout above), the mixture conventions, the order of every example, and the order
checked against exact counts up to L = 2**20."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from combiner_dsl import LengthError, ir, load
from combiner_dsl.cost import CostFigures, Lsym, cost_at, cost_from_layout, order

from .brute_force import brute_cost

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.cmb")) + sorted((ROOT / "examples" / "sparse").glob("*.cmb"))
ORDERS = {
    "combiner_fixed": "L**(3/2)",
    "combiner_fixed_bidir": "L**(3/2)",
    "combiner_axial": "L**(3/2)",
    "combiner_axial_vertical": "L**(3/2)",
    "combiner_axial_horizontal": "L**(3/2)",
    "combiner_mixture": "L**(3/2)",
    "combiner_logsparse": "L*log(L)",
    "sparse_fixed": "L**(3/2)",
    "sparse_axial": "L**(3/2)",
    "sparse_logsparse": "L*log(L)",
}


def brute(pattern: ir.Pattern, L: int) -> dict[str, int]:
    """The figures of contract.md counted independently of the planner: by plain enumeration
    (tests/brute_force.py) up to L = 64, on the dense layout (every D_i, region and selection) above."""
    if L <= 64:
        want = brute_cost(pattern, L)
        pairs = want["direct_pairs"] + want["region_pairs"] + want["summary_pairs"]
        return {**want, "flops": 4 * 64 * pairs, "dense_pairs": L * (L + 1) // 2 if pattern.causal else L * L}
    figures = cost_from_layout(pattern, L)
    return {k: getattr(figures, k) for k in ("direct_pairs", "region_pairs", "summary_pairs", "logits_max", "flops", "dense_pairs")}


def assert_matches(pattern: ir.Pattern, L: int) -> CostFigures:
    got = cost_at(pattern, L)
    want = brute(pattern, L)
    assert {k: getattr(got, k) for k in want} == want, (pattern.name, L)
    total = want["direct_pairs"] + want["region_pairs"] + want["summary_pairs"]
    assert got.ratio == (pytest.approx(want["dense_pairs"] / total) if total else float("inf"))
    return got


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_exact_figures_equal_a_dense_count(path: Path) -> None:
    pattern = load(path).pattern
    for L in (1, 2, 7, 64, 100, 4096):
        assert_matches(pattern, L)


def test_figures_in_json() -> None:
    figures = cost_at(load(ROOT / "examples" / "combiner_fixed.cmb").pattern, 16, d=32)
    data = figures.to_json()
    assert data["L"] == 16 and data["d"] == 32
    assert data["flops"] == 4 * 32 * (data["direct_pairs"] + data["region_pairs"] + data["summary_pairs"])
    assert set(data) >= {"direct_pairs", "region_pairs", "summary_pairs", "logits_max", "flops", "dense_pairs", "ratio"}


def test_mixtures_joint_counts_the_shared_direct_keys_once_and_average_sums_the_plans() -> None:
    joint = load(ROOT / "examples" / "combiner_mixture.cmb").pattern
    text = (ROOT / "examples" / "combiner_mixture.cmb").read_text().replace("mix: joint", "mix: average")
    average = load(text=text).pattern
    vertical = load(ROOT / "examples" / "combiner_axial_vertical.cmb").pattern
    horizontal = load(ROOT / "examples" / "combiner_axial_horizontal.cmb").pattern
    L = 100
    j, a, v, h = (cost_at(p, L) for p in (joint, average, vertical, horizontal))
    assert j.direct_pairs == v.direct_pairs  # the same direct set in both plans, counted once
    assert a.direct_pairs == v.direct_pairs + h.direct_pairs
    assert j.region_pairs == a.region_pairs == v.region_pairs + h.region_pairs
    assert j.summary_pairs == a.summary_pairs == v.summary_pairs + h.summary_pairs
    assert a.logits_max == max(v.logits_max, h.logits_max)
    assert_matches(average, L)


def test_derived_selection_is_costed_through_the_region_forest() -> None:
    text = (ROOT / "examples" / "combiner_fixed.cmb").read_text().replace("        select: r < i // s\n", "")
    derived = load(text=text).pattern
    for L in (1, 7, 50, 300):
        assert_matches(derived, L)
    assert cost_at(derived, 1000) == cost_at(load(ROOT / "examples" / "combiner_fixed.cmb").pattern, 1000)  # it derives r < i // s
    axial = (ROOT / "examples" / "combiner_axial.cmb").read_text()
    derived_axial = load(text="\n".join(line for line in axial.splitlines() if "select:" not in line)).pattern
    for L in (7, 100):
        assert_matches(derived_axial, L)


def test_rejected_lengths() -> None:
    pattern = load(text="pattern even:\n    causal\n    require L % 2 == 0\n    direct: j == i\n").pattern
    with pytest.raises(LengthError):
        cost_at(pattern, 7)
    assert cost_at(pattern, 8).direct_pairs == 8


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_order_of_every_example(path: Path) -> None:
    pattern = load(path).pattern
    got = order(pattern)
    assert got == sympy.sympify(ORDERS[pattern.name], locals={"L": Lsym})
    assert str(got) == ORDERS[pattern.name]


def _flat(pattern: ir.Pattern, exponents: range) -> list[float]:
    """total pairs / order at L = 2**k: the order is right when these stay within a constant band."""
    o = order(pattern)
    out = []
    for k in exponents:
        f = cost_at(pattern, 1 << k)
        out.append((f.direct_pairs + f.region_pairs + f.summary_pairs) / float(o.subs(Lsym, 1 << k)))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["combiner_fixed", "combiner_logsparse"])
def test_order_holds_up_to_a_million(name: str) -> None:
    ratios = _flat(load(ROOT / "examples" / f"{name}.cmb").pattern, range(10, 21, 2))
    assert max(ratios) / min(ratios) < 1.3, ratios
    assert all(a >= b * 0.97 for a, b in itertools.pairwise(ratios)) or all(a <= b * 1.03 for a, b in itertools.pairwise(ratios))


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["combiner_axial", "combiner_axial_vertical", "combiner_axial_horizontal", "combiner_mixture", "sparse/sparse_fixed", "sparse/sparse_logsparse"]
)
def test_order_holds_up_to_65536(name: str) -> None:
    ratios = _flat(load(ROOT / "examples" / f"{name}.cmb").pattern, range(10, 17, 2))
    assert max(ratios) / min(ratios) < 1.3, ratios


@pytest.mark.slow
def test_a_million_keys_in_seconds() -> None:
    s = 1 << 10  # at L = 2**20 combiner_fixed has 1024 blocks of 1024 keys; logsparse 20 levels
    for name, direct, widest in (("combiner_fixed", s * s * (s + 1) // 2, 2 * s - 1), ("combiner_logsparse", 1 << 20, 21)):
        pattern = load(ROOT / "examples" / f"{name}.cmb").pattern
        start = time.perf_counter()
        f = cost_at(pattern, 1 << 20)
        assert time.perf_counter() - start < 30  # a few seconds alone; generous on a shared machine
        assert (f.direct_pairs, f.logits_max) == (direct, widest)


# ---------------------------------------------------------------- random specs against the dense count

LETS = ["isqrt(L)", "2", "3", "max(1, L // 4)", "clog2(L) + 1", "L // 4 + 1"]
DIRECTS = ["j // s == i // s", "j == i", "abs(i - j) < s", "j % s == i % s", "j // s == i // s or j % s == s - 1", "j % s == 0 and j // s == i // s", "false"]
SELECTS = ["r < i // s", "r <= i // s", "r != i // s", "r < i // s and r % 2 == 0", "r == i // s - 1"]
MEMBERS = ["j // s == r", "j // s == r and j % s < s // 2 + 1", "j // s == r and j % 2 == 0", "j // s < r"]
SUMMARIES = ["max", "query = at(r * s + i % s), key = at(r * s + i % s)", "query = max, key = at(r * s)", "query = at(r * s + i % 2), key = mean"]


@st.composite
def small_specs(draw: st.DrawFn) -> str:
    lines = [
        "pattern random_cost:",
        f"    {draw(st.sampled_from(['causal', 'bidirectional']))}",
        f"    let s = {draw(st.sampled_from(LETS))}",
        f"    direct: {draw(st.sampled_from(DIRECTS))}",
    ]
    for k in range(draw(st.integers(0, 2))):
        two = draw(st.booleans())
        lines += [
            f"    partition part{k}[r in 0 .. cdiv(L, s){', c in 0 .. 2' if two else ''}]:",
            f"        member: {draw(st.sampled_from(MEMBERS))}{' and j % 2 == c' if two else ''}",
            f"        select: {draw(st.sampled_from(SELECTS))}",
            f"        summary: {draw(st.sampled_from(SUMMARIES))}",
        ]
    return "\n".join(lines) + "\n"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_specs(), st.integers(1, 60))
def test_random_specs_match_the_dense_count(text: str, L: int) -> None:
    assert_matches(load(text=text).pattern, L)


@pytest.mark.parametrize("name", ["combiner_fixed", "combiner_axial", "combiner_logsparse"])
def test_derived_selection_costs_the_same(name: str) -> None:
    import re

    text = (ROOT / "examples" / f"{name}.cmb").read_text()
    written = load(text=text).pattern
    derived = load(text=re.sub(r"\n\s*select:[^\n]*", "", text)).pattern
    for L in (37, 100):
        assert cost_at(derived, L) == cost_at(written, L)


SIZE_COUNTING = {
    # a solved binder that reads a free one: the listing path
    "a = j - b": ("partition P[b in 0 .. 3, a in 0 .. L]:\n        member: a == j - b\n        select: a + b < i", False),
    # two solved binders and a free one: counted by classes of keys
    "two solved": ("partition P[r in 0 .. cdiv(L, 4), c in 0 .. 4, t in 0 .. 3]:\n        member: j // 4 == r and j % 4 == c and t <= c\n        select: r < i // 4 and t == 0", True),
    # no solved binder at all (nested prefixes)
    "prefix": ("partition P[a in 0 .. cdiv(L, 4)]:\n        member: j // 4 < a\n        select: a == i // 4", True),
}


@pytest.mark.parametrize("name", SIZE_COUNTING)
def test_region_sizes_counted_without_members_equal_the_dense_count(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from combiner_dsl.runtime import tiling

    part, by_classes = SIZE_COUNTING[name]
    pattern = load(text=f"pattern sizes:\n    causal\n    direct: j == i\n    {part}\n").pattern
    calls: list[bool] = []
    real = tiling._sizes_by_key_class

    def spy(*args: object, **kwargs: object) -> object:
        got = real(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(got is not None)
        return got

    monkeypatch.setattr(tiling, "_sizes_by_key_class", spy)
    for L in (1, 7, 64, 100, 127):
        assert_matches(pattern, L)
    assert calls and all(c == by_classes for c in calls[1:]), calls
