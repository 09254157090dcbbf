"""Combiner attention on a plan, in plain torch: summary pass, one pass per segment, merge.

Everything is batched: the summary pass runs one matmul per chunk of same-size regions (the at()
units of a region share it), and each segment pass runs chunks of query tiles, gathering their key
tiles and unit summaries into [B, H, tiles, ...] blocks. No tensor is ever L x L. Softmax statistics
are float32 (float64 for float64 inputs); segments combine through their log-sum-exp.
"""

from __future__ import annotations

import math

import torch

from .module import by_kv_group, compute_dtype
from .ops import NEG_INF
from .plan import PatternPlan, Plan, Segment
from .summary import BUDGET, summary_pass

# ---------------------------------------------------------------- segment passes


def _tiles(x: torch.Tensor, slots: torch.Tensor | None, tile: int) -> torch.Tensor:
    """[B, H, n_tiles, tile, D] view (natural order) or gather (sorted order) of x."""
    B, H, L, D = x.shape
    if slots is None:
        n = -(-L // tile)
        if n * tile != L:
            x = torch.nn.functional.pad(x, (0, 0, 0, n * tile - L))
        return x.view(B, H, n, tile, D)
    return x[:, :, slots.clamp(min=0)].view(B, H, -1, tile, D)


TileSet = slice | torch.Tensor  # query tiles of one chunk: a (strided) slice, or explicit indices


def _as_tiles(idx: list[int], device: torch.device) -> TileSet:
    """A slice when the tile indices form an arithmetic progression (views, no gathers), else a tensor."""
    if len(idx) == 1:
        return slice(idx[0], idx[0] + 1)
    step = idx[1] - idx[0]
    if step > 0 and all(idx[n + 1] - idx[n] == step for n in range(len(idx) - 1)):
        return slice(idx[0], idx[-1] + 1, step)
    return torch.tensor(idx, device=device)


def _direct_keys(xt: torch.Tensor, seg: Segment, tiles: TileSet, dm: int) -> list[torch.Tensor]:
    """Key (or value) tiles of the chunk's direct slots: [B, H, c, Tk, D] per slot.

    A slot whose key tile is the query tile shifted by a constant (block-diagonal and banded
    patterns) is a slice of the tiled keys; any other slot is gathered.
    """
    dt = seg.direct_tiles[tiles, :dm].long()
    rows = torch.arange(seg.direct_tiles.shape[0], device=dt.device)[tiles]
    out = []
    for j in range(dm):
        col = dt[:, j]
        shift = int(col[0] - rows[0])
        if isinstance(tiles, slice) and bool((col >= 0).all()) and bool((col == rows + shift).all()):
            out.append(xt[:, :, slice(tiles.start + shift, tiles.stop + shift, tiles.step)])
        else:
            out.append(xt[:, :, col.clamp(min=0)])
    return out


def _unit_keys(kbar: torch.Tensor, vbar: torch.Tensor, seg: Segment, tiles: TileSet, um: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit keys and values [B, H, c, W, D] (or [B, H, 1, W, D] shared by the chunk) and the keep-mask [c, T, W].

    When the chunk's units are a dense id range (Combiner-Fixed: a prefix) every tile takes that
    slice of kbar, with the mask scattered onto it; otherwise each tile gathers its own units.
    """
    ul = seg.unit_lists[tiles, :um].long()
    sel = seg.unit_masks[tiles, :, :um]
    real = ul >= 0
    lo = int(torch.where(real, ul, ul.max()).min())
    hi = int(ul.max()) + 1
    if hi - lo <= 2 * um:
        c, T = sel.shape[0], sel.shape[1]
        width = hi - lo
        keep = torch.zeros(c, T, width + 1, dtype=torch.bool, device=sel.device)
        keep.scatter_(2, torch.where(real, ul - lo, width)[:, None, :].expand(c, T, um), sel)
        return kbar[:, :, None, lo:hi], vbar[:, :, None, lo:hi], keep[:, :, :width]
    at = ul.clamp(min=0)
    return kbar[:, :, at], vbar[:, :, at], sel


def segment_pass(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kbar: torch.Tensor, vbar: torch.Tensor, seg: Segment, scale: float, need_lse: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One segment's softmax, per query in natural order: normalised output and log-sum-exp (-inf: no logit)."""
    B, H, L, D = q.shape
    T, Tk = seg.tile_q, seg.tile_k
    qt = _tiles(q, seg.query_slots, T)
    kt, vt = _tiles(k, seg.key_slots, Tk), _tiles(v, seg.key_slots, Tk)
    nq = qt.shape[2]
    nd = (seg.direct_tiles >= 0).sum(1)
    nu = (seg.unit_lists >= 0).sum(1)
    # tiles with the same number of direct slots share chunks (no padding to the widest), in
    # natural order otherwise: a class is then usually an arithmetic progression of tiles
    order = torch.argsort(nd, stable=True).tolist()
    nd_l, nu_l = nd.tolist(), nu.tolist()
    out = q.new_empty(B, H, nq, T, D)  # every tile is written below (a tile with no logit: zeros)
    lse = q.new_full((B, H, nq, T), NEG_INF) if need_lse else None
    a = 0
    while a < nq:  # as many tiles as fit the budget
        b, dm, um = a + 1, nd_l[order[a]], nu_l[order[a]]
        while b < nq and nd_l[order[b]] == dm:
            um2 = max(um, nu_l[order[b]])
            if (b + 1 - a) * T * (dm * Tk + um2 + 1) * B * H > BUDGET:
                break
            b, um = b + 1, um2
        tiles = _as_tiles(order[a:b], seg.direct_tiles.device)
        if dm or um:
            # scaling the chunk's queries is also the copy a matmul would make of a strided slice
            o, s = _chunk(qt[:, :, tiles] * scale, kt, vt, kbar, vbar, seg, tiles, dm, um, need_lse)
            out[:, :, tiles] = o
            if lse is not None and s is not None:
                lse[:, :, tiles] = s
        else:
            out[:, :, tiles] = 0.0
        a = b
    out = out.view(B, H, -1, D)
    lse = lse.view(B, H, -1) if lse is not None else None
    if seg.query_slots is None:
        return out[:, :, :L], None if lse is None else lse[:, :, :L]
    where = torch.empty(L, dtype=torch.int64, device=seg.query_slots.device)
    filled = (seg.query_slots >= 0).nonzero().flatten()
    where[seg.query_slots[filled]] = filled
    return out[:, :, where], None if lse is None else lse[:, :, where]


def _chunk(
    qc: torch.Tensor, kt: torch.Tensor, vt: torch.Tensor, kbar: torch.Tensor, vbar: torch.Tensor, seg: Segment, tiles: TileSet, dm: int, um: int, need_lse: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The chunk's query tiles: one matmul against all their keys (direct tiles, then units), one softmax."""
    c = qc.shape[2]
    keys, values, keep = [], [], []
    if dm:
        keys += _direct_keys(kt, seg, tiles, dm)
        values += _direct_keys(vt, seg, tiles, dm)
        keep.append(seg.direct_masks[tiles, :dm].permute(0, 2, 1, 3).flatten(2, 3))
    if um:
        kb, vb, sel = _unit_keys(kbar, vbar, seg, tiles, um)
        keys.append(kb.expand(-1, -1, c, -1, -1))
        values.append(vb.expand(-1, -1, c, -1, -1))
        keep.append(sel)
    kc = keys[0] if len(keys) == 1 else torch.cat(keys, 3)
    vc = values[0] if len(values) == 1 else torch.cat(values, 3)
    mask = keep[0] if len(keep) == 1 else torch.cat(keep, 2)
    B, H, c, T, D = qc.shape
    W = kc.shape[3]
    # explicit 3-D bmm: torch.matmul would copy the transposed 5-D key block first
    s = torch.bmm(qc.reshape(B * H * c, T, D), kc.reshape(B * H * c, W, D).transpose(1, 2)).view(B, H, c, T, W)
    # -inf, not a large finite fill: no finite logit (q = 1e17, k = -1e17, or a huge negative scale)
    # can fall below it. A row with no logit at all is filled with 0 instead, so its softmax stays
    # finite (no NaN in the output or the gradient); it is zeroed below.
    has = seg.row_has[tiles] & mask.any(-1)
    drop = ~mask
    if bool(drop.any()):  # full tiles need no mask at all
        inplace = not (torch.is_grad_enabled() and s.requires_grad)
        s = s.masked_fill_(drop, NEG_INF) if inplace else s.masked_fill(drop, NEG_INF)
        if not bool(has.all()):
            s = s.masked_fill_(~has[..., None], 0.0) if inplace else s.masked_fill(~has[..., None], 0.0)
    lse = torch.where(has, torch.logsumexp(s, -1), NEG_INF) if need_lse else None
    out = torch.bmm(torch.softmax(s, -1).view(B * H * c, T, W), vc.reshape(B * H * c, W, D)).view(B, H, c, T, D)
    if not bool(has.all()):
        out = out * has[..., None].to(qc.dtype)
    return out, lse


def merge(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine normalised segment outputs through their log-sum-exp (zero output where no logit at all)."""
    if len(parts) == 1:
        return parts[0]
    stacked = torch.stack([p[1] for p in parts])
    none = (stacked == NEG_INF).all(0)  # rows without any logit: keep -inf out of logsumexp (NaN gradients)
    lse_safe = torch.logsumexp(torch.where(none, 0.0, stacked), 0)
    out = torch.exp(parts[0][1] - lse_safe)[..., None] * parts[0][0]
    for o, s in parts[1:]:
        out = out + torch.exp(s - lse_safe)[..., None] * o
    return out, torch.where(none, NEG_INF, lse_safe)


def plan_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: Plan, scale: float, need_lse: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One joint softmax (compute dtype in, compute dtype out): output, and log-sum-exp if asked."""
    kbar, vbar = summary_pass(q, k, v, plan, scale)
    active = [seg for seg in plan.segments() if seg.direct_tiles.shape[1] or seg.unit_lists.shape[1]]
    if not active:  # no query has a logit: zeros, still attached to q (zero gradients, not an error)
        B, H, L, _ = q.shape
        return torch.where(torch.zeros_like(q, dtype=torch.bool), q, 0.0), q.new_full((B, H, L), NEG_INF)
    lse_too = need_lse or len(active) > 1
    parts = [segment_pass(q, k, v, kbar, vbar, seg, scale, lse_too) for seg in active]
    return merge(parts) if len(parts) > 1 else parts[0]  # type: ignore[arg-type]


def combiner_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: PatternPlan, scale: float | None = None) -> torch.Tensor:
    """The pattern's attention output, in q's dtype (inputs already checked; plan on q's device).

    k and v may have fewer heads than q (grouped-query attention, see `by_kv_group`).
    """
    D = q.shape[-1]
    if q.numel() == 0:  # B = 0 or H = 0: an empty output, still attached to q
        return q * 0.0
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    dt = compute_dtype(q.dtype)
    kc, vc = (x.to(dt).contiguous() for x in (k, v))

    def run(qg: torch.Tensor) -> torch.Tensor:
        qc = qg.to(dt).contiguous()
        outs = [plan_attention(qc, kc, vc, p, scale)[0] for p in plan.plans]
        return outs[0] if len(outs) == 1 else torch.stack(outs).mean(0)

    return by_kv_group(q, k.shape[1], run).to(q.dtype)
