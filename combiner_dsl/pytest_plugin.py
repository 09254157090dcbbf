"""pytest plugin (entry point `pytest11`, name `combiner`): every `*.cmb` spec becomes a test.

One item per pattern: it passes when full attention is proved, fails with the witness in words
(located at the spec line of the failing rule) when refuted, and errors with FILE:LINE:COL when the
spec is not valid. A spec only "checked" at some lengths passes with a note in the summary, or fails
under `--combiner-strict`. Opt out with `-p no:combiner` or the ini option `combiner_collect = false`.
The compiler is imported only once a spec is collected, so other test runs pay nothing for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .api import Spec
    from .errors import CombinerError

NOTE = "combiner-note"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("combiner", "combiner-dsl: coverage proofs of *.cmb specs")
    g.addoption("--combiner-L", type=int, action="append", dest="combiner_lengths", metavar="N", help="check these lengths exhaustively (repeatable; default: the standard set)")
    g.addoption("--combiner-timeout", type=float, default=5.0, dest="combiner_timeout", metavar="S", help="solver time limit per query, seconds (default 5)")
    g.addoption("--combiner-no-prove", action="store_true", dest="combiner_no_prove", help="only the exhaustive check at the lengths, no proof for every L")
    g.addoption("--combiner-strict", action="store_true", dest="combiner_strict", help="a spec only checked, not proved for every L, fails")
    g.addoption("--combiner-cache", metavar="DIR", dest="combiner_cache", help="proof cache directory (default: the user cache directory)")
    g.addoption("--combiner-no-cache", action="store_true", dest="combiner_no_cache", help="neither read nor write the proof cache")
    parser.addini("combiner_collect", type="bool", default=True, help="collect *.cmb specs as tests (false: opt out)")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".cmb" and parent.config.getini("combiner_collect"):
        return SpecFile.from_parent(parent, path=file_path)
    return None


class SpecFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from . import api
        from .errors import CombinerError

        try:
            spec = api.load(self.path)
        except CombinerError as err:
            yield SpecItem.from_parent(self, name=self.path.stem, spec=None, error=err)
            return
        yield SpecItem.from_parent(self, name=spec.name, spec=spec, error=None)


class SpecItem(pytest.Item):
    def __init__(self, *, spec: Spec | None, error: CombinerError | None, **kw: Any) -> None:
        super().__init__(**kw)
        self.spec = spec
        self.error = error

    def setup(self) -> None:
        if self.error is not None:  # an error, not a failure: the spec cannot be checked at all
            pytest.fail(str(self.error), pytrace=False)

    def runtest(self) -> None:
        from . import proof_cache
        from .report_formats import Result, locate

        assert self.spec is not None
        opt = self.config.getoption
        cache = None if opt("combiner_no_cache") else proof_cache.ProofCache.open(opt("combiner_cache"))
        verdict = proof_cache.check(self.spec, cache, opt("combiner_lengths"), not opt("combiner_no_prove"), opt("combiner_timeout"))
        loc = locate(Result(str(self.path), self.spec.pattern, verdict))
        text = f"{self.path}:{loc.line}:{loc.col}: {loc.message}"
        if verdict.status == "refuted":
            pytest.fail(text, pytrace=False)
        if verdict.status == "checked":
            if opt("combiner_strict"):
                pytest.fail(f"{text} (--combiner-strict)", pytrace=False)
            self.user_properties.append((NOTE, text))

    def reportinfo(self) -> tuple[Path, int, str]:
        line = self.spec.pattern.source.line_col(self.spec.pattern.span.start)[0] if self.spec is not None else 1
        return self.path, line - 1, f"combiner spec {self.name}"


_notes: list[str] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    _notes.clear()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # reports, not items: under xdist the notes travel back from the workers with them
    _notes.extend(str(v) for k, v in report.user_properties if k == NOTE and report.when == "call")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _notes:
        terminalreporter.section("combiner: checked at some lengths, not proved for every L")
        for n in _notes:
            terminalreporter.write_line(n)
        _notes.clear()
