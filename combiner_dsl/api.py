"""The driver: the stages a spec goes through, and the Python API of contract.md.

    text --parse--> AST --analyze--> IR --check/prove--> Verdict --cost--> Cost --codegen--> module
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import ir
from .errors import CombinerError, Diagnostic, SpecSyntaxError
from .limits import MAX_FILE_BYTES, PROVER_BUDGET_S
from .parse import parse
from .semantics import analyze
from .source import Source, Span
from .verdict import Verdict

if TYPE_CHECKING:
    import sympy
    import torch

    from .cost import CostFigures

STAGES = ("parse", "analyze", "check", "prove", "cost", "codegen")
TARGETS = ("torch", "triton")


def read_source(path: str | Path) -> Source:
    """A spec file as a `Source`; unreadable or non-UTF-8 files are errors with the path."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # never more: /dev/zero or a huge file stops here
    except OSError as err:
        raise CombinerError(f"{p}: cannot read: {err.strerror or err}") from None
    if len(data) > MAX_FILE_BYTES:
        raise CombinerError(f"{p}: spec is larger than {MAX_FILE_BYTES:,} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        src = Source(str(p), data.decode("utf-8", errors="replace"))
        diag = Diagnostic(src, Span(err.start, err.start + 1), "not UTF-8 text", "a spec is plain UTF-8 text")
        raise SpecSyntaxError(diag.render(), (diag,)) from None
    return Source(str(p), normalize_text(text))


def normalize_text(text: str) -> str:
    """Drop a UTF-8 byte order mark and turn CR LF and lone CR line ends into LF."""
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


@dataclass(frozen=True)
class Spec:
    """A checked pattern spec: the IR plus the operations of the public API."""

    pattern: ir.Pattern

    @property
    def name(self) -> str:
        return self.pattern.name

    @property
    def path(self) -> str:
        return self.pattern.source.name

    def check(
        self, L: int | Iterable[int] | None = None, *, prove: bool = True, timeout_s: float = 5.0, budget_s: float = PROVER_BUDGET_S, streaming: bool = False
    ) -> Verdict:
        """C0-C3: exhaustively at the given lengths (default set when None), then a proof for every L
        (each solver query stops after `timeout_s`, all of them together after `budget_s`).

        streaming=True also checks prefix stability (`streaming.py`), recorded in `verdict.streaming`.
        """
        lengths = [L] if isinstance(L, int) else (list(L) if L is not None else None)
        verdict = self._coverage(lengths, prove, timeout_s, budget_s)
        if not streaming:
            return verdict
        from dataclasses import replace

        from .streaming import check_streaming

        return replace(verdict, streaming=check_streaming(self.pattern, lengths, prove=prove, timeout_s=timeout_s))

    def _coverage(self, lengths: list[int] | None, prove: bool, timeout_s: float, budget_s: float) -> Verdict:
        from .exhaustive import check_lengths  # imports torch: not needed to load a spec (nor for a cached verdict)

        verdict = check_lengths(self.pattern, lengths)
        from .prove import accepts_some
        from .prove import prove as run_prover

        if not verdict.scope:  # "vacuous" speaks of every L: a require undefined at one is its error
            from .domain import check_requires

            check_requires(self.pattern, timeout_s)
        if not verdict.scope and accepts_some(self.pattern, timeout_s) is False:
            why = "no length L >= 1 satisfies the requires"
            return Verdict("vacuous", (), None, f"{why}: the spec accepts no input and claims nothing", reason=why)
        if verdict.status in ("refuted", "unsupported") or not prove:
            return verdict
        outcome = run_prover(self.pattern, timeout_s=timeout_s, budget_s=budget_s)
        if outcome.status == "proved":
            scope = outcome.scope or "all L"
            checked = verdict.scope if isinstance(verdict.scope, tuple) else ()
            also = f", and checked exhaustively at {len(checked)} lengths up to L={max(checked)}" if checked else ""
            return Verdict("proved", scope, None, f"full attention proved for {scope} (z3){also}", derived=verdict.derived)
        if outcome.status == "refuted" and outcome.witness is not None:
            return Verdict("refuted", (outcome.witness.L,), outcome.witness, outcome.witness.explain(), derived=verdict.derived)
        return Verdict(verdict.status, verdict.scope, None, verdict.message, reason=outcome.reason, derived=verdict.derived)

    def cost(self, L: int, d: int = 64) -> CostFigures:
        from .cost import cost_at

        return cost_at(self.pattern, L, d=d)

    def order(self) -> sympy.Expr:
        from .cost import order

        return order(self.pattern)


def load(path: str | Path | None = None, *, text: str | None = None, name: str = "<text>") -> Spec:
    """Parse and check a spec from a file or from text; raises `CombinerError` with its location."""
    if (path is None) == (text is None):
        raise TypeError("load() takes a path or text=, not both")
    source = read_source(path) if path is not None else Source(name, normalize_text(text or ""))
    return Spec(analyze(parse(source), source))


def compile(
    spec: Spec | ir.Pattern, target: str = "torch", *, verdict: Verdict | None = None, cost: bool = False, standalone: bool = False
) -> torch.nn.Module:
    """A `torch.nn.Module` computing the spec's attention: `attn(q, k, v, scale=None)`.

    The module is the generated code itself, loaded from memory. Nothing is proved or counted here:
    pass the spec's `verdict` (and `cost=True`) to record them in the module's docstring, as
    `combiner compile` does; `standalone=True` inlines the runtime into the module.
    """
    from .codegen.loader import load_generated
    from .codegen.targets import CLASS_NAME

    pattern = spec.pattern if isinstance(spec, Spec) else spec
    source = generate(pattern, target, verdict=verdict, cost=cost, standalone=standalone)
    module: torch.nn.Module = getattr(load_generated(source, pattern.name), CLASS_NAME)()
    return module


def generate(spec: Spec | ir.Pattern, target: str = "torch", *, verdict: Verdict | None = None, cost: bool = False, standalone: bool = False) -> str:
    """The source of the module for `target` (deterministic for a given spec and arguments).

    By default it imports `combiner_dsl.runtime`; `standalone=True` gives one self-contained file.
    """
    from .codegen.targets import generate_module

    pattern = spec.pattern if isinstance(spec, Spec) else spec
    verdict_text = f"{verdict.status} ({verdict.scope_text()}): {verdict.message}" if verdict else None
    return generate_module(pattern, target, standalone=standalone, verdict_text=verdict_text, cost_text=_cost_text(pattern) if cost else None)


COST_SAMPLE_L = 4096  # the length whose exact figures a generated module's docstring quotes


def _cost_text(pattern: ir.Pattern) -> str:
    from .cost import cost_at, order
    from .evaluate import accepts

    text = f"total pairs grow as {order(pattern)}"
    if accepts(pattern, COST_SAMPLE_L):
        f = cost_at(pattern, COST_SAMPLE_L)
        pairs = f.direct_pairs + f.region_pairs + f.summary_pairs
        text += f"; at L = {COST_SAMPLE_L}: {pairs:,} pairs per head ({f.direct_pairs:,} direct, {f.region_pairs:,} to summaries, {f.summary_pairs:,} inside summaries), {f.ratio:.1f}x fewer than dense, widest softmax {f.logits_max}"
    return text
