"""The dense oracle: Combiner attention straight from the semantics, via the dense layout (tests only).

O(L^2) memory and time: for each query, one softmax over its direct logits and its selected units'
logits; a unit's key and query are pooled over its region or taken at(p), its value is the region's
local expectation. `mix: joint` is one softmax over the union of the direct sets (each key once)
and every plan's units; `mix: average` is the mean of the plans' outputs. Works in any float dtype
(float64 for exactness checks); a query with no logit at all gets a zero output.
"""

from __future__ import annotations

import math

import torch

from . import ir
from .evaluate import failed_require
from .layout import RegionSet, build_layout

NEG_INF = float("-inf")


def _pool(x: torch.Tensor, member: torch.Tensor, pool: str) -> torch.Tensor:
    """x [..., L, D], member [R, L] -> [..., R, D]."""
    m = member[..., None].to(torch.bool)  # [R, L, 1]
    xs = x[..., None, :, :]  # [..., 1, L, D]
    if pool == "max":
        return xs.masked_fill(~m, NEG_INF).amax(-2)
    total = xs.masked_fill(~m, 0.0).sum(-2)
    return total / member.sum(1, keepdim=True).to(x.dtype) if pool == "mean" else total


def _units(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rs: RegionSet, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The selected (query, region) pairs: query index [P], unit key [..., P, D], unit value [..., P, D]."""
    pairs = rs.select.nonzero()
    qi, r = pairs[:, 0], pairs[:, 1]
    part = rs.partition
    member = rs.member[r]  # [P, L]

    def side(x: torch.Tensor, src: ir.SummarySource, at: torch.Tensor | None) -> torch.Tensor:
        if src.is_at:
            assert at is not None
            return x[..., at[qi, r], :]
        return _pool(x, rs.member, src.pool or "max")[..., r, :]

    qbar, kbar = side(q, part.query, rs.query_at), side(k, part.key, rs.key_at)
    logits = (qbar @ k.transpose(-1, -2) * scale).masked_fill(~member, NEG_INF)  # [..., P, L]
    vbar = torch.softmax(logits, dim=-1) @ v
    return qi, kbar, vbar


def _softmax_output(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, direct: torch.Tensor, units: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], scale: float
) -> torch.Tensor:
    L = q.shape[-2]
    logits = [(q @ k.transpose(-1, -2) * scale).masked_fill(~direct, NEG_INF)]
    values = [v]
    for qi, kbar, vbar in units:
        own = torch.zeros(L, qi.numel(), dtype=torch.bool)
        own[qi, torch.arange(qi.numel())] = True
        logits.append((q @ kbar.transpose(-1, -2) * scale).masked_fill(~own, NEG_INF))
        values.append(vbar)
    s = torch.cat(logits, -1)
    top = s.amax(-1, keepdim=True)
    p = torch.exp(s - torch.where(top == NEG_INF, 0.0, top))
    total = p.sum(-1, keepdim=True)
    return (p @ torch.cat(values, -2)) / torch.where(total > 0, total, 1.0)


def oracle_attention(pattern: ir.Pattern, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Combiner attention of `pattern` on q, k, v [..., L, D], computed densely in their dtype."""
    L, D = q.shape[-2], q.shape[-1]
    bad = failed_require(pattern, L)
    if bad is not None:
        raise ValueError(f"{pattern.name}: L = {L} is rejected by a requirement")
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    layout = build_layout(pattern, L)
    per_plan = [(pl.direct, [_units(q, k, v, rs, scale) for rs in pl.regions if rs.member.shape[0]]) for pl in layout.plans]
    if pattern.mix == "average":
        return torch.stack([_softmax_output(q, k, v, d, u, scale) for d, u in per_plan]).mean(0)
    direct = torch.zeros(L, L, dtype=torch.bool)
    units = []
    for d, u in per_plan:
        direct |= d
        units += u
    return _softmax_output(q, k, v, direct, units, scale)
