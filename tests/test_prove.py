"""The prover: every paper example proved for all L, the sparse ones and broken variants refuted
with a replayed witness, and agreement with the exhaustive checker on random small specs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from combiner_dsl import ir, load
from combiner_dsl.exhaustive import check_length, check_lengths
from combiner_dsl.prove import ProofOutcome, prove

ROOT = Path(__file__).parent.parent
PAPER = sorted((ROOT / "examples").glob("*.cmb"))
SPARSE = sorted((ROOT / "examples" / "sparse").glob("*.cmb"))


def spec(text: str) -> ir.Pattern:
    return load(text=text, name="test.cmb").pattern


def fixed(select: str = "r < i // s", *, mode: str = "causal", let: str = "isqrt(L)", direct: str = "j // s == i // s", extra: str = "") -> ir.Pattern:
    return spec(
        f"pattern variant:\n    {mode}\n    let s = {let}\n    direct: {direct}\n"
        f"    partition block[r in 0 .. cdiv(L, s)]:\n        member: j // s == r\n        select: {select}\n{extra}"
    )


def assert_replays(pattern: ir.Pattern, out: ProofOutcome, check: str | None = None) -> None:
    assert out.status == "refuted", out.reason
    assert out.witness is not None
    assert check_length(pattern, out.witness.L) == out.witness  # the exhaustive checker's own witness
    if check:
        assert out.witness.check == check


def test_every_paper_example_is_proved_for_all_lengths() -> None:
    start = time.perf_counter()
    for path in PAPER:
        out = prove(load(path).pattern)
        assert (out.status, out.scope) == ("proved", "all L"), (path.name, out.reason)
    assert time.perf_counter() - start < 30


@pytest.mark.parametrize("path", SPARSE, ids=lambda p: p.stem)
def test_sparse_examples_are_refuted_with_a_gap(path: Path) -> None:
    pattern = load(path).pattern
    assert_replays(pattern, prove(pattern), "C2")


def test_skipping_the_previous_block_leaves_a_gap() -> None:
    pattern = fixed("r < i // s - 1")
    assert_replays(pattern, prove(pattern), "C2")


def test_selecting_the_own_block_leaks() -> None:
    pattern = fixed("r <= i // s")
    assert_replays(pattern, prove(pattern), "C0")


def test_two_partitions_over_the_same_keys_overlap() -> None:
    halves = "    partition half[r in 0 .. cdiv(L, s)]:\n        member: j // s == r and j % s < s // 2 + 1\n        select: r < i // s\n"
    pattern = spec(
        "pattern twice:\n    causal\n    let s = isqrt(L)\n    direct: j // s == i // s\n"
        "    partition firsthalf[r in 0 .. cdiv(L, s)]:\n        member: j // s == r and j % s < s // 2 + 1\n        select: r < i // s\n"
        + halves.replace("half[", "again[")
    )
    assert_replays(pattern, prove(pattern), "C1")


def test_a_summary_outside_its_region_is_caught() -> None:
    pattern = spec(
        "pattern shifted:\n    causal\n    let w = isqrt(L)\n    direct: j // w == i // w\n"
        "    partition row[r in 0 .. cdiv(L, w)]:\n        member: j // w == r\n        select: r < i // w\n"
        "        summary: query = at(r * w + i % w + 1), key = max\n"
    )
    assert_replays(pattern, prove(pattern), "C3")


@pytest.mark.parametrize(
    ("select", "levels", "check"),
    [
        ("r == i // 2 ** l - 1", "clog2(L)", "C1"),  # every level, not just the set bits: overlaps
        ("(i // 2 ** l) % 2 == 1 and r == i // 2 ** l - 1", "clog2(L) - 1", "C2"),  # the top level is missing
        ("(i // 2 ** l) % 2 == 1 and r == i // 2 ** l - 1", "ilog2(L)", "C2"),
    ],
)
def test_logsparse_variants(select: str, levels: str, check: str) -> None:
    pattern = spec(
        f"pattern dyadic_variant:\n    causal\n    let K = {levels}\n    direct: j == i\n"
        f"    partition dyadic[l in 0 .. K, r in 0 .. cdiv(L, 2 ** l)]:\n        member: j // 2 ** l == r\n        select: {select}\n"
    )
    assert_replays(pattern, prove(pattern), check)


def test_requires_are_assumed() -> None:
    pattern = spec(
        "pattern quarters:\n    causal\n    require L % 4 == 0\n    let s = L // 4\n    direct: j // s == i // s\n"
        "    partition block[r in 0 .. 4]:\n        member: j // s == r\n        select: r < i // s\n"
    )
    assert prove(pattern).scope == "all L"


def test_an_undefined_expression_is_not_proved() -> None:
    out = prove(fixed(let="isqrt(L) - 1"))  # s = 0 for L < 4
    assert out.status == "unknown"
    assert out.reason is not None and "division by zero" in out.reason
    guarded = spec(
        "pattern guarded:\n    causal\n    require L >= 4\n    let s = isqrt(L) - 1\n    direct: j // s == i // s\n"
        "    partition block[r in 0 .. cdiv(L, s)]:\n        member: j // s == r\n        select: r < i // s\n"
    )
    assert (prove(guarded).status, prove(guarded).scope) == ("proved", "all L")


def test_a_query_the_solver_cannot_do_for_all_lengths_is_proved_up_to_a_bound() -> None:
    # a member without an equality leaves the region binder free: only the bounded expansion decides
    pattern = spec(
        "pattern ranged:\n    causal\n    let s = isqrt(L)\n    direct: j // s == i // s\n"
        "    partition block[r in 0 .. cdiv(L, s)]:\n        member: r * s <= j and j < r * s + s\n        select: r < i // s\n"
    )
    out = prove(pattern, timeout_s=2.0, bound=1024)
    assert (out.status, out.scope) == ("proved", "L <= 1024")
    assert out.reason and "C2" in out.reason


def test_derived_selection_is_reported_as_unknown() -> None:
    pattern = spec(
        "pattern derived:\n    causal\n    let s = isqrt(L)\n    direct: j // s == i // s\n    partition block[r in 0 .. cdiv(L, s)]:\n        member: j // s == r\n"
    )
    out = prove(pattern)
    assert out.status == "unknown"
    assert out.reason is not None and "derived selection" in out.reason


# ---------------------------------------------------------------- agreement with the exhaustive checker

LETS = ["isqrt(L)", "2", "3", "max(1, L // 4)", "clog2(L) + 1", "max(1, isqrt(L) - 1)", "L // 4 + 1", "max(2, isqrt(L))"]
# (mode, direct, select) that hold for every L, then variations that may break them
CORRECT = [
    ("causal", "j // s == i // s", "r < i // s"),
    ("bidirectional", "j // s == i // s", "r != i // s"),
    ("causal", "j // s == i // s and j <= i", "r < i // s"),
]
DIRECTS = ["j == i", "abs(i - j) < s", "j % s == i % s", "false"]
SELECTS = ["r <= i // s", "r < i // s - 1", "r + 1 < i // s", "r < i // s + 1", "r > i // s", "r != i // s", "r < i // s and r % 2 == 0"]
COUNTS = ["cdiv(L, s)", "L // s", "cdiv(L, s) + 1", "L"]


@st.composite
def block_specs(draw: st.DrawFn) -> tuple[str, bool]:
    """A correct block spec (split into one or two partitions), often with one part changed; and
    whether it is one of the unchanged ones, which hold for every L and must be proved."""
    mode, direct, select = draw(st.sampled_from(CORRECT))
    count, halves = "cdiv(L, s)", draw(st.booleans())
    change = draw(st.sampled_from(["none", "none", "direct", "select", "count", "member"]))
    if change == "direct":
        direct = draw(st.sampled_from(DIRECTS))
    elif change == "select":
        select = draw(st.sampled_from(SELECTS))
    elif change == "count":
        count = draw(st.sampled_from(COUNTS))
    members = ["j // s == r and j % s < s // 2", "j // s == r and j % s >= s // 2"] if halves else ["j // s == r"]
    if change == "member":
        members[-1] = draw(st.sampled_from(["j // s == r and j % 2 == 0", "j // s == r and j % s > s // 2", "j // s == r + 1"]))
    lines = ["pattern random_blocks:", f"    {mode}", f"    let s = {draw(st.sampled_from(LETS))}", f"    direct: {direct}"]
    plain = change == "none"
    for k, member in enumerate(members):
        lines += [f"    partition part{k}[r in 0 .. {count}]:", f"        member: {member}", f"        select: {select}"]
        if draw(st.booleans()):
            lines.append(f"        summary: query = at(r * s + {draw(st.sampled_from(['0', 'i % s', 's - 1', 's']))}), key = max")
            plain = False
    return "\n".join(lines) + "\n", plain and not halves


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(block_specs())
def test_prover_agrees_with_exhaustive_checking(case: tuple[str, bool]) -> None:
    text, must_prove = case
    pattern = spec(text)
    out = prove(pattern, timeout_s=2.0)
    if must_prove:
        assert (out.status, out.scope) == ("proved", "all L"), (text, out.reason)
    if out.status == "proved":
        verdict = check_lengths(pattern, range(1, 41))
        assert verdict.status == "checked", (text, verdict.witness)
    elif out.status == "refuted":
        assert_replays(pattern, out)
    else:
        assert out.reason


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "direct", "select"), CORRECT)
def test_every_correct_block_spec_is_proved_and_each_break_refuted(mode: str, direct: str, select: str) -> None:
    """The prover proves something: every correct spec for all L, and a leak and a gap are refuted."""

    def text(let: str, sel: str) -> str:
        return (
            f"pattern p:\n    {mode}\n    let s = {let}\n    direct: {direct}\n"
            f"    partition part0[r in 0 .. cdiv(L, s)]:\n        member: j // s == r\n        select: {sel}\n"
        )

    for let in LETS:
        out = prove(spec(text(let, select)), timeout_s=5.0)
        assert (out.status, out.scope) == ("proved", "all L"), (let, out.reason)
    for broken, check in (("r <= i // s", "C1"), ("r < i // s - 1", "C2")):
        out = prove(spec(text("isqrt(L)", broken)), timeout_s=5.0)
        assert out.status == "refuted" and out.witness is not None and out.witness.check in ("C0", check), (broken, out)
        assert_replays(spec(text("isqrt(L)", broken)), out)
