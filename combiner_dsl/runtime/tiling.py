"""Building blocks of the plan: query/key orders and tiles, binder enumeration, region membership.

All of it runs on int64 CPU tensors and is vectorised; the predicates come in as rendered
functions `fn(d, e)` over a domain `d` (`Exact` or `Bounds`) and an env `e` (see codegen/render.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .intervals import Interval, Tri
from .ops import DomainError, Exact

Fn = Callable[[Any, Mapping[str, Any]], Any]
BIG = 2**62  # bound of an empty tile; such tiles are filtered out before any arithmetic
CHUNK = 1 << 22  # elements per vectorised step: bounds the plan builder's memory
MAX_REGIONS = 1 << 22  # regions of one partition at one L, for every stage (combiner_dsl/limits.py)


def as_long(x: Any, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.int64).expand(shape)


def as_bool(x: Any, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.bool).expand(shape)


def as_tri(x: Any, shape: tuple[int, ...] | torch.Size) -> Tri:
    t = Tri.of(x)
    return Tri(t.can_true.expand(shape), t.can_false.expand(shape))


def as_interval(x: Any, shape: tuple[int, ...] | torch.Size) -> Interval:
    t = Interval.of(x)
    return Interval(t.lo.expand(shape), t.hi.expand(shape))


def chunks(n: int, per_item: int) -> list[tuple[int, int]]:
    step = max(1, CHUNK // max(1, per_item))
    return [(a, min(n, a + step)) for a in range(0, n, step)]


# ---------------------------------------------------------------- orders and tiles


@dataclass(frozen=True)
class Order:
    """Which query (or key) sits in each slot of the tiles: [n_tiles * T], -1 for padding."""

    slots: torch.Tensor
    tile: int
    natural: bool  # slots are 0 .. L-1 in order (then padding): tile t holds t*T .. t*T+T-1

    @property
    def n_tiles(self) -> int:
        return self.slots.numel() // self.tile

    def tiles(self) -> torch.Tensor:
        return self.slots.view(self.n_tiles, self.tile)


def natural_order(L: int, T: int) -> Order:
    n = -(-L // T) * T
    slots = torch.full((n,), -1, dtype=torch.int64)
    slots[:L] = torch.arange(L)
    return Order(slots, T, True)


def sorted_order(L: int, keys: list[torch.Tensor], T: int) -> Order:
    """Positions sorted by `keys` (then by position); each run of equal keys starts a fresh tile."""
    perm = torch.arange(L)
    for k in reversed(keys):
        perm = perm[torch.sort(k[perm], stable=True).indices]
    if torch.equal(perm, torch.arange(L)):
        return natural_order(L, T)
    stacked = torch.stack([k[perm] for k in keys])
    change = torch.ones(L, dtype=torch.bool)
    change[1:] = (stacked[:, 1:] != stacked[:, :-1]).any(0)
    starts = change.nonzero().flatten()
    sizes = torch.diff(starts, append=torch.tensor([L]))
    padded = -(-sizes // T) * T
    if int(padded.sum()) > 2 * L + T:  # many tiny runs: padding each would cost more than it saves
        slots = torch.full((-(-L // T) * T,), -1, dtype=torch.int64)
        slots[:L] = perm
        return Order(slots, T, False)
    group = torch.cumsum(change.long(), 0) - 1
    pstart = torch.cumsum(padded, 0) - padded
    pos = pstart[group] + torch.arange(L) - starts[group]
    slots = torch.full((int(padded.sum()),), -1, dtype=torch.int64)
    slots[pos] = perm
    return Order(slots, T, False)


@dataclass(frozen=True)
class TileBounds:
    """Per tile (and per coarser group of 2^k tiles): how many slots are used, and each value's range."""

    count: list[torch.Tensor]  # level -> [n_groups]
    lo: dict[str, list[torch.Tensor]]
    hi: dict[str, list[torch.Tensor]]


def tile_bounds(order: Order, values: Mapping[str, torch.Tensor], levels: int) -> TileBounds:
    """Exact min/max of each value over each tile, then over groups of 2, 4, ... tiles (`levels` times)."""
    tiles = order.tiles()
    n = -(-max(1, tiles.shape[0]) // (1 << levels)) * (1 << levels)
    valid = tiles >= 0
    pad = n - tiles.shape[0]
    count = [torch.nn.functional.pad(valid.sum(1), (0, pad))]
    lo: dict[str, list[torch.Tensor]] = {}
    hi: dict[str, list[torch.Tensor]] = {}
    for name, vals in values.items():
        v = vals[tiles.clamp(min=0)]
        lo[name] = [torch.nn.functional.pad(torch.where(valid, v, BIG).amin(1), (0, pad), value=BIG)]
        hi[name] = [torch.nn.functional.pad(torch.where(valid, v, -BIG).amax(1), (0, pad), value=-BIG)]
    for _ in range(levels):
        count.append(count[-1].view(-1, 2).sum(1))
        for name in values:
            lo[name].append(lo[name][-1].view(-1, 2).amin(1))
            hi[name].append(hi[name][-1].view(-1, 2).amax(1))
    return TileBounds(count, lo, hi)


def interval_env(base: Mapping[str, Any], tb: TileBounds, level: int, idx: torch.Tensor, shape: tuple[int, ...]) -> dict[str, Any]:
    env = dict(base)
    for name in tb.lo:
        env[name] = Interval(tb.lo[name][level][idx].view(shape), tb.hi[name][level][idx].view(shape))
    return env


# ---------------------------------------------------------------- binders and regions


@dataclass(frozen=True)
class Binder:
    name: str
    lo: Fn
    hi: Fn


class TooManyTuples(DomainError):
    """More binder tuples than the limit: `binder` is the index of the binder that passes it."""

    def __init__(self, message: str, binder: int) -> None:
        super().__init__(message)
        self.binder = binder
        self.partition = ""  # the partition's name, where the caller knows it


class Enumeration:
    """Every tuple of some binders (ranges may use earlier ones), and the index of a given tuple."""

    def __init__(self, binders: tuple[Binder, ...], env: Mapping[str, Any], limit: int = MAX_REGIONS) -> None:
        self.names = tuple(b.name for b in binders)
        self.levels: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        values: dict[str, torch.Tensor] = {}
        count = 1
        for k, b in enumerate(binders):
            scope = {**env, **values}
            lo = as_long(b.lo(Exact, scope), (count,)).clone()
            hi = as_long(b.hi(Exact, scope), (count,)).clone()
            n = torch.clamp(hi - lo, min=0)
            if bool((n > limit).any()) or int(n.sum()) > limit:  # before allocating; per value first, so the sum cannot wrap
                raise TooManyTuples(f"more than {limit} tuples of binders {', '.join(self.names)}", k)
            start = torch.cumsum(n, 0) - n
            parent = torch.repeat_interleave(torch.arange(count), n)
            total = int(n.sum())
            values = {k: v[parent] for k, v in values.items()}
            values[b.name] = lo[parent] + torch.arange(total) - start[parent]
            self.levels.append((lo, hi, start))
            count = total
        self.values = values
        self.count = count
        # rectangular: every binder's range is the same whatever the earlier ones are, so a tuple's
        # index is plain mixed-radix arithmetic (no gathers)
        self.box = [(int(lo[0]), int(hi[0])) for lo, hi, _ in self.levels if lo.numel() and bool((lo == lo[0]).all() & (hi == hi[0]).all())]
        if len(self.box) != len(self.levels):
            self.box = []

    def lookup(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Index of each tuple, -1 where a value is outside its binder's range."""
        if self.box:
            return self._lookup_box(values)
        idx: torch.Tensor | None = None
        ok: torch.Tensor | None = None
        for name, (lo, hi, start) in zip(self.names, self.levels, strict=True):
            if lo.numel() == 0:  # an earlier binder has no value here: no tuple exists at all
                shaped = torch.zeros((), dtype=torch.int64)
                for n in self.names:  # -1 in the broadcast shape of the values asked about
                    shaped = shaped + torch.zeros_like(torch.as_tensor(values[n], dtype=torch.int64))
                return shaped - 1
            v = torch.as_tensor(values[name], dtype=torch.int64)
            at = torch.zeros_like(v) if idx is None else idx
            lo_v, hi_v = lo[at], hi[at]
            good = (v >= lo_v) & (v < hi_v)
            ok = good if ok is None else ok & good
            idx = torch.where(ok, start[at] + v - lo_v, 0)
        if idx is None:  # no binders: the single empty tuple
            return torch.zeros((), dtype=torch.int64)
        assert ok is not None
        return torch.where(ok, idx, -1)

    def _lookup_box(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        out: torch.Tensor | None = None
        ok: torch.Tensor | None = None
        for name, (lo, hi) in zip(self.names, self.box, strict=True):
            v = torch.as_tensor(values[name], dtype=torch.int64)
            good = (v >= lo) & (v < hi)
            ok = good if ok is None else ok & good
            out = v - lo if out is None else out * (hi - lo) + (v - lo)
        assert out is not None and ok is not None
        return torch.where(ok, out, -1)


@dataclass(frozen=True)
class Members:
    """Region membership as CSR: keys of region r are `keys[offsets[r] : offsets[r] + sizes[r]]`, ascending."""

    keys: torch.Tensor
    offsets: torch.Tensor
    sizes: torch.Tensor
    flat: torch.Tensor  # region * L + key, ascending: membership tests by binary search

    def contains(self, region: torch.Tensor, pos: torch.Tensor, L: int) -> torch.Tensor:
        if self.flat.numel() == 0:
            return torch.zeros_like(pos, dtype=torch.bool)
        want = region * L + pos
        at = torch.searchsorted(self.flat, want).clamp(max=self.flat.numel() - 1)
        return self.flat[at] == want

    def padded(self, regions: torch.Tensor, width: int) -> torch.Tensor:
        """[len(regions), width] member positions, -1 beyond each region's size."""
        col = torch.arange(width)
        valid = col[None, :] < self.sizes[regions][:, None]
        if self.keys.numel() == 0:
            return torch.full((len(regions), width), -1, dtype=torch.int64)
        at = (self.offsets[regions][:, None] + col[None, :]).clamp(max=self.keys.numel() - 1)
        return torch.where(valid, self.keys[at], -1)


def members(
    regions: Enumeration, free: Enumeration, solved: tuple[tuple[str, Fn], ...], residual: Fn, env: Mapping[str, Any], L: int, sizes_only: bool = False
) -> Members:
    """Members of every region: for each key j and each tuple of the free binders, the solved binders follow.
    `sizes_only`: only the sizes are filled in (the member lists stay empty), for counting."""
    if sizes_only and regions.names and free.count > 1:
        sizes = _sizes_by_key_class(regions, free, solved, residual, env, L)
        if sizes is not None:
            none = torch.zeros(0, dtype=torch.int64)
            return Members(none, none, sizes, none)
    found_r: list[torch.Tensor] = []
    found_j: list[torch.Tensor] = []
    F = free.count
    for a, b in chunks(L, F):
        j = torch.arange(a, b)[:, None]
        scope: dict[str, Any] = {**env, "j": j, **{k: v[None, :] for k, v in free.values.items()}}
        shape = (b - a, F)
        for name, fn in solved:
            scope[name] = as_long(fn(Exact, scope), shape)
        hit = as_bool(residual(Exact, scope), shape).nonzero()  # regions are looked up only where the residual holds
        if regions.names:
            rid = regions.lookup({n: as_long(scope[n], shape)[hit[:, 0], hit[:, 1]] for n in regions.names})
        else:
            rid = torch.zeros(hit.shape[0], dtype=torch.int64)
        found_r.append(rid[rid >= 0] if not sizes_only else torch.bincount(rid[rid >= 0], minlength=regions.count))
        found_j.append(hit[:, 0][rid >= 0] + a if not sizes_only else rid[:0])
    if sizes_only:
        none = torch.zeros(0, dtype=torch.int64)
        return Members(none, none, sum(found_r, torch.zeros(regions.count, dtype=torch.int64)), none)
    rid = torch.cat(found_r) if found_r else torch.zeros(0, dtype=torch.int64)
    jj = torch.cat(found_j) if found_j else torch.zeros(0, dtype=torch.int64)
    # each (region, key) comes once (the free binders are part of the region's tuple) and keys come
    # ascending, so a stable sort by region gives the CSR order
    order = torch.sort(rid, stable=True).indices
    rid, jj = rid[order], jj[order]
    sizes = torch.bincount(rid, minlength=regions.count)
    offsets = torch.cumsum(sizes, 0) - sizes
    return Members(jj, offsets, sizes, rid * L + jj)


def _sizes_by_key_class(
    regions: Enumeration, free: Enumeration, solved: tuple[tuple[str, Fn], ...], residual: Fn, env: Mapping[str, Any], L: int
) -> torch.Tensor | None:
    """Region sizes without listing the members, or None when a solved binder depends on a free one.
    Worth it only when there are free binders (`free.count > 1`).

    Keys with the same solved-binder values fall in the same regions for every free tuple, so the
    residual's hits are first summed over each such class of keys (one add over the chunk): regions
    are then looked up once per (class, free tuple) instead of once per member, which for prefix
    regions (about L * sqrt(L) members) is most of the counting time."""
    F = free.count
    sizes = torch.zeros(regions.count, dtype=torch.int64)
    for a, b in chunks(L, F):
        n = b - a
        scope: dict[str, Any] = {**env, "j": torch.arange(a, b)[:, None], **{k: v[None, :] for k, v in free.values.items()}}
        for name, fn in solved:
            v = torch.as_tensor(fn(Exact, scope), dtype=torch.int64)
            if v.dim() == 2 and v.shape[1] != 1:
                return None
            scope[name] = v.reshape(-1, 1).expand(n, 1) if v.numel() == 1 else v.reshape(n, 1)
        hit = as_bool(residual(Exact, scope), (n, F))
        if len(solved) == 1:  # the common case, and a 1-D unique is much cheaper than a row-wise one
            first, which = torch.unique(scope[solved[0][0]][:, 0], return_inverse=True)
            classes = first[:, None]
        elif solved:
            values = torch.cat([scope[name] for name, _ in solved], dim=1)
            classes, which = torch.unique(values, dim=0, return_inverse=True)
        else:
            classes, which = torch.zeros(1, 0, dtype=torch.int64), torch.zeros(n, dtype=torch.int64)
        hits = torch.zeros(len(classes), F, dtype=torch.int32).index_add_(0, which, hit.to(torch.int32))
        K = len(classes)
        at = {name: classes[:, s, None].expand(K, F) for s, (name, _) in enumerate(solved)}
        at.update({k: v[None, :].expand(K, F) for k, v in free.values.items()})
        rid = regions.lookup({name: at[name] for name in regions.names})
        ok = (rid >= 0) & (hits > 0)
        sizes.index_add_(0, rid[ok], hits[ok].to(torch.int64))
    return sizes
