"""`combiner explore`: search, check, prove and rank Combiner factorizations of a sparse pattern.

    source --candidates--> spec texts --select_synth--> written selects --rank--> table --emit--> .cmb
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field, replace

from .. import api, ir
from ..errors import CombinerError
from ..verdict import Verdict
from .candidates import FAMILIES, DirectSet, Family, Source, direct_sets, families, read_source, render
from .rank import Candidate, measure, pareto, prove
from .select_synth import SCREEN_LENGTHS, synthesise

__all__ = ["FAMILIES", "Candidate", "ExploreResult", "explore"]
PROVE_LENGTHS = (*range(1, 65), 100, 127, 128, 129)  # exhaustive check before the proof
MAX_SCREEN = 300  # longest extra screening length


@dataclass(frozen=True)
class ExploreResult:
    source: str
    L: int
    candidates: tuple[Candidate, ...]  # ranked, refuted last
    elapsed_s: float
    notes: tuple[str, ...] = field(default=())

    @property
    def holding(self) -> tuple[Candidate, ...]:
        return tuple(c for c in self.candidates if c.verdict.holds)


def screening_lengths(src: Source) -> tuple[int, ...]:
    """The fixed screening lengths, plus lengths just past each constant of the source (a window
    of 64 only shows its boundary beyond L = 64)."""
    extra = {n for c in src.constants for n in (c + 1, c + 2, 2 * c + 3) if n <= MAX_SCREEN}
    return tuple(sorted(set(SCREEN_LENGTHS) | extra))


def _candidate(name: str, text: str, direct: DirectSet, fams: tuple[Family, ...], written: bool, screen: tuple[int, ...]) -> Candidate:
    verdict = api.load(text=text).check(L=screen, prove=False)
    return Candidate(name, text, direct.tag, tuple(f.tag for f in fams), written, verdict, provable=all(f.provable for f in fams))


def explore(
    pattern: ir.Pattern,
    *,
    L: int = 1024,
    kinds: tuple[str, ...] = FAMILIES,
    keep: str = "both",
    summaries: tuple[str, ...] = ("max",),
    mix: bool = False,
    prove_top: int = 3,
    timeout_s: float = 10.0,
) -> ExploreResult:
    """Every (direct set, region family) candidate, checked; the best `prove_top` the prover can
    take also proved (the others keep their exhaustive check at the screening lengths)."""
    start = time.perf_counter()
    bad = [k for k in kinds if k not in FAMILIES]
    if bad:
        raise CombinerError(f"--families: unknown family {bad[0]!r}; expected some of {', '.join(FAMILIES)}")
    src = read_source(pattern)
    if keep.startswith("window:"):  # the window's width is a size and a boundary like the source's constants
        src = replace(src, constants=tuple(sorted({*src.constants, int(keep.split(":", 1)[1])})))
    screen = screening_lengths(src)
    cands: list[Candidate] = []
    plans: list[tuple[DirectSet, Family, str]] = []  # holding plans with written selects, for mixtures
    for direct in direct_sets(src, keep, screen):
        for fam in families(src, summaries, kinds):
            s = synthesise(src, direct, fam, screen)
            if s.witness is not None:
                msg = s.witness.explain()
                cands.append(Candidate(s.name, s.text, direct.tag, (fam.tag,), False, Verdict("refuted", (s.witness.L,), s.witness, msg)))
                continue
            c = _candidate(s.name, s.text, direct, (fam,), s.written, screen)
            cands.append(c)
            if c.verdict.holds and s.written:
                plans.append((direct, fam, s.text))
    if mix:
        cands += _mixtures(src, plans, screen)
    cands = [measure(c, L, pattern, screen) for c in cands]
    cands.sort(key=Candidate.key)
    if prove_top > 0:
        top = [c for c in cands if c.written and c.verdict.holds and c.provable][:prove_top]
        proved = {c.name: prove(c, PROVE_LENGTHS, timeout_s) for c in top}
        cands = sorted((proved.get(c.name, c) for c in cands), key=Candidate.key)
    return ExploreResult(pattern.name, L, tuple(pareto(cands)), time.perf_counter() - start)


def _selects(text: str) -> tuple[str | None, ...]:
    """The written select of each partition of a candidate, as text (None: derived)."""
    parts = [part for _, part in api.load(text=text).pattern.partitions]
    return tuple(text[p.select.span.start : p.select.span.end] if p.select is not None else None for p in parts)


def _mixtures(src: Source, plans: list[tuple[DirectSet, Family, str]], screen: tuple[int, ...]) -> list[Candidate]:
    """Joint mixtures of two holding plans with the same direct set and different families."""
    out = []
    for (d1, f1, t1), (d2, f2, t2) in itertools.combinations(plans, 2):
        if d1 != d2 or f1.kind == f2.kind:
            continue
        name = f"{src.name}_{d1.tag}_mix_{f1.kind}_{f2.kind}".replace("+", "_")
        text = render(src, name, d1, ((f1, _selects(t1)), (f2, _selects(t2))), mix="joint")
        c = _candidate(name, text, d1, (f1, f2), True, screen)
        out.append(replace(c, families=(f1.tag, f2.tag)))
    return out
