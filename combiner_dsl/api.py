"""The driver: the stages a spec goes through, and the Python API of contract.md.

    text --parse--> AST --analyze--> IR --check/prove--> Verdict --cost--> Cost --codegen--> module
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import ir
from .errors import CombinerError, Diagnostic, SpecSyntaxError
from .parse import parse
from .semantics import analyze
from .source import Source, Span
from .verdict import Verdict

if TYPE_CHECKING:
    import torch

STAGES = ("parse", "analyze", "check", "prove", "cost", "codegen")
TARGETS = ("torch", "triton")


def read_source(path: str | Path) -> Source:
    """A spec file as a `Source`; unreadable or non-UTF-8 files are errors with the path."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as err:
        raise CombinerError(f"{p}: cannot read: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        src = Source(str(p), data.decode("utf-8", errors="replace"))
        diag = Diagnostic(src, Span(err.start, err.start + 1), "not UTF-8 text", "a spec is plain UTF-8 text")
        raise SpecSyntaxError(diag.render(), (diag,)) from None
    return Source(str(p), text)


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

    def check(self, L: int | Iterable[int] | None = None, *, prove: bool = True, timeout_s: float = 5.0) -> Verdict:
        """C0-C3: exhaustively at the given lengths (default set when None), then a proof for every L."""
        from .exhaustive import check_lengths  # imports torch: not needed to load a spec (nor for a cached verdict)

        lengths = [L] if isinstance(L, int) else (list(L) if L is not None else None)
        verdict = check_lengths(self.pattern, lengths)
        if verdict.status == "refuted" or not prove:
            return verdict
        from .prove import prove as run_prover

        outcome = run_prover(self.pattern, timeout_s=timeout_s)
        if outcome.status == "proved":
            scope = outcome.scope or "all L"
            checked = verdict.scope if isinstance(verdict.scope, tuple) else ()
            also = f", and checked exhaustively at {len(checked)} lengths up to L={max(checked)}" if checked else ""
            return Verdict("proved", scope, None, f"full attention proved for {scope} (z3){also}", derived=verdict.derived)
        if outcome.status == "refuted" and outcome.witness is not None:
            return Verdict("refuted", (outcome.witness.L,), outcome.witness, outcome.witness.explain(), derived=verdict.derived)
        return Verdict(verdict.status, verdict.scope, None, verdict.message, reason=outcome.reason, derived=verdict.derived)

    def cost(self, L: int, d: int = 64) -> Any:
        from .cost import cost_at

        return cost_at(self.pattern, L, d=d)

    def order(self) -> Any:
        from .cost import order

        return order(self.pattern)


def load(path: str | Path | None = None, *, text: str | None = None, name: str = "<text>") -> Spec:
    """Parse and check a spec from a file or from text; raises `CombinerError` with its location."""
    if (path is None) == (text is None):
        raise TypeError("load() takes a path or text=, not both")
    source = read_source(path) if path is not None else Source(name, text or "")
    return Spec(analyze(parse(source), source))


def compile(spec: Spec | ir.Pattern, target: str = "torch", *, verdict: Verdict | None = None) -> torch.nn.Module:
    """A `torch.nn.Module` computing the spec's attention: `attn(q, k, v, scale=None)`.

    The module is the generated file itself, loaded; pass the spec's `verdict` to record it in the
    module's docstring (as `combiner compile` does).
    """
    from .codegen.torch_target import load_generated

    pattern = spec.pattern if isinstance(spec, Spec) else spec
    return load_generated(generate(pattern, target, verdict=verdict), pattern.name).CombinerAttention()


def generate(spec: Spec | ir.Pattern, target: str = "torch", *, verdict: Verdict | None = None) -> str:
    """The source of the self-contained module for `target` (deterministic for a given spec)."""
    pattern = spec.pattern if isinstance(spec, Spec) else spec
    verdict_text = f"{verdict.status} ({verdict.scope_text()}): {verdict.message}" if verdict else None
    cost_text = _cost_text(pattern)
    if target == "torch":
        from .codegen.torch_target import generate_torch

        return generate_torch(pattern, verdict_text=verdict_text, cost_text=cost_text)
    if target == "triton":
        from .codegen.triton_target import generate_triton

        return generate_triton(pattern, verdict_text=verdict_text, cost_text=cost_text)
    raise CombinerError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")


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
