"""The structural analysis of a spec, found symbolically on the IR once and read by every stage
(the planner through code generation, the prover, the cost model).

- Features: the largest integer subexpressions that depend on the query i (or key j) alone, such as
  `i // s` or `i % w`. The plan builder computes them exactly and bounds them per tile, which is
  much tighter than interval arithmetic on i itself.
- Identity features: features that decide *which* key or unit a query meets (an `==` against a
  binder or the other side, or an at(...) position). Sorting queries by them puts queries that
  share keys or units into the same tiles (the column-major order of the axial patterns).
- Solved binders: a conjunct `r == f(j, ...)` of `member` (or `r == f(i, ...)` of `select`) gives r
  outright, so regions and selections are enumerated over the remaining binders only.
- Direct groups: the disjuncts of `direct` (over every plan of a joint mixture, each key once),
  grouped by the tile order that suits them.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import ast, ir
from .astutil import children, conj, conjuncts, disj, disjuncts, names
from .runtime.spec import Feature as _Feature
from .runtime.spec import SoftmaxSpec
from .runtime.spec import Solved as _Solved

# The runtime's declarations, holding expressions of the IR instead of rendered functions
Feature = _Feature[ast.Expr]
Solved = _Solved[ast.Expr]



@dataclass(frozen=True)
class DirectGroup:
    """Keys attended directly in one tile order: allowed and in this group and in no earlier group."""

    pred: ast.Expr
    disjuncts: tuple[ast.Expr, ...]  # for comments
    query_order: tuple[str, ...]  # feature keys sorting the queries (empty: natural order)
    key_order: tuple[str, ...]


@dataclass(frozen=True)
class PartitionModel:
    partition: ir.Partition
    member: Solved
    select: Solved | None  # None: derived selection
    order: tuple[str, ...]  # feature keys sorting the queries of the unit pass
    free: ast.Expr | None = None  # derived selection: the keys a region must lie in (allowed, not direct in its plan)


SoftmaxModel = SoftmaxSpec[DirectGroup, PartitionModel]


@dataclass(frozen=True)
class PatternModel:
    pattern: ir.Pattern
    features: tuple[Feature, ...]
    softmaxes: tuple[SoftmaxModel, ...]  # one, or one per plan for `mix: average`

    def subst(self) -> dict[ast.Expr, str]:
        return {f.expr: f.key for f in self.features}


# ---------------------------------------------------------------- features


def _is_int_operation(e: ast.Expr) -> bool:
    """An integer-valued node that computes something (not a bare name or literal)."""
    return isinstance(e, ast.Binary | ast.Call) or (isinstance(e, ast.Unary) and e.op == "neg")


def features_of(e: ast.Expr, var: str, outer: frozenset[str]) -> list[ast.Expr]:
    """Largest integer subexpressions using `var` and otherwise only `outer` names (L, lets)."""
    found: list[ast.Expr] = []

    def visit(x: ast.Expr) -> None:
        used = names(x)
        if _is_int_operation(x) and var in used and used <= outer | {var}:
            if x not in found:
                found.append(x)
            return
        for c in children(x):
            visit(c)

    visit(e)
    return found


# ---------------------------------------------------------------- analysis


class _Features:
    def __init__(self) -> None:
        self.table: list[Feature] = []

    def add(self, expr: ast.Expr, side: str) -> str:
        for f in self.table:
            if f.expr == expr and f.side == side:
                return f.key
        k = f"@{side}{sum(1 for f in self.table if f.side == side)}"
        self.table.append(Feature(k, side, expr))
        return k


def solve(pred: ast.Expr, binders: tuple[ir.Binder, ...]) -> Solved:
    """Split `pred` into binders given by an equation `b == f(...)` among its conjuncts and the rest.

    The one binder solver: a solved binder is computed, not enumerated (the planner, the cost model),
    and its quantifier is eliminated (the prover: when `pred` holds, b == f is its only value).
    """
    declared: list[str] = [b.name for b in binders]
    atoms = conjuncts(pred)
    candidates: dict[str, tuple[int, ast.Expr]] = {}
    for k, atom in enumerate(atoms):
        if isinstance(atom, ast.Compare) and atom.ops == ("==",):
            a, b = atom.operands
            for lhs, rhs in ((a, b), (b, a)):
                if isinstance(lhs, ast.Name) and lhs.id in declared and lhs.id not in names(rhs) and lhs.id not in candidates:
                    candidates[lhs.id] = (k, rhs)
                    break
    bounds_names = {b.name: names(b.lo) | names(b.hi) for b in binders}
    chosen = dict(candidates)
    while True:  # free binders are enumerated first, so their ranges may not need a solved binder
        free = [n for n in declared if n not in chosen]
        clash = {n for f in free for n in bounds_names[f] if n in chosen}
        if not clash:
            break
        for n in clash:
            del chosen[n]
    order: list[str] = []
    remaining = [n for n in declared if n in chosen]
    while remaining:
        ready = [n for n in remaining if not (names(chosen[n][1]) & set(remaining) - {n})]
        if not ready:  # a cycle: enumerate one of them instead
            del chosen[remaining[-1]]
            remaining.pop()
            continue
        order.append(ready[0])
        remaining.remove(ready[0])
    used = {chosen[n][0] for n in order}
    residual = conj([a for k, a in enumerate(atoms) if k not in used])
    return Solved(tuple(n for n in declared if n not in order), tuple((n, chosen[n][1]) for n in order), residual)


def _identity_features(atoms: tuple[ast.Expr, ...], var: str, outer: frozenset[str], binders: frozenset[str], other: str | None) -> list[ast.Expr]:
    """Features in `==` conjuncts that tie `var` to a binder or to the other position."""
    out: list[ast.Expr] = []
    for atom in atoms:
        if not (isinstance(atom, ast.Compare) and atom.ops == ("==",)):
            continue
        used = names(atom)
        if var in used and (used & binders or (other is not None and other in used)):
            out.extend(f for f in features_of(atom, var, outer) if f not in out)
    return out


def analyze(pattern: ir.Pattern) -> PatternModel:
    outer = frozenset({"L", *(let.name for let in pattern.lets)})
    feats = _Features()
    allowed = ast.Compare(("<=",), (ast.Name("j"), ast.Name("i"))) if pattern.causal else ast.BoolLit(True)

    def partition_model(part: ir.Partition, plan: ir.PlanDef) -> PartitionModel:
        member = solve(part.member, part.binders)
        select = solve(part.select, part.binders) if part.select is not None else None
        exprs: list[ast.Expr] = []
        if select is not None:
            exprs += [select.residual, *(x for _, x in select.solved)]
        exprs += [s.position for s in (part.query, part.key) if s.position is not None]
        for x in exprs:
            for f in features_of(x, "i", outer):
                feats.add(f, "i")
        ident: list[ast.Expr] = []
        if select is not None:
            ident = _identity_features(conjuncts(part.select), "i", outer, frozenset(part.binder_names), None)  # type: ignore[arg-type]
        for s in (part.query, part.key):
            if s.position is not None:
                ident += [f for f in features_of(s.position, "i", outer) if f not in ident]
        free = None
        if select is None:
            free = conj([allowed, ast.Unary("not", plan.direct)])
            for side in ("i", "j"):
                for f in features_of(free, side, outer):
                    feats.add(f, side)
        return PartitionModel(part, member, select, tuple(feats.add(f, "i") for f in ident), free)

    def direct_groups(directs: list[ast.Expr]) -> tuple[DirectGroup, ...]:
        parts: list[ast.Expr] = []
        for d in directs:
            for x in disjuncts(d):
                if not (isinstance(x, ast.BoolLit) and not x.value) and x not in parts:
                    parts.append(x)
        groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[ast.Expr]] = {}
        for x in parts:
            atoms = conjuncts(x)
            q = tuple(feats.add(f, "i") for f in _identity_features(atoms, "i", outer, frozenset(), "j"))
            k = tuple(feats.add(f, "j") for f in _identity_features(atoms, "j", outer, frozenset(), "i"))
            groups.setdefault((q, k), []).append(x)
        out: list[DirectGroup] = []
        earlier: list[ast.Expr] = []
        for (q, k), xs in groups.items():
            pred = conj([allowed, disj(xs), *([ast.Unary("not", disj(earlier))] if earlier else [])])
            for side in ("i", "j"):
                for f in features_of(pred, side, outer):
                    feats.add(f, side)
            out.append(DirectGroup(pred, tuple(xs), q, k))
            earlier += xs
        return tuple(out)

    def softmax(plans: tuple[ir.PlanDef, ...]) -> SoftmaxModel:
        return SoftmaxModel(direct_groups([p.direct for p in plans]), tuple(partition_model(part, p) for p in plans for part in p.partitions))

    if pattern.mix == "average":
        softmaxes = tuple(softmax((p,)) for p in pattern.plans)
    else:
        softmaxes = (softmax(pattern.plans),)
    return PatternModel(pattern, tuple(feats.table), softmaxes)
