"""The pytest plugin: *.cmb specs as test items (run through pytester, in a folder of their own)."""

from __future__ import annotations

import importlib.util
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.ci_specs import BLOCKS4

pytest_plugins = ("pytester",)

ROOT = Path(__file__).resolve().parents[1]
# the same lengths in every run, so the cache answers after the first; hypothesis's summary costs seconds a run
LENGTHS = ("--combiner-L", "4", "--combiner-L", "16", "-p", "no:hypothesispytest")
REFUTED = "examples/sparse/sparse_fixed.cmb"
PROVED = BLOCKS4
# Only checked: no `select`, so the selection is derived and no proof for every L is attempted.
CHECKED = PROVED.replace("pattern blocks4", "pattern derived4").replace("        select: r < i // 4\n", "")


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")  # shared by this module's runs: blocks4 is proved once


@pytest.fixture
def specs(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, cache_home: Path) -> pytest.Pytester:
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    d = pytester.mkdir("specs")
    (d / "good.cmb").write_text(PROVED)
    shutil.copy(ROOT / REFUTED, d / "refuted.cmb")
    shutil.copy(ROOT / "tests/bad_specs/unknown_name.cmb", d / "bad.cmb")
    return pytester


def test_one_pass_one_fail_with_witness_one_error_located(specs: pytest.Pytester) -> None:
    result = specs.runpytest("specs", *LENGTHS, "-rA")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    out = result.stdout.str()
    # the witness in words, at the `direct:` line of the refuted spec (its only rule)
    assert "specs/refuted.cmb:5:13: sparse_fixed: REFUTED C2 (covering): at L=4, query i=2 never reaches key j=0" in out
    assert "specs/bad.cmb:3:18: unknown name `t`" in out  # FILE:LINE:COL of the bad spec
    assert "PASSED specs/good.cmb::blocks4" in out
    assert "Traceback" not in out and "raise " not in out


def test_keyword_exitfirst_and_junit(specs: pytest.Pytester) -> None:
    specs.runpytest("specs", *LENGTHS, "-k", "blocks4").assert_outcomes(passed=1)
    first = specs.runpytest("specs", *LENGTHS, "-x")
    assert first.ret == 1 and "stopping after 1 failures" in first.stdout.str()
    xml = specs.path / "out.xml"
    specs.runpytest("specs", *LENGTHS, f"--junitxml={xml}")
    suite = ET.parse(xml).getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    failure = suite.find("testcase/failure")
    assert failure is not None and "query i=2 never reaches key j=0" in (failure.get("message") or "")


def test_checked_passes_with_note_and_fails_strict(pytester: pytest.Pytester, cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    pytester.makefile(".cmb", derived=CHECKED)
    lenient = pytester.runpytest("-p", "no:hypothesispytest", "--combiner-L", "16")
    lenient.assert_outcomes(passed=1)
    assert "combiner: checked at some lengths, not proved for every L" in lenient.stdout.str()
    assert "derived4: full attention CHECKED for L in {16}" in lenient.stdout.str()
    pytester.runpytest("-p", "no:hypothesispytest", "--combiner-L", "16", "--combiner-strict").assert_outcomes(failed=1)


def test_opt_out(specs: pytest.Pytester) -> None:
    specs.runpytest("specs", "-p", "no:combiner", "-p", "no:hypothesispytest").assert_outcomes()
    specs.makeini("[pytest]\ncombiner_collect = false\n")
    specs.runpytest("specs", "-p", "no:hypothesispytest").assert_outcomes()


@pytest.mark.skipif(importlib.util.find_spec("xdist") is None, reason="pytest-xdist is not installed")
@pytest.mark.slow
def test_xdist(specs: pytest.Pytester) -> None:
    result = specs.runpytest_subprocess("specs", *LENGTHS, "-n", "2")
    result.assert_outcomes(passed=1, failed=1, errors=1)
