"""Derived selection in the planner: the inclusion-maximal regions inside each query's free keys.

The planner walks the partition's inclusion forest (`classify.forest`) tile by tile. Chains of
nested regions (the axial plans' row and column prefixes) are not walked one region at a time: a
region inside a query's free keys keeps every region below it inside them, so the first one along a
chain is found by bisection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .classify import Forest, PartitionState, Selection, _check_c3, exact_env, side_values, unit_key
from .intervals import Bounds, Interval, Tri
from .ops import Exact
from .refine import refine
from .tiling import Fn, Members, Order, TileBounds, as_bool, as_long, as_tri, chunks, interval_env, tile_bounds

SMALL = 64  # regions up to this size are settled by evaluating every member (refinement costs more)


def _contained(free: Fn, mem: Members, pyramid: TileBounds, region: torch.Tensor, query: torch.Tensor, values: Mapping[str, torch.Tensor], env: Mapping[str, Any]) -> torch.Tensor:
    """For each (region, query) pair: is every member of the region free for the query?"""
    small = mem.sizes[region] <= SMALL
    out = torch.empty(region.numel(), dtype=torch.bool)
    if bool(small.any()):
        out[small] = _contained_small(free, mem, region[small], query[small], values, env)
    if not bool(small.all()):
        out[~small] = _contained_large(free, mem, pyramid, region[~small], query[~small], values, env)
    return out


def _contained_small(free: Fn, mem: Members, region: torch.Tensor, query: torch.Tensor, values: Mapping[str, torch.Tensor], env: Mapping[str, Any]) -> torch.Tensor:
    width = int(mem.sizes[region].max()) if region.numel() else 0
    out = torch.empty(region.numel(), dtype=torch.bool)
    for a, b in chunks(region.numel(), width):
        keys = mem.padded(region[a:b], width)  # [n, width], -1 beyond each region's size
        scope = exact_env(exact_env(env, values, query[a:b, None], "i"), values, keys, "j")
        out[a:b] = (as_bool(free(Exact, scope), keys.shape) | (keys < 0)).all(1)
    return out


def _contained_large(free: Fn, mem: Members, pyramid: TileBounds, region: torch.Tensor, query: torch.Tensor, values: Mapping[str, torch.Tensor], env: Mapping[str, Any]) -> torch.Tensor:
    """The same for large regions, without visiting every member:

    Refines each region's run of member entries (the pyramid's aligned blocks) looking for a key
    that is not free: a block that is all free is done, one that is all not free refutes the pair.
    """
    start = mem.offsets[region]
    stop = start + mem.sizes[region]
    level = int((mem.sizes[region].max() - 1).clamp(min=0)).bit_length() if region.numel() else 0
    qenv = exact_env(env, values, query, "i")
    sides = side_values(values, "i")

    def judge(lev: list[int], at: list[torch.Tensor], pair: torch.Tensor) -> Tri:
        scope = {k: (v[pair] if k in sides else v) for k, v in qenv.items()}
        tri = as_tri(free(Bounds, interval_env(scope, pyramid, lev[0], at[0], (pair.numel(),))), (pair.numel(),))
        return Tri(tri.can_false, tri.can_true)  # looking for keys that are not free

    def within(lev: list[int], at: list[torch.Tensor], pair: torch.Tensor) -> torch.Tensor:
        return (at[0] << lev[0] < stop[pair]) & ((at[0] + 1) << lev[0] > start[pair])

    pair = torch.arange(region.numel()).repeat_interleave(2)
    block = torch.stack([start >> level, (start >> level) + 1], 1).flatten()
    real = block < pyramid.count[level].numel()  # a run in the last block at this level has no second one
    pair, block = pair[real], block[real]
    found = refine([pyramid], [level], [block], judge, owner=pair, within=within, split_full=False, settle=True)
    ok = torch.ones(region.numel(), dtype=torch.bool)
    ok[found.owner] = False
    for _, _, owners in found.whole:
        ok[owners] = False
    return ok


def derived_units(ps: PartitionState, order: Order, values: Mapping[str, torch.Tensor], env: Mapping[str, Any], L: int) -> Selection:
    """Derived selection: the inclusion-maximal non-empty regions inside the free keys of each query.

    Walks the inclusion forest top-down per query tile: a region contained for a query is selected
    and its subtree skipped for that query; a region holding no free key prunes its subtree.
    """
    assert ps.free_fn is not None and ps.forest is not None
    T, fo, free = order.tile, ps.forest, ps.free_fn
    tiles = order.tiles()
    tb = tile_bounds(order, side_values(values, "i"), 0)
    live = (tb.count[0][: order.n_tiles] > 0).nonzero().flatten()
    t = live.repeat_interleave(fo.roots.numel())
    reg = fo.roots.repeat(live.numel())
    covered = tiles[t] < 0  # queries already under a selected ancestor (and padding)
    fulls: list[tuple[torch.Tensor, torch.Tensor]] = []
    cells: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    at_free = ps.query_at is None and ps.key_at is None
    while t.numel():
        n = t.numel()
        box = {**interval_env(env, tb, 0, t, (n,)), **{k: Interval(fo.lo[k][reg], fo.hi[k][reg]) for k in fo.lo}}
        tri = as_tri(free(Bounds, box), (n,))
        whole = tri.all_true & ~covered.any(1) & at_free
        fulls.append((t[whole], reg[whole]))
        # per query: an interval box of one query against the region's hull usually decides
        todo = (tri.can_true & ~whole).nonzero().flatten()
        tt, rr, cov = t[todo], reg[todo], covered[todo]
        inside, meets = _inside(ps, fo, free, rr[:, None], tiles[tt], values, env, ask=~cov)
        inside &= ~cov
        hit = inside.nonzero()
        cells.append((tt[hit[:, 0]], hit[:, 1], rr[hit[:, 0]]))
        # descend where some uncovered query meets a free key of the region but does not contain it
        cov = cov | inside
        go = (~cov & meets).any(1)
        tt, rr, cov, seen = tt[go], rr[go], cov[go], meets[go]
        nkids = fo.child_offsets[rr + 1] - fo.child_offsets[rr]
        chain = nkids == 1
        if bool(chain.any()):  # down the chain to its end at once, then on to the end's children
            found, cov[chain] = _down_chain(ps, fo, free, tiles, tt[chain], rr[chain], cov[chain], seen[chain], values, env)
            cells.append(found)
            rr = rr.clone()
            rr[chain] = fo.chain_nodes[fo.chain_end[fo.chain_of[rr[chain]]]]
            nkids = fo.child_offsets[rr + 1] - fo.child_offsets[rr]
        parent_of = torch.repeat_interleave(torch.arange(tt.numel()), nkids)
        local = torch.arange(int(nkids.sum())) - torch.repeat_interleave(torch.cumsum(nkids, 0) - nkids, nkids)
        t, reg, covered = tt[parent_of], fo.child_ids[fo.child_offsets[rr[parent_of]] + local], cov[parent_of]
    empty = torch.zeros(0, dtype=torch.int64)
    full_t = torch.cat([f[0] for f in fulls]) if fulls else empty
    full_r = torch.cat([f[1] for f in fulls]) if fulls else empty
    none = torch.full_like(full_r, -1)
    cell_t, cell_s, cell_r = (torch.cat([c[k] for c in cells]) if cells else empty for k in range(3))
    q = tiles[cell_t, cell_s]
    scope = {**exact_env(env, values, q, "i"), **{n: v[cell_r] for n, v in ps.regions.values.items()}}
    shape = (cell_r.numel(),)
    pos = []
    for fn in (ps.query_at, ps.key_at):
        p = torch.full(shape, -1, dtype=torch.int64) if fn is None else as_long(fn(Exact, scope), shape)
        if fn is not None:
            _check_c3(ps, torch.ones(shape, dtype=torch.bool), (p >= 0) & (p < L) & ps.members.contains(cell_r, p.clamp(0, max(0, L - 1)), L), L)
        pos.append(p)
    return Selection(
        full_t, unit_key(full_r, none, none, L), empty, empty, torch.zeros(0, T, dtype=torch.bool), cell_t, cell_s, unit_key(cell_r, pos[0], pos[1], L)
    )


def _inside(
    ps: PartitionState, fo: Forest, free: Fn, region: torch.Tensor, query: torch.Tensor, values: Mapping[str, torch.Tensor], env: Mapping[str, Any], ask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """For (region, query) pairs (broadcast to the query's shape): is the region inside the query's
    free keys, and may it hold a free key at all? The region's hull usually decides; the members
    settle the rest, only where `ask` (default: every pair)."""
    box = {**exact_env(env, values, query, "i"), **{k: Interval(fo.lo[k][region], fo.hi[k][region]) for k in fo.lo}}
    tri = as_tri(free(Bounds, box), query.shape)
    inside = tri.all_true.clone()
    unsure = (tri.mixed if ask is None else tri.mixed & ask).nonzero(as_tuple=True)
    if unsure[0].numel():
        inside[unsure] = _contained(free, ps.members, fo.pyramid, region.expand(query.shape)[unsure], query[unsure], values, env)
    return inside, tri.can_true


def _down_chain(
    ps: PartitionState,
    fo: Forest,
    free: Fn,
    tiles: torch.Tensor,
    t: torch.Tensor,
    reg: torch.Tensor,
    covered: torch.Tensor,
    seen: torch.Tensor,
    values: Mapping[str, torch.Tensor],
    env: Mapping[str, Any],
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """Below `reg` (one child each, down to its chain's end): per uncovered query that meets a free
    key of `reg`, the first region inside its free keys, found by bisection. Returns the cells and
    the covered flags after them."""
    entry, slot = (~covered & seen).nonzero().unbind(1)
    query = tiles[t[entry], slot]
    lo = fo.chain_pos[reg[entry]] + 1
    end = fo.chain_end[fo.chain_of[reg[entry]]]
    hi = end + 1
    while True:
        open_ = (lo < hi).nonzero().flatten()
        if not open_.numel():
            break
        mid = torch.div(lo[open_] + hi[open_], 2, rounding_mode="floor")
        ok, _ = _inside(ps, fo, free, fo.chain_nodes[mid], query[open_], values, env)
        hi[open_] = torch.where(ok, mid, hi[open_])
        lo[open_] = torch.where(ok, lo[open_], mid + 1)
    hit = lo <= end
    covered = covered.clone()
    covered[entry[hit], slot[hit]] = True
    return (t[entry[hit]], slot[hit], fo.chain_nodes[lo[hit]]), covered
