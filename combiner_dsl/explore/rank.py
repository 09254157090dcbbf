"""Checking, costing, proving and ordering the candidates (strongest proof, then order, then
fidelity to the source, then pairs)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import sympy

from .. import api, ir
from ..cost import cost_at, order
from ..growth import Lsym
from ..verdict import Verdict
from .fidelity import fidelity

STRENGTH = {"proved all L": 0, "proved bounded": 1, "checked": 2, "checked (derived)": 3, "refuted": 4}


@dataclass(frozen=True)
class Candidate:
    name: str
    text: str
    direct: str  # the direct set's tag
    families: tuple[str, ...]
    written: bool
    verdict: Verdict
    order: str | None = None
    order_value: float = math.inf
    pairs: int | None = None  # total pairs at the ranking length
    logits_max: int | None = None
    units: int | None = None  # summary pairs at the ranking length (pairs inside the summaries)
    fidelity: float | None = None  # fraction of faithful queries at the screening lengths (fidelity.py)
    pareto: bool = False
    provable: bool = True  # every family's rules are in the prover's reach (candidates.Family)

    @property
    def strength(self) -> str:
        v = self.verdict
        if v.status == "proved":
            return "proved all L" if v.scope == "all L" else "proved bounded"
        if v.status == "checked":
            return "checked" if self.written else "checked (derived)"
        return "refuted"

    def key(self) -> tuple[Any, ...]:
        faithful = -self.fidelity if self.fidelity is not None else 0.0  # higher first, after the order
        return (STRENGTH[self.strength], self.order_value, faithful, self.pairs if self.pairs is not None else math.inf, self.name)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "direct": self.direct, "families": list(self.families), "written_select": self.written,
            "strength": self.strength, **self.verdict.to_json(), "order": self.order, "fidelity": self.fidelity, "pairs": self.pairs,
            "logits_max": self.logits_max, "summary_pairs": self.units, "pareto": self.pareto, "text": self.text,
        }


def measure(c: Candidate, L: int, source: ir.Pattern, screen: tuple[int, ...]) -> Candidate:
    """Exact figures at L, the asymptotic order and the fidelity to `source` at the screening
    lengths (written selects only: derived costs are dense)."""
    if not c.written or c.verdict.status == "refuted":
        return c
    spec = api.load(text=c.text)
    f = cost_at(spec.pattern, L)
    o = order(spec.pattern)
    value = float(o.subs(Lsym, sympy.Integer(10) ** 9))
    faithful = fidelity(source, spec.pattern, screen)
    pairs = f.direct_pairs + f.region_pairs + f.summary_pairs
    return replace(c, order=str(o), order_value=value, pairs=pairs, logits_max=f.logits_max, units=f.summary_pairs, fidelity=faithful)


def prove(c: Candidate, lengths: tuple[int, ...], timeout_s: float) -> Candidate:
    """Check at `lengths`, then prove; all solver queries of one candidate stop after twice the
    per-query limit (a successful proof of the shipped families takes a few queries; a family
    outside the prover's reach should not hold up the others)."""
    verdict = api.load(text=c.text).check(L=lengths, prove=True, timeout_s=timeout_s, budget_s=2 * timeout_s)
    return replace(c, verdict=verdict)


def pareto(cands: list[Candidate]) -> list[Candidate]:
    """Mark the candidates no other holding one beats on both total pairs and widest softmax."""
    pts = [(c.pairs, c.logits_max) for c in cands if c.pairs is not None and c.verdict.holds]
    out = []
    for c in cands:
        front = c.pairs is not None and c.logits_max is not None and c.verdict.holds and not any(
            p <= c.pairs and w <= c.logits_max and (p, w) != (c.pairs, c.logits_max) for p, w in pts  # type: ignore[operator]
        )
        out.append(replace(c, pareto=front))
    return out
