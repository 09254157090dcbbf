"""SMT-LIB certificates: written by check --certify, re-checked by cvc5 with combiner certify."""

from __future__ import annotations

from pathlib import Path

import pytest

from combiner_dsl.cli import main
from tests.ci_specs import BLOCKS4

pytest.importorskip("cvc5")
ROOT = Path(__file__).resolve().parents[1]
GOOD = BLOCKS4
LEAK = GOOD.replace("blocks4", "leak4").replace("select: r < i // 4", "select: r < i // 4 + 1")


def certify(tmp_path: Path, *specs: str) -> Path:
    out = tmp_path / "certs"
    main(["check", "--certify", str(out), "--L", "8", *specs])
    return out


def test_proved_spec_unsat_and_broken_spec_sat(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "good.cmb").write_text(GOOD)
    (tmp_path / "leak.cmb").write_text(LEAK)
    out = certify(tmp_path, str(tmp_path / "good.cmb"), str(tmp_path / "leak.cmb"))
    files = sorted(out.rglob("*.smt2"))
    good = [f for f in files if f.parent.name == "good-blocks4"]
    assert [f.name.split("-")[2] for f in good] == ["C0", "C1", "C1", "C2"]  # one per check and partition (pair)
    header = good[0].read_text().splitlines()
    assert header[1].endswith("good.cmb") and "; check: C0 (no leak): block" in header and "; expected: unsat" in header
    leak = [f for f in files if f.parent.name == "leak-leak4"]
    assert [f.name for f in leak][-1].endswith("C0-block.smt2") and "; expected: sat" in leak[-1].read_text()
    capsys.readouterr()
    assert main(["certify", str(out)]) == 0
    report = capsys.readouterr().out
    assert "leak-leak4/00-main-C0-block.smt2: cvc5 says sat, expected sat: agrees" in report
    assert f"{len(files)} obligations: {len(files)} confirmed by cvc5" in report

    # a certificate that claims the wrong answer is not confirmed
    leak[-1].write_text(leak[-1].read_text().replace("; expected: sat", "; expected: unsat"))
    assert main(["certify", str(out)]) == 1
    assert "DISAGREES" in capsys.readouterr().out


def test_foreign_commands_and_bad_dirs_are_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "d"
    d.mkdir()
    assert main(["certify", str(d)]) == 2  # no certificates
    (d / "x.smt2").write_text('; expected: unsat\n(set-option :regular-output-channel "x.txt")\n(check-sat)\n')
    assert main(["certify", str(d)]) == 2
    assert "set-option" in capsys.readouterr().err and not (tmp_path / "x.txt").exists()
    (d / "x.smt2").write_text("; expected: unsat\n(assert (< 1 0)) (assert\n")
    assert main(["certify", str(d)]) == 2
    assert main(["certify", str(tmp_path / "missing")]) == 2


@pytest.mark.slow
def test_every_paper_example_is_confirmed_by_cvc5(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    examples = sorted(str(p) for p in (ROOT / "examples").glob("*.cmb"))
    out = certify(tmp_path, *examples)
    files = sorted(out.rglob("*.smt2"))
    assert len({f.parent for f in files}) == len(examples) + 1  # a folder per spec, and the lemma
    assert all("; expected: unsat" in f.read_text() for f in files)
    capsys.readouterr()
    assert main(["certify", str(out)]) == 0
    assert f"{len(files)} obligations: {len(files)} confirmed" in capsys.readouterr().out
