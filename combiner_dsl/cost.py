"""The cost model of contract.md: exact pair counts at one L, and the asymptotic order.

Counting never walks (i, j) pairs one by one and never builds an L x L grid: the spaces below
are handed to `boxcount`, which classifies boxes all-true / all-false / mixed with the interval
domain and counts true points whole or at small leaves. Binders fixed by an equality in `member` /
`select` (`r == i // 2 ** l - 1`) are substituted, not enumerated, so logsparse's 2L regions are
never visited per query box. `order` measures totals at a few lengths against the growth laws
`growth` reads off the spec's structure.

Mixtures. `joint`: one softmax, so D_i is the union of the plans' direct sets (each key once)
plus every plan's units. `average`: each plan is its own softmax; figures are summed over plans
and `logits_max` is the widest row of any one plan. Units: a pooled unit is a selected non-empty
region; an at() unit is (region, query position, key position), so `summary_pairs` counts each
distinct triple once, times the region's size.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sympy
import torch

from . import ast, ir
from .boxcount import BoxJob, PerValueCounts, Regions, enumerate_regions, refine_boxes
from .errors import LengthError
from .evaluate import accepts, evaluate, failed_require, let_values
from .growth import Lsym, accepted_length_near, candidate_orders
from .limits import MAX_COST_L
from .runtime.intervals import Tri
from .runtime.ops import Exact
from .smt import conjuncts, names, solve_binders

CHUNK = 1 << 22  # points per batch when unit pairs are enumerated (at() summaries)


@dataclass(frozen=True, slots=True)
class CostFigures:
    L: int
    d: int
    direct_pairs: int
    region_pairs: int
    summary_pairs: int
    logits_max: int
    flops: int
    dense_pairs: int
    ratio: float

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        if out["ratio"] == float("inf"):
            out["ratio"] = None  # no pairs at all: JSON has no infinity
        return out


# ---------------------------------------------------------------- the figures


def _residual(pattern: ir.Pattern, cond: ast.Expr, solved: dict[str, ast.Expr], L: int) -> Callable[[dict[str, Any], Any], Any]:
    """`cond` without the equalities that solved binders (true by substitution, and loose on boxes)."""
    rest = []
    for c in conjuncts(cond):
        if isinstance(c, ast.Compare) and c.ops == ("==",):
            a, b = c.operands
            if (isinstance(a, ast.Name) and solved.get(a.id) == b) or (isinstance(b, ast.Name) and solved.get(b.id) == a):
                continue
        rest.append(c)
    return lambda e, dom: dom.and_(True, *[evaluate(pattern, c, e, L, dom) for c in rest])


def _span(part: ir.Partition, regions: Regions, free: list[str]) -> tuple[tuple[str, int, int], ...]:
    cols = regions.cols
    return tuple((b, int(cols[:, part.binder_names.index(b)].min()), int(cols[:, part.binder_names.index(b)].max())) for b in free) if len(cols) else ()


def _disjuncts(e: ast.Expr) -> list[ast.Expr]:
    if isinstance(e, ast.BoolOp) and e.op == "or":
        return [d for x in e.operands for d in _disjuncts(x)]
    return [e]


def _key_form(pattern: ir.Pattern, L: int, env: dict[str, Any], cond: ast.Expr) -> tuple[ast.Expr, ast.Expr, list[ast.Expr]] | None:
    """A conjunct fixing the key: `j == e` gives j = e; `j % m == e` (m > 0 a constant) gives
    j = m * t + e over a new dimension t. Returns (j as an expression, guard, other conjuncts)."""
    parts = conjuncts(cond)
    for k, c in enumerate(parts):
        if not (isinstance(c, ast.Compare) and c.ops == ("==",)):
            continue
        for a, e in (c.operands, c.operands[::-1]):
            if "j" in names(e):
                continue
            rest = parts[:k] + parts[k + 1 :]
            if a == ast.Name("j"):
                return e, ast.BoolLit(True), rest
            if isinstance(a, ast.Binary) and a.op == "%" and a.left == ast.Name("j") and not names(a.right) - {"L", *env}:
                m = a.right
                if evaluate(pattern, m, env, L) > 0:
                    guard = ast.Compare(("<=", "<"), (ast.IntLit(0), e, m))
                    return ast.Binary("+", ast.Binary("*", m, ast.Name("@t")), e), guard, rest
    return None


def _count_term(pattern: ir.Pattern, L: int, env: dict[str, Any], cond: ast.Expr) -> torch.Tensor:
    """|{j in Γ_i : cond}| per query i."""
    acc = PerValueCounts(L)
    form = _key_form(pattern, L, env, cond)
    if form is not None:  # one key per (i, t): count the (i, t) that land in Γ_i
        key, guard, rest = form
        dims = (("i", 0, L - 1),) + ((("@t", 0, L - 1),) if "@t" in names(key) else ())

        def keyed(e: dict[str, Any], dom: Any) -> Any:
            inside = [dom.le(0, e["j"]), dom.lt(e["j"], dom.add(e["i"], 1) if pattern.causal else L)]
            return dom.and_(*inside, *[evaluate(pattern, c, e, L, dom) for c in (guard, *rest)])

        job = BoxJob(pattern, L, env, dims, keyed, {"j": key})
        width = (lambda bx: bx["@t"][1] - bx["@t"][0] + 1) if len(dims) > 1 else (lambda bx: torch.ones(1, dtype=torch.int64))
        refine_boxes(job, lambda bx, a, b: acc.ranges(bx["i"][0], bx["i"][1], width(bx)), lambda pts, r, _: acc.points(pts["i"]))
        return acc.values()

    def pred(e: dict[str, Any], dom: Any) -> Any:
        d = evaluate(pattern, cond, e, L, dom)
        if not pattern.causal:
            return d
        if dom is Exact:
            return dom.and_(dom.le(e["j"], e["i"]), d)
        t = Tri.of(d)  # boxes wholly above the diagonal are empty; the rest is counted in closed form
        return Tri(t.can_true & (e["j"].lo <= e["i"].hi), t.can_false)

    def box(bx: dict[str, torch.Tensor], a: Any, b: Any) -> None:
        (i0, i1), (j0, j1) = bx["i"], bx["j"]
        if not pattern.causal:
            acc.ranges(i0, i1, j1 - j0 + 1)
            return
        acc.ranges(torch.maximum(i0, j0), torch.minimum(i1, j1), 1 - j0, torch.ones_like(j0))  # i - j0 + 1
        acc.ranges(torch.maximum(i0, j1 + 1), i1, j1 - j0 + 1)

    refine_boxes(BoxJob(pattern, L, env, (("i", 0, L - 1), ("j", 0, L - 1)), pred, {}), box, lambda pts, r, _: acc.points(pts["i"]))
    return acc.values()


def _direct_counts(pattern: ir.Pattern, L: int, env: dict[str, Any], plans: tuple[ir.Plan, ...]) -> torch.Tensor:
    """|D_i| per query; several plans give the union of their direct sets.

    A disjunction with a term that fixes the key (`j % w == i % w`) is counted by
    inclusion-exclusion, each term on its own dimensions. Causal Γ (j <= i) is not refined on:
    a box true for `direct` is counted in closed form (row i holds min(i, j1) - j0 + 1 keys).
    """
    terms = [t for p in plans for t in _disjuncts(p.direct)]
    if not 1 < len(terms) <= 4 or not any(_key_form(pattern, L, env, t) for t in terms):
        return _count_term(pattern, L, env, ast.BoolOp("or", tuple(terms)) if len(terms) > 1 else terms[0])
    total = torch.zeros(L, dtype=torch.int64)
    for k in range(1, len(terms) + 1):
        for subset in itertools.combinations(terms, k):
            total += (-1) ** (k + 1) * _count_term(pattern, L, env, ast.BoolOp("and", subset) if k > 1 else subset[0])
    return total


def _in_range(pattern: ir.Pattern, part: ir.Partition, e: dict[str, Any], L: int, dom: Any) -> Any:
    return dom.and_(
        *[dom.and_(dom.le(evaluate(pattern, b.lo, e, L, dom), e[b.name]), dom.lt(e[b.name], evaluate(pattern, b.hi, e, L, dom))) for b in part.binders]
    )


def _partition(pattern: ir.Pattern, L: int, env: dict[str, Any], part: ir.Partition) -> tuple[torch.Tensor, int]:
    """(units per query, summary pairs) of one partition with a written `select`."""
    assert part.select is not None
    select = part.select
    regions = enumerate_regions(pattern, part, env, L)
    R = regions.cols.shape[0]
    if R == 0:
        return torch.zeros(L, dtype=torch.int64), 0
    # region sizes, from the keys: binders fixed by `member` are computed from j
    solved = solve_binders([part.member], part.binder_names)
    free = [b for b in part.binder_names if b not in solved]
    sizes = PerValueCounts(R)
    member = _residual(pattern, part.member, solved, L)
    job = BoxJob(
        pattern,
        L,
        env,
        (("j", 0, L - 1), *_span(part, regions, free)),
        lambda e, dom: dom.and_(_in_range(pattern, part, e, L, dom), member(e, dom)),
        solved,
        part,
        regions,
    )
    refine_boxes(job, lambda box, a, b: sizes.ranges(a, b, box["j"][1] - box["j"][0] + 1), lambda pts, r, _: sizes.points(r))
    size = sizes.values()
    nonempty = size > 0
    cum = torch.nn.functional.pad(torch.cumsum(nonempty.long(), 0), (1, 0))
    # selection, from the queries: binders fixed by `select` are computed from i
    solved = solve_binders([select], part.binder_names)
    free = [b for b in part.binder_names if b not in solved]
    chosen_by = _residual(pattern, select, solved, L)
    job = BoxJob(
        pattern,
        L,
        env,
        (("i", 0, L - 1), *_span(part, regions, free)),
        lambda e, dom: dom.and_(_in_range(pattern, part, e, L, dom), chosen_by(e, dom)),
        solved,
        part,
        regions,
    )
    per_i, chosen = PerValueCounts(L), PerValueCounts(R)
    if not part.has_at:

        def box(bx: dict[str, torch.Tensor], a: torch.Tensor | None, b: torch.Tensor | None) -> None:
            assert a is not None and b is not None
            per_i.ranges(bx["i"][0], bx["i"][1], cum[b + 1] - cum[a])
            chosen.ranges(a, b, bx["i"][1] - bx["i"][0] + 1)

        def points(pts: dict[str, torch.Tensor], r: torch.Tensor | None, _: Any) -> None:
            assert r is not None
            per_i.points(pts["i"][nonempty[r]])
            chosen.points(r[nonempty[r]])

        refine_boxes(job, box, points)
        return per_i.values(), int(size[(chosen.values() > 0) & nonempty].sum())
    units: list[torch.Tensor] = []

    def at_points(pts: dict[str, torch.Tensor], r: torch.Tensor | None, _: Any) -> None:
        assert r is not None
        i, r = pts["i"][nonempty[r]], r[nonempty[r]]
        per_i.points(i)
        scope = {**env, "i": i, **{n: regions.cols[r, k] for k, n in enumerate(part.binder_names)}}
        pos = [
            torch.as_tensor(evaluate(pattern, s.position, scope, L), dtype=torch.int64).expand(len(i)) if s.position is not None else torch.full_like(i, -1)
            for s in (part.query, part.key)
        ]
        units.append(_unique_rows(torch.stack([r, *pos], 1)))
        if sum(len(u) for u in units) > CHUNK:
            units[:] = [_unique_rows(torch.cat(units))]

    def at_box(bx: dict[str, torch.Tensor], a: torch.Tensor | None, b: torch.Tensor | None) -> None:
        assert a is not None and b is not None
        wr = b - a + 1
        n = (bx["i"][1] - bx["i"][0] + 1) * wr
        end = torch.cumsum(n, 0)
        for p0 in range(0, int(end[-1]), CHUNK):  # every (i, region) pair of the boxes, CHUNK at a time
            p = torch.arange(p0, min(p0 + CHUNK, int(end[-1])))
            box = torch.searchsorted(end, p, right=True)
            k = p - (end - n)[box]
            at_points({"i": bx["i"][0][box] + k // wr[box]}, a[box] + k % wr[box], None)

    refine_boxes(job, at_box, at_points)
    distinct = _unique_rows(torch.cat(units)) if units else torch.zeros(0, 3, dtype=torch.int64)
    return per_i.values(), int(size[distinct[:, 0]].sum())


def _unique_rows(rows: torch.Tensor) -> torch.Tensor:
    """Distinct rows of an int64 [n, 3] tensor (one packed key per row when it fits: much faster)."""
    if len(rows) == 0:
        return rows
    lo = rows.min(0).values
    span = [int(x) for x in rows.max(0).values - lo + 1]
    if span[0] * span[1] * span[2] >= 1 << 62:
        return torch.unique(rows, dim=0)
    x = rows - lo
    key = torch.unique((x[:, 0] * span[1] + x[:, 1]) * span[2] + x[:, 2])
    return torch.stack([key // (span[1] * span[2]), key // span[2] % span[1], key % span[2]], 1) + lo


def _dense_pairs(pattern: ir.Pattern, L: int) -> int:
    return L * (L + 1) // 2 if pattern.causal else L * L


@contextmanager
def _one_thread() -> Iterator[None]:
    """Counting runs many small tensor ops, where intra-op threads only add overhead (6x on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cost_at(pattern: ir.Pattern, L: int, d: int = 64) -> CostFigures:
    """Exact figures at length L (contract.md), for head dimension d."""
    with _one_thread():
        return _cost_at(pattern, L, d)


def _cost_at(pattern: ir.Pattern, L: int, d: int) -> CostFigures:
    if L > MAX_COST_L:
        raise LengthError(f"L = {L}: the cost model counts lengths up to {MAX_COST_L}")
    bad = failed_require(pattern, L)
    if bad is not None or not accepts(pattern, L):
        raise LengthError(f"L = {L} is rejected by the spec's requires")
    if any(part.select is None for _, part in pattern.partitions):
        return cost_from_layout(pattern, L, d)
    env: dict[str, Any] = dict(let_values(pattern, L))
    rows: list[torch.Tensor] = []  # per softmax: logits per query
    direct_total = region_total = summary_total = 0
    groups = [pattern.plans] if pattern.mix == "joint" else [(p,) for p in pattern.plans]
    for plans in groups:
        direct = _direct_counts(pattern, L, env, plans)
        units = torch.zeros(L, dtype=torch.int64)
        for plan in plans:
            for part in plan.partitions:
                per_i, summary = _partition(pattern, L, env, part)
                units += per_i
                summary_total += summary
        direct_total += int(direct.sum())
        region_total += int(units.sum())
        rows.append(direct + units)
    return _figures(pattern, L, d, direct_total, region_total, summary_total, max(int(r.max()) for r in rows) if L else 0)


def _figures(pattern: ir.Pattern, L: int, d: int, direct: int, region: int, summary: int, widest: int) -> CostFigures:
    total = direct + region + summary
    dense = _dense_pairs(pattern, L)
    return CostFigures(L, d, direct, region, summary, widest, 4 * d * total, dense, dense / total if total else float("inf"))


def cost_from_layout(pattern: ir.Pattern, L: int, d: int = 64) -> CostFigures:
    """The figures counted on the dense layout (O(L^2)): derived selection needs every region's
    contents, and the tests use it as the independent count the box counting must equal."""
    from .layout import build_layout

    lay = build_layout(pattern, L)
    groups = [lay.plans] if pattern.mix == "joint" else [(p,) for p in lay.plans]
    direct = region = summary = widest = 0
    for plans in groups:
        row = torch.stack([p.direct for p in plans]).any(0).sum(1)
        direct += int(row.sum())
        for pl in plans:
            for rs in pl.regions:
                row = row + rs.select.sum(1)
                region += int(rs.select.sum())
                i, r = rs.select.nonzero(as_tuple=True)
                at = [x[i, r] if x is not None else torch.full_like(i, -1) for x in (rs.query_at, rs.key_at)]
                units = torch.unique(torch.stack([r, *at], 1), dim=0)  # a unit: (region, query at, key at)
                summary += int(rs.member[units[:, 0]].sum())
        widest = max(widest, int(row.max()))
    return _figures(pattern, L, d, direct, region, summary, widest)


# ---------------------------------------------------------------- the order


def order(pattern: ir.Pattern, lengths: tuple[int, ...] = (1 << 8, 1 << 10, 1 << 12)) -> sympy.Expr:
    """Growth of the total pairs: the structural candidate whose ratio to the exact counts is
    flattest over `lengths` (log-log slope closest to 0)."""
    Ls = [accepted_length_near(pattern, n) for n in lengths]
    totals = []
    for L in Ls:
        f = cost_at(pattern, L)
        totals.append(f.direct_pairs + f.region_pairs + f.summary_pairs)
    if not any(totals):  # nothing is attended at all (say `direct: false` and no partition)
        return sympy.Integer(0)
    totals = [max(1, t) for t in totals]  # a log of zero has no slope

    def slope(c: sympy.Expr) -> float:
        r = [float(sympy.log(t / c.subs(Lsym, L))) for t, L in zip(totals, Ls, strict=True)]
        x = [float(sympy.log(L)) for L in Ls]
        return abs((r[-1] - r[0]) / (x[-1] - x[0]))

    return min(candidate_orders(pattern), key=slope)
