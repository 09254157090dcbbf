"""Combiner's factorization as ONE FlexAttention call, on the plan's device (CPU or CUDA).

The L real keys come first, then (after padding to a whole block) the plan's U summary units as extra
keys: keys [0, L) are real, keys [Lp, Lp + U) are kbar / vbar. The BlockMask is built from the plan's
(query, key) and (query, unit) pairs, every segment included (sorted query / key orders too), never
from an L x L grid; inside partial blocks `mask_mod` reads the plan's own masks through gather
tables, so Flex computes exactly the joint softmax our kernels compute. Works on the plan as
`PatternPlan.plans[n]` (a `Plan` with `segments()`, `n_units`); imports only torch.

Same construction as `build_flex` in bench_cpu.py (which came first, CPU only); this one takes the
device from the plan so that bench_gpu.py can run it on CUDA.
"""

from __future__ import annotations

from typing import Any

import torch

BLOCK = 128  # Flex's default sparse block


def _segment_pairs(seg: Any, L: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every pair of a segment as flat tensors: direct (query, key) and unit (query, unit id)."""
    dev = seg.direct_tiles.device
    T, Tk = seg.tile_q, seg.tile_k
    nq = seg.direct_tiles.shape[0]
    qslots = seg.query_slots if seg.query_slots is not None else torch.arange(nq * T, device=dev)
    qslots = torch.where(qslots < L, qslots, -1).view(nq, T)
    t, d, r, c = seg.direct_masks.nonzero().unbind(1)
    key = seg.direct_tiles[t, d].long() * Tk + c
    if seg.key_slots is not None:
        key = seg.key_slots[key]
    t2, r2, s2 = seg.unit_masks.nonzero().unbind(1)
    return qslots[t, r], key, qslots[t2, r2], seg.unit_lists[t2, s2].long()


def _routing(seg: Any, L: int, U: int) -> tuple[torch.Tensor, ...]:
    """Gather tables answering "does query i take key j / unit u in this segment" (no search in a mask_mod)."""
    dev = seg.direct_tiles.device
    T, Tk = seg.tile_q, seg.tile_k
    nq = seg.direct_tiles.shape[0]

    def place(slots: torch.Tensor | None, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(L, device=dev)
        if slots is not None:
            filled = (slots >= 0).nonzero().flatten()
            pos = torch.empty(L, dtype=torch.int64, device=dev)
            pos[slots[filled]] = filled
        return (pos // tile).int(), (pos % tile).int()

    qtile, qrow = place(seg.query_slots, T)
    ktile, kcol = place(seg.key_slots, Tk)
    nk = int(ktile.max()) + 1
    small = torch.int16 if max(seg.direct_tiles.shape[1], seg.unit_lists.shape[1]) < 2**15 else torch.int32
    slot_of = torch.full((nq, nk + 1), -1, dtype=small, device=dev)
    dt = seg.direct_tiles.long()
    rows = torch.arange(nq, device=dev)[:, None]
    slot_of[rows.expand_as(dt), torch.where(dt >= 0, dt, nk)] = torch.arange(dt.shape[1], dtype=small, device=dev)[None, :].expand_as(dt)
    upos = torch.full((nq, max(U, 1) + 1), -1, dtype=small, device=dev)
    ul = seg.unit_lists.long()
    upos[rows.expand_as(ul), torch.where(ul >= 0, ul, max(U, 1))] = torch.arange(ul.shape[1], dtype=small, device=dev)[None, :].expand_as(ul)
    dm = seg.direct_masks if seg.direct_masks.shape[1] else torch.zeros(nq, 1, T, Tk, dtype=torch.bool, device=dev)
    um = seg.unit_masks if seg.unit_masks.shape[2] else torch.zeros(nq, T, 1, dtype=torch.bool, device=dev)
    return qtile, qrow, ktile, kcol, slot_of[:, :nk].contiguous(), dm.contiguous(), upos[:, : max(U, 1)].contiguous(), um.contiguous()


def build_flex(plan: Any, L: int, block: int = BLOCK) -> tuple[Any, int, int]:
    """(BlockMask, Lp, U) for one plan: keys [0, L) real, [Lp, Lp + U) units."""
    from torch.nn.attention.flex_attention import BlockMask

    dev = plan.direct_tiles.device
    U = int(plan.n_units)
    nQ = -(-L // block)
    Lp = nQ * block
    nK = nQ + -(-max(U, 1) // block)
    dq, dk, uq, uu = (torch.cat(x) for x in zip(*(_segment_pairs(s, L) for s in plan.segments()), strict=True))
    qi, kj = torch.cat([dq, uq]), torch.cat([dk, Lp + uu])
    count = torch.bincount((qi // block) * nK + kj // block, minlength=nQ * nK).view(nQ, nK)
    del dq, dk, uq, uu, qi, kj
    sizes = torch.clamp(L - torch.arange(nQ, device=dev) * block, max=block)
    full = torch.zeros(nQ, nK, dtype=torch.bool, device=dev)
    full[:, :nQ] = count[:, :nQ] == sizes[:, None] * sizes[None, :]  # direct sets of segments are disjoint
    partial = (count > 0) & ~full

    def lists(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.argsort((~m).to(torch.int8), dim=1, stable=True).to(torch.int32)  # used blocks first
        return m.sum(1).to(torch.int32)[None, None], idx[None, None].contiguous()

    routes = [_routing(seg, L, U) for seg in plan.segments()]

    def mask_mod(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        qq = torch.clamp(q_idx, max=L - 1)  # Flex pads the lengths: clamp every gather
        jj = torch.clamp(kv_idx, max=L - 1)
        u = torch.clamp(kv_idx - Lp, 0, max(U, 1) - 1)
        hit = (q_idx < 0) & (kv_idx < 0)  # all false, with the right shape
        for qtile, qrow, ktile, kcol, slot_of, dm, upos, um in routes:
            t, r = qtile[qq], qrow[qq]
            slot = slot_of[t, ktile[jj]]
            direct = (kv_idx < L) & (slot >= 0) & dm[t, torch.clamp(slot, min=0).int(), r, kcol[jj]]
            pos = upos[t, u]
            unit = (kv_idx >= Lp) & (pos >= 0) & um[t, r, torch.clamp(pos, min=0).int()]
            hit = hit | direct | unit
        return hit & (q_idx < L)

    kv_num, kv_idx = lists(partial)
    full_num, full_idx = lists(full)
    bm = BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=block, mask_mod=mask_mod, seq_lengths=(L, Lp + U))
    return bm, Lp, U


def extend(x: torch.Tensor, bar: torch.Tensor, Lp: int) -> torch.Tensor:
    """[B, H, L, D] keys (or values) and [B, H, U, D] units -> [B, H, Lp + U, D]."""
    B, H, L, D = x.shape
    return torch.cat([x, x.new_zeros(B, H, Lp - L, D), bar.to(x.dtype)], dim=2)
