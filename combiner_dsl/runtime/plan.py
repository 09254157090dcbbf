"""The attention plan (docs/plan-format.md): everything about a spec at one L that q, k, v do not change.

The spec arrives as rendered predicate functions (`PatternSpec`). Nothing is evaluated on the L x L
grid: direct tile pairs are classified coarse-to-fine with the interval domain (exact masks only for
mixed tiles), region members and selections are enumerated over the binders that no equation
determines, and selections are classified per (query tile, binder tuple) before any exact work.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from .classify import PartitionState, Selection, direct_masks, direct_pairs, forest, select_units
from .derived import derived_units
from .ops import MAX_LENGTH, DomainError, Exact
from .spec import DirectSpec, PartitionSpec, PatternSpec, SoftmaxSpec
from .tiling import Enumeration, Fn, Members, Order, TooManyTuples, as_long, members, natural_order, sorted_order
from .windows import Windows, window_family

# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Segment:
    """Part of one softmax computed in one tile order (the plan's own fields are the natural-order one)."""

    tile_q: int
    tile_k: int
    query_slots: torch.Tensor | None  # int64 [n_qtiles * tile_q] query of each slot, -1 padding; None: natural
    key_slots: torch.Tensor | None  # likewise for the keys of direct tiles
    direct_tiles: torch.Tensor  # int32 [n_qtiles, Dmax]
    direct_full: torch.Tensor  # bool [n_qtiles, Dmax]
    direct_masks: torch.Tensor  # bool [n_qtiles, Dmax, tile_q, tile_k]
    unit_lists: torch.Tensor  # int32 [n_qtiles, Umax]
    unit_masks: torch.Tensor  # bool [n_qtiles, tile_q, Umax]
    row_has: torch.Tensor  # bool [n_qtiles, tile_q]: the query has at least one logit in this segment

    @property
    def n_qtiles(self) -> int:
        return int(self.direct_tiles.shape[0])


@dataclass(frozen=True)
class Bucket:
    """Regions of one partition with similar sizes, and their units (`units` slots per region)."""

    members: torch.Tensor  # int64 [R, S], -1 padding
    sizes: torch.Tensor  # int64 [R]
    query_pos: torch.Tensor  # int64 [R, units]: at(...) position of the unit query, -1 if pooled or padding
    key_pos: torch.Tensor  # int64 [R, units]
    query_pool: str | None
    key_pool: str | None
    first_unit: int  # unit id of slot (0, 0); slot (r, u) is unit first_unit + r * units + u
    member_run: tuple[int, int] | None = None  # (start, row stride) when members[r, s] = start + r * stride + s
    query_run: tuple[int, int] | None = None  # likewise for query_pos (at() queries), so a view replaces a gather
    key_run: tuple[int, int] | None = None
    padded: bool = True  # some region is smaller than the bucket width
    windows: Windows | None = None  # pooled regions that are prefixes or suffixes of shared windows

    @property
    def n_units(self) -> int:
        return int(self.query_pos.numel())


def arithmetic_run(idx: torch.Tensor) -> tuple[int, int] | None:
    """(start, row stride) if idx[r, s] == start + r * stride + s everywhere (rows not overlapping), else None."""
    if idx.numel() == 0 or bool((idx < 0).any()):
        return None
    R, S = idx.shape
    start = int(idx[0, 0])
    stride = int(idx[1, 0]) - start if R > 1 else S
    if stride < S:
        return None
    want = start + stride * torch.arange(R)[:, None] + torch.arange(S)[None, :]
    return (start, stride) if torch.equal(idx, want) else None


@dataclass(frozen=True)
class Plan:
    """One joint softmax at one L: the fields of docs/plan-format.md, the summary buckets, extra segments."""

    L: int
    tile_q: int
    tile_k: int
    direct_tiles: torch.Tensor
    direct_full: torch.Tensor
    direct_masks: torch.Tensor
    n_units: int
    unit_lists: torch.Tensor
    unit_masks: torch.Tensor
    buckets: tuple[Bucket, ...]
    extra: tuple[Segment, ...]
    row_has: torch.Tensor  # bool [n_qtiles, tile_q]: the query has a logit in the natural-order segment

    def segments(self) -> tuple[Segment, ...]:
        main = Segment(
            self.tile_q, self.tile_k, None, None, self.direct_tiles, self.direct_full, self.direct_masks, self.unit_lists, self.unit_masks, self.row_has
        )
        return (main, *self.extra)


@dataclass(frozen=True)
class PatternPlan:
    L: int
    plans: tuple[Plan, ...]  # one, or one per spec plan for `mix: average`
    average: bool

    def to(self, device: torch.device | str) -> PatternPlan:
        moved: PatternPlan = _moved(self, torch.device(device))
        return moved


def _moved(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, tuple):
        return tuple(_moved(y, device) for y in x)
    if hasattr(x, "__dataclass_fields__"):
        return replace(x, **{f.name: _moved(getattr(x, f.name), device) for f in fields(x)})
    return x


# ---------------------------------------------------------------- building


class PlanError(ValueError):
    """The spec cannot be planned at this length (a failing expression, an at(...) outside its region)."""


def env_at(spec: PatternSpec, L: int) -> dict[str, Any]:
    return spec.lets(Exact, L)


def build_plan(spec: PatternSpec, L: int, tiles: tuple[int, ...] | None = None) -> PatternPlan:
    """The plan of `spec` at length L (the caller has checked the requires); `tiles` forces the tile sizes tried."""
    try:
        env = env_at(spec, L)
        values = feature_values(spec, env, L)
        plans = tuple(_Builder(spec, sm, env, values, L, tiles or tile_candidates(L)).build() for sm in spec.softmaxes)
    except DomainError as err:
        raise PlanError(f"{spec.name}: {err} at L = {L}") from None
    return PatternPlan(L, plans, spec.mix == "average")


def feature_values(spec: PatternSpec, env: dict[str, Any], L: int) -> dict[str, torch.Tensor]:
    """i, j and every feature (`i // s`, ...) at each position."""
    pos = torch.arange(L)
    values = {"i": pos, "j": pos}
    for f in spec.features:
        values[f.key] = as_long(f.expr(Exact, {**env, f.side: pos}), (L,)).clone()
    return values


def tile_candidates(L: int) -> tuple[int, ...]:
    top = 1 << max(0, (L - 1).bit_length())
    sizes = [t for t in (16, 32, 64, 128, 256) if t <= max(16, top)]
    return tuple(sizes[-4:])


def _or(preds: list[Fn]) -> Fn:
    if len(preds) == 1:
        return preds[0]
    return lambda d, e: d.or_(*(p(d, e) for p in preds))


@dataclass
class _SegmentWork:
    """A segment being planned: its signature, its work, and (once chosen) its tiling."""

    qsig: tuple[str, ...]
    ksig: tuple[str, ...]
    directs: list[DirectSpec]
    parts: list[int]  # indices into the softmax's partitions
    q: Order | None = None
    k: Order | None = None
    pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    selections: list[Selection] | None = None


class _Builder:
    """Plans one softmax; `counting=True` (the cost model) keeps only the sizes of pooled regions a written `select` picks."""

    def __init__(
        self, spec: PatternSpec, sm: SoftmaxSpec[DirectSpec, PartitionSpec], env: dict[str, Any], values: dict[str, torch.Tensor], L: int, tiles: tuple[int, ...], counting: bool = False
    ) -> None:
        self.spec, self.sm, self.env, self.values, self.L, self.tiles, self.counting = spec, sm, env, values, L, tiles, counting
        self._natural: dict[tuple[str, ...], bool] = {}

    def signature(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        """The order's feature keys, or () when sorting by them leaves positions in place."""
        if keys not in self._natural:
            self._natural[keys] = not keys or sorted_order(self.L, [self.values[k] for k in keys], 1).natural
        return () if self._natural[keys] else keys

    def order(self, sig: tuple[str, ...], T: int) -> Order:
        return natural_order(self.L, T) if not sig else sorted_order(self.L, [self.values[k] for k in sig], T)

    def partition_state(self, p: PartitionSpec) -> PartitionState:
        try:
            regions = Enumeration(p.binders, self.env)
        except TooManyTuples as err:
            err.partition = p.name  # so the compiler can locate it at the binder
            raise
        if (regions.count + 1) * (self.L + 1) ** 2 >= 2**62:  # unit keys pack (region, position, position) in int64
            raise PlanError(f"partition `{p.name}` has {regions.count} regions at L = {self.L}: too many for this planner")
        by_name = {b.name: b for b in p.binders}
        member_free = Enumeration(tuple(by_name[n] for n in p.member.free), self.env)
        mem = members(regions, member_free, p.member.solved, p.member.residual, self.env, self.L, sizes_only=self.counting and p.select is not None and p.query.at is None and p.key.at is None)
        if p.select is None:  # derived selection
            assert p.free is not None
            nothing = Enumeration((), self.env)
            return PartitionState(p.name, regions, mem, nothing, (), p.free, p.query.at, p.key.at, p.free, forest(p.name, mem, self.values))
        free = Enumeration(tuple(by_name[n] for n in p.select.free), self.env)
        return PartitionState(p.name, regions, mem, free, p.select.solved, p.select.residual, p.query.at, p.key.at)

    def build(self) -> Plan:
        L = self.L
        states = [self.partition_state(p) for p in self.sm.partitions]
        work = self.segments(states)
        buckets, uid_maps = self.summaries(work, states)
        n_units = sum(b.n_units for b in buckets)
        segments = [self.materialize(seg, states, uid_maps, n_units) for seg in work]
        main = segments[0]
        extra = tuple(s for s in segments[1:] if s.direct_tiles.shape[1] or s.unit_lists.shape[1])
        return Plan(
            L,
            main.tile_q,
            main.tile_k,
            main.direct_tiles,
            main.direct_full,
            main.direct_masks,
            n_units,
            main.unit_lists,
            main.unit_masks,
            tuple(buckets),
            extra,
            main.row_has,
        )

    def segments(self, states: list[PartitionState]) -> list[_SegmentWork]:
        """The softmax's work grouped by tile order (natural order first), each with its tiling chosen."""
        work: list[_SegmentWork] = [_SegmentWork((), (), [], [])]  # the natural-order segment comes first
        for d in self.sm.directs:
            qs, ks = self.signature(d.query_order), self.signature(d.key_order)
            seg = next((w for w in work if (w.qsig, w.ksig) == (qs, ks)), None)
            if seg is None:
                seg = _SegmentWork(qs, ks, [], [])
                work.append(seg)
            seg.directs.append(d)
        for n, p in enumerate(self.sm.partitions):
            qs = self.signature(p.order)
            seg = next((w for w in work if w.qsig == qs), None)
            if seg is None:
                seg = _SegmentWork(qs, (), [], [])
                work.append(seg)
            seg.parts.append(n)
        for seg in work:
            self.choose_tiling(seg, states)
        return work

    def choose_tiling(self, seg: _SegmentWork, states: list[PartitionState]) -> None:
        """Try a few tile sizes; keep the one with the least padded work (larger tiles run faster per element)."""
        best: tuple[float, int] | None = None
        for T in self.tiles:
            q = self.order(seg.qsig, T)
            k = self.order(seg.ksig, T)
            empty = torch.zeros(0, dtype=torch.int64)
            pairs = direct_pairs(_or([d.pred for d in seg.directs]), q, k, self.values, self.env) if seg.directs else (empty, empty, empty.bool())
            sels = [_selection(states[n], q, self.values, self.env, self.L, self.counting) for n in seg.parts]
            if len(self.tiles) == 1:  # nothing to choose between
                seg.q, seg.k, seg.pairs, seg.selections = q, k, pairs, sels
                return
            # padded logits (tiles with equal direct counts share chunks); small tiles run slower per logit
            work = pairs[0].numel() * T * T + sum(s.tile_unit_pairs() for s in sels) * T
            cost = work * (1.0 + 32.0 / T)
            if best is None or cost <= best[0] * 1.03:  # near-ties go to the larger tile
                best = (cost, T)
                seg.q, seg.k, seg.pairs, seg.selections = q, k, pairs, sels

    def summaries(self, work: list[_SegmentWork], states: list[PartitionState]) -> tuple[list[Bucket], dict[int, tuple[torch.Tensor, torch.Tensor]]]:
        """Buckets of every partition's selected units; per partition, its sorted unit keys and their ids."""
        buckets: list[Bucket] = []
        uid_maps: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        first = 0
        for seg in work:
            assert seg.selections is not None
            for n, sel in zip(seg.parts, seg.selections, strict=True):
                p = self.sm.partitions[n]
                keys = torch.unique(sel.keys())
                made, uids, first = _buckets(states[n].members, p.query.pool, p.key.pool, keys, self.L, first)
                buckets += made
                uid_maps[n] = (keys, uids)
        return buckets, uid_maps

    def materialize(self, seg: _SegmentWork, states: list[PartitionState], uid_maps: dict[int, tuple[torch.Tensor, torch.Tensor]], n_units: int) -> Segment:
        assert seg.q is not None and seg.k is not None and seg.pairs is not None and seg.selections is not None
        q, k = seg.q, seg.k
        nq, T = q.n_tiles, q.tile
        cq, ck, full = seg.pairs
        masks = (
            direct_masks(_or([d.pred for d in seg.directs]), q, k, cq, ck, full, self.values, self.env)
            if seg.directs
            else torch.zeros(0, T, T, dtype=torch.bool)
        )
        some = masks.flatten(1).any(1)
        cq, ck, full, masks = cq[some], ck[some], full[some], masks[some]
        pair_order = torch.argsort(cq * max(1, k.n_tiles) + ck)
        cq, ck, full, masks = cq[pair_order], ck[pair_order], full[pair_order], masks[pair_order]
        rank = _ranks(cq, cq, nq)
        dmax = int(rank.max()) + 1 if rank.numel() else 0
        direct_tiles = torch.full((nq, dmax), -1, dtype=torch.int32)
        direct_full = torch.zeros(nq, dmax, dtype=torch.bool)
        dmask = torch.zeros(nq, dmax, T, T, dtype=torch.bool)
        direct_tiles[cq, rank] = ck.int()
        direct_full[cq, rank] = full
        dmask[cq, rank] = masks
        rows_real = q.tiles() >= 0  # [nq, T]
        tiles, cols, col_masks, cell_tiles, cell_slots, cell_uids = [], [], [], [], [], []
        for n, sel in zip(seg.parts, seg.selections, strict=True):
            keys, uids = uid_maps[n]
            tiles += [sel.full_tile, sel.col_tile]
            cols += [uids[torch.searchsorted(keys, sel.full_key)], uids[torch.searchsorted(keys, sel.col_key)]]
            col_masks += [rows_real[sel.full_tile], sel.col_mask]
            cell_tiles.append(sel.cell_tile)
            cell_slots.append(sel.cell_slot)
            cell_uids.append(uids[torch.searchsorted(keys, sel.cell_key)])
        empty = torch.zeros(0, dtype=torch.int64)
        col_t, col_u = torch.cat([empty, *tiles]), torch.cat([empty, *cols])
        cell_t, cell_s, cell_u = torch.cat([empty, *cell_tiles]), torch.cat([empty, *cell_slots]), torch.cat([empty, *cell_uids])
        col_m = torch.cat([torch.zeros(0, T, dtype=torch.bool), *col_masks])
        U = max(1, n_units)
        pair_keys, inv = torch.unique(torch.cat([col_t * U + col_u, cell_t * U + cell_u]), return_inverse=True)
        pair_tile = torch.div(pair_keys, U, rounding_mode="floor")
        prank = _ranks(pair_keys, pair_tile, nq)
        umax = int(prank.max()) + 1 if prank.numel() else 0
        unit_lists = torch.full((nq, umax), -1, dtype=torch.int32)
        unit_lists[pair_tile, prank] = (pair_keys - pair_tile * U).int()
        unit_masks = torch.zeros(nq, T, umax, dtype=torch.bool)
        n_col = col_t.numel()
        col_c = prank[inv[:n_col]]
        if torch.unique(inv[:n_col]).numel() == n_col:  # each (tile, unit) column once: plain writes
            unit_masks[col_t, :, col_c] = col_m
        else:  # several binder tuples gave one unit: OR their columns
            hits = torch.zeros(nq, umax, T, dtype=torch.uint8)
            hits.index_put_((col_t, col_c), col_m.to(torch.uint8), accumulate=True)
            unit_masks |= (hits > 0).transpose(1, 2)
        unit_masks[cell_t, cell_s, prank[inv[n_col:]]] = True
        row_has = dmask.any(3).any(1) | unit_masks.any(2)
        return Segment(
            T, k.tile, None if q.natural else q.slots, None if k.natural else k.slots, direct_tiles, direct_full, dmask, unit_lists, unit_masks, row_has
        )


def _ranks(sorted_keys: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Rank of each entry within its group; entries come sorted by key, groups ascending."""
    counts = torch.bincount(group, minlength=n_groups)
    start = torch.cumsum(counts, 0) - counts
    return torch.arange(sorted_keys.numel()) - start[group]


def _buckets(mem: Members, query_pool: str | None, key_pool: str | None, keys: torch.Tensor, L: int, first: int) -> tuple[list[Bucket], torch.Tensor, int]:
    """Group the units' regions by size (exact sizes when few, else powers of two); number the unit slots."""
    per_region = (L + 1) * (L + 1)
    region = torch.div(keys, per_region, rounding_mode="floor")
    rest = keys - region * per_region
    qpos = torch.div(rest, L + 1, rounding_mode="floor") - 1
    kpos = rest % (L + 1) - 1
    regs, inv, counts = torch.unique_consecutive(region, return_inverse=True, return_counts=True)
    rank = torch.arange(keys.numel()) - (torch.cumsum(counts, 0) - counts)[inv]
    sizes = mem.sizes[regs]
    windows = None
    if query_pool is not None and key_pool is not None and regs.numel():  # one unit per region
        whole = mem.padded(regs, int(sizes.max()))
        windows = window_family(whole, sizes)
    if windows is not None:
        bkey = torch.zeros_like(sizes)  # one bucket: the windows are read whole anyway
    elif torch.unique(sizes).numel() <= 16:
        bkey = sizes
    else:
        bkey = torch.pow(2, torch.ceil(torch.log2(sizes.double())).long())
    uids = torch.empty_like(keys)
    out: list[Bucket] = []
    for bk in torch.unique(bkey).tolist():
        sel = (bkey == bk).nonzero().flatten()
        S, Ur = int(sizes[sel].max()), int(counts[sel].max())
        where = torch.full((regs.numel(),), -1, dtype=torch.int64)
        where[sel] = torch.arange(sel.numel())
        mine = (bkey[inv] == bk).nonzero().flatten()
        rho, kap = where[inv[mine]], rank[mine]
        qp = torch.full((sel.numel(), Ur), -1, dtype=torch.int64)
        kp = torch.full((sel.numel(), Ur), -1, dtype=torch.int64)
        qp[rho, kap] = qpos[mine]
        kp[rho, kap] = kpos[mine]
        uids[mine] = first + rho * Ur + kap
        members = whole if windows is not None else mem.padded(regs[sel], S)  # (windows: one bucket of every region)
        out.append(Bucket(
            members, sizes[sel], qp, kp, query_pool, key_pool, first,
            member_run=arithmetic_run(members),
            query_run=arithmetic_run(qp) if query_pool is None else None,
            key_run=arithmetic_run(kp) if key_pool is None else None,
            padded=bool((sizes[sel] < S).any()),
            windows=windows,
        ))
        first += sel.numel() * Ur
    return out, uids, first


def _selection(ps: PartitionState, order: Order, values: dict[str, torch.Tensor], env: dict[str, Any], L: int, counting: bool) -> Selection:
    if ps.free_fn is not None and ps.regions.count:
        return derived_units(ps, order, values, env, L)
    return select_units(ps, order, values, env, L, counting)


def length_problem(spec: PatternSpec, L: int) -> str | None:
    """Why the spec rejects length L (None when it accepts it)."""
    if isinstance(L, bool) or not isinstance(L, int) or L < 1:
        return f"L = {L!r}: the sequence length must be an integer of at least 1"
    if L > MAX_LENGTH:
        return f"L = {L}: longer than the longest supported length, {MAX_LENGTH}"
    try:
        env = env_at(spec, L)
        for text, fn in spec.requires:
            if not bool(fn(Exact, env)):
                return f"L = {L} is rejected by `require {text}`"
    except DomainError as err:
        return f"L = {L}: {err} while evaluating the spec's lets and requires"
    return None
