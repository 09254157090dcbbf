"""The summary pass, shared by both targets: each unit's key summary and value summary.

For every region of the plan, pooled (max / mean / sum) or `at()` query and key summaries, and the
unit's value: the softmax expectation of the region's values under its query summary. Batched: one
matmul per chunk of same-size regions (the at() units of a region share it); differentiable by
autograd.
"""

from __future__ import annotations

import torch

from .ops import NEG_INF
from .plan import Bucket, Plan
from .windows import window_summaries

BUDGET = 1 << 20  # floats in the largest intermediate of one chunk: small enough to stay in cache


def _spans(n: int, per_item: int) -> list[tuple[int, int]]:
    step = max(1, BUDGET // max(1, per_item))
    return [(a, min(n, a + step)) for a in range(0, n, step)]


# ---------------------------------------------------------------- summary pass


def _pooled(x: torch.Tensor, pool: str, valid: torch.Tensor | None, sizes: torch.Tensor) -> torch.Tensor:
    """Pool [B, H, n, S, D] over S (only the valid members; valid None: all are)."""
    if pool == "max":
        return (x if valid is None else x.masked_fill(~valid[..., None], NEG_INF)).amax(-2)
    total = (x if valid is None else x.masked_fill(~valid[..., None], 0.0)).sum(-2)
    return total / sizes[:, None].to(x.dtype) if pool == "mean" else total


def _rows(x: torch.Tensor, idx: torch.Tensor, run: tuple[int, int] | None, a: int, b: int) -> torch.Tensor:
    """x[:, :, idx[a:b]] as [B, H, n, S, D]: a strided view when idx is an arithmetic run, else a gather."""
    if run is None:
        return x[:, :, idx[a:b].clamp(min=0)]
    B, H, _L, D = x.shape
    start, stride = run
    S = idx.shape[1]
    sb, sh, sl, sd = x.stride()
    return x.as_strided((B, H, b - a, S, D), (sb, sh, stride * sl, sl, sd), x.storage_offset() + (start + a * stride) * sl)


PER_HEAD_MAX = 16  # up to this many (batch, head) pairs, loop over them rather than copy strided members


def _expectation(qbar: torch.Tensor, km: torch.Tensor, vm: torch.Tensor, scale: float, valid: torch.Tensor | None) -> torch.Tensor:
    """Local expectation of each unit: softmax over its region's members of scale * qbar . k_j, times v_j."""
    logits = torch.matmul(qbar, km.transpose(-1, -2)) * scale  # [..., n, units, S]
    if valid is not None:
        logits = logits.masked_fill(~valid[:, None, :], NEG_INF)
    return torch.matmul(torch.softmax(logits, dim=-1), vm)


def _bucket_pass(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bk: Bucket, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    if bk.windows is not None:
        assert bk.query_pool is not None and bk.key_pool is not None
        return window_summaries(q, k, v, bk.windows, bk.query_pool, bk.key_pool, scale, BUDGET)
    B, H, _, D = q.shape
    R, S = bk.members.shape
    Ur = bk.query_pos.shape[1]
    kbars, vbars = [], []
    for a, b in _spans(R, B * H * max(S * D, Ur * S)):
        valid = bk.members[a:b] >= 0 if bk.padded else None
        sizes = bk.sizes[a:b]
        km, vm = _rows(k, bk.members, bk.member_run, a, b), _rows(v, bk.members, bk.member_run, a, b)
        if bk.query_pool is not None:
            qbar = _pooled(_rows(q, bk.members, bk.member_run, a, b), bk.query_pool, valid, sizes)[:, :, :, None, :].expand(-1, -1, -1, Ur, -1)
        else:
            qbar = _rows(q, bk.query_pos, bk.query_run, a, b)
        if bk.key_pool is not None:
            kbar = _pooled(km, bk.key_pool, valid, sizes)[:, :, :, None, :].expand(-1, -1, -1, Ur, -1)
        else:
            kbar = _rows(k, bk.key_pos, bk.key_run, a, b)
        if S == 1:  # a one-key region: its local expectation is that key's value
            vbar = vm.expand(-1, -1, -1, Ur, -1)
        elif bk.member_run is not None and bk.member_run[1] == S and B * H <= PER_HEAD_MAX:
            # back-to-back regions: per head the members are one contiguous block, which a 3-D bmm
            # reads in place (a 5-D matmul would first copy the strided view)
            vbar = torch.stack([_expectation(qbar[b, h], km[b, h], vm[b, h], scale, valid) for b in range(B) for h in range(H)]).view(B, H, b - a, Ur, D)
        else:
            vbar = _expectation(qbar, km, vm, scale, valid)
        kbars.append(kbar.reshape(B, H, -1, D))
        vbars.append(vbar.reshape(B, H, -1, D))
    return torch.cat(kbars, 2), torch.cat(vbars, 2)


def summary_pass(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: Plan, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """kbar, vbar [B, H, U, D] for every unit slot of the plan (padding slots hold harmless values)."""
    B, H, _, D = q.shape
    if not plan.buckets:
        return q.new_zeros(B, H, 0, D), q.new_zeros(B, H, 0, D)
    parts = [_bucket_pass(q, k, v, bk, scale) for bk in plan.buckets]
    return torch.cat([p[0] for p in parts], 2), torch.cat([p[1] for p in parts], 2)
