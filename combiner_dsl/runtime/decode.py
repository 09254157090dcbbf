"""Exact cached decoding for a prefix-stable causal spec: one new query at a time, O(|D_t| + |U_t|) logits.

For a spec whose rows do not depend on L (`combiner check` proves "streaming"), row t of a forward
over any length above t is row t over the prefix of length t + 1. So one plan built at a capacity
length (runtime/plan.py, no L x L work) tells every future step what it takes: query t reads the
direct keys of its tile row and the units its row selects. From that plan the cache knows, for
every position and unit, the last step that needs it, and keeps only what is still needed:

- raw q, k, v of a position while some later query takes it directly or some unit holding it (as a
  member or an at() position) is not yet summarised;
- the summary (k̄, v̄) of a unit from the step its last member arrives (it is complete: no later
  token joins it) to the last step that selects it.

Buffers are slot pools sized by the largest number of live entries (interval scheduling over the
plan), so the cache's bytes are what the pattern needs, not the prefix length. The caller is
responsible for prefix stability: `combiner check` proves it (`streaming`), `combiner_dsl.hf` checks it.
"""

from __future__ import annotations

import heapq
import math
import sys
from dataclasses import dataclass
from typing import Any

import torch

from .attention import combiner_attention
from .module import compute_dtype
from .plan import Bucket, Plan, Segment, build_plan
from .spec import PatternSpec

SCAN_TILES = 16  # query tiles scanned at once while deriving last uses (bounds the scan's memory)


def spec_of(attn: Any) -> PatternSpec:
    """The `PatternSpec` of a generated module (its class's module holds `SPEC`), or the spec itself."""
    found: Any = attn if _is_spec(attn) else getattr(sys.modules.get(type(attn).__module__), "SPEC", None)
    if not _is_spec(found):
        raise TypeError(f"expected a generated Combiner module or a PatternSpec, got {type(attn).__name__}")
    spec: PatternSpec = found
    return spec


def _is_spec(x: Any) -> bool:
    # a generated file carries its own copy of the PatternSpec class: compare by shape, not identity
    return all(hasattr(x, f) for f in ("name", "causal", "lets", "softmaxes", "features"))


def _slots(start: torch.Tensor, end: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Slot of each interval [start, end] (end < start: not stored) so that live intervals never share one."""
    slot = torch.full_like(start, -1)
    live = (end >= start).nonzero().flatten()
    order = live[torch.argsort(start[live], stable=True)].tolist()
    starts, ends = start.tolist(), end.tolist()
    busy: list[tuple[int, int]] = []  # (end, slot)
    free: list[int] = []
    n = 0
    for x in order:
        while busy and busy[0][0] < starts[x]:
            heapq.heappush(free, heapq.heappop(busy)[1])
        s = heapq.heappop(free) if free else n
        n = max(n, s + 1)
        slot[x] = s
        heapq.heappush(busy, (ends[x], s))
    return slot, n


@dataclass(frozen=True)
class _Seg:
    """One plan segment, indexed by query position."""

    seg: Segment
    where: torch.Tensor  # int64 [capacity]: flat query slot (tile * tile_q + row) of each position
    keypos: torch.Tensor  # int64 [n_ktiles, tile_k]: key position of each key slot, -1 padding


def _segment(seg: Segment, L: int) -> _Seg:
    T, Tk = seg.tile_q, seg.tile_k
    nq = seg.n_qtiles
    qslots = seg.query_slots if seg.query_slots is not None else torch.arange(nq * T)
    qslots = torch.where(qslots < L, qslots, -1)
    where = torch.empty(L, dtype=torch.int64)
    real = (qslots >= 0).nonzero().flatten()
    where[qslots[real]] = real
    nk = -(-L // Tk)
    kslots = seg.key_slots if seg.key_slots is not None else torch.arange(nk * Tk)
    kslots = torch.where(kslots < L, kslots, -1)
    return _Seg(seg, where, kslots[: kslots.numel() // Tk * Tk].view(-1, Tk))


class DecodePlan:
    """What every step of one softmax needs, for positions below `capacity` (shared by caches)."""

    def __init__(self, plan: Plan, capacity: int) -> None:
        self.plan, self.L = plan, capacity
        self.segs = [_segment(s, capacity) for s in plan.segments() if s.direct_tiles.shape[1] or s.unit_lists.shape[1]]
        U = plan.n_units
        last_direct = torch.full((capacity,), -1, dtype=torch.int64)
        self.unit_last = torch.full((U,), -1, dtype=torch.int64)
        for s in self.segs:
            self._last_uses(s, last_direct)
        # per unit: bucket, row and the step its last member (or at() position) arrives
        self.bucket_of = torch.zeros(U, dtype=torch.int64)
        self.complete = torch.full((U,), -1, dtype=torch.int64)
        need = last_direct.clone()  # last step that reads each position's raw q, k, v
        for b, bk in enumerate(plan.buckets):
            R, Ur = bk.query_pos.shape
            ids = bk.first_unit + torch.arange(R * Ur)
            self.bucket_of[ids] = b
            top = bk.members.amax(1)[:, None].expand(R, Ur)
            done = torch.maximum(top, torch.maximum(bk.query_pos, bk.key_pos)).flatten()
            used = self.unit_last[ids] >= 0
            self.complete[ids] = torch.where(used, done, -1)
            per_region = torch.where(used, done, -1).view(R, Ur).amax(1)
            for pos, by in ((bk.members, per_region[:, None].expand_as(bk.members)), (bk.query_pos, self.complete[ids].view(R, Ur)), (bk.key_pos, self.complete[ids].view(R, Ur))):
                ok = pos >= 0
                need.scatter_reduce_(0, pos[ok], by[ok], "amax")
        self.pos_slot, self.n_pos = _slots(torch.arange(capacity), need)
        self.need = need
        self.unit_slot, self.n_unit_slots = _slots(self.complete, torch.where(self.complete >= 0, self.unit_last, -1))
        order = torch.argsort(self.complete, stable=True)
        order = order[self.complete[order] >= 0]
        self.completing = order  # units by completion step
        self.complete_ptr = torch.searchsorted(self.complete[order], torch.arange(capacity + 1))

    def nbytes(self) -> int:
        """Bytes of the per-step tables (shared by every cache of this spec and capacity)."""
        tensors = [x for x in vars(self).values() if isinstance(x, torch.Tensor)]
        for s in self.segs:
            tensors += [s.where, s.keypos, *(x for x in vars(s.seg).values() if isinstance(x, torch.Tensor))]
        tensors += [x for bk in self.plan.buckets for x in vars(bk).values() if isinstance(x, torch.Tensor)]
        return sum(x.numel() * x.element_size() for x in tensors)

    def _last_uses(self, s: _Seg, last_direct: torch.Tensor) -> None:
        seg, T = s.seg, s.seg.tile_q
        nq = seg.n_qtiles
        qpos = torch.full((nq * T,), -1, dtype=torch.int64)
        qpos[s.where] = torch.arange(self.L)
        qpos = qpos.view(nq, T)
        for a in range(0, nq, SCAN_TILES):
            b = min(nq, a + SCAN_TILES)
            rows = (qpos[a:b] + 1)[:, None, :, None]  # [c, 1, T, 1]
            if seg.direct_tiles.shape[1]:
                last = (seg.direct_masks[a:b].long() * rows).amax(2) - 1  # [c, Dmax, Tk]
                dt = seg.direct_tiles[a:b].long()
                keys = s.keypos[dt.clamp(min=0)]  # [c, Dmax, Tk]
                ok = (dt >= 0)[:, :, None] & (keys >= 0) & (last >= 0)
                last_direct.scatter_reduce_(0, keys[ok], last[ok], "amax")
            if seg.unit_lists.shape[1]:
                last = (seg.unit_masks[a:b].long() * (qpos[a:b] + 1)[:, :, None]).amax(1) - 1  # [c, Umax]
                ul = seg.unit_lists[a:b].long()
                ok = (ul >= 0) & (last >= 0)
                self.unit_last.scatter_reduce_(0, ul[ok], last[ok], "amax")

    def row(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Query t's direct key positions and selected unit ids."""
        pos, units = [], []
        for s in self.segs:
            seg = s.seg
            flat = int(s.where[t])
            tile, r = divmod(flat, seg.tile_q)
            if seg.direct_tiles.shape[1]:
                dt = seg.direct_tiles[tile].long()
                keys = s.keypos[dt.clamp(min=0)]
                pos.append(keys[seg.direct_masks[tile, :, r] & (dt >= 0)[:, None] & (keys >= 0)])
            if seg.unit_lists.shape[1]:
                ul = seg.unit_lists[tile].long()
                units.append(ul[seg.unit_masks[tile, r] & (ul >= 0)])
        empty = torch.zeros(0, dtype=torch.int64)
        return torch.cat([empty, *pos]), torch.cat([empty, *units])


class DecodeCache:
    """The state of one batch of sequences for one layer: feed tokens with `extend` (or `step`)."""

    def __init__(self, spec: PatternSpec, max_length: int, batch: int, heads: int, kv_heads: int, head_dim: int, *,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", scale: float | None = None, plans: list[DecodePlan] | None = None) -> None:
        if not spec.causal:
            raise ValueError(f"{spec.name}: cached decoding needs a causal spec (a bidirectional row changes with every new token)")
        if heads % kv_heads:
            raise ValueError(f"kv_heads = {kv_heads} must divide heads = {heads}")
        self.spec, self.capacity, self.length = spec, max_length, 0
        self.B, self.H, self.Hkv, self.D = batch, heads, kv_heads, head_dim
        self.dtype, self.cdt, self.device = dtype, compute_dtype(dtype), torch.device(device)
        self.scale = 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
        self.plans = plans if plans is not None else decode_plans(spec, max_length)
        self.average = len(self.plans) > 1
        def zeros(h: int, n: int) -> torch.Tensor:
            return torch.zeros(batch, h, n, head_dim, dtype=self.cdt, device=self.device)

        self.state = [
            {"k": zeros(kv_heads, p.n_pos), "v": zeros(kv_heads, p.n_pos), "q": zeros(heads, p.n_pos), "kbar": zeros(kv_heads, p.n_unit_slots), "vbar": zeros(heads, p.n_unit_slots)}
            for p in self.plans
        ]

    def nbytes(self) -> int:
        """Bytes held for this batch (raw q/k/v slots and unit summaries; the shared plan not counted)."""
        return sum(x.numel() * x.element_size() for st in self.state for x in st.values())

    # ------------------------------------------------------------ feeding tokens

    def extend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention output [B, H, n, D] of n new tokens (q [B, H, n, D], k, v [B, Hkv, n, D]), cached for the next ones."""
        n = q.shape[2]
        if q.shape != (self.B, self.H, n, self.D) or k.shape != (self.B, self.Hkv, n, self.D) or v.shape != k.shape:
            raise ValueError(f"expected q [{self.B}, {self.H}, n, {self.D}] and k, v [{self.B}, {self.Hkv}, n, {self.D}], got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
        if self.length + n > self.capacity:
            raise ValueError(f"the decoding cache holds {self.capacity} positions; create it with a larger max_length")
        if self.length == 0 and n > 1:  # prefill: one forward over the prompt, then keep what later steps need
            out = combiner_attention(q, k, v, build_plan(self.spec, n).to(q.device), self.scale)
            self.ingest(q, k, v)
            return out
        return torch.cat([self.step(q[:, :, i : i + 1], k[:, :, i : i + 1], v[:, :, i : i + 1]) for i in range(n)], 2)

    def ingest(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Fill an empty cache from a whole prompt whose outputs the caller has already computed."""
        n = q.shape[2]
        if self.length != 0 or n > self.capacity:
            raise ValueError(f"ingest fills an empty cache of at most {self.capacity} positions (it holds {self.length}, the prompt has {n})")
        qc, kc, vc = (x.to(self.cdt) for x in (q, k, v))
        for p, st in zip(self.plans, self.state, strict=True):
            self._ingest(p, st, qc, kc, vc, n)
        self.length = n

    def step(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """One token: q [B, H, 1, D], k, v [B, Hkv, 1, D] -> its output [B, H, 1, D]."""
        t = self.length
        if t >= self.capacity:
            raise ValueError(f"the decoding cache holds {self.capacity} positions; create it with a larger max_length")
        qc, kc, vc = (x.to(self.cdt) for x in (q, k, v))
        outs = []
        for p, st in zip(self.plans, self.state, strict=True):
            s = int(p.pos_slot[t])
            if s >= 0:
                st["q"][:, :, s], st["k"][:, :, s], st["v"][:, :, s] = qc[:, :, 0], kc[:, :, 0], vc[:, :, 0]
            done = p.completing[int(p.complete_ptr[t]) : int(p.complete_ptr[t + 1])]
            if done.numel():
                self._summarise(p, st, done, st["q"], st["k"], st["v"], p.pos_slot)
            outs.append(self._attend(p, st, t, qc))
        self.length = t + 1
        out = outs[0] if len(outs) == 1 else torch.stack(outs).mean(0)
        return out.to(q.dtype)

    def _ingest(self, p: DecodePlan, st: dict[str, torch.Tensor], q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n: int) -> None:
        keep = (p.need[:n] >= n).nonzero().flatten()
        slot = p.pos_slot[keep].to(q.device)
        st["q"][:, :, slot], st["k"][:, :, slot], st["v"][:, :, slot] = q[:, :, keep], k[:, :, keep], v[:, :, keep]
        done = p.completing[: int(p.complete_ptr[n])]
        done = done[p.unit_last[done] >= n]
        if done.numel():
            self._summarise(p, st, done, q, k, v, torch.arange(n))

    def _summarise(self, p: DecodePlan, st: dict[str, torch.Tensor], units: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, index: torch.Tensor) -> None:
        """Summaries of complete units from raw rows (`index`: position -> row of q, k, v)."""
        B, Hkv, G, D = self.B, self.Hkv, self.H // self.Hkv, self.D
        for b in torch.unique(p.bucket_of[units]).tolist():
            bk: Bucket = p.plan.buckets[b]
            ids = units[p.bucket_of[units] == b]
            Ur = bk.query_pos.shape[1]
            r, u = torch.div(ids - bk.first_unit, Ur, rounding_mode="floor"), (ids - bk.first_unit) % Ur
            mem = bk.members[r]  # [n, S]
            valid = (mem >= 0).to(q.device)
            rows = index[mem.clamp(min=0)].to(q.device)
            km, vm = k[:, :, rows], v[:, :, rows]  # [B, Hkv, n, S, D]
            if bk.query_pool is not None:
                qbar = _pool(q[:, :, rows], bk.query_pool, valid)
            else:
                qbar = q[:, :, index[bk.query_pos[r, u]].to(q.device)]
            kbar = _pool(km, bk.key_pool, valid) if bk.key_pool is not None else k[:, :, index[bk.key_pos[r, u]].to(q.device)]
            logits = torch.einsum("bkgnd,bknsd->bkgns", qbar.view(B, Hkv, G, -1, D), km) * self.scale
            logits = logits.masked_fill(~valid, float("-inf"))
            vbar = torch.einsum("bkgns,bknsd->bkgnd", torch.softmax(logits, -1), vm).reshape(B, self.H, -1, D)
            slot = p.unit_slot[ids].to(q.device)
            st["kbar"][:, :, slot], st["vbar"][:, :, slot] = kbar, vbar

    def _attend(self, p: DecodePlan, st: dict[str, torch.Tensor], t: int, q: torch.Tensor) -> torch.Tensor:
        B, Hkv, G, D = self.B, self.Hkv, self.H // self.Hkv, self.D
        pos, units = p.row(t)
        ks = p.pos_slot[pos].to(q.device)
        us = p.unit_slot[units].to(q.device)
        qg = q.view(B, Hkv, G, D) * self.scale
        keys = torch.cat([st["k"][:, :, ks], st["kbar"][:, :, us]], 2)  # [B, Hkv, n, D]
        if keys.shape[2] == 0:
            return q.new_zeros(B, self.H, 1, D)
        w = torch.softmax(torch.matmul(qg, keys.transpose(-1, -2)), -1)  # [B, Hkv, G, n]
        nd = ks.numel()
        out = torch.matmul(w[..., :nd], st["v"][:, :, ks])
        if us.numel():  # unit values are per q head: [B, Hkv, G, units, D]
            out = out + torch.matmul(w[..., nd:, None].transpose(-1, -2), st["vbar"][:, :, us].view(B, Hkv, G, -1, D)).squeeze(-2)
        return out.reshape(B, self.H, 1, D)


def _pool(x: torch.Tensor, pool: str, valid: torch.Tensor) -> torch.Tensor:
    """Pool [B, H, n, S, D] over the valid members S (as the summary pass does)."""
    if pool == "max":
        return x.masked_fill(~valid[..., None], float("-inf")).amax(-2)
    total = x.masked_fill(~valid[..., None], 0.0).sum(-2)
    return total / valid.sum(1)[:, None].to(x.dtype) if pool == "mean" else total


def decode_plans(spec: PatternSpec, capacity: int) -> list[DecodePlan]:
    """The per-step tables of every softmax of `spec`, for positions below `capacity` (CPU, once per capacity)."""
    return [DecodePlan(p, capacity) for p in build_plan(spec, capacity).plans]


def new_cache(attn: Any, *, max_length: int, batch: int, heads: int, kv_heads: int | None = None, head_dim: int,
              dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", scale: float | None = None) -> DecodeCache:
    """A decoding cache for a generated module (or its `PatternSpec`); the spec must be prefix-stable."""
    return DecodeCache(spec_of(attn), max_length, batch, heads, kv_heads or heads, head_dim, dtype=dtype, device=device, scale=scale)
