"""The command line as a user runs it: exit codes, JSON, pictures, and no traceback ever."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PAPER = sorted(str(p) for p in (ROOT / "examples").glob("*.cmb"))
SPARSE = sorted(str(p) for p in (ROOT / "examples" / "sparse").glob("*.cmb"))


def combiner(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    run = subprocess.run([sys.executable, "-m", "combiner_dsl.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert "Traceback" not in run.stdout + run.stderr
    return run


def test_check_paper_examples_exit_0() -> None:
    run = combiner("check", "--no-prove", *PAPER)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("full attention CHECKED") == len(PAPER)


def test_check_sparse_examples_exit_1_with_c2_witnesses() -> None:
    run = combiner("check", "--no-prove", "--json", *SPARSE)
    assert run.returncode == 1
    specs = json.loads(run.stdout)["specs"]
    assert [s["verdict"] for s in specs] == ["refuted"] * len(SPARSE)
    for s in specs:
        w = s["witness"]
        assert w["check"] == "C2" and {"L", "i", "j", "regions"} <= set(w)
        assert w["j"] <= w["i"]


def test_check_json_shape_for_a_holding_spec() -> None:
    run = combiner("check", "--no-prove", "--json", "--L", "16", "--L", "100", PAPER[0])
    assert run.returncode == 0
    spec = json.loads(run.stdout)["specs"][0]
    assert spec["verdict"] == "checked" and spec["scope"] == [16, 100] and spec["witness"] is None
    assert spec["pattern"] == Path(PAPER[0]).stem and spec["path"] == PAPER[0]


def test_bad_input_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cmb"
    bad.write_text("pattern p:\n    causal\n    direct: j // t == i\n")
    run = combiner("check", "--no-prove", str(bad), PAPER[0])
    assert run.returncode == 2
    assert f"{bad}:3:18: unknown name `t`" in run.stderr
    assert "full attention CHECKED" in run.stdout  # the good spec is still checked
    run = combiner("check", "--json", "--no-prove", str(bad))
    entry = json.loads(run.stdout)["specs"][0]
    assert entry["verdict"] == "error" and entry["location"] == f"{bad}:3:18"


@pytest.mark.parametrize("args", [("check", "missing.cmb"), ("check", "--bogus", "x.cmb"), ("frobnicate",), ("show", PAPER[0]), ("check", "--L", "0", PAPER[0])])
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    assert combiner(*args).returncode == 2


def test_show_png_and_text(tmp_path: Path) -> None:
    png = tmp_path / "fixed.png"
    run = combiner("show", str(ROOT / "examples" / "combiner_fixed.cmb"), "--L", "64", "-o", str(png))
    assert run.returncode == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    run = combiner("show", str(ROOT / "examples" / "combiner_fixed.cmb"), "--L", "9")
    rows = run.stdout.splitlines()
    assert rows[1:10] == ["#        ", "##       ", "###      ", "aaa#     ", "aaa##    ", "aaa###   ", "aaabbb#  ", "aaabbb## ", "aaabbb###"]
    run = combiner("show", SPARSE[1], "--L", "9")
    assert "?" in run.stdout  # uncovered keys are flagged


def test_cost_json_and_table() -> None:
    fixed, logsparse = str(ROOT / "examples" / "combiner_fixed.cmb"), str(ROOT / "examples" / "combiner_logsparse.cmb")
    run = combiner("cost", "--json", "--L", "4096", fixed, logsparse)
    assert run.returncode == 0
    specs = json.loads(run.stdout)["specs"]
    assert [s["order"] for s in specs] == ["L**(3/2)", "L*log(L)"]
    f = specs[0]["by_L"][0]
    assert (f["L"], f["direct_pairs"], f["region_pairs"], f["summary_pairs"], f["logits_max"]) == (4096, 133_120, 129_024, 4_032, 127)
    assert f["dense_pairs"] == 4096 * 4097 // 2 and f["flops"] == 4 * 64 * (133_120 + 129_024 + 4_032)
    run = combiner("cost", "--L", "4096", fixed)
    assert "L**(3/2)" in run.stdout and "133,120" in run.stdout


def test_compile_writes_a_module_with_verdict_and_cost(tmp_path: Path) -> None:
    out = tmp_path / "fixed_attn.py"
    run = combiner("compile", str(ROOT / "examples" / "combiner_fixed.cmb"), "--target", "torch", "-o", str(out))
    assert run.returncode == 0, run.stderr
    head = out.read_text().split('"""', 2)[1]
    assert "Verdict: proved (all L)" in head and "L**(3/2)" in head and "pattern combiner_fixed:" in head
    again = combiner("compile", str(ROOT / "examples" / "combiner_fixed.cmb"), "--target", "torch")
    assert again.stdout == out.read_text()  # deterministic, byte for byte
