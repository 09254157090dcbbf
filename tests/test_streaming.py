"""Prefix stability: the streaming verdict, its witnesses (replayed numerically), and the CLI report."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import torch

from combiner_dsl import api
from combiner_dsl.oracle import oracle_attention
from combiner_dsl.streaming import check_streaming, compare, prove_streaming

ROOT = Path(__file__).resolve().parent.parent
STREAMING = sorted((ROOT / "examples" / "streaming").glob("*.cmb"))
REFUTED = ["combiner_fixed", "combiner_axial", "combiner_mixture", "combiner_fixed_bidir"]


@cache
def spec(path: Path) -> api.Spec:
    return api.load(path)


def rows(path: Path, L: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(L)
    q, k, v = (torch.randn(1, 2, L, 8, generator=g, dtype=torch.float64) for _ in range(3))
    return oracle_attention(spec(path).pattern, q[:, :, :n], k[:, :, :n], v[:, :, :n]), oracle_attention(spec(path).pattern, q, k, v)[:, :, :n]


@pytest.mark.parametrize("path", [*STREAMING, ROOT / "examples" / "combiner_logsparse.cmb"], ids=lambda p: p.stem)
def test_streaming_examples_are_proved_and_rows_do_not_depend_on_L(path: Path) -> None:
    assert prove_streaming(spec(path).pattern)[0] == "proved"
    assert compare(spec(path).pattern, range(1, 40))[0] is None
    short, long = rows(path, 100, 41)  # the first 41 rows at L = 41 and at L = 100
    torch.testing.assert_close(short, long, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", REFUTED)
def test_length_dependent_specs_are_refuted_with_a_witness_that_replays(name: str) -> None:
    path = ROOT / "examples" / f"{name}.cmb"
    verdict = check_streaming(spec(path).pattern, range(1, 65), prove=False)
    assert verdict.status == "refuted" and verdict.witness is not None
    w = verdict.witness
    assert w.L1 < w.L2 and w.i < w.L1
    assert compare(spec(path).pattern, (w.L1, w.L2))[0] == w  # the two layouts alone show it
    short, long = rows(path, 100, 64)  # and the rows change numerically (a one-key region may hide it at tiny L)
    assert (short - long).abs().max() > 1e-3


def test_isqrt_fixed_is_refuted_by_the_prover_too() -> None:
    status, witness, _ = prove_streaming(spec(ROOT / "examples" / "combiner_fixed.cmb").pattern)
    assert status == "refuted" and witness is not None and witness.L1 < witness.L2


def test_api_records_streaming_in_the_verdict() -> None:
    v = spec(STREAMING[0]).check(L=[16, 100], streaming=True)
    assert v.holds and v.streaming is not None and v.streaming.status == "proved"
    assert v.to_json()["streaming"] == "proved"
    assert "streaming" not in spec(STREAMING[0]).check(L=[16], prove=False).to_json()


def combiner(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "combiner_dsl.cli", *args], capture_output=True, text=True, cwd=ROOT, check=False)


@pytest.mark.slow
def test_cli_reports_streaming_and_require_streaming_fails_only_when_not_proved() -> None:
    fixed, stable = "examples/combiner_fixed.cmb", "examples/streaming/fixed_block16.cmb"
    run = combiner("check", "--json", "--L", "20", "--L", "40", fixed, stable)
    assert run.returncode == 0, run.stderr
    entries = {e["pattern"]: e for e in json.loads(run.stdout)["specs"]}
    assert entries["combiner_fixed"]["streaming"] == "refuted"
    assert entries["combiner_fixed"]["streaming_detail"]["witness"]["L1"] == 20
    assert entries["fixed_block16"]["streaming"] == "proved"
    assert combiner("check", "--no-prove", "--require-streaming", "--L", "20", "--L", "40", fixed).returncode == 1
    assert combiner("check", "--require-streaming", "--L", "20", "--L", "40", stable).returncode == 0
    text = combiner("check", "--no-prove", "--L", "20", "--L", "40", fixed).stdout
    assert "streaming (prefix-stable, exact cached decoding) REFUTED" in text
