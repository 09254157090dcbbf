"""bench/lm_small.py end to end: the smoke runs train every attention kind and the loss falls.

The smoke mode itself exits 1 when a run's training loss does not fall; these tests also check what
the report says against what the cost model and the layout say independently.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "lm_small.py"
COMBINER = ("combiner_fixed", "combiner_logsparse", "combiner_axial", "combiner_axial_horizontal", "combiner_axial_vertical", "combiner_mixture")
SPARSE = ("sparse_fixed", "sparse_logsparse", "sparse_axial")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)


def report(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(out.read_text())
    return data


@pytest.mark.slow
def test_needle_smoke_trains_every_kind(tmp_path: Path) -> None:
    out, png = tmp_path / "needle.json", tmp_path / "needle.png"
    done = run("needle", "--smoke", "--threads", "1", "--json", str(out), "--plot", str(png))
    assert done.returncode == 0, done.stderr
    rep = report(out)
    kinds = [r["kind"] for r in rep["summary"]]
    assert kinds == ["full", *COMBINER, *SPARSE]
    L = rep["summary"][0]["L"]
    for row in rep["summary"]:
        run_ = next(r for r in rep["runs"] if r["kind"] == row["kind"])
        n = len(run_["losses"]) // 4
        assert sum(run_["losses"][-n:]) < sum(run_["losses"][:n]), row["kind"]
        assert 0.0 <= row["mean"] <= 1.0
        assert run_["curve"][-1][0] == len(run_["losses"])
        if row["kind"] == "full":
            assert row["pairs_per_head"] == L * (L + 1) // 2
        else:  # every pattern here is cheaper than dense causal attention
            assert 0 < row["pairs_per_head"] < L * (L + 1) // 2
        # Combiner variants reach every key from the last query in one layer; their sources do not.
        assert (row["reach_last"] == 1.0) == (row["kind"] not in SPARSE)
        assert (row["ceiling"] == 1.0) == (row["kind"] not in SPARSE)
    assert len({r["params"] for r in rep["runs"]}) == 1  # the attention kind adds no parameters
    assert png.stat().st_size > 10_000


@pytest.mark.slow
def test_text_smoke_on_a_given_file(tmp_path: Path) -> None:
    out = tmp_path / "text.json"
    done = run("text", "--smoke", "--threads", "1", "--corpus", str(ROOT / "docs" / "language.md"), "--kinds", "full", "combiner_fixed", "sparse_fixed", "--json", str(out))
    assert done.returncode == 0, done.stderr
    rep = report(out)
    assert [r["kind"] for r in rep["summary"]] == ["full", "combiner_fixed", "sparse_fixed"]
    assert all(0 < r["mean"] < 7.0 for r in rep["summary"])  # bits per char, below log2(128)
    assert rep["corpus"]["train_chars"] > rep["corpus"]["valid_chars"] > 0


@pytest.fixture(scope="module")
def lm_small() -> Any:
    sys.path.insert(0, str(SCRIPT.parent))
    import lm_small as module

    return module


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["needle", "--skip", "combiner_nope@256"], "--skip"),
        (["needle", "--skip", "combiner_fixed@many"], "--skip"),
        (["needle", "--d", "30", "--heads", "4"], "--heads"),
        (["text", "--corpus", "missing.txt"], "missing.txt"),
        (["needle", "--spec", "examples/combiner_fixed_bidir.cmb"], "bidirectional"),
        (["needle", "--spec", "examples/combiner_fixed.cmb"], "named like another kind"),
        (["needle", "--spec", "no/such.cmb"], "no/such.cmb"),
        (["needle", "--curriculum", "64"], "--curriculum"),
        (["needle", "--curriculum", "0:10"], "--curriculum"),
    ],
)
def test_bad_options_exit_2(lm_small: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str], needle: str) -> None:
    monkeypatch.chdir(ROOT)
    assert lm_small.main(argv) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["needle", "--steps", "0"], ["needle", "--kinds", "dense"], ["text", "--L", "x"], ["fetch"]])
def test_bad_arguments_exit_2(lm_small: Any, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        lm_small.main(argv)
    assert exc.value.code == 2


def test_one_tiny_run_with_the_default_skips(lm_small: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # The default --skip names kinds left out by --kinds: that is no error.
    argv = ["needle", "--kinds", "full", "sparse_fixed", "--L", "16", "--seeds", "1", "--steps", "2", "--eval-size", "8", "--workers", "1", "--threads", "1", "--json"]
    assert lm_small.main(argv) == 0
    rep = json.loads(capsys.readouterr().out)
    assert [r["kind"] for r in rep["summary"]] == ["full", "sparse_fixed"]
    assert rep["summary"][1]["reach_last"] < 1.0
    assert len(rep["runs"][0]["losses"]) == 2


@pytest.mark.slow
def test_two_worker_processes_give_every_run(tmp_path: Path) -> None:
    out = tmp_path / "w2.json"
    done = run("needle", "--kinds", "full", "sparse_fixed", "--L", "16", "--seeds", "2", "--steps", "2", "--eval-size", "8", "--workers", "2", "--json", str(out))
    assert done.returncode == 0, done.stderr
    rep = report(out)
    assert [(r["kind"], r["seed"]) for r in rep["runs"]] == [("full", 0), ("full", 1), ("sparse_fixed", 0), ("sparse_fixed", 1)]
    assert rep["machine"]["threads_per_worker"] == 1


def test_curriculum_trains_short_first_and_scores_at_the_target(lm_small: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # 16 is not below the target 16: it is left out there; 8:3 runs first at both targets.
    argv = ["needle", "--kinds", "combiner_fixed", "--L", "16", "32", "--curriculum", "8:3", "16:2", "--seeds", "1", "--steps", "2",
            "--eval-every", "1", "--eval-size", "8", "--workers", "1", "--threads", "1", "--json"]
    assert lm_small.main(argv) == 0
    rep = json.loads(capsys.readouterr().out)
    by_L = {r["L"]: r for r in rep["runs"]}
    assert by_L[16]["stages"] == [[8, 3], [16, 2]]
    assert by_L[32]["stages"] == [[8, 3], [16, 2], [32, 2]]
    assert len(by_L[32]["losses"]) == 7
    assert [s for s, _ in by_L[32]["curve"]] == list(range(1, 8))  # evaluated (at L = 32) through the curriculum too


def test_an_at_key_variant_is_reported_but_left_out_of_the_two_point_check(lm_small: Any) -> None:
    from lm_models import build_attention

    assert build_attention("combiner_axial", 64)[1].at_key == ("row",)
    assert build_attention("combiner_fixed", 64)[1].at_key == ()
    assert build_attention("combiner_axial_maxkey", 64, ROOT / "bench" / "specs" / "combiner_axial_maxkey.cmb")[1].at_key == ()

    def row(kind: str, family: str, mean: float, at_key: list[str]) -> dict[str, Any]:
        return {"kind": kind, "family": family, "L": 64, "mean": mean, "at_key": at_key}

    summary = [row("full", "full", 1.0, []), row("combiner_fixed", "combiner", 0.99, []), row("combiner_axial", "combiner", 0.1, ["row"]),
               row("sparse_fixed", "sparse", 0.1, [])]
    lines = lm_small.reading("needle", summary)
    assert any("combiner_axial" in line and "left out" in line and "at(...)" in line for line in lines)
    assert any("worst Combiner combiner_fixed" in line and "(within 2)" in line for line in lines)
    summary[2]["at_key"] = []  # the same figures without the at() key: the variant fails the check
    assert any("worst Combiner combiner_axial" in line and "NOT within 2" in line for line in lm_small.reading("needle", summary))
