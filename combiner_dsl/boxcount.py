"""Counting the points of a box space where a predicate holds, without visiting them one by one.

The spaces the cost model counts are (query, key) or (query-or-key, region binders), each up to
L wide per dimension, so neither a per-pair loop nor an L x L grid is affordable at large L.
Instead a box of the space is classified with the interval domain (`Bounds`): all-true boxes are
reported whole (their size is counted in closed form), all-false boxes are dropped, mixed ones are
split in two, and boxes of at most `LEAF` points are evaluated exactly with `Exact`. Predicates
built from comparisons and floor divisions are constant on large boxes, so the work grows with the
boundary of the true set, not with its volume.

Binders a caller has solved (`r == i // 2 ** l - 1`) are given as expressions of the box
dimensions rather than enumerated. When a job carries `Regions`, boxes are refined until their
points fall in one contiguous run of regions, so per-region figures can be accumulated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from . import ast, ir
from .evaluate import evaluate, too_many_regions
from .limits import MAX_REGIONS
from .runtime.intervals import Bounds, Interval, Tri
from .runtime.ops import Exact
from .smt import names

LEAF = 16  # boxes with at most this many points are evaluated point by point


# ---------------------------------------------------------------- regions


@dataclass(frozen=True)
class Regions:
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


def enumerate_regions(pattern: ir.Pattern, part: ir.Partition, env: dict[str, Any], L: int) -> Regions:
    """Every binder tuple of `part` at length L, built binder by binder (each range may depend on
    the binders before it); refuses partitions with more than MAX_REGIONS regions."""
    cols = torch.zeros((1, 0), dtype=torch.int64)
    prefix, last_lo, counts = cols, torch.zeros(1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64)
    for k, b in enumerate(part.binders):
        scope = {**env, **{n: cols[:, m] for m, n in enumerate(part.binder_names[:k])}}
        n = cols.shape[0]
        lo = torch.as_tensor(evaluate(pattern, b.lo, scope, L), dtype=torch.int64).expand(n)
        hi = torch.as_tensor(evaluate(pattern, b.hi, scope, L), dtype=torch.int64).expand(n)
        cnt = (hi - lo).clamp(min=0)
        if int(cnt.sum()) > MAX_REGIONS:
            raise too_many_regions(pattern, part, b, L)
        prefix, last_lo, counts = cols, lo, cnt
        rep = torch.repeat_interleave(torch.arange(n), cnt)
        within = torch.arange(len(rep)) - torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt)
        cols = torch.cat([cols[rep], (lo[rep] + within)[:, None]], 1)
    radix = tuple((int(prefix[:, m].min()), int(prefix[:, m].max() - prefix[:, m].min() + 1)) if len(prefix) else (0, 1) for m in range(prefix.shape[1]))
    key = torch.zeros(len(prefix), dtype=torch.int64)
    for m, (lo, span) in enumerate(radix):
        key = key * span + (prefix[:, m] - lo)
    return Regions(cols, key, torch.cumsum(counts, 0) - counts, last_lo, radix)


# ---------------------------------------------------------------- box refinement


@dataclass(frozen=True)
class BoxJob:
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
    regions: Regions | None = None

    def full_env(self, values: dict[str, Any], dom: Any) -> dict[str, Any]:
        env = {**self.env, **values}
        todo = dict(self.solved)
        while todo:
            for b in [b for b, e in todo.items() if not (names(e) & set(todo))]:
                env[b] = evaluate(self.pattern, todo.pop(b), env, self.L, dom)
        return env


Visit = Callable[[dict[str, torch.Tensor], torch.Tensor | None, torch.Tensor | None], None]


def refine_boxes(job: BoxJob, on_box: Visit, on_points: Visit) -> None:
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


def _exact(job: BoxJob, names_: list[str], lo: torch.Tensor, hi: torch.Tensor, known: torch.Tensor, on_points: Visit) -> None:
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


# ---------------------------------------------------------------- accumulating counts


class PerValueCounts:
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
