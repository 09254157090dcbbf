"""The cost model of contract.md: exact pair counts at one L, and the asymptotic order.

Counting never walks (i, j) pairs one by one and never builds an L x L grid: boxes of
(i, j, binders) are classified all-true / all-false / mixed with the interval domain (`Bounds`);
all-true boxes are counted whole, mixed ones are split, and small ones are evaluated exactly.
Binders fixed by an equality in `member` / `select` (`r == i // 2 ** l - 1`) are substituted,
not enumerated, so logsparse's 2L regions are never visited per query box.

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
from .errors import CombinerError, LengthError
from .evaluate import accepts, evaluate, failed_require, let_values
from .runtime.intervals import Bounds, Interval, Tri
from .runtime.ops import Exact
from .smt import conjuncts, names, solve_binders

LEAF = 16  # boxes with at most this many points are evaluated point by point
MAX_REGIONS = 1 << 26
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


@dataclass(frozen=True)
class _Regions:
    """A partition's binder tuples at one L in lexicographic order, grouped by prefix (all binders
    but the last), so that a prefix plus a range of the last binder is one contiguous run."""

    cols: torch.Tensor  # [R, d]
    prefix_keys: torch.Tensor  # [P] sorted mixed-radix keys of the prefixes
    offset: torch.Tensor  # [P] flat index of each prefix's first region
    last_lo: torch.Tensor  # [P]
    radix: tuple[tuple[int, int], ...]  # (min, span) of each prefix binder

    def index(self, values: list[torch.Tensor]) -> torch.Tensor:
        """Flat index of regions given each binder's value (tuples known to exist)."""
        if not self.radix:
            return self.offset[0] + values[-1] - self.last_lo[0]
        key = torch.zeros_like(values[-1])
        for v, (lo, span) in zip(values[:-1], self.radix, strict=True):
            key = key * span + (v - lo)
        pid = torch.searchsorted(self.prefix_keys, key).clamp(max=len(self.prefix_keys) - 1)
        return self.offset[pid] + values[-1] - self.last_lo[pid]


def _regions(pattern: ir.Pattern, part: ir.Partition, env: dict[str, Any], L: int) -> _Regions:
    cols = torch.zeros((1, 0), dtype=torch.int64)
    prefix, last_lo, counts = cols, torch.zeros(1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64)
    for k, b in enumerate(part.binders):
        scope = {**env, **{n: cols[:, m] for m, n in enumerate(part.binder_names[:k])}}
        n = cols.shape[0]
        lo = torch.as_tensor(evaluate(pattern, b.lo, scope, L), dtype=torch.int64).expand(n)
        hi = torch.as_tensor(evaluate(pattern, b.hi, scope, L), dtype=torch.int64).expand(n)
        cnt = (hi - lo).clamp(min=0)
        if int(cnt.sum()) > MAX_REGIONS:
            raise CombinerError(f"partition `{part.name}` has more than {MAX_REGIONS} regions at L = {L}")
        prefix, last_lo, counts = cols, lo, cnt
        rep = torch.repeat_interleave(torch.arange(n), cnt)
        within = torch.arange(len(rep)) - torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt)
        cols = torch.cat([cols[rep], (lo[rep] + within)[:, None]], 1)
    radix = tuple((int(prefix[:, m].min()), int(prefix[:, m].max() - prefix[:, m].min() + 1)) if len(prefix) else (0, 1) for m in range(prefix.shape[1]))
    key = torch.zeros(len(prefix), dtype=torch.int64)
    for m, (lo, span) in enumerate(radix):
        key = key * span + (prefix[:, m] - lo)
    return _Regions(cols, key, torch.cumsum(counts, 0) - counts, last_lo, radix)


# ---------------------------------------------------------------- box refinement


@dataclass(frozen=True)
class _Job:
    """Count the points of a box space where `pred` holds.

    dims: box dimensions (i, j, free binders) with inclusive global ranges; solved: binders given
    as expressions of the dims; regions: when set, only boxes whose points all fall in one run of
    regions are reported (so per-region figures can be accumulated).
    """

    pattern: ir.Pattern
    L: int
    env: dict[str, Any]
    dims: tuple[tuple[str, int, int], ...]
    pred: Callable[[dict[str, Any], Any], Any]
    solved: dict[str, ast.Expr]
    part: ir.Partition | None = None
    regions: _Regions | None = None

    def full_env(self, values: dict[str, Any], dom: Any) -> dict[str, Any]:
        env = {**self.env, **values}
        todo = dict(self.solved)
        while todo:
            for b in [b for b, e in todo.items() if not (names(e) & set(todo))]:
                env[b] = evaluate(self.pattern, todo.pop(b), env, self.L, dom)
        return env


Visit = Callable[[dict[str, torch.Tensor], torch.Tensor | None, torch.Tensor | None], None]


def _refine(job: _Job, on_box: Visit, on_points: Visit) -> None:
    """Drive the refinement; `on_box(lo/hi per dim, run start, run end)` gets all-true boxes,
    `on_points(coords, region index, None)` the true points of boxes evaluated exactly."""
    names_ = [d[0] for d in job.dims]
    lo = torch.tensor([[d[1] for d in job.dims]], dtype=torch.int64)
    hi = torch.tensor([[d[2] for d in job.dims]], dtype=torch.int64)
    keep = (hi >= lo).all(1)
    lo, hi = lo[keep], hi[keep]
    binders = job.part.binder_names if job.part else ()
    prefix_dims = [k for k, n in enumerate(names_) if n in binders[:-1]]
    last_dim = names_.index(binders[-1]) if binders and binders[-1] in names_ else -1
    while lo.shape[0]:
        env = job.full_env({n: Interval(lo[:, k], hi[:, k]) for k, n in enumerate(names_)}, Bounds)
        tri = Tri.of(job.pred(env, Bounds))
        can_t, can_f = tri.can_true.expand(lo.shape[0]), tri.can_false.expand(lo.shape[0])
        width = hi - lo + 1
        vol = width.prod(1)
        whole = ~can_f
        if job.regions is not None:
            vals = [Interval.of(env[b]) for b in binders]
            for v in vals[:-1] if last_dim >= 0 else vals:
                whole &= (v.lo == v.hi).expand(lo.shape[0])
        if bool(whole.any()):
            run = (None, None)
            if job.regions is not None:
                run = tuple(job.regions.index([getattr(v, end).expand(lo.shape[0])[whole] for v in vals]) for end in ("lo", "hi"))  # type: ignore[assignment]
            on_box({n: torch.stack([lo[whole, k], hi[whole, k]]) for k, n in enumerate(names_)}, *run)
        live = can_t & ~whole
        leaf = live & (vol <= LEAF)
        if bool(leaf.any()):
            _exact(job, names_, lo[leaf], hi[leaf], ~can_f[leaf], on_points)
        split = live & ~leaf
        lo, hi, width, all_true = lo[split], hi[split], width[split], ~can_f[split]
        score = width.clone()
        if prefix_dims:  # prefix binders must become single values: split them first
            score[:, prefix_dims] *= 1 << 40
        if last_dim >= 0:  # an all-true box needs single values elsewhere: the last binder may stay a range
            others = width.clone()
            others[:, last_dim] = 1
            score[all_true & (others.max(1).values > 1), last_dim] = 0
        score[width <= 1] = 0
        axis = score.argmax(1)
        rows = torch.arange(lo.shape[0])
        mid = lo[rows, axis] + (width[rows, axis] - 1) // 2
        lo2, hi1 = lo.clone(), hi.clone()
        hi1[rows, axis] = mid
        lo2[rows, axis] = mid + 1
        lo, hi = torch.cat([lo, lo2]), torch.cat([hi1, hi])


def _exact(job: _Job, names_: list[str], lo: torch.Tensor, hi: torch.Tensor, known: torch.Tensor, on_points: Visit) -> None:
    """Every point of small boxes; `known` boxes are already all-true (only their regions are missing)."""
    width = hi - lo + 1
    vol = width.prod(1)
    box = torch.repeat_interleave(torch.arange(len(vol)), vol)
    k = torch.arange(len(box)) - (torch.cumsum(vol, 0) - vol)[box]
    coords: dict[str, torch.Tensor] = {}
    for d in reversed(range(len(names_))):
        w = width[box, d]
        coords[names_[d]] = lo[box, d] + k % w
        k = k // w
    env = job.full_env(coords, Exact)
    ok = known[box]
    if not bool(ok.all()):
        ok = ok | torch.as_tensor(job.pred(env, Exact), dtype=torch.bool).expand(len(box))
    pts = {n: v[ok] for n, v in coords.items()}
    region = None
    if job.regions is not None and job.part is not None:
        region = job.regions.index([torch.as_tensor(env[b]).expand(len(ok))[ok] for b in job.part.binder_names])
    on_points(pts, region, None)


# ---------------------------------------------------------------- the figures


class _Acc:
    """Per-value counts over [0, n): ranges of constant or linear weight (difference arrays)."""

    def __init__(self, n: int) -> None:
        self.const = torch.zeros(n + 1, dtype=torch.int64)
        self.slope = torch.zeros(n + 1, dtype=torch.int64)
        self.hits = torch.zeros(n, dtype=torch.int64)
        self.n = n

    def ranges(self, a: torch.Tensor, b: torch.Tensor, w: torch.Tensor, slope: torch.Tensor | None = None) -> None:
        """Add w (+ slope * x) to every x in [a, b]; empty ranges are skipped."""
        ok = a <= b
        a, b, w = a[ok], b[ok], w.expand(ok.shape)[ok]
        self.const.index_add_(0, a, w)
        self.const.index_add_(0, b + 1, -w)
        if slope is not None:
            sl = slope.expand(ok.shape)[ok]
            self.slope.index_add_(0, a, sl)
            self.slope.index_add_(0, b + 1, -sl)

    def points(self, at: torch.Tensor) -> None:
        self.hits += torch.bincount(at, minlength=self.n)

    def values(self) -> torch.Tensor:
        x = torch.arange(self.n)
        return torch.cumsum(self.const, 0)[: self.n] + torch.cumsum(self.slope, 0)[: self.n] * x + self.hits


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


def _span(part: ir.Partition, regions: _Regions, free: list[str]) -> tuple[tuple[str, int, int], ...]:
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
    acc = _Acc(L)
    form = _key_form(pattern, L, env, cond)
    if form is not None:  # one key per (i, t): count the (i, t) that land in Γ_i
        key, guard, rest = form
        dims = (("i", 0, L - 1),) + ((("@t", 0, L - 1),) if "@t" in names(key) else ())

        def keyed(e: dict[str, Any], dom: Any) -> Any:
            inside = [dom.le(0, e["j"]), dom.lt(e["j"], dom.add(e["i"], 1) if pattern.causal else L)]
            return dom.and_(*inside, *[evaluate(pattern, c, e, L, dom) for c in (guard, *rest)])

        job = _Job(pattern, L, env, dims, keyed, {"j": key})
        width = (lambda bx: bx["@t"][1] - bx["@t"][0] + 1) if len(dims) > 1 else (lambda bx: torch.ones(1, dtype=torch.int64))
        _refine(job, lambda bx, a, b: acc.ranges(bx["i"][0], bx["i"][1], width(bx)), lambda pts, r, _: acc.points(pts["i"]))
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

    _refine(_Job(pattern, L, env, (("i", 0, L - 1), ("j", 0, L - 1)), pred, {}), box, lambda pts, r, _: acc.points(pts["i"]))
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
    regions = _regions(pattern, part, env, L)
    R = regions.cols.shape[0]
    if R == 0:
        return torch.zeros(L, dtype=torch.int64), 0
    # region sizes, from the keys: binders fixed by `member` are computed from j
    solved = solve_binders([part.member], part.binder_names)
    free = [b for b in part.binder_names if b not in solved]
    sizes = _Acc(R)
    member = _residual(pattern, part.member, solved, L)
    job = _Job(
        pattern,
        L,
        env,
        (("j", 0, L - 1), *_span(part, regions, free)),
        lambda e, dom: dom.and_(_in_range(pattern, part, e, L, dom), member(e, dom)),
        solved,
        part,
        regions,
    )
    _refine(job, lambda box, a, b: sizes.ranges(a, b, box["j"][1] - box["j"][0] + 1), lambda pts, r, _: sizes.points(r))
    size = sizes.values()
    nonempty = size > 0
    cum = torch.nn.functional.pad(torch.cumsum(nonempty.long(), 0), (1, 0))
    # selection, from the queries: binders fixed by `select` are computed from i
    solved = solve_binders([select], part.binder_names)
    free = [b for b in part.binder_names if b not in solved]
    chosen_by = _residual(pattern, select, solved, L)
    job = _Job(
        pattern,
        L,
        env,
        (("i", 0, L - 1), *_span(part, regions, free)),
        lambda e, dom: dom.and_(_in_range(pattern, part, e, L, dom), chosen_by(e, dom)),
        solved,
        part,
        regions,
    )
    per_i, chosen = _Acc(L), _Acc(R)
    if not part.has_at:

        def box(bx: dict[str, torch.Tensor], a: torch.Tensor | None, b: torch.Tensor | None) -> None:
            assert a is not None and b is not None
            per_i.ranges(bx["i"][0], bx["i"][1], cum[b + 1] - cum[a])
            chosen.ranges(a, b, bx["i"][1] - bx["i"][0] + 1)

        def points(pts: dict[str, torch.Tensor], r: torch.Tensor | None, _: Any) -> None:
            assert r is not None
            per_i.points(pts["i"][nonempty[r]])
            chosen.points(r[nonempty[r]])

        _refine(job, box, points)
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

    _refine(job, at_box, at_points)
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
    bad = failed_require(pattern, L)
    if bad is not None or not accepts(pattern, L):
        raise LengthError(f"L = {L} is rejected by the spec's requires")
    if any(part.select is None for _, part in pattern.partitions):
        return _from_layout(pattern, L, d)
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


def _from_layout(pattern: ir.Pattern, L: int, d: int) -> CostFigures:
    """Figures from the dense layout (derived selection needs every region's contents)."""
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
                summary += int(rs.member[rs.select.any(0)].sum())
        widest = max(widest, int(row.max()))
    return _figures(pattern, L, d, direct, region, summary, widest)


# ---------------------------------------------------------------- the order

Lsym = sympy.Symbol("L", positive=True)


def _growth(e: ast.Expr, lets: dict[str, sympy.Expr]) -> sympy.Expr:
    """A sympy expression growing like `e` as L grows (floors dropped, logs in base 2)."""
    if isinstance(e, ast.IntLit):
        return sympy.Integer(e.value)
    if isinstance(e, ast.Name):
        return Lsym if e.id == "L" else lets.get(e.id, sympy.Integer(1))
    if isinstance(e, ast.Neg):
        return -_growth(e.operand, lets)
    if isinstance(e, ast.Binary):
        a, b = _growth(e.left, lets), _growth(e.right, lets)
        ops: dict[str, Callable[[sympy.Expr, sympy.Expr], sympy.Expr]] = {
            "+": sympy.Add,
            "-": lambda x, y: x - y,
            "*": sympy.Mul,
            "//": lambda x, y: x / y,
            "%": lambda x, y: y,
            "**": sympy.Pow,
        }
        return ops[e.op](a, b)
    if isinstance(e, ast.Call):
        args = [_growth(x, lets) for x in e.args]
        calls: dict[str, Callable[..., sympy.Expr]] = {
            "isqrt": sympy.sqrt,
            "ilog2": lambda x: sympy.log(x, 2),
            "clog2": lambda x: sympy.log(x, 2),
            "cdiv": lambda x, y: x / y,
            "abs": sympy.Abs,
            "min": sympy.Min,
            "max": sympy.Max,
        }
        return calls[e.func](*args)
    return sympy.Integer(1)


def _candidates(pattern: ir.Pattern) -> list[sympy.Expr]:
    """Orders the structure suggests: L and L**2, scaled by the lets' growth (block sizes)."""
    lets: dict[str, sympy.Expr] = {}
    powers = {sympy.Integer(1), sympy.Integer(2)}
    for let in pattern.lets:
        try:
            g = lets[let.name] = _growth(let.value, lets)
            a = sympy.limit(sympy.log(g) / sympy.log(Lsym), Lsym, sympy.oo)
        except (TypeError, ValueError, NotImplementedError):
            continue
        if a.is_Rational and 0 < a < 1:
            powers |= {1 + a, 2 - a}
    return [Lsym**a * sympy.log(Lsym) ** b for a in sorted(powers) for b in (0, 1, 2)]


def _accepted_near(pattern: ir.Pattern, n: int) -> int:
    for d in range(n):
        for L in (n + d, n - d):
            if L >= 1 and accepts(pattern, L):
                return L
    raise CombinerError("no accepted length to measure the order at")


def order(pattern: ir.Pattern, lengths: tuple[int, ...] = (1 << 8, 1 << 10, 1 << 12)) -> sympy.Expr:
    """Growth of the total pairs: the structural candidate whose ratio to the exact counts is
    flattest over `lengths` (log-log slope closest to 0)."""
    Ls = [_accepted_near(pattern, n) for n in lengths]
    totals = []
    for L in Ls:
        f = cost_at(pattern, L)
        totals.append(f.direct_pairs + f.region_pairs + f.summary_pairs)

    def slope(c: sympy.Expr) -> float:
        r = [float(sympy.log(t / c.subs(Lsym, L))) for t, L in zip(totals, Ls, strict=True)]
        x = [float(sympy.log(L)) for L in Ls]
        return abs((r[-1] - r[0]) / (x[-1] - x[0]))

    return min(_candidates(pattern), key=slope)
