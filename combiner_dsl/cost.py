"""The cost model of contract.md: exact pair counts at one L, and the asymptotic order.

Pairs are counted with the planner's own classification (`runtime.plan`), driven by the
interpreter (`interpreted.py`): direct tile pairs the interval domain finds full are counted in
closed form, only mixed tiles are evaluated; units come from the planner's selection (derived
selection through its region forest). So counting never walks (i, j) pairs one by one and never
builds an L x L grid, and the figures describe exactly what the generated module computes.
`order` measures totals at a few lengths against the growth laws `growth` reads off the spec.

Mixtures. `joint`: one softmax, so D_i is the union of the plans' direct sets (each key once)
plus every plan's units. `average`: each plan is its own softmax; figures are summed over plans
and `logits_max` is the widest row of any one plan. Units: a pooled unit is a selected non-empty
region; an at() unit is (region, query position, key position), so `summary_pairs` counts each
distinct triple once, times the region's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sympy
import torch

from . import ir
from .errors import LengthError
from .evaluate import accepts, failed_require, too_many_regions
from .growth import Lsym, accepted_length_near, candidate_orders
from .interpreted import interpreted_spec
from .limits import MAX_COST_L, MAX_REGIONS
from .runtime.classify import OutsideRegion, Selection, exact_env, side_values
from .runtime.intervals import Bounds, Interval
from .runtime.ops import Exact
from .runtime.plan import _Builder, _or, _SegmentWork, feature_values
from .runtime.tiling import Fn, Order, TooManyTuples, as_bool, as_tri, chunks, interval_env, tile_bounds

TILE = 16  # counting does not depend on the tile size; small tiles keep mixed tiles cheap (sparse_fixed: 2.4x less work than 64)
__all__ = ["CostFigures", "Lsym", "cost_at", "cost_from_layout", "order"]


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


# ---------------------------------------------------------------- counting on the planner's tiles


def _per_query(order: Order, per_slot: torch.Tensor, L: int) -> torch.Tensor:
    """Per-slot counts [n_tiles, T] of one tile order as per-query counts [L]."""
    slots = order.slots
    real = slots >= 0
    return torch.zeros(L, dtype=torch.int64).index_add_(0, slots[real], per_slot.flatten()[real])


def _direct(b: _Builder, seg: _SegmentWork) -> torch.Tensor:
    """Direct keys per query slot: full tile pairs in closed form, mixed ones from their exact masks."""
    assert seg.q is not None and seg.k is not None and seg.pairs is not None
    q, k = seg.q, seg.k
    out = torch.zeros(q.n_tiles, q.tile, dtype=torch.int64)
    if not seg.directs:
        return out
    cq, ck, full = seg.pairs
    real_q = q.tiles() >= 0
    keys_in = (k.tiles() >= 0).sum(1)
    per_tile = torch.zeros(q.n_tiles, dtype=torch.int64).index_add_(0, cq[full], keys_in[ck[full]])
    out += per_tile[:, None] * real_q
    mixed = (~full).nonzero().flatten()
    if mixed.numel():
        _mixed_direct(_or([d.pred for d in seg.directs]), q, k, cq[mixed], ck[mixed], b.values, b.env, out)
    return out


def _mixed_direct(pred: Fn, q: Order, k: Order, cq: torch.Tensor, ck: torch.Tensor, values: dict[str, torch.Tensor], env: dict[str, Any], out: torch.Tensor) -> None:
    """Add the direct keys of mixed tile pairs to `out`, one key column at a time: a column is judged
    over the query tile's bounds first, and only the columns it leaves mixed are evaluated per query.
    A mixed pair is typically mixed in a few columns (a stripe `j % s == s - 1`, a block edge), so
    this evaluates about tile_k intervals per pair instead of tile_q * tile_k points."""
    tq = tile_bounds(q, side_values(values, "i"), 0)
    key_side = side_values(values, "j")
    qt, kt = q.tiles(), k.tiles()
    real_q = (qt >= 0).long()
    for a, z in chunks(cq.numel(), k.tile * 16):
        pq, pk = cq[a:z], ck[a:z]
        j = kt[pk]
        scope = interval_env(env, tq, 0, pq, (z - a, 1))
        for name, vals in key_side.items():
            v = vals[j.clamp(min=0)]
            scope[name] = Interval(v, v)
        judged = as_tri(pred(Bounds, scope), j.shape)
        real = j >= 0
        whole = judged.all_true & real
        out.index_add_(0, pq, whole.sum(1, keepdim=True) * real_q[pq])
        pair, col = (judged.mixed & real).nonzero().unbind(1)
        for c, e in chunks(pair.numel(), q.tile * 16):
            i = qt[pq[pair[c:e]]]
            jj = j[pair[c:e], col[c:e]][:, None]
            hit = as_bool(pred(Exact, exact_env(exact_env(env, values, i, "i"), values, jj, "j")), i.shape) & (i >= 0)
            out.index_add_(0, pq[pair[c:e]], hit.long())


def _ranges(spans: torch.Tensor, weight: torch.Tensor, n: int) -> torch.Tensor:
    """Sum of `weight` over the [lo, hi) spans covering each of 0 .. n-1 (a difference array)."""
    diff = torch.zeros(n + 1, dtype=torch.int64)
    diff.index_add_(0, spans[:, 0], weight).index_add_(0, spans[:, 1], -weight)
    return torch.cumsum(diff[:n], 0)


def _units(order: Order, sel: Selection) -> torch.Tensor:
    """Selected units per query slot."""
    out = torch.zeros(order.n_tiles, order.tile, dtype=torch.int64)
    per_tile = torch.bincount(sel.full_tile, minlength=order.n_tiles) + _ranges(sel.range_tiles, torch.ones_like(sel.range_key), order.n_tiles)
    out += per_tile[:, None] * (order.tiles() >= 0)
    out.index_add_(0, sel.col_tile, sel.col_mask.long())
    out.index_put_((sel.cell_tile, sel.cell_slot), torch.ones_like(sel.cell_tile), accumulate=True)
    return out


def _summary_pairs(b: _Builder, state: Any, sel: Selection) -> int:
    """Distinct units times their region's size (unit keys pack the region first)."""
    keys = sel.keys()
    if state.query_at is not None or state.key_at is not None:
        keys = torch.unique(keys)  # several units per region
    region = torch.div(keys, (b.L + 1) ** 2, rounding_mode="floor")
    seen = torch.zeros(state.members.sizes.numel(), dtype=torch.bool)
    seen[region] = True  # pooled: one unit per selected region
    return int(state.members.sizes[seen].sum()) if state.query_at is None and state.key_at is None else int(state.members.sizes[region].sum())


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
    spec = interpreted_spec(pattern)
    env = spec.lets(None, L)
    values = feature_values(spec, env, L)
    direct_total = region_total = summary_total = widest = 0
    for sm in spec.softmaxes:
        b = _Builder(spec, sm, env, values, L, (TILE,), counting=True)
        try:
            states = [b.partition_state(p) for p in sm.partitions]
            work = b.segments(states)
        except TooManyTuples as err:  # located at the binder that passes the limit, like every stage
            part = next(part for _, part in pattern.partitions if part.name == err.partition)
            raise too_many_regions(pattern, part, part.binders[err.binder], L, MAX_REGIONS) from None
        except OutsideRegion:
            return cost_from_layout(pattern, L, d)  # C3 fails: units at positions outside [0, L) are counted on the grid
        except ValueError as err:
            if "nested or disjoint" not in str(err):
                raise
            return cost_from_layout(pattern, L, d)  # derived selection the forest cannot walk
        direct = torch.zeros(L, dtype=torch.int64)
        units = torch.zeros(L, dtype=torch.int64)
        for seg in work:
            assert seg.q is not None and seg.selections is not None
            direct += _per_query(seg.q, _direct(b, seg), L)
            for n, sel in zip(seg.parts, seg.selections, strict=True):
                units += _per_query(seg.q, _units(seg.q, sel), L)
                summary_total += _summary_pairs(b, states[n], sel)
        direct_total += int(direct.sum())
        region_total += int(units.sum())
        widest = max(widest, int((direct + units).max()) if L else 0)
    return _figures(pattern, L, d, direct_total, region_total, summary_total, widest)


def _dense_pairs(pattern: ir.Pattern, L: int) -> int:
    return L * (L + 1) // 2 if pattern.causal else L * L


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
