"""Prefix stability ("streaming"): row i of the pattern does not depend on the length L > i.

For every L1 < L2 and i < L1, the pattern at L2 gives query i the same direct keys and the same
selected regions (same members, same at() positions) as the pattern at L1. That is what makes
cached decoding exact: the output at position t computed over the prefix of length t + 1 equals
row t of a forward over any longer sequence. Regions are compared by their member sets, never by
their names or binder values.

Exhaustively over a set of lengths first (a refutation carries a witness L1, L2, i, j), then for
every L with z3 as "is there L1 < L2, i < L1 where the row differs?" over both lengths' lets. The
z3 question asks slightly more than the property (the same binder tuple is selected at both
lengths, with the same members), so `unsat` proves it while a model only counts as a refutation
once the exhaustive comparison at its two lengths confirms it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import z3

from . import ir
from .errors import CoverageError, SpecEvaluationError
from .evaluate import accepts
from .exhaustive import default_lengths
from .layout import Layout, build_layout
from .smt import Encoder

REPLAY_MAX = 2048  # the longest L2 a z3 model is replayed at


@dataclass(frozen=True, slots=True)
class StreamWitness:
    """Query i's row differs between lengths L1 < L2, at key j (`what`: direct keys or regions)."""

    L1: int
    L2: int
    i: int
    j: int
    what: str  # "direct" | "regions"
    plan: str | None = None
    longer: bool | None = None  # for "direct": j is direct at L2 (True) or at L1 (False)

    def explain(self) -> str:
        where = f" (plan {self.plan})" if self.plan and self.plan != "main" else ""
        if self.what == "direct":
            yes, no = (self.L2, self.L1) if self.longer else (self.L1, self.L2)
            return f"query i={self.i} takes key j={self.j} directly at L={yes} but not at L={no}{where}"
        return f"query i={self.i} selects different regions at L={self.L1} and L={self.L2} (they differ at key j={self.j}){where}"

    def to_json(self) -> dict[str, Any]:
        return {"L1": self.L1, "L2": self.L2, "i": self.i, "j": self.j, "what": self.what, "plan": self.plan}


@dataclass(frozen=True, slots=True)
class StreamVerdict:
    status: str  # "proved" | "refuted" | "unknown"
    witness: StreamWitness | None
    message: str
    checked: tuple[int, ...] = ()  # lengths compared exhaustively

    @property
    def holds(self) -> bool:
        return self.status == "proved"

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "witness": self.witness.to_json() if self.witness else None, "message": self.message, "checked_lengths": len(self.checked)}


# ---------------------------------------------------------------- exhaustive


class _Units:
    """Global ids for region member sets (the same set at two lengths gets the same id)."""

    def __init__(self) -> None:
        self.ids: dict[tuple[int, bytes], int] = {}
        self.members: list[torch.Tensor] = []

    def of(self, n: int, member: torch.Tensor) -> int:
        pos = member.nonzero().flatten()
        key = (n, pos.numpy().tobytes())
        if key not in self.ids:
            self.ids[key] = len(self.members)
            self.members.append(pos)
        return self.ids[key]


def _rows(layout: Layout, p: int, units: _Units, span: int) -> torch.Tensor:
    """Plan p's selected units per query, as sorted codes (member-set id, at() positions) [L, width], -1 padding."""
    pl, L = layout.plans[p], layout.L
    qs, codes = [torch.zeros(0, dtype=torch.int64)], [torch.zeros(0, dtype=torch.int64)]
    for n, rs in enumerate(pl.regions):
        pairs = rs.select.nonzero()
        if not pairs.numel():
            continue
        i, r = pairs[:, 0], pairs[:, 1]
        rid = torch.tensor([units.of(n, rs.member[x]) for x in range(rs.member.shape[0])], dtype=torch.int64)
        qp = rs.query_at[i, r] + 1 if rs.query_at is not None else torch.zeros_like(i)
        kp = rs.key_at[i, r] + 1 if rs.key_at is not None else torch.zeros_like(i)
        qs.append(i)
        codes.append((rid[r] * span + qp) * span + kp)
    i, code = torch.cat(qs), torch.cat(codes)
    order = torch.argsort(i * (code.max() + 1 if code.numel() else 1) + code)
    i, code = i[order], code[order]
    counts = torch.bincount(i, minlength=L)
    rank = torch.arange(i.numel()) - (torch.cumsum(counts, 0) - counts)[i]
    out = torch.full((L, int(counts.max()) if i.numel() else 0), -1, dtype=torch.int64)
    out[i, rank] = code
    return out


def _unit_key(units: _Units, a: torch.Tensor, b: torch.Tensor, span: int) -> int:
    """A key where two rows of unit codes differ: covered by only one, else the first member of a differing unit."""

    def covered(row: torch.Tensor) -> set[int]:
        return {x for c in row.tolist() if c >= 0 for x in units.members[c // (span * span)].tolist()}

    only = covered(a) ^ covered(b)
    if only:
        return min(only)
    diff = set(a.tolist()) ^ set(b.tolist())
    return min((int(units.members[c // (span * span)][0]) for c in diff if c >= 0 and units.members[c // (span * span)].numel()), default=0)


def _pad(x: torch.Tensor, width: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, width - x.shape[1]), value=-1) if x.shape[1] < width else x


def compare(pattern: ir.Pattern, lengths: Iterable[int]) -> tuple[StreamWitness | None, tuple[int, ...]]:
    """Compare every row across the accepted `lengths`: the first difference found, and the lengths used."""
    tried = [L for L in sorted(set(lengths)) if accepts(pattern, L)]
    span = (max(tried) if tried else 0) + 2
    units = _Units()
    first: list[tuple[torch.Tensor, torch.Tensor]] = []  # per plan: each row as first seen (direct, unit codes)
    best: StreamWitness | None = None
    for L in tried:
        try:
            layout = build_layout(pattern, L)
        except CoverageError:
            continue  # an ambiguous derived selection: reported by the coverage check
        for p, pl in enumerate(layout.plans):
            direct, codes = pl.direct, _rows(layout, p, units, span)
            if p == len(first):
                first.append((torch.zeros(0, 0, dtype=torch.bool), torch.zeros(0, 0, dtype=torch.int64)))
            ref, ref_codes = first[p]
            n = ref.shape[0]
            width = max(codes.shape[1], ref_codes.shape[1])
            codes, ref_codes = _pad(codes, width), _pad(ref_codes, width)
            if n:  # rows i < n were first seen at a shorter length: compare them (keys beyond it are new)
                old = torch.zeros(n, L, dtype=torch.bool)
                old[:, : ref.shape[1]] = ref
                diff = (old != direct[:n]).nonzero()
                if diff.numel():
                    i, j = (int(x) for x in diff[0])
                    best = _earlier(best, StreamWitness(_seen_at(i, tried), L, i, j, "direct", pl.plan.name, bool(direct[i, j])))
                rows = (ref_codes[:n] != codes[:n]).any(1).nonzero()
                if rows.numel():
                    i = int(rows[0])
                    best = _earlier(best, StreamWitness(_seen_at(i, tried), L, i, _unit_key(units, ref_codes[i], codes[i], span), "regions", pl.plan.name))
            grown = torch.zeros(L, L, dtype=torch.bool)
            grown[:n, : ref.shape[1]] = ref
            grown[n:] = direct[n:]
            first[p] = (grown, torch.cat([ref_codes[:n], codes[n:]]))
        if best is not None:
            return best, tuple(x for x in tried if x <= L)
    return None, tuple(tried)


def _seen_at(i: int, tried: list[int]) -> int:
    """The length row i was first recorded at: the smallest tried length above i."""
    return next(L for L in tried if L > i)


def _earlier(a: StreamWitness | None, b: StreamWitness) -> StreamWitness:
    return b if a is None or (b.i, b.j) < (a.i, a.j) else a


# ---------------------------------------------------------------- z3


class _TwoLengths:
    """The pattern's lets and requires at two lengths L1 < L2, sharing one encoder."""

    def __init__(self, pattern: ir.Pattern) -> None:
        self.pattern, self.enc = pattern, Encoder()
        self.L1, self.L2 = z3.Int("L1"), z3.Int("L2")
        self.envs = [self._env(self.L1), self._env(self.L2)]
        self.facts: list[z3.BoolRef] = [self.L1 >= 1, self.L1 < self.L2]
        for env in self.envs:
            self.facts += [self.enc.term(r, env) for r in pattern.requires]

    def _env(self, L: z3.ArithRef) -> dict[str, z3.ExprRef]:
        env: dict[str, z3.ExprRef] = {"L": L}
        for let in self.pattern.lets:
            env[let.name] = self.enc.constant(let.name, self.enc.term(let.value, env))
        return env

    def direct(self, plan: ir.PlanDef, env: dict[str, z3.ExprRef], i: z3.ArithRef, j: z3.ArithRef) -> z3.BoolRef:
        seen = z3.And(0 <= j, j <= i) if self.pattern.causal else z3.And(0 <= j, j < env["L"])
        return z3.And(seen, self.enc.term(plan.direct, {**env, "i": i, "j": j}))

    def region(self, part: ir.Partition, env: dict[str, z3.ExprRef], b: dict[str, z3.ExprRef], i: z3.ArithRef, j: z3.ArithRef) -> tuple[z3.BoolRef, z3.BoolRef, list[z3.ExprRef]]:
        """(i selects the binder tuple, j is a member, the at() positions) at one length."""
        e = {**env, **b}
        assert part.select is not None
        rng = [z3.And(self.enc.term(x.lo, e) <= e[x.name], e[x.name] < self.enc.term(x.hi, e)) for x in part.binders]
        sel = z3.And(*rng, self.enc.term(part.select, {**e, "i": i}))
        mem = z3.And(0 <= j, j < env["L"], self.enc.term(part.member, {**e, "j": j}))
        pos = [self.enc.term(s.position, {**e, "i": i}) for s in (part.query, part.key) if s.position is not None]
        return sel, mem, pos

    def violations(self, plan: ir.PlanDef, i: z3.ArithRef, j: z3.ArithRef) -> list[tuple[str, z3.BoolRef]]:
        e1, e2 = self.envs
        out = [("direct", self.direct(plan, e1, i, j) != self.direct(plan, e2, i, j))]
        for part in plan.partitions:
            b = {x: z3.Int(f"{part.name}.{x}") for x in part.binder_names}
            s1, m1, p1 = self.region(part, e1, b, i, j)
            s2, m2, p2 = self.region(part, e2, b, i, j)
            same = z3.And(m1 == m2, *(x == y for x, y in zip(p1, p2, strict=True)))
            out.append((part.name, z3.Or(s1 != s2, z3.And(s1, s2, z3.Not(same)))))
        return out

    def solve(self, formula: z3.BoolRef, i: z3.ArithRef, timeout_s: float) -> tuple[str, tuple[int, int] | None]:
        s = z3.Solver()
        s.set("timeout", max(1, int(timeout_s * 1000)))
        s.add(*self.facts, 0 <= i, i < self.L1, formula)
        s.add(*self.enc.constraints())
        r = s.check()
        if r == z3.sat:
            m = s.model()
            return "sat", (m.eval(self.L1, model_completion=True).as_long(), m.eval(self.L2, model_completion=True).as_long())
        return ("unsat", None) if r == z3.unsat else ("unknown", None)


def prove_streaming(pattern: ir.Pattern, timeout_s: float = 5.0) -> tuple[str, StreamWitness | None, str]:
    """("proved" | "refuted" | "unknown", witness, reason) for every L1 < L2."""
    if any(part.select is None for _, part in pattern.partitions):
        return "unknown", None, "derived selection is not encoded for the solver"
    notes = []
    for plan in pattern.plans:
        tl = _TwoLengths(pattern)
        i, j = z3.Int("i"), z3.Int("j")
        for what, formula in tl.violations(plan, i, j):
            status, model = tl.solve(formula, i, timeout_s)
            if status == "unsat":
                continue
            if status == "unknown":
                notes.append(f"{what}: the solver gave up within {timeout_s:g} s")
                continue
            assert model is not None
            L1, L2 = model
            if L2 <= REPLAY_MAX:
                try:
                    witness, _ = compare(pattern, (L1, L2))
                except SpecEvaluationError:
                    witness = None
                if witness is not None:
                    return "refuted", witness, ""
            notes.append(f"{what}: z3 suggests a difference between L={L1} and L={L2} that the layouts there do not show")
    return ("proved", None, "") if not notes else ("unknown", None, "; ".join(notes))


def check_streaming(pattern: ir.Pattern, lengths: Iterable[int] | None = None, *, prove: bool = True, timeout_s: float = 5.0) -> StreamVerdict:
    """Exhaustively over `lengths` (default: the checker's set), then for every L with z3."""
    witness, tried = compare(pattern, lengths if lengths is not None else default_lengths())
    if witness is not None:
        return StreamVerdict("refuted", witness, f"not prefix-stable: {witness.explain()}", tried)
    if not prove:
        return StreamVerdict("unknown", None, f"prefix-stable at the {len(tried)} lengths compared (no proof asked)", tried)
    status, zw, reason = prove_streaming(pattern, timeout_s)
    if status == "proved":
        return StreamVerdict("proved", None, f"prefix-stable for every L (z3), and compared at {len(tried)} lengths", tried)
    if status == "refuted" and zw is not None:
        return StreamVerdict("refuted", zw, f"not prefix-stable: {zw.explain()}", tried)
    return StreamVerdict("unknown", None, f"prefix-stable at the {len(tried)} lengths compared; no proof for every L: {reason}", tried)
