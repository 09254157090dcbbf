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
