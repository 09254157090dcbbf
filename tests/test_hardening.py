"""Regression tests for hostile and careless input (issue: soundness and hardening).

Each class of failure the differential fuzzer and the review found: lengths the requires reject,
specs the module could not run, masked logits that could win, resource bombs, and contract breaks.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

import combiner_dsl
from combiner_dsl import cli, ir, limits
from combiner_dsl.errors import CombinerError, SpecEvaluationError, SpecSyntaxError
from combiner_dsl.evaluate import accepts
from combiner_dsl.exhaustive import check_length, check_lengths
from combiner_dsl.oracle import oracle_attention
from combiner_dsl.prove import prove

from .brute_force import brute_accepts, brute_check

ROOT = Path(__file__).parent.parent
FIXED = (ROOT / "examples" / "combiner_fixed.cmb").read_text()


def spec(text: str) -> combiner_dsl.Spec:
    return combiner_dsl.load(text=text, name="t.cmb")


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = cli.main(args)
    except SystemExit as stop:  # argparse usage errors
        code = int(stop.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def module(s: combiner_dsl.Spec) -> torch.nn.Module:
    """The generated torch module (without the docstring's cost figures where that is possible)."""
    try:
        from combiner_dsl.codegen.torch_target import build_module
    except ImportError:
        return combiner_dsl.compile(s, "torch")
    return build_module(s.pattern)


def assert_matches_oracle(s: combiner_dsl.Spec, lengths: list[int], **kw: float) -> None:
    attn = module(s)
    g = torch.Generator().manual_seed(0)
    for L in lengths:
        q, k, v = (torch.randn(1, 2, L, 8, generator=g, dtype=torch.float64) for _ in range(3))
        got = attn(q, k, v, **kw)
        torch.testing.assert_close(got, oracle_attention(s.pattern, q, k, v, **kw))


# ---------------------------------------------------------------- requires are honoured everywhere

REQUIRE_POWER = """pattern reqwit:
    causal
    require L <= 62
    require 2 ** L >= 64 * L
    let s = isqrt(L)
    direct: j // s == i // s
    partition block[r in 0 .. cdiv(L, s)]:
        member: j // s == r
        select: r < i // s and L >= 10
"""


def test_a_length_the_requires_reject_has_no_witness() -> None:
    pattern = spec(REQUIRE_POWER).pattern
    assert not accepts(pattern, 5)
    assert check_length(pattern, 5) is None  # the replay of a z3 model at L = 5 finds nothing
    assert check_lengths(pattern, [5, 10, 16, 40]).status == "checked"
    outcome = prove(pattern, timeout_s=1.0, budget_s=10.0)
    assert outcome.status != "refuted", outcome.witness


VACUOUS = "pattern vac:\n    causal\n    require L < 0\n    direct: j <= i\n"


def test_a_spec_that_accepts_no_length_is_vacuous(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert spec(VACUOUS).check().status == "vacuous"
    path = tmp_path / "vac.cmb"
    path.write_text(VACUOUS)
    code, out, _ = run_cli(["check", str(path)], capsys)
    assert code == 2 and "VACUOUS" in out and "PROVED" not in out


# ---------------------------------------------------------------- what check accepts, the module runs

EMPTY_PARTITION = """pattern emptypart:
    causal
    let s = isqrt(L)
    direct: j // s == i // s or j // s < i // s - 1
    partition prev[r in 0 .. cdiv(L, s) - 1]:
        member: j // s == r
        select: r == i // s - 1
"""

AT_NEVER_SELECTED = FIXED + """    partition never[r in 0 .. cdiv(L, s)]:
        member: j // s == r
        select: r < i // s and (i * i) % 7 == 3
        summary: query = at(r * s + s + 5), key = at(r * s + s + 5)
"""

DERIVED_CROSSING = """pattern derivedx:
    causal
    direct: j // 4 == i // 4
    partition p[t in 0 .. 2, r in 0 .. cdiv(L, 4)]:
        member: (t == 0 and j // 4 == r) or (t == 1 and (j == 4 * r + 2 or j == L - 1))
"""


def test_a_partition_with_no_region_contributes_nothing() -> None:
    s = spec(EMPTY_PARTITION)
    assert check_lengths(s.pattern, [1, 2, 3, 17]).status == "checked"
    assert_matches_oracle(s, [1, 2, 3, 17])


def test_an_at_region_never_selected_is_not_refused() -> None:
    s = spec(AT_NEVER_SELECTED.replace("combiner_fixed", "atnever"))
    assert check_lengths(s.pattern, [7, 100]).status == "checked"
    assert_matches_oracle(s, [7, 100])


def test_derived_selection_the_module_cannot_plan_is_unsupported(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    verdict = spec(DERIVED_CROSSING).check([4, 5, 8])
    assert verdict.status == "unsupported" and "nested or disjoint" in (verdict.reason or "")
    path = tmp_path / "d.cmb"
    path.write_text(DERIVED_CROSSING)
    code, out, _ = run_cli(["check", "--L", "5", str(path)], capsys)
    assert code == 2 and "UNSUPPORTED" in out
    code, _, err = run_cli(["compile", "--target", "torch", str(path)], capsys)
    assert code == 2 and "unsupported" in err
    with pytest.raises(ValueError, match="nested or disjoint"):  # what the check predicts
        module(spec(DERIVED_CROSSING))(*(torch.randn(1, 1, 5, 4) for _ in range(3)))


def test_direct_false_costs_and_runs() -> None:
    s = spec("pattern nothing:\n    causal\n    direct: false\n")
    assert s.cost(100).direct_pairs == 0 and str(s.order()) == "0"
    out = module(s)(*(torch.randn(1, 1, 9, 4) for _ in range(3)))
    assert bool((out == 0).all())


# ---------------------------------------------------------------- masking is exact


@pytest.mark.parametrize(("qv", "kv", "scale"), [(1e17, -1e17, None), (1.0, 1.0, -1e31)])
def test_masked_logits_never_win(qv: float, kv: float, scale: float | None) -> None:
    s = spec(FIXED)
    L = 16
    q, k = torch.full((1, 1, L, 4), qv), torch.full((1, 1, L, 4), kv)
    v = torch.arange(L, dtype=torch.float32).view(1, 1, L, 1).expand(1, 1, L, 4).contiguous()
    out = module(s)(q, k, v, scale=scale)
    assert not bool(out.isnan().any())
    assert float(out[0, 0, 0, 0]) == 0.0  # row 0 sees only key 0, whose value is 0
    torch.testing.assert_close(out.double(), oracle_attention(s.pattern, q.double(), k.double(), v.double(), scale))


def test_rows_with_no_key_are_zero_without_nan_gradients() -> None:
    s = spec("pattern strict:\n    causal\n    direct: j < i\n")  # query 0 sees nothing
    q, k, v = (torch.randn(1, 2, 20, 4, requires_grad=True) for _ in range(3))
    out = module(s)(q, k, v)
    assert bool((out[:, :, 0] == 0).all()) and not bool(out.isnan().any())
    out.sum().backward()
    assert all(not bool(x.grad.isnan().any()) for x in (q, k, v))  # type: ignore[union-attr]


@pytest.mark.parametrize(("B", "H"), [(0, 2), (2, 0)])
def test_empty_batch_or_heads(B: int, H: int) -> None:
    q = torch.randn(B, H, 16, 4, requires_grad=True)
    out = module(spec(FIXED))(q, q, q)
    assert out.shape == q.shape
    out.sum().backward()


# ---------------------------------------------------------------- the witness of several plans

PLANS = """pattern plans:
    causal
    plan gap:
        direct: j == i
    plan leak:
        direct: j <= i
        partition fut[r in 0 .. L]:
            member: j == r
            select: r == i + 1
    mix: joint
"""


def test_the_most_serious_failure_of_all_plans_is_reported() -> None:
    pattern = spec(PLANS).pattern
    w = check_length(pattern, 4)
    assert w is not None and (w.check, w.plan) == ("C0", "leak")
    assert brute_check(pattern, 4) == ("C0", 0, 1)


# ---------------------------------------------------------------- resource limits, checked first


def test_a_huge_binder_range_is_refused_before_enumeration() -> None:
    s = spec("pattern big:\n    causal\n    direct: j <= i\n    partition p[r in 0 .. 10 ** 12]:\n        member: j == r\n        select: false\n")
    with pytest.raises(SpecEvaluationError, match="regions") as err:
        check_lengths(s.pattern, [1])
    assert err.value.location == "t.cmb:4:17"


def test_three_binders_at_a_long_length_are_refused_fast() -> None:
    s = spec("pattern three:\n    causal\n    direct: j <= i\n    partition p[a in 0 .. L, b in 0 .. L, c in 0 .. L]:\n        member: j == a and b == 0 and c == 0\n        select: false\n")
    for run in (lambda: check_lengths(s.pattern, [limits.MAX_DENSE_L]), lambda: s.cost(1 << 12)):
        with pytest.raises(SpecEvaluationError, match="regions"):
            run()


def test_long_inputs_are_refused_before_parsing() -> None:
    start = time.perf_counter()
    with pytest.raises(SpecSyntaxError, match="too many tokens"):
        spec("pattern p:\n    causal\n    let a = " + " + ".join(["1"] * 200_000) + "\n    direct: j <= i\n")
    with pytest.raises(SpecSyntaxError, match="name too long"):
        spec(f"pattern {'a' * 300}:\n    causal\n    direct: j <= i\n")
    assert time.perf_counter() - start < 60  # about a second alone; 52 s before the token limit


def test_reading_stops_at_the_size_limit(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["check", "/dev/zero"], capsys)
    assert code == 2 and "larger than" in err


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["check", "--timeout", "nan"], "--timeout"),
        (["check", "--timeout", "inf"], "--timeout"),
        (["check", "--timeout", "-1"], "--timeout"),
        (["check", "--L", "1000000000"], "--L"),
        (["check", "--L", "10**9"], "--L"),
        (["cost", "--L", str(10**30)], "--L"),
        (["cost", "--d", "-1"], "--d"),
        (["show", "--L", "100000"], "--L"),
    ],
)
def test_bad_options_exit_2_naming_the_option(args: list[str], option: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli([*args, str(ROOT / "examples" / "combiner_fixed.cmb")], capsys)
    assert code == 2 and option in err


def test_output_into_a_missing_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(["compile", "--target", "torch", "-o", str(tmp_path / "no" / "x.py"), str(ROOT / "examples" / "combiner_fixed.cmb")], capsys)
    assert code == 2 and "-o" in err and "does not exist" in err


def test_the_prover_stops_at_its_total_budget() -> None:
    pattern = spec((ROOT / "examples" / "combiner_logsparse.cmb").read_text()).pattern
    prove(pattern)  # warm: what is cached between proofs no longer spends the budget
    start = time.perf_counter()
    outcome = prove(pattern, timeout_s=5.0, budget_s=0.001)
    assert time.perf_counter() - start < 20  # about 0.5 s alone
    assert outcome.status == "unknown" and "budget" in (outcome.reason or "")


# ---------------------------------------------------------------- the text and the report


def test_control_characters_are_refused_even_in_comments() -> None:
    with pytest.raises(SpecSyntaxError, match="unexpected character") as err:
        spec("pattern nul:\n    causal\n    # a \x00 comment\n    direct: j <= i\n")
    assert err.value.location == "t.cmb:3:9"


@pytest.mark.parametrize("text", ["\ufeffpattern bom:\n    causal\n    direct: j <= i\n", "pattern cr:\r    causal\r    direct: j <= i\r", "pattern crlf:\r\n    causal\r\n    direct: j <= i\r\n"])
def test_bom_and_any_line_end_are_accepted(text: str, tmp_path: Path) -> None:
    path = tmp_path / "s.cmb"
    path.write_bytes(text.encode("utf-8"))
    assert combiner_dsl.load(path).check([3], prove=False).status == "checked"
    assert spec(text).name


def test_an_internal_error_in_one_spec_keeps_the_json_report(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    good, bad = tmp_path / "a.cmb", tmp_path / "b.cmb"
    good.write_text(FIXED)
    bad.write_text(FIXED.replace("combiner_fixed", "broken"))
    load = combiner_dsl.api.load

    def flaky(path: str) -> combiner_dsl.Spec:
        if str(path).endswith("b.cmb"):
            raise RuntimeError("boom")
        return load(path)

    monkeypatch.setattr(combiner_dsl.api, "load", flaky)
    code, out, _ = run_cli(["check", "--json", "--no-prove", "--L", "16", str(good), str(bad)], capsys)
    entries = json.loads(out)["specs"]
    assert code == 3 and [e["verdict"] for e in entries] == ["checked", "error"]
    assert "internal error: RuntimeError: boom" in entries[1]["message"]


def test_limits_are_documented() -> None:
    doc = (ROOT / "docs" / "language.md").read_text()
    assert "## Limits" in doc
    for name in limits.__all__:
        value = getattr(limits, name)
        assert f"{value:,}" in doc or f"{value:g}" in doc or str(value) in doc, name


def test_errors_are_combiner_errors() -> None:
    with pytest.raises(CombinerError):
        spec("pattern x:\n    causal\n    direct: j <= i\n").cost(limits.MAX_COST_L + 1)


# ---------------------------------------------------------------- evaluation domain (differential fuzzer)

def both_refuse(pattern: ir.Pattern, L: int, match: str) -> None:
    """The exhaustive checker reports a located error at L, and brute force overflows there too."""
    with pytest.raises(SpecEvaluationError, match=match):
        check_length(pattern, L)
    with pytest.raises(OverflowError):
        brute_check(pattern, L)


EMPTY_REGION_OVERFLOW = """pattern emptyover:
    causal
    let s = isqrt(L)
    direct: j % s == i % s
    partition part0[r in 0 .. cdiv(L, s) + 1]:
        member: j // s == r and j < L
        select: r < i // s and r * 9223372036854775807 >= 0
"""


def test_select_is_evaluated_for_empty_regions_in_every_stage() -> None:
    # at L = 4 the region r = 2 is empty; its select still overflows (r * (2**63 - 1))
    pattern = spec(EMPTY_REGION_OVERFLOW).pattern
    both_refuse(pattern, 4, r"t\.cmb:7:32: integer overflow .* at L = 4")
    assert brute_check(pattern, 1) is None and check_length(pattern, 1) is None


DIRECT_OUTSIDE_GAMMA = """pattern directout:
    causal
    direct: j <= i or (j - i) * 4611686018427387904 > 0
"""

AT_UNSELECTED = FIXED + """    partition never[r in 0 .. cdiv(L, s)]:
        member: j // s == r
        select: r < 0
        summary: query = at(r * 4611686018427387904), key = max
"""


@pytest.mark.parametrize(("text", "line"), [(DIRECT_OUTSIDE_GAMMA, 3), (AT_UNSELECTED, 13)], ids=["direct-beyond-i", "at-never-selected"])
def test_points_whose_value_does_not_matter_are_still_evaluated(text: str, line: int) -> None:
    pattern = spec(text).pattern  # (j - i) overflows only at keys a causal query cannot see
    both_refuse(pattern, 3, rf"t\.cmb:{line}:\d+: integer overflow .* at L = 3")


BOUND_WITHOUT_TUPLES = """pattern boundfree:
    causal
    direct: j <= i
    partition p[r in 0 .. L - L, c in 0 .. r + L * 4611686018427387904]:
        member: j == r
        select: r < 0
"""


def test_a_bound_part_free_of_earlier_binders_is_computed_with_no_earlier_tuple() -> None:
    pattern = spec(BOUND_WITHOUT_TUPLES).pattern
    both_refuse(pattern, 2, r"at L = 2")
    outcome = prove(pattern, timeout_s=2.0)
    assert outcome.status == "unknown" and "integer overflow" in (outcome.reason or "")


# ---------------------------------------------------------------- requires undefined where only the prover looks

REQUIRE_OVERFLOW = """pattern reqover:
    causal
    let s = isqrt(L)
    require 2 ** L >= 64 * L
    direct: j // s == i // s
    partition block[r in 0 .. cdiv(L, s)]:
        member: j // s == r
        select: r < i // s
"""


def test_a_require_undefined_at_a_length_the_prover_considers_is_that_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    s = spec(REQUIRE_OVERFLOW)
    assert check_lengths(s.pattern, [9, 20]).status == "checked"  # the exhaustive lengths never reach L = 63
    with pytest.raises(SpecEvaluationError, match=r"t\.cmb:4:13: integer overflow .* at L = 63") as err:
        s.check([9, 20], timeout_s=1.0)
    assert err.value.L == 63
    with pytest.raises(OverflowError):  # brute force agrees at that length
        brute_accepts(s.pattern, 63)
    assert brute_accepts(s.pattern, 62) and accepts(s.pattern, 62)
    path = tmp_path / "reqover.cmb"
    path.write_text(REQUIRE_OVERFLOW)
    code, _, stderr = run_cli(["check", "--L", "9", str(path)], capsys)
    assert code == 2 and "reqover.cmb:4:13" in stderr and "L = 63" in stderr
    assert run_cli(["check", "--no-prove", "--no-streaming", "--L", "20", str(path)], capsys)[0] == 0  # no proof asked: no error


def test_an_earlier_require_guards_a_later_one() -> None:
    guarded = REQUIRE_OVERFLOW.replace("    require 2 ** L", "    require L <= 40\n    require 2 ** L")
    verdict = spec(guarded).check([9, 20], timeout_s=2.0)
    assert verdict.status == "proved", verdict.reason
    assert brute_accepts(spec(guarded).pattern, 63) is False


def test_a_require_undefined_past_the_exhaustive_lengths_is_found_and_located() -> None:
    far = REQUIRE_OVERFLOW.replace("2 ** L >= 64 * L", "L * 4611686018 > 0")  # overflows from L = 2,000,000,001
    with pytest.raises(SpecEvaluationError, match=r"at L = 2000000001"):
        spec(far).check([9], timeout_s=1.0)


def test_a_vacuous_spec_with_an_undefined_require_is_an_error() -> None:
    with pytest.raises(SpecEvaluationError, match=r"at L = 63"):
        spec(VACUOUS.replace("L < 0", "2 ** L < 0")).check(timeout_s=1.0)
