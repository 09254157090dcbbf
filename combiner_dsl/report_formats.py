"""`combiner check --format github|junit|sarif`: verdicts in the formats CI systems read.

Each result is located at the spec line of the rule that fails: for a refutation, the `direct:`
line (an overlap with the direct set, or a gap), the `select:` line of the partition whose region
leaks or overlaps, or the `at(...)` position of a misplaced summary; for a bad spec, the
FILE:LINE:COL of its first error.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from . import ir
from .errors import CombinerError
from .source import Span
from .verdict import CHECKS, Verdict

FORMATS = ("text", "json", "github", "junit", "sarif")
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
RULES: dict[str, str] = {**{c: CHECKS[c] for c in CHECKS}, "CMB-ERROR": "the spec is not valid: a syntax, semantic or evaluation error", "CMB-CHECKED": "full attention was only checked at some lengths, not proved for every L"}


@dataclass(frozen=True, slots=True)
class Result:
    """One spec's outcome: a verdict, or the error that stopped it."""

    path: str
    pattern: ir.Pattern | None = None
    verdict: Verdict | None = None
    error: CombinerError | None = None


@dataclass(frozen=True, slots=True)
class Located:
    path: str
    line: int
    col: int
    rule: str  # "C0".."C3", "CMB-ERROR", "CMB-CHECKED"
    level: str  # "error" | "warning" | "note"
    message: str


def _span_of(pattern: ir.Pattern, v: Verdict) -> Span:
    """The span of the rule a refutation's witness breaks (see the module docstring)."""
    w = v.witness
    assert w is not None
    plan = next((p for p in pattern.plans if p.name == w.plan), pattern.plans[0])
    parts = {p.name: p for p in plan.partitions}
    named = [parts[r.split("[")[0]] for r in w.regions if r.split("[")[0] in parts]
    if w.check == "C3" and named:
        part = named[0]
        at = part.query.position or part.key.position
        return at.span if at is not None else part.span
    if w.check in ("C0", "C1") and named and not (w.check == "C1" and "direct" in w.regions):
        part = named[-1]
        return part.select.span if part.select is not None else part.span
    return plan.direct.span


def locate(r: Result) -> Located:
    if r.error is not None:
        loc = r.error.location
        m = re.fullmatch(r"(.*):(\d+):(\d+)", loc) if loc else None
        first = str(r.error).splitlines()[0] if str(r.error) else type(r.error).__name__
        msg = first[len(loc) + 2 :] if loc and first.startswith(loc + ": ") else first
        if m:
            return Located(m.group(1), int(m.group(2)), int(m.group(3)), "CMB-ERROR", "error", msg)
        return Located(r.path, 1, 1, "CMB-ERROR", "error", msg)
    assert r.pattern is not None and r.verdict is not None
    v, p = r.verdict, r.pattern
    if v.status == "refuted" and v.witness is not None:
        line, col = p.source.line_col(_span_of(p, v).start)
        w = v.witness
        return Located(r.path, line, col, w.check, "error", f"{p.name}: REFUTED {w.check} ({CHECKS[w.check].split(':')[0]}): {w.explain()}")
    line, col = p.source.line_col(p.span.start)
    if v.status == "checked":
        return Located(r.path, line, col, "CMB-CHECKED", "warning", f"{p.name}: full attention CHECKED for {v.scope_text()}, not proved: {v.reason or 'no proof attempted'}")
    return Located(r.path, line, col, "", "note", f"{p.name}: full attention {v.status.upper()} for {v.scope_text()}")


def _gh_escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def github(results: list[Result]) -> str:
    """GitHub workflow commands: `::error file=F,line=N,col=C,title=T::message` per failing spec."""
    out = []
    for r in results:
        loc = locate(r)
        if loc.level == "note":
            out.append(f"{r.path}: {loc.message}")
            continue
        title = f"combiner {loc.rule}"
        out.append(f"::{loc.level} file={_gh_escape(loc.path, True)},line={loc.line},col={loc.col},title={_gh_escape(title, True)}::{_gh_escape(loc.message)}")
    return "\n".join(out)


def junit(results: list[Result]) -> str:
    """JUnit XML: one test case per spec; refuted = failure (witness), bad spec = error."""
    suite = ET.Element("testsuite", name="combiner check", tests=str(len(results)))
    counts = {"failures": 0, "errors": 0, "skipped": 0}
    for r in results:
        loc = locate(r)
        name = r.pattern.name if r.pattern is not None else r.path
        case = ET.SubElement(suite, "testcase", classname=r.path, name=name, file=loc.path, line=str(loc.line))
        if r.error is not None:
            counts["errors"] += 1
            ET.SubElement(case, "error", message=loc.message, type=type(r.error).__name__).text = str(r.error)
        elif loc.level == "error":
            counts["failures"] += 1
            ET.SubElement(case, "failure", message=loc.message, type=f"refuted {loc.rule}").text = f"{loc.path}:{loc.line}:{loc.col}: {loc.message}"
        elif loc.level == "warning":
            ET.SubElement(case, "system-out").text = loc.message
    for k, n in counts.items():
        suite.set(k, str(n))
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode")


def sarif(results: list[Result], version: str) -> str:
    """SARIF 2.1.0: one run, one result per refuted, bad or only-checked spec."""
    rules = [{"id": k, "name": k.replace("-", ""), "shortDescription": {"text": v}} for k, v in RULES.items()]
    index = {k: n for n, k in enumerate(RULES)}
    found = []
    for r in results:
        loc = locate(r)
        if loc.level == "note":
            continue
        region = {"startLine": loc.line, "startColumn": loc.col}
        found.append({
            "ruleId": loc.rule,
            "ruleIndex": index[loc.rule],
            "level": loc.level,
            "message": {"text": loc.message},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": loc.path.replace("\\", "/")}, "region": region}}],
        })
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "combiner-dsl", "version": version, "rules": rules}}, "results": found}],
    }
    return json.dumps(doc, indent=2)


def render(fmt: str, results: list[Result]) -> str:
    if fmt == "github":
        return github(results)
    if fmt == "junit":
        return junit(results)
    if fmt == "sarif":
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("combiner-dsl")
        except PackageNotFoundError:
            v = "0"
        return sarif(results, v)
    raise ValueError(f"no renderer for {fmt!r}")
