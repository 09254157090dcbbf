"""Tile classification: which (query tile, key tile) pairs are direct, which units each query tile selects.

The interval domain answers all-true / all-false / mixed for a whole box at once; only mixed boxes
are evaluated point by point. Feature values (`i // s`, `i % w`, ...) enter as their exact per-tile
ranges, which keeps the boxes tight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .intervals import Bounds, Tri
from .ops import DomainError, Exact
from .refine import refine
from .tiling import Enumeration, Fn, Members, Order, TileBounds, as_bool, as_interval, as_long, as_tri, chunks, interval_env, tile_bounds


def exact_env(base: Mapping[str, Any], values: Mapping[str, torch.Tensor], pos: torch.Tensor, side: str) -> dict[str, Any]:
    """Env with position tensor `pos` (-1 padding is read as 0 and masked by the caller) and its features."""
    env = dict(base)
    at = pos.clamp(min=0)
    for name, vals in values.items():
        if name == side or (name.startswith("@") and name[1] == side):
            env[name] = vals[at]
    return env


def side_values(values: Mapping[str, torch.Tensor], side: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in values.items() if k == side or (k.startswith("@") and k[1] == side)}


# ---------------------------------------------------------------- direct tile pairs


def direct_pairs(pred: Fn, q: Order, k: Order, values: Mapping[str, torch.Tensor], env: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(query tile, key tile, full) for every pair holding some direct key, refining coarse boxes 4-way."""
    levels = (max(q.n_tiles, k.n_tiles, 1) - 1).bit_length()
    tq = tile_bounds(q, side_values(values, "i"), levels)
    tk = tile_bounds(k, side_values(values, "j"), levels)

    def judge(lev: list[int], at: list[torch.Tensor], _: torch.Tensor) -> Tri:
        scope = interval_env(interval_env(env, tq, lev[0], at[0], (at[0].numel(),)), tk, lev[1], at[1], (at[1].numel(),))
        return as_tri(pred(Bounds, scope), (at[0].numel(),))

    root = torch.zeros(1, dtype=torch.int64)
    leaves = refine([tq, tk], [levels, levels], [root, root], judge)
    cq, ck, full = leaves.idx[0], leaves.idx[1], leaves.full
    keep = (cq < q.n_tiles) & (ck < k.n_tiles)
    cq, ck, full = cq[keep], ck[keep], full[keep]
    full = full & (tq.count[0][cq] == q.tile) & (tk.count[0][ck] == k.tile)
    return cq, ck, full


def direct_masks(
    pred: Fn, q: Order, k: Order, cq: torch.Tensor, ck: torch.Tensor, full: torch.Tensor, values: Mapping[str, torch.Tensor], env: Mapping[str, Any]
) -> torch.Tensor:
    """Exact [n, tile_q, tile_k] membership for the given pairs (full pairs are all true)."""
    out = torch.ones(cq.numel(), q.tile, k.tile, dtype=torch.bool)
    mixed = (~full).nonzero().flatten()
    qt, kt = q.tiles(), k.tiles()
    for a, b in chunks(mixed.numel(), q.tile * k.tile * 4):
        at = mixed[a:b]
        i = qt[cq[at]][:, :, None]
        j = kt[ck[at]][:, None, :]
        scope = exact_env(exact_env(env, values, i, "i"), values, j, "j")
        shape = (b - a, q.tile, k.tile)
        out[at] = as_bool(pred(Exact, scope), shape) & (i >= 0) & (j >= 0)
    return out


# ---------------------------------------------------------------- unit selection


@dataclass
class Selection:
    """One partition's selections in one tiling: columns of a tile (every real query of it, or a
    mask), and single cells."""

    full_tile: torch.Tensor
    full_key: torch.Tensor
    col_tile: torch.Tensor
    col_key: torch.Tensor
    col_mask: torch.Tensor  # bool [n, T]
    cell_tile: torch.Tensor
    cell_slot: torch.Tensor
    cell_key: torch.Tensor
    # counting only: every tile in range_tiles[n] = [lo, hi) selects unit range_key[n] for all its queries
    range_tiles: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 2, dtype=torch.int64))
    range_key: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))

    def keys(self) -> torch.Tensor:
        return torch.cat([self.full_key, self.col_key, self.cell_key, self.range_key])

    def tile_unit_pairs(self) -> int:
        """How many (tile, unit) pairs (an estimate: a unit reached from two binder tuples counts twice)."""
        cells = torch.unique(torch.stack([self.cell_tile, self.cell_key]), dim=1).shape[1] if self.cell_key.numel() else 0
        return int(self.full_key.numel() + self.col_key.numel() + cells)


@dataclass(frozen=True)
class PartitionState:
    """A partition at one L: its regions, their members, and the tuples of select's free binders."""

    name: str
    regions: Enumeration
    members: Members
    free: Enumeration
    solved: tuple[tuple[str, Fn], ...]
    residual: Fn
    query_at: Fn | None
    key_at: Fn | None
    free_fn: Fn | None = None  # derived selection: its free-key predicate and the regions' forest
    forest: Forest | None = None


def unit_key(region: torch.Tensor, qpos: torch.Tensor, kpos: torch.Tensor, L: int) -> torch.Tensor:
    """One int64 per (region, query position, key position); -1 positions mean pooled."""
    return (region * (L + 1) + qpos + 1) * (L + 1) + kpos + 1


def _keys(ps: PartitionState, scope: Mapping[str, Any], shape: tuple[int, ...], L: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit key, whether the region exists and is non-empty, and whether the at(...) positions lie in it."""
    rid = ps.regions.lookup({n: as_long(scope[n], shape) for n in ps.regions.names})
    ok = rid >= 0
    rid = rid.clamp(min=0)
    ok = ok & (ps.members.sizes[rid] > 0)
    inside = torch.ones(shape, dtype=torch.bool)
    none = torch.full(shape, -1, dtype=torch.int64)
    pos = []
    for fn in (ps.query_at, ps.key_at):
        p = none if fn is None else as_long(fn(Exact, scope), shape)
        if fn is not None:
            inside = inside & (p >= 0) & (p < L) & ps.members.contains(rid, p.clamp(min=0, max=max(0, L - 1)), L)
        pos.append(p.clamp(min=-1, max=L))
    return unit_key(rid, pos[0], pos[1], L), ok, inside


class OutsideRegion(ValueError):
    """An at(...) position of a selected unit lies outside its region (check C3)."""


def _check_c3(ps: PartitionState, chosen: torch.Tensor, inside: torch.Tensor, L: int) -> None:
    if bool((chosen & ~inside).any()):
        raise OutsideRegion(f"an at(...) position of partition `{ps.name}` lies outside its region at L = {L} (check C3)")


def _candidates(ps: PartitionState, tb: TileBounds, env: Mapping[str, Any], split_full: bool) -> tuple[torch.Tensor, torch.Tensor, list[tuple[list[int], list[torch.Tensor], torch.Tensor]]]:
    """(live query tile, free-binder tuple) pairs whose select may hold: boxes of tile groups times
    runs of consecutive tuples are pruned with the interval domain before any pair is evaluated.
    Without `split_full`, boxes that hold everywhere come back whole (see `refine`)."""
    F = ps.free.count
    lf = (max(F, 1) - 1).bit_length()
    fb = tile_bounds(Order(torch.arange(F), 1, True), ps.free.values, lf)

    def judge(lev: list[int], at: list[torch.Tensor], _: torch.Tensor) -> Tri:
        n = at[0].numel()
        scope: dict[str, Any] = interval_env(interval_env(env, tb, lev[0], at[0], (n,)), fb, lev[1], at[1], (n,))
        try:
            for name, fn in ps.solved:
                scope[name] = as_interval(fn(Bounds, scope), (n,))
            return as_tri(ps.residual(Bounds, scope), (n,))
        except DomainError:  # a wide box may leave the 64-bit range where its parts do not: split it
            yes = torch.ones(n, dtype=torch.bool)
            return Tri(yes, yes)

    root = torch.zeros(1, dtype=torch.int64)
    leaves = refine([tb, fb], [len(tb.count) - 1, lf], [root, root], judge, split_full=split_full)
    return leaves.idx[0], leaves.idx[1], leaves.whole


def _whole_units(
    ps: PartitionState, order: Order, tb: TileBounds, whole: list[tuple[list[int], list[torch.Tensor], torch.Tensor]], values: Mapping[str, torch.Tensor], env: Mapping[str, Any], L: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes whose select holds everywhere, one tuple at a time: where the solved binders and at()
    positions are the same for the whole tile group, its unit is one key for a range of tiles; the
    other (tile, tuple) pairs come back for the leaf-by-leaf path."""
    F, n_tiles = ps.free.count, order.n_tiles
    live = tb.count[0][:n_tiles] > 0
    # first live tile at or after each tile: its first query stands for a uniform group
    ahead = torch.where(live, torch.arange(n_tiles), n_tiles).flip(0).cummin(0).values.flip(0)
    ranges, keys, rest_t, rest_f = [], [], [], []
    tiles = order.tiles()
    for (lq, lf), (ct, cf), _ in whole:
        for a, b in chunks(ct.numel(), 1 << lf):
            g = ct[a:b].repeat_interleave(1 << lf)
            f = ((cf[a:b, None] << lf) + torch.arange(1 << lf)).flatten()
            g, f = g[f < F], f[f < F]
            n = g.numel()
            free = {k: v[f] for k, v in ps.free.values.items()}
            scope: dict[str, Any] = {**interval_env(env, tb, lq, g, (n,)), **free}
            point = torch.ones(n, dtype=torch.bool)
            try:
                for name, fn in ps.solved:
                    scope[name] = iv = as_interval(fn(Bounds, scope), (n,))
                    point &= iv.lo == iv.hi
                for at in (ps.query_at, ps.key_at):
                    if at is not None:
                        iv = as_interval(at(Bounds, scope), (n,))
                        point &= iv.lo == iv.hi
            except DomainError:
                point[:] = False
            lo, hi = g << lq, ((g + 1) << lq).clamp(max=n_tiles)
            uni = point.nonzero().flatten()
            first = ahead[lo[uni]]
            bound = {k: v[uni][:, None] for k, v in free.items()}
            for name, _fn in ps.solved:
                bound[name] = scope[name].lo[uni][:, None]
            key, ok, inside = _keys(ps, {**exact_env(env, values, tiles[first, :1], "i"), **bound}, (uni.numel(), 1), L)
            ok = ok[:, 0]
            _check_c3(ps, ok, inside[:, 0], L)
            ranges.append(torch.stack([lo[uni][ok], hi[uni][ok]], 1))
            keys.append(key[:, 0][ok])
            spread = (~point).nonzero().flatten()  # per tile: every tile of the group with this tuple
            width = hi[spread] - lo[spread]
            t = torch.repeat_interleave(lo[spread], width) + torch.arange(int(width.sum())) - torch.repeat_interleave(torch.cumsum(width, 0) - width, width)
            f = torch.repeat_interleave(f[spread], width)
            rest_t.append(t[live[t]])
            rest_f.append(f[live[t]])
    empty = torch.zeros(0, dtype=torch.int64)
    return (
        torch.cat(ranges) if ranges else torch.zeros(0, 2, dtype=torch.int64),
        torch.cat(keys) if keys else empty,
        torch.cat(rest_t) if rest_t else empty,
        torch.cat(rest_f) if rest_f else empty,
    )


def select_units(ps: PartitionState, order: Order, values: Mapping[str, torch.Tensor], env: Mapping[str, Any], L: int, counting: bool = False) -> Selection:
    """Every (query tile, unit) the partition's `select` picks. `counting`: where the select holds on
    a whole box and its unit does not change across the box's tile group, the unit comes back once
    for a range of tiles (`range_tiles`, `range_key`) instead of once per tile."""
    if ps.regions.count == 0:  # a partition with no region at this L contributes nothing
        empty = torch.zeros(0, dtype=torch.int64)
        return Selection(empty, empty, empty, empty, torch.zeros(0, order.tile, dtype=torch.bool), empty, empty, empty)
    assert ps.free_fn is None, "derived selections are walked in runtime/derived.py"
    T = order.tile
    tb = tile_bounds(order, side_values(values, "i"), (max(order.n_tiles, 1) - 1).bit_length())
    tiles = order.tiles()
    cand_t, cand_f, boxes = _candidates(ps, tb, env, split_full=not counting)
    range_tiles, range_key, more_t, more_f = _whole_units(ps, order, tb, boxes, values, env, L)
    cand_t, cand_f = torch.cat([cand_t, more_t]), torch.cat([cand_f, more_f])
    fulls: list[tuple[torch.Tensor, torch.Tensor]] = []
    cols: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    cells: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for a, b in chunks(cand_t.numel(), 8 * T):
        t, f = cand_t[a:b], cand_f[a:b]
        n = b - a
        free = {k: v[f] for k, v in ps.free.values.items()}
        scope: dict[str, Any] = {**interval_env(env, tb, 0, t, (n,)), **free}
        point = torch.ones(n, dtype=torch.bool)
        for name, fn in ps.solved:
            iv = as_interval(fn(Bounds, scope), (n,))
            scope[name] = iv
            point &= iv.lo == iv.hi
        res = as_tri(ps.residual(Bounds, scope), (n,))
        for at in (ps.query_at, ps.key_at):
            if at is not None:
                iv = as_interval(at(Bounds, scope), (n,))
                point &= iv.lo == iv.hi
        keep = res.can_true
        # uniform pairs: one unit for the whole tile, so the key comes from the tile's first query
        # (always a real one) and only a mixed residual needs an exact column
        uni = (keep & point).nonzero().flatten()
        if uni.numel():
            m = uni.numel()
            tu = t[uni]
            bound = {k: v[uni][:, None] for k, v in free.items()}
            for name, _ in ps.solved:
                bound[name] = scope[name].lo[uni][:, None]
            key, ok, inside = _keys(ps, {**exact_env(env, values, tiles[tu, :1], "i"), **bound}, (m, 1), L)
            key, ok, inside = key[:, 0], ok[:, 0], inside[:, 0]
            whole = ok & res.all_true[uni]
            fulls.append((tu[whole], key[whole]))
            picked = whole.clone()  # C3 concerns the units some query really selects
            mixed = (ok & ~res.all_true[uni]).nonzero().flatten()
            if mixed.numel():
                i = tiles[tu[mixed]]
                sub = {**exact_env(env, values, i, "i"), **{k: v[mixed] for k, v in bound.items()}}
                mask = (i >= 0) & as_bool(ps.residual(Exact, sub), (mixed.numel(), T))
                hit = mask.any(1)
                picked[mixed[hit]] = True
                cols.append((tu[mixed][hit], key[mixed][hit], mask[hit]))
            _check_c3(ps, picked, inside, L)
        rest = (keep & ~point).nonzero().flatten()
        if rest.numel():
            m = rest.numel()
            i = tiles[t[rest]]
            e_scope: dict[str, Any] = {**exact_env(env, values, i, "i"), **{k: v[rest][:, None] for k, v in free.items()}}
            for name, fn in ps.solved:
                e_scope[name] = as_long(fn(Exact, e_scope), (m, T))
            key, ok, inside = _keys(ps, e_scope, (m, T), L)
            ok = ok & (i >= 0) & as_bool(ps.residual(Exact, e_scope), (m, T))
            _check_c3(ps, ok, inside, L)
            hit = ok.nonzero()
            cells.append((t[rest][hit[:, 0]], hit[:, 1], key[hit[:, 0], hit[:, 1]]))
    empty = torch.zeros(0, dtype=torch.int64)
    return Selection(
        torch.cat([c[0] for c in fulls]) if fulls else empty,
        torch.cat([c[1] for c in fulls]) if fulls else empty,
        torch.cat([c[0] for c in cols]) if cols else empty,
        torch.cat([c[1] for c in cols]) if cols else empty,
        torch.cat([c[2] for c in cols]) if cols else torch.zeros(0, T, dtype=torch.bool),
        torch.cat([c[0] for c in cells]) if cells else empty,
        torch.cat([c[1] for c in cells]) if cells else empty,
        torch.cat([c[2] for c in cells]) if cells else empty,
        range_tiles,
        range_key,
    )


# ---------------------------------------------------------------- derived selection


@dataclass(frozen=True)
class Forest:
    """The non-empty regions of a partition as an inclusion forest (regions must be nested or disjoint)."""

    parent: torch.Tensor  # [R]: the smallest strict superset, -1 for a root (and for empty regions)
    child_offsets: torch.Tensor  # children of r: child_ids[child_offsets[r] : child_offsets[r + 1]]
    child_ids: torch.Tensor
    roots: torch.Tensor
    lo: dict[str, torch.Tensor]  # per j-side value ("j", "@j0", ...): its min over each region's members
    hi: dict[str, torch.Tensor]
    pyramid: TileBounds  # j-side values over aligned blocks of 1, 2, 4, ... consecutive member entries
    # chains: maximal runs of regions with one child each, plus the region they end at, top down
    chain_nodes: torch.Tensor  # flat, chain after chain
    chain_of: torch.Tensor  # [R]: the chain a region lies in, -1 for none
    chain_pos: torch.Tensor  # [R]: its index in chain_nodes
    chain_end: torch.Tensor  # [chains]: index in chain_nodes of each chain's last region


def forest(name: str, mem: Members, values: Mapping[str, torch.Tensor]) -> Forest:
    R = mem.sizes.numel()
    rid = torch.repeat_interleave(torch.arange(R), mem.sizes)
    # each key's regions, largest first: in a nested-or-disjoint family the one before a region is its parent
    order = torch.argsort(rid, stable=True)
    order = order[torch.argsort(-mem.sizes[rid[order]], stable=True)]
    order = order[torch.argsort(mem.keys[order], stable=True)]
    k_sorted, r_sorted = mem.keys[order], rid[order]
    before = torch.full_like(r_sorted, -1)
    same = k_sorted[1:] == k_sorted[:-1]
    before[1:] = torch.where(same, r_sorted[:-1], -1)
    cand = torch.empty_like(before)
    cand[order] = before
    parent = torch.full((R,), -1, dtype=torch.int64)
    nonempty = mem.sizes > 0
    parent[nonempty] = cand[mem.offsets[nonempty]]
    if rid.numel() and not bool((cand == parent[rid]).all()):
        raise ValueError(f"derived selection of `{name}` needs regions that are nested or disjoint at this length; write a `select`")
    kids = (parent >= 0).nonzero().flatten()
    kids = kids[torch.argsort(parent[kids], stable=True)]
    counts = torch.bincount(parent[kids], minlength=R)
    offsets = torch.zeros(R + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(counts, 0)
    lo, hi = {}, {}
    for key, vals in side_values(values, "j").items():
        v = vals[mem.keys]
        lo[key] = torch.full((R,), 2**62, dtype=torch.int64).scatter_reduce(0, rid, v, "amin")
        hi[key] = torch.full((R,), -(2**62), dtype=torch.int64).scatter_reduce(0, rid, v, "amax")
    entries = max(1, mem.keys.numel())
    pyramid = tile_bounds(Order(mem.keys, 1, True), side_values(values, "j"), (entries - 1).bit_length())
    return Forest(parent, offsets, kids, (nonempty & (parent < 0)).nonzero().flatten(), lo, hi, pyramid, *_chains(parent, offsets, kids))


def _chains(parent: torch.Tensor, offsets: torch.Tensor, kids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The forest's chains (see `Forest`): followed from their heads all at once, one level a step."""
    R = parent.numel()
    one = (offsets[1:] - offsets[:-1]) == 1
    only = torch.full((R,), -1, dtype=torch.int64)
    only[one] = kids[offsets[:-1][one]]
    below_one = torch.zeros(R, dtype=torch.bool)
    below_one[parent >= 0] = one[parent[parent >= 0]]
    chain_nodes, chain_ids = [], []
    active = torch.arange(int((one & ~below_one).sum()))
    node = (one & ~below_one).nonzero().flatten()
    while node.numel():
        chain_nodes.append(node)
        chain_ids.append(active)
        keep = one[node]
        active, node = active[keep], only[node[keep]]
    nodes = torch.cat([torch.zeros(0, dtype=torch.int64), *chain_nodes])
    ids = torch.cat([torch.zeros(0, dtype=torch.int64), *chain_ids])
    order = torch.argsort(ids, stable=True)  # steps are taken in order: stable keeps each chain top down
    nodes, ids = nodes[order], ids[order]
    chain_of = torch.full((R,), -1, dtype=torch.int64)
    chain_pos = torch.full((R,), -1, dtype=torch.int64)
    chain_of[nodes] = ids
    chain_pos[nodes] = torch.arange(nodes.numel())
    n_chains = int(ids.max()) + 1 if ids.numel() else 0
    chain_end = torch.cumsum(torch.bincount(ids, minlength=n_chains), 0) - 1
    return nodes, chain_of, chain_pos, chain_end
