"""The exchange schedule of context parallelism, read from a plan at the global length.

Rank r owns the positions [r*C, min((r+1)*C, L)). From the plan at the global L this module derives,
for every rank: the plan's segments restricted to its own queries (key tiles and units renumbered
into local buffers), the raw keys of other ranks its queries take directly, the summary units they
select, and its share of every summary (the members of a region it owns). Every rank builds the
same schedule for all ranks, so what a rank sends is known to its receiver without any metadata.

A `Gather` moves rows keyed by id (a position or a unit) between ranks and says how the receiver
merges the contributions of several ranks to one id (a region straddling ranks has one partial
summary per rank that owns some of its members).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..runtime.plan import Segment, _moved, arithmetic_run

POOL_CODE = {"max": 0, "sum": 1, "mean": 2, None: 3}  # None: an at(...) unit, one contribution


@dataclass(frozen=True)
class Gather:
    """Rows keyed by id, moved between ranks and merged per id.

    `send[x][y]`: rows of rank x's local array that go to rank y (empty when x == y).
    `index[y]`: `[n_targets, m]` rows of y's table (its local rows, then the rows received from each
    other rank in rank order), every contribution to each target id; -1 pads.
    """

    send: tuple[tuple[torch.Tensor, ...], ...]
    index: tuple[torch.Tensor, ...]

    def rows(self, src: int, dst: int) -> int:
        return int(self.send[src][dst].numel())


def _member(ids: torch.Tensor, sorted_targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(is ids[i] among the targets, its position in them)."""
    if sorted_targets.numel() == 0:
        return torch.zeros_like(ids, dtype=torch.bool), torch.zeros_like(ids)
    pos = torch.searchsorted(sorted_targets, ids).clamp(max=sorted_targets.numel() - 1)
    return sorted_targets[pos] == ids, pos


def make_gather(layouts: list[torch.Tensor], valid: list[torch.Tensor], targets: list[torch.Tensor]) -> Gather:
    """Rank x holds rows with ids `layouts[x]` (contributing where `valid[x]`); rank y wants `targets[y]` (unique ids)."""
    W = len(layouts)
    send: list[list[torch.Tensor]] = [[] for _ in range(W)]
    order = [torch.sort(t) for t in targets]
    for x in range(W):
        for y in range(W):
            if x == y:
                send[x].append(torch.zeros(0, dtype=torch.int64))
                continue
            hit, _ = _member(layouts[x], order[y].values)
            rows = (hit & valid[x]).nonzero().flatten()
            send[x].append(rows[torch.argsort(layouts[x][rows], stable=True)])
    index = []
    for y in range(W):
        sorted_t, perm = order[y]
        tgt, row = [], []
        base = 0
        for src in [y, *(s for s in range(W) if s != y)]:  # the table: local rows, then each other rank's
            rows = torch.arange(layouts[y].numel()) if src == y else send[src][y]
            ids = layouts[src][rows]
            hit, pos = _member(ids, sorted_t)
            if src == y:
                hit &= valid[y]
            tgt.append(perm[pos[hit]])
            row.append(base + hit.nonzero().flatten() if src != y else rows[hit])
            base += int(rows.numel())
        t, r = torch.cat(tgt), torch.cat(row)
        by = torch.argsort(t, stable=True)
        t, r = t[by], r[by]
        counts = torch.bincount(t, minlength=targets[y].numel())
        rank = torch.arange(t.numel()) - (torch.cumsum(counts, 0) - counts)[t]
        idx = torch.full((targets[y].numel(), int(counts.max()) if counts.numel() else 0), -1, dtype=torch.int64)
        idx[t, rank] = r
        index.append(idx)
    return Gather(tuple(tuple(s) for s in send), tuple(index))


# ---------------------------------------------------------------- per-rank schedule


@dataclass(frozen=True)
class SummaryPart:
    """A rank's share of one bucket: its members of the active regions it touches, local indices."""

    members: torch.Tensor  # int64 [n, S'] local row of the member in the rank's chunk, -1 padding
    run: tuple[int, int] | None  # (start, row stride) when members[r, s] = start + r * stride + s: read as a view
    padded: bool  # some row has fewer members than the width (masks needed)
    query_pos: torch.Tensor  # int64 [n, Ur] local row of the at() query if the rank owns it, else -1
    key_pos: torch.Tensor  # likewise for the at() key
    query_pool: str | None
    key_pool: str | None


@dataclass(frozen=True)
class RankSchedule:
    """What one rank computes for one softmax of the plan."""

    lo: int  # first position owned
    n_real: int  # positions owned below L
    parts: tuple[SummaryPart, ...]  # the rank's summary slots, in this order, Ur per region
    q_kind: torch.Tensor  # int64 per slot of `parts`: POOL_CODE of the query summary
    q_div: torch.Tensor  # float64 per slot: region size for a mean, else 1
    k_kind: torch.Tensor  # per unit the rank's queries select (sorted ids): POOL_CODE of the key summary
    k_div: torch.Tensor
    segments: tuple[Segment, ...]  # the plan's segments on the rank's queries, keys and units


@dataclass(frozen=True)
class PlanSchedule:
    """One softmax: per-rank work and the four row exchanges (raw k/v; partial queries, keys, values)."""

    ranks: tuple[RankSchedule, ...]
    kv: Gather  # raw key/value rows: ids are positions
    q: Gather  # partial pooled queries (or at() queries) of the summary slots a rank shares
    k: Gather  # partial unit keys, to the ranks whose queries select the unit
    ov: Gather  # partial (local expectation, log-sum-exp) of each unit

    def to(self, device: torch.device) -> PlanSchedule:
        moved: PlanSchedule = _moved(self, device)
        return moved


def _slots(slots: torch.Tensor | None, n: int, T: int, L: int) -> torch.Tensor:
    """[n, T] positions of the tiles' slots (-1 padding)."""
    if slots is not None:
        return slots.view(n, T)
    pos = torch.arange(n * T)
    return torch.where(pos < L, pos, -1).view(n, T)


@dataclass
class _Restricted:
    """A segment cut to one rank's query tiles, before keys and units are renumbered."""

    seg: Segment
    qslots: torch.Tensor  # [n * T] local query rows, -1 elsewhere
    kpos: torch.Tensor  # [n_ktiles_global, Tk] key positions of the segment's key tiles
    dt: torch.Tensor  # [n, D'] global key tiles, -1 padding (used slots first)
    full: torch.Tensor
    dmask: torch.Tensor  # [n, D', T, Tk]
    ul: torch.Tensor  # [n, U'] global unit ids, -1 padding
    umask: torch.Tensor  # [n, T, U']


def _compact(used: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Per row, a permutation bringing the used columns first (order kept), and the widest count."""
    perm = torch.argsort((~used).to(torch.int8), dim=1, stable=True)
    return perm, int(used.sum(1).max()) if used.numel() else 0


def _restrict(seg: Segment, L: int, lo: int, hi: int) -> _Restricted | None:
    T, Tk = seg.tile_q, seg.tile_k
    qpos = _slots(seg.query_slots, seg.n_qtiles, T, L)
    own = (qpos >= lo) & (qpos < hi)
    kt = own.any(1).nonzero().flatten()
    if kt.numel() == 0:
        return None
    own_t = own[kt]
    n_ktiles = seg.key_slots.numel() // Tk if seg.key_slots is not None else -(-L // Tk)
    kpos = _slots(seg.key_slots, n_ktiles, Tk, L)
    dt = seg.direct_tiles[kt].long()
    dmask = seg.direct_masks[kt] & own_t[:, None, :, None]
    used = dmask.flatten(2).any(2) & (dt >= 0)
    perm, width = _compact(used)
    dt = torch.where(used, dt, -1).gather(1, perm)[:, :width]
    full = (seg.direct_full[kt] & own_t.all(1)[:, None] & used).gather(1, perm)[:, :width]
    dmask = dmask[torch.arange(kt.numel())[:, None], perm[:, :width]]
    ul = seg.unit_lists[kt].long()
    umask = seg.unit_masks[kt] & own_t[:, :, None]
    uused = umask.any(1) & (ul >= 0)
    uperm, uwidth = _compact(uused)
    ul = torch.where(uused, ul, -1).gather(1, uperm)[:, :uwidth]
    umask = umask.gather(2, uperm[:, None, :].expand(-1, T, -1))[:, :, :uwidth]
    qslots = torch.where(own_t, qpos[kt] - lo, -1).flatten()
    return _Restricted(seg, qslots, kpos, dt, full, dmask, ul, umask)


def _needed_keys(r: _Restricted) -> torch.Tensor:
    """Positions of the keys some own query takes directly."""
    if r.dt.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    cols = r.dmask.any(2) & (r.dt >= 0)[..., None]  # [n, D', Tk]
    needed: torch.Tensor = torch.unique(r.kpos[r.dt.clamp(min=0)][cols])
    return needed


def _finish(r: _Restricted, key_rows: torch.Tensor, kv_targets: torch.Tensor, units: torch.Tensor) -> Segment:
    """The local segment: key tiles renumbered, key slots pointing at table rows, unit ids local."""
    tiles = torch.unique(r.dt[r.dt >= 0])
    dt = torch.where(r.dt >= 0, torch.searchsorted(tiles, r.dt.clamp(min=0)), -1)
    kpos = r.kpos[tiles].flatten()
    hit, pos = _member(kpos, kv_targets)
    kslots = torch.where(hit & (kpos >= 0), key_rows[pos], -1) if kv_targets.numel() else torch.full_like(kpos, -1)
    ul = torch.where(r.ul >= 0, torch.searchsorted(units, r.ul.clamp(min=0)), -1)
    row_has = r.dmask.any(3).any(1) | r.umask.any(2)
    seg = r.seg
    return Segment(seg.tile_q, seg.tile_k, r.qslots, kslots, dt.int(), r.full, r.dmask, ul.int(), r.umask, row_has)


def _part(
    parts: list[SummaryPart],
    layout: list[torch.Tensor],
    q_ok: list[torch.Tensor],
    k_ok: list[torch.Tensor],
    q_kind: list[torch.Tensor],
    q_div: list[torch.Tensor],
    bk: Any,
    rows: torch.Tensor,
    mine: torch.Tensor,
    slot_ids: torch.Tensor,
    slot_active: torch.Tensor,
    lo: int,
    hi: int,
) -> None:
    """Append one rank's share of some regions of a bucket (`rows`) to its slot layout."""
    Ur = bk.query_pos.shape[1]
    perm, width = _compact(mine[rows])
    mem = torch.where(mine[rows], bk.members[rows] - lo, -1).gather(1, perm)[:, :width]
    qp, kp = bk.query_pos[rows], bk.key_pos[rows]
    qloc = torch.where((qp >= lo) & (qp < hi), qp - lo, -1)
    kloc = torch.where((kp >= lo) & (kp < hi), kp - lo, -1)
    parts.append(SummaryPart(mem, arithmetic_run(mem), bool((mem < 0).any()), qloc, kloc, bk.query_pool, bk.key_pool))
    act = slot_active[rows].flatten()
    layout.append(slot_ids[rows].flatten())
    q_ok.append(act & ((qloc >= 0).flatten() if bk.query_pool is None else True))
    k_ok.append(act & ((kloc >= 0).flatten() if bk.key_pool is None else True))
    q_kind.append(torch.full((rows.numel() * Ur,), POOL_CODE[bk.query_pool], dtype=torch.int64))
    size = bk.sizes[rows].double() if bk.query_pool == "mean" else torch.ones(rows.numel(), dtype=torch.float64)
    q_div.append(size.repeat_interleave(Ur))


def build_schedule(plan: Any, W: int, C: int) -> PlanSchedule:
    """The schedule of one `Plan` (one softmax) at its L, for W ranks holding C positions each."""
    L = int(plan.L)
    spans = [(min(L, r * C), min(L, (r + 1) * C)) for r in range(W)]
    restricted = [[x for x in (_restrict(s, L, lo, hi) for s in plan.segments()) if x is not None] for lo, hi in spans]
    own = [torch.arange(lo, hi) for lo, hi in spans]
    kv_targets = [torch.unique(torch.cat([own[r], *(_needed_keys(x) for x in restricted[r])])) for r in range(W)]
    kv = make_gather(own, [torch.ones(o.numel(), dtype=torch.bool) for o in own], kv_targets)
    units = [torch.unique(torch.cat([torch.zeros(0, dtype=torch.int64), *(x.ul[x.ul >= 0] for x in restricted[r])])) for r in range(W)]
    active = torch.unique(torch.cat([torch.zeros(0, dtype=torch.int64), *units]))

    # every rank's share of the active regions, slot layout bucket by bucket, Ur slots per region
    n_units = max(1, int(plan.n_units))
    unit_kind = torch.full((n_units,), 3, dtype=torch.int64)
    unit_div = torch.ones(n_units, dtype=torch.float64)
    parts: list[list[SummaryPart]] = [[] for _ in range(W)]
    layout: list[list[torch.Tensor]] = [[] for _ in range(W)]
    q_ok: list[list[torch.Tensor]] = [[] for _ in range(W)]
    k_ok: list[list[torch.Tensor]] = [[] for _ in range(W)]
    q_kind: list[list[torch.Tensor]] = [[] for _ in range(W)]
    q_div: list[list[torch.Tensor]] = [[] for _ in range(W)]
    for bk in plan.buckets:
        R, Ur = bk.query_pos.shape
        slot_ids = bk.first_unit + torch.arange(R)[:, None] * Ur + torch.arange(Ur)[None, :]
        flat = slot_ids.flatten()
        unit_kind[flat] = POOL_CODE[bk.key_pool]
        if bk.key_pool == "mean":
            unit_div[flat] = bk.sizes.double().repeat_interleave(Ur)
        slot_active = torch.isin(slot_ids, active)
        region_active = slot_active.any(1)
        for x, (lo, hi) in enumerate(spans):
            mine = (bk.members >= lo) & (bk.members < hi)
            whole = (mine | (bk.members < 0)).all(1)
            touched = mine.any(1) & region_active
            # regions wholly owned first (often back-to-back runs, read as views), then shared ones
            for rows in ((touched & whole).nonzero().flatten(), (touched & ~whole).nonzero().flatten()):
                if rows.numel():
                    _part(parts[x], layout[x], q_ok[x], k_ok[x], q_kind[x], q_div[x], bk, rows, mine, slot_ids, slot_active, lo, hi)

    def cat(xs: list[torch.Tensor], dtype: torch.dtype = torch.int64) -> torch.Tensor:
        return torch.cat(xs) if xs else torch.zeros(0, dtype=dtype)

    lay = [cat(layout[x]) for x in range(W)]
    qok = [cat(q_ok[x], torch.bool) for x in range(W)]
    kok = [cat(k_ok[x], torch.bool) for x in range(W)]
    ovok = [torch.isin(lay[x], active) for x in range(W)]
    q = make_gather(lay, qok, lay)
    k = make_gather(lay, kok, units)
    ov = make_gather(lay, ovok, units)
    ranks = []
    for r, (lo, hi) in enumerate(spans):
        rows = kv.index[r][:, 0] if kv.index[r].numel() else torch.zeros(0, dtype=torch.int64)
        segs = tuple(_finish(x, rows, kv_targets[r], units[r]) for x in restricted[r])
        segs = tuple(s for s in segs if s.direct_tiles.shape[1] or s.unit_lists.shape[1])
        ranks.append(RankSchedule(lo, hi - lo, tuple(parts[r]), cat(q_kind[r]), cat(q_div[r], torch.float64), unit_kind[units[r]], unit_div[units[r]], segs))
    return PlanSchedule(tuple(ranks), kv, q, k, ov)
