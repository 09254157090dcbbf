"""The prover: C0-C3 for every length, as "is a violation satisfiable?" questions to z3.

Each check of each plan is one query over L, i, j and binder tuples (see `smt.py` for the
encoding). C0, C1 and C3 are existential. C2 ("no binder tuple covers j") has a universal over
regions, removed by solving equalities in `select`/`member` (`r == i // s` leaves one candidate);
a binder that no equality fixes (logsparse's level l) is instantiated at the level where the
regions holding i and j part (a discrete-induction lemma; the range ends when that does not
apply), then tried under a z3 `ForAll`, then expanded value by value for L <= `bound`. Each
query runs with strong `c ** e` axioms, then light ones, then for L <= `bound`; every `sat`
answer is replayed by the exhaustive checker at a small L before it counts as a refutation.
Derived selection (no `select`) is not encoded: the outcome is unknown, with that reason.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import Literal

import z3

from . import ast, ir
from .analysis import solve
from .astutil import children, conj, names, substitute
from .domain import check_requires
from .errors import SpecEvaluationError
from .evaluate import accepts, evaluate, let_values
from .limits import PROVER_BUDGET_S
from .ranges import risky_nodes
from .runtime.ops import MAX_LENGTH
from .smt import Encoder
from .verdict import SEVERITY, CheckName, Witness

BOUND = 4096  # the bounded fallback proves "L <= BOUND"
REPLAY_MAX = 4096  # the longest L the exhaustive checker replays
MAX_EXPANSION = 4096  # most binder values expanded in one bounded C2 query
SMALL_CAPS = (4, 16, 64, 256, 1024, 4096)  # L caps tried to shrink a model before replay
PINS = 24  # models meant for replay pin c ** e to its true value for e <= PINS (L < 2**24)
_DEADLINE: ContextVar[float] = ContextVar("prover_deadline", default=float("inf"))  # perf_counter() end of the budget


CheckStatus = Literal["holds", "violated", "unknown"]
ProofStatus = Literal["proved", "refuted", "unknown"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What the prover found about one check of one plan."""

    plan: str
    check: CheckName
    status: CheckStatus
    scope: str | None = None  # "all L" | "L <= N" when it holds
    witness: Witness | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class ProofOutcome:
    status: ProofStatus
    scope: str | None  # "all L" | "L <= N" | None
    witness: Witness | None
    reason: str | None
    elapsed_s: float
    checks: tuple[CheckResult, ...] = ()


@dataclass(frozen=True, slots=True)
class Obligation:
    """One conclusive solver query, as SMT-LIB 2 (for certificates checked by another solver)."""

    plan: str
    check: str  # "C0".."C3", or "defined" for the definedness query
    what: str
    scope: str  # "all L" | "L <= N"
    expected: str  # "unsat" (a proof) | "sat" (the violation behind a replayed witness)
    smt2: str


# When set (certify.py), every conclusive query is passed to it; the prover itself ignores it.
OBLIGATION_HOOK: ContextVar[Callable[[Obligation], None] | None] = ContextVar("OBLIGATION_HOOK", default=None)


def _emit(q: _Query, plan: str, check: str, what: str, scope: str, expected: str) -> None:
    hook = OBLIGATION_HOOK.get()
    if hook is not None and q.solver is not None:
        hook(Obligation(plan, check, what, scope, expected, q.solver.to_smt2()))


class _Query:
    """One question about one pattern: the variables, the lets and requires, and the solver."""

    def __init__(self, pattern: ir.Pattern, bound: int | None, quotients: bool = False, pins: int = 0, risky: frozenset[int] = frozenset()) -> None:
        self.pattern = pattern
        self.enc = Encoder(quotients, pins, risky)
        self.L = z3.Int("L")
        self.env: dict[str, z3.ExprRef] = {"L": self.L}
        for let in pattern.lets:
            self.env[let.name] = self.enc.constant(let.name, self.enc.term(let.value, self.env))
        self.facts: list[z3.BoolRef] = [self.L >= 1, *(self.enc.term(r, self.env) for r in pattern.requires)]
        if bound is not None:
            self.facts.append(self.L <= bound)
        if risky:  # the 64-bit range is asked of lengths the runtime accepts
            self.facts.append(self.L <= MAX_LENGTH)
        self._n = 0
        self.solver: z3.Solver | None = None  # the last query asked, kept for certificates

    def var(self, name: str) -> z3.ArithRef:
        self._n += 1
        return z3.Int(f"{name}#{self._n}")

    def pos(self, x: z3.ArithRef) -> z3.BoolRef:
        return z3.And(0 <= x, x < self.L)

    def gamma(self, i: z3.ArithRef, j: z3.ArithRef) -> z3.BoolRef:
        return z3.And(self.pos(i), 0 <= j, j <= i) if self.pattern.causal else z3.And(self.pos(i), self.pos(j))

    def direct(self, plan: ir.PlanDef, i: z3.ArithRef, j: z3.ArithRef) -> z3.BoolRef:
        return z3.And(self.gamma(i, j), self.enc.term(plan.direct, {**self.env, "i": i, "j": j}))

    def binders(self, part: ir.Partition) -> dict[str, z3.ExprRef]:
        return {**self.env, **{b: self.var(f"{part.name}.{b}") for b in part.binder_names}}

    def rng(self, part: ir.Partition, env: dict[str, z3.ExprRef]) -> z3.BoolRef:
        out = [z3.And(self.enc.term(b.lo, env) <= env[b.name], env[b.name] < self.enc.term(b.hi, env)) for b in part.binders]
        return z3.And(*out) if out else z3.BoolVal(True)

    def member(self, part: ir.Partition, env: dict[str, z3.ExprRef], j: z3.ArithRef) -> z3.BoolRef:
        return z3.And(self.pos(j), self.enc.term(part.member, {**env, "j": j}))

    def select(self, part: ir.Partition, env: dict[str, z3.ExprRef], i: z3.ArithRef) -> z3.BoolRef:
        assert part.select is not None
        return z3.And(self.pos(i), self.rng(part, env), self.enc.term(part.select, {**env, "i": i}))

    def selected(self, part: ir.Partition, env: dict[str, z3.ExprRef], i: z3.ArithRef, j: z3.ArithRef) -> z3.BoolRef:
        """i selects the region of `env` and j is in it (so it is non-empty)."""
        return z3.And(self.select(part, env, i), self.member(part, env, j))

    def solve(self, formulas: list[z3.BoolRef], timeout_s: float, extra: tuple[z3.BoolRef, ...] = ()) -> tuple[str, int | None]:
        """("sat", L of the model) | ("unsat", None) | ("unknown", None)."""
        left = _DEADLINE.get() - time.perf_counter()
        if left <= 0:
            return "unknown", None  # the total budget is spent: every later query gives up at once
        s = z3.Solver()
        s.set("timeout", max(1, int(min(timeout_s, left) * 1000)))
        s.add(*self.facts, *formulas, *extra, *self.enc.constraints())
        self.solver = s
        r = s.check()
        if r == z3.sat:
            return "sat", s.model().eval(self.L, model_completion=True).as_long()
        return ("unsat", None) if r == z3.unsat else ("unknown", None)


# ---------------------------------------------------------------- the violation formulas


Builder = Callable[[_Query, str, int | None], tuple[z3.BoolRef, bool] | None]


def _c0(plan: ir.PlanDef) -> Iterator[tuple[str, Builder]]:
    for part in plan.partitions:

        def build(q: _Query, mode: str, bound: int | None, part: ir.Partition = part) -> tuple[z3.BoolRef, bool]:
            i, j = q.var("i"), q.var("j")
            return z3.And(q.selected(part, q.binders(part), i, j), z3.Not(q.gamma(i, j))), True

        yield part.name, build


def _c1(plan: ir.PlanDef) -> Iterator[tuple[str, Builder]]:
    parts = plan.partitions
    for part in parts:

        def build(q: _Query, mode: str, bound: int | None, part: ir.Partition = part) -> tuple[z3.BoolRef, bool]:
            i, j = q.var("i"), q.var("j")
            return z3.And(q.direct(plan, i, j), q.selected(part, q.binders(part), i, j)), True

        yield f"direct and {part.name}", build
    for a, b in itertools.combinations_with_replacement(parts, 2):

        def build2(q: _Query, mode: str, bound: int | None, a: ir.Partition = a, b: ir.Partition = b) -> tuple[z3.BoolRef, bool]:
            i, j = q.var("i"), q.var("j")
            ea, eb = q.binders(a), q.binders(b)
            both = [q.gamma(i, j), q.selected(a, ea, i, j), q.selected(b, eb, i, j)]
            if a is b:
                both.append(z3.Or(*(ea[n] != eb[n] for n in a.binder_names)) if a.binders else z3.BoolVal(False))
            return z3.And(*both), True

        yield f"{a.name} and {b.name}", build2


def _c3(plan: ir.PlanDef) -> Iterator[tuple[str, Builder]]:
    for part in plan.partitions:
        for src in (part.query, part.key):
            if src.position is None:
                continue

            def build(q: _Query, mode: str, bound: int | None, part: ir.Partition = part, pos: ast.Expr = src.position) -> tuple[z3.BoolRef, bool]:
                i, j = q.var("i"), q.var("j")
                env = q.binders(part)
                p = q.enc.term(pos, {**env, "i": i})
                return z3.And(q.select(part, env, i), q.member(part, env, j), z3.Not(q.member(part, env, p))), True

            yield f"at() of {part.name}", build


@cache
def _binder_bounds(pattern: ir.Pattern, part: ir.Partition, name: str, bound: int) -> tuple[int, int] | None:
    """Least lo and greatest hi of a binder over every accepted L <= bound (None: depends on binders)."""
    b = next(x for x in part.binders if x.name == name)
    if (names(b.lo) | names(b.hi)) & set(part.binder_names):
        return None
    los, his = [], []
    try:
        for L in range(1, bound + 1):
            if accepts(pattern, L):
                env = let_values(pattern, L)
                los.append(evaluate(pattern, b.lo, env, L))
                his.append(evaluate(pattern, b.hi, env, L))
    except SpecEvaluationError:
        return None  # undefined at some L: no expansion; the definedness query reports it
    return (min(los), max(his)) if los else (0, 0)


def _resolve(q: _Query, base: dict[str, z3.ExprRef], solved: dict[str, ast.Expr]) -> dict[str, z3.ExprRef]:
    """`base` (free binders set) plus every solved binder, in dependency order."""
    env, todo = dict(base), dict(solved)
    while todo:
        ready = [b for b, e in todo.items() if not (names(e) & set(todo))]
        for b in ready:
            env[b] = q.enc.term(todo.pop(b), env)
    return env


def _uncovered(q: _Query, part: ir.Partition, i: z3.ArithRef, j: z3.ArithRef, mode: str, bound: int | None) -> tuple[z3.BoolRef, bool] | None:
    """'No region of `part` selected by i holds j', quantifier-free when possible.

    Returns (formula, exact); exact=False means the formula only instantiates the universal at
    some binder values (unsat still proves coverage). None: this mode does not apply.
    """
    assert part.select is not None
    solved = solve(conj([part.select, part.member]), part.binders).as_dict()
    free = [b for b in part.binder_names if b not in solved]

    def covered(values: dict[str, z3.ExprRef]) -> z3.BoolRef:
        return q.selected(part, _resolve(q, {**q.env, "i": i, "j": j, **values}, solved), i, j)

    if not free:
        return z3.Not(covered({})), True
    if mode == "instances":
        return z3.And(*(z3.Not(covered(v)) for v in _candidates(q, part, free, i, j))), False
    if mode == "forall":
        with q.enc.local() as scope:
            fv = {b: q.enc.fresh(f"{part.name}.{b}") for b in free}
            body = covered(fv)
        cons = q.enc.body_constraints(scope)
        return z3.ForAll(scope.fresh, z3.Implies(z3.And(*cons), z3.Not(body))), True
    if bound is None:
        return None
    found = [_binder_bounds(q.pattern, part, b, bound) for b in free]
    ranges = [r for r in found if r is not None]
    if len(ranges) < len(found):
        return None
    if math.prod(max(0, hi - lo) for lo, hi in ranges) > MAX_EXPANSION:
        return None  # counted before the values are listed
    values = list(itertools.product(*(range(lo, hi) for lo, hi in ranges)))
    return z3.And(*(z3.Not(covered({b: z3.IntVal(x) for b, x in zip(free, v, strict=True)})) for v in values)), True


def _candidates(q: _Query, part: ir.Partition, free: list[str], i: z3.ArithRef, j: z3.ArithRef) -> list[dict[str, z3.ExprRef]]:
    """Binder values to instantiate the universal at: range ends, and the boundary level.

    Boundary: with Q(x) = "the region holding j at binder value x also holds i", if Q differs at
    the two range ends there is an x* where Q(x*) != Q(x*+1) (discrete induction); adding that
    x* as a fresh constant is sound, and it is where hierarchical partitions cover j.
    """
    if len(free) != 1:
        return []
    b = free[0]
    binder = next(x for x in part.binders if x.name == b)
    if names(binder.lo) & set(part.binder_names) or names(binder.hi) & set(part.binder_names):
        return []
    lo, hi = q.enc.term(binder.lo, q.env), q.enc.term(binder.hi, q.env)
    ends: list[dict[str, z3.ExprRef]] = [{b: lo}, {b: hi - 1}]
    by_member = solve(part.member, part.binders).as_dict()
    if set(by_member) == set(part.binder_names) - {b}:

        def holds_i(x: z3.ArithRef) -> z3.BoolRef:
            region = _resolve(q, {**q.env, b: x, "j": j}, by_member)
            return q.member(part, {**region, b: x}, i)

        stars: list[dict[str, z3.ExprRef]] = []  # the ends only add noise here
        if "i" in names(part.select):  # type: ignore[arg-type]
            star = q.var(f"{part.name}.{b}*")
            q.facts.append(z3.Implies(holds_i(lo) != holds_i(hi), z3.And(lo <= star, star < hi, holds_i(star) != holds_i(star + 1))))
            stars.append({b: star})
        # The same lemma at every anchor `A` that select divides by a power of b (a Fenwick
        # decomposition of s * (i // s), a window's max(i - W + 1, 0)): there the regions part
        # from A, not from i. Each is one more instance of the universal, so unsat still proves.
        for n, anchor in enumerate(_anchors(part.select, b, set(part.binder_names))):
            at = q.enc.term(anchor, {**q.env, "i": i})

            def holds_a(x: z3.ArithRef, at: z3.ArithRef = at) -> z3.BoolRef:
                region = _resolve(q, {**q.env, b: x, "j": j}, by_member)
                return q.enc.term(part.member, {**region, b: x, "j": at})

            star_a = q.var(f"{part.name}.{b}*{n}")
            q.facts.append(z3.Implies(holds_a(lo) != holds_a(hi), z3.And(lo <= star_a, star_a < hi, holds_a(star_a) != holds_a(star_a + 1))))
            stars.append({b: star_a})
        return stars
    return ends


def _anchors(e: ast.Expr | None, b: str, binders: set[str]) -> list[ast.Expr]:
    """Dividends `A` of `A // (... b ...)` in `e` that mention no binder and are not plain `i`."""
    out: list[ast.Expr] = []
    stack = [e] if e is not None else []
    while stack:
        x = stack.pop()
        if isinstance(x, ast.Binary) and x.op in ("//", "%") and b in names(x.right) and not (names(x.left) & binders):
            if x.left != ast.Name("i") and x.left not in out:
                out.append(x.left)
        stack.extend(children(x))
    return out


ANCHOR = "$anchor"  # not a spec name: the grammar never produces it


def _anchored(q: _Query, plan: ir.PlanDef) -> tuple[z3.BoolRef, bool] | None:
    """C2 through the one anchor `A` the selects decompose (see `_anchors`), in two halves.

    (1) every key i may see and does not see directly lies below A, and A < L; (2) for a free
    point a in 0 .. L, every key below a is covered by the selects with A replaced by a. Both
    unsat proves C2: the anchor's nonlinear arithmetic and the decomposition's levels never meet
    in one query (a Fenwick decomposition of s * (i // s), a window plus dyadic regions).
    """
    found: list[ast.Expr] = []
    for part in plan.partitions:
        assert part.select is not None
        free = [b for b in part.binder_names if b not in solve(conj([part.select, part.member]), part.binders).as_dict()]
        found += [a for b in free for a in _anchors(part.select, b, set(part.binder_names)) if a not in found]
    if len(found) != 1:
        return None
    i, j, a = q.var("i"), q.var("j"), q.var("a")
    env = {**q.env, "i": i, "j": j}
    anchor = q.enc.term(found[0], env)
    outside = z3.And(q.gamma(i, j), z3.Not(q.enc.term(plan.direct, env)))
    below = z3.Or(z3.Not(outside), z3.And(j < anchor, anchor < q.L))
    q.env[ANCHOR] = a
    generic = [dataclasses.replace(p, select=substitute(p.select, {found[0]: ast.Name(ANCHOR)})) for p in plan.partitions]  # type: ignore[arg-type]
    rest = [_uncovered(q, p, i, j, "instances", None) for p in generic]
    uncovered = z3.And(q.pos(i), 0 <= j, j < a, a < q.L, *(r[0] for r in rest if r is not None))
    return z3.Or(z3.Not(below), uncovered), False


def _c2_formula(q: _Query, plan: ir.PlanDef, mode: str, bound: int | None) -> tuple[z3.BoolRef, bool] | None:
    assert all(part.select is not None for part in plan.partitions)
    if mode == "anchored":
        return _anchored(q, plan)
    if mode == "forall" and all(solve(conj([part.select, part.member]), part.binders).as_dict().keys() == set(part.binder_names) for part in plan.partitions):  # type: ignore[list-item]
        return None  # nothing is quantified: the same query as "instances"
    i, j = q.var("i"), q.var("j")
    parts, exact = [], True
    for part in plan.partitions:
        got = _uncovered(q, part, i, j, mode, bound)
        if got is None:
            got = _uncovered(q, part, i, j, "forall", bound)
        assert got is not None
        parts.append(got[0])
        exact = exact and got[1]
    env = {**q.env, "i": i, "j": j}
    return z3.And(q.gamma(i, j), z3.Not(q.enc.term(plan.direct, env)), *parts), exact


# ---------------------------------------------------------------- driving the checks

CHECKS = SEVERITY


def _c2(plan: ir.PlanDef) -> Iterator[tuple[str, Builder]]:
    yield "every partition", lambda q, mode, bound: _c2_formula(q, plan, mode, bound)


def _replay(pattern: ir.Pattern, build: Builder, mode: str, bound: int | None, L: int, timeout_s: float) -> tuple[Witness | None, str]:
    """Shrink the model's L (re-asking with L capped), then replay the exhaustive checker there."""
    from .exhaustive import check_length

    for cap in (c for c in SMALL_CAPS if c < L):
        q = _Query(pattern, bound, pins=PINS)
        got = build(q, mode, bound)
        assert got is not None
        status, small = q.solve([got[0]], timeout_s, (q.L <= cap,))
        if status == "sat" and small is not None and small <= REPLAY_MAX and _accepted(pattern, small):
            L = small
            break
    if L > REPLAY_MAX:
        return None, f"z3 reports a violation at L={L}, too long to replay"
    if not _accepted(pattern, L):  # z3's model of the requires can be looser than their value
        return None, f"z3 reports a violation at L={L}, a length the requires reject"
    try:
        witness = check_length(pattern, L)
    except SpecEvaluationError as err:
        return None, f"replay at L={L} fails: {err}"
    if witness is None:
        return None, f"z3 reports a violation at L={L} that the exhaustive checker does not confirm"
    return witness, ""


def _accepted(pattern: ir.Pattern, L: int) -> bool:
    try:
        return L >= 1 and accepts(pattern, L)
    except SpecEvaluationError:
        return True  # undefined there: the replay reports it


def _settle(pattern: ir.Pattern, plan: ir.PlanDef, check: CheckName, what: str, build: Builder, timeout_s: float, bound: int) -> CheckResult:
    """One violation formula: unbounded attempts first, then the bounded ones."""
    notes: list[str] = []
    first = "instances" if check == "C2" else "exists"
    attempts = [(first, None, True), (first, None, False), ("forall", None, False), ("expand" if check == "C2" else first, bound, False)]
    if check == "C2":
        attempts.insert(0, ("anchored", None, False))  # None from the builder where no anchor applies
    powers = True
    for mode, cap, quotients in attempts:
        if (mode == first and not quotients and cap is None and not powers) or (mode == "forall" and check != "C2"):
            continue  # the lighter axioms only differ when there are `c ** e` terms
        q = _Query(pattern, cap, quotients, PINS if cap is not None else 0)
        got = build(q, mode, cap)
        if got is None:
            continue
        powers = powers and q.enc.has_powers
        status, L = q.solve([got[0]], timeout_s)
        scope = "all L" if cap is None else f"L <= {cap}"
        if status == "unsat":
            _emit(q, plan.name, check, what, scope, "unsat")
            return CheckResult(plan.name, check, "holds", scope, note="; ".join(notes) or None)
        tag = f"{check} ({what}; {mode}, {scope})"
        if status == "unknown":
            notes.append(f"{tag}: the solver gave up within {timeout_s:g} s")
            continue
        if not got[1]:
            notes.append(f"{tag}: the instantiated universal is satisfiable, not conclusive")
            continue
        assert L is not None
        witness, why = _replay(pattern, build, mode, cap, L, timeout_s)
        if witness is not None:
            _emit(q, plan.name, check, what, scope, "sat")
            return CheckResult(plan.name, check, "violated", witness=witness, note=why or None)
        notes.append(f"{tag}: {why}")
    return CheckResult(plan.name, check, "unknown", note="; ".join(notes))


def _check(pattern: ir.Pattern, plan: ir.PlanDef, check: CheckName, timeout_s: float, bound: int) -> CheckResult:
    gen = {"C0": _c0, "C1": _c1, "C2": _c2, "C3": _c3}[check]
    results = [_settle(pattern, plan, check, what, build, timeout_s, bound) for what, build in gen(plan)]
    for r in results:
        if r.status != "holds":
            return r
    scopes = {r.scope for r in results}
    notes = "; ".join(r.note for r in results if r.note) or None
    return CheckResult(plan.name, check, "holds", "all L" if scopes <= {"all L"} else f"L <= {bound}", note=notes)


def _definedness(pattern: ir.Pattern, timeout_s: float, bound: int | None) -> tuple[str, str | None]:
    """Can any predicate or binder bound be undefined (x // 0, a value beyond 64 bits, ...) where
    the exhaustive checker evaluates it? (Called once `check_requires` found the requires defined.)"""
    q = _Query(pattern, bound, risky=risky_nodes(pattern))
    # the lets and requires were settled first, exactly and in order (domain.check_requires)
    cases: list[z3.BoolRef] = []

    def context(domain: z3.BoolRef, exprs: list[ast.Expr], env: dict[str, z3.ExprRef], binders: frozenset[str] | None = None) -> None:
        """Obligations of `exprs` wherever `domain` holds; with `binders`, a part reading none of
        them is evaluated at every L, domain or not (a binder bound's part that does not read the
        earlier binders is computed once, even when they have no value: docs/language.md)."""
        start = len(q.enc.obligations)
        for e in exprs:
            q.enc.term(e, env)
        new = q.enc.obligations[start:]
        tied = [o for o in new if binders is None or names(o.node) & binders]
        free = [o for o in new if binders is not None and not names(o.node) & binders]
        if tied:
            cases.append(z3.And(domain, z3.Or(*(z3.Not(o.holds) for o in tied))))
        if free:
            cases.append(z3.Or(*(z3.Not(o.holds) for o in free)))

    for plan in pattern.plans:
        i, j = q.var("i"), q.var("j")
        context(z3.And(q.pos(i), q.pos(j)), [plan.direct], {**q.env, "i": i, "j": j})
        for part in plan.partitions:
            env = q.binders(part)
            for k, b in enumerate(part.binders):
                earlier = q.rng(ir.Partition(part.name, part.binders[:k], part.member, part.select, part.query, part.key), env)
                context(earlier, [b.lo, b.hi], env, frozenset(part.binder_names[:k]))
            context(z3.And(q.rng(part, env), q.pos(j)), [part.member], {**env, "j": j})
            sources = [s for s in (part.select, part.query.position, part.key.position) if s is not None]
            context(z3.And(q.rng(part, env), q.pos(i)), sources, {**env, "i": i})
    if not cases:
        return "unsat", None
    status, L = q.solve([z3.Or(*cases)], timeout_s)
    if status == "unsat":
        _emit(q, "every plan", "defined", "every expression is defined", "all L" if bound is None else f"L <= {bound}", "unsat")
    if status != "sat":
        return status, None
    assert L is not None
    try:
        from .exhaustive import check_length

        check_length(pattern, L) if L <= REPLAY_MAX else None
    except SpecEvaluationError as err:
        return "sat", f"an expression is undefined: {str(err).splitlines()[0]}"
    return "unknown", f"z3 suggests an undefined expression at L={L}, not confirmed"


def _emit_requires(solver: z3.Solver, scope: str) -> None:
    hook = OBLIGATION_HOOK.get()
    if hook is not None:
        hook(Obligation("every plan", "defined", "every require is defined", scope, "unsat", solver.to_smt2()))


def accepts_some(pattern: ir.Pattern, timeout_s: float = 5.0) -> bool | None:
    """Does some L >= 1 satisfy the requires? (None: the solver could not tell.)"""
    status, _ = _Query(pattern, None).solve([], timeout_s)
    return {"sat": True, "unsat": False}.get(status)


def prove(pattern: ir.Pattern, timeout_s: float = 5.0, bound: int = BOUND, budget_s: float = PROVER_BUDGET_S) -> ProofOutcome:
    """C0-C3 for every L the requires accept: proved (for all L, or L <= bound), refuted with a
    witness replayed by the exhaustive checker, or unknown with the reason. All solver queries
    together stop after `budget_s` seconds (each one after `timeout_s`)."""
    token = _DEADLINE.set(time.perf_counter() + budget_s)
    try:
        return _prove(pattern, timeout_s, bound, budget_s)
    finally:
        _DEADLINE.reset(token)


def _prove(pattern: ir.Pattern, timeout_s: float, bound: int, budget_s: float) -> ProofOutcome:
    start = time.perf_counter()

    def done(status: ProofStatus, scope: str | None, witness: Witness | None, reason: str | None, results: list[CheckResult]) -> ProofOutcome:
        if status == "unknown" and time.perf_counter() >= _DEADLINE.get():
            reason = f"the prover's time budget ({budget_s:g} s for all queries) was spent; {reason}"
        return ProofOutcome(status, scope, witness, reason, time.perf_counter() - start, tuple(results))

    # a require undefined at some length raises its located error here (domain.py)
    rstatus, rreason = check_requires(pattern, timeout_s, _emit_requires)
    derived = [part.name for _, part in pattern.partitions if part.select is None]
    if derived:
        return done("unknown", None, None, f"derived selection ({', '.join(derived)}): proofs need a written select", [])
    results: list[CheckResult] = []
    for plan in pattern.plans:
        for check in CHECKS:
            res = _check(pattern, plan, check, timeout_s, bound)
            results.append(res)
            if res.status == "violated":
                return done("refuted", None, res.witness, None, results)
    if rstatus != "defined":
        return done("unknown", None, None, rreason, results)
    dstatus, dreason = _definedness(pattern, timeout_s, None)
    dscope = "all L"
    if dstatus == "unknown" and dreason is None:
        dstatus, dreason = _definedness(pattern, timeout_s, bound)
        dscope = f"L <= {bound}"
    if dstatus != "unsat":
        return done("unknown", None, None, dreason or "could not establish that every expression is defined", results)
    unknown = [r for r in results if r.status == "unknown"]
    if unknown:
        return done("unknown", None, None, "; ".join(r.note or f"{r.check} unknown" for r in unknown), results)
    scopes = {r.scope for r in results} | {dscope}
    if scopes == {"all L"}:
        return done("proved", "all L", None, None, results)
    return done("proved", f"L <= {bound}", None, "; ".join(r.note for r in results if r.note) or "the unbounded query timed out", results)
