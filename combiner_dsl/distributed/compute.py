"""One rank's share of Combiner attention, as a generator that yields its messages between rounds.

Per softmax of the plan, two rounds:

1. raw keys/values that other ranks' queries take directly, and partial summary queries (the pooled
   query over this rank's members of a region, or an at() query it owns) for the other ranks that
   own members of the same region;
2. partial unit keys and partial local expectations `(o, lse)` over this rank's members, for the
   ranks whose queries select the unit.

Partial statistics merge exactly: max/sum pools are associative (a mean divides the merged sum by the
region's size), and local softmaxes merge through their log-sum-exp. Then the plan's segments, cut
to this rank's queries, run through `runtime.attention.segment_pass` as in one process.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

import torch

from ..runtime.attention import merge, segment_pass
from ..runtime.ops import NEG_INF
from ..runtime.summary import BUDGET
from .schedule import PlanSchedule, RankSchedule, SummaryPart

# a round: (message to each rank, elements expected from each rank, elements moved by all ranks)
Round = tuple[list[torch.Tensor], list[int], int]
Steps = Generator[Round, list[torch.Tensor], torch.Tensor]


def round_sizes(ps: PlanSchedule, B: int, H: int, D: int) -> tuple[list[list[int]], list[list[int]]]:
    """Elements rank x sends rank y in each round: [x][y] for round 1 and round 2."""
    W = len(ps.ranks)
    one = [[B * H * D * (2 * ps.kv.rows(x, y) + ps.q.rows(x, y)) for y in range(W)] for x in range(W)]
    two = [[B * H * (D * ps.k.rows(x, y) + (D + 1) * ps.ov.rows(x, y)) for y in range(W)] for x in range(W)]
    return one, two


def _pack(blocks: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([b.reshape(-1) for b in blocks])


def _unpack(flat: torch.Tensor, shapes: Sequence[tuple[int, ...]]) -> list[torch.Tensor]:
    out, at = [], 0
    for shape in shapes:
        n = 1
        for s in shape:
            n *= s
        out.append(flat[at : at + n].view(shape))
        at += n
    return out


def _members(x: torch.Tensor, p: SummaryPart, a: int, b: int) -> torch.Tensor:
    """x[:, :, members[a:b]] as [B, H, n, S, D]: a strided view for a run, else a gather (padding reads row 0; callers mask it)."""
    if p.run is None:
        return x[:, :, p.members[a:b].clamp(min=0)]
    B, H, _, D = x.shape
    start, stride = p.run
    S = p.members.shape[1]
    sb, sh, sl, sd = x.stride()
    return x.as_strided((B, H, b - a, S, D), (sb, sh, stride * sl, sl, sd), x.storage_offset() + (start + a * stride) * sl)


def _pool(xm: torch.Tensor, pool: str, valid: torch.Tensor | None) -> torch.Tensor:
    """Partial pool over the valid members (None: all): max, or the sum (a mean divides after the merge)."""
    if pool == "max":
        return (xm if valid is None else xm.masked_fill(~valid[..., None], NEG_INF)).amax(-2)
    return (xm if valid is None else xm.masked_fill(~valid[..., None], 0.0)).sum(-2)


def _spans(n: int, per_row: int) -> list[tuple[int, int]]:
    step = max(1, BUDGET // max(1, per_row))
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def _query_partials(q: torch.Tensor, parts: tuple[SummaryPart, ...]) -> torch.Tensor:
    """[B, H, slots, D]: this rank's contribution to each slot's summary query."""
    B, H, _, D = q.shape
    out = [q.new_zeros(B, H, 0, D)]
    for p in parts:
        n, Ur = p.query_pos.shape
        if p.query_pool is None:
            out.append(q[:, :, p.query_pos.clamp(min=0).flatten()])
            continue
        for a, b in _spans(n, B * H * p.members.shape[1] * D):
            pooled = _pool(_members(q, p, a, b), p.query_pool, p.members[a:b] >= 0 if p.padded else None)
            out.append(pooled[:, :, :, None, :].expand(-1, -1, -1, Ur, -1).reshape(B, H, -1, D))
    return torch.cat(out, 2)


def _summary_partials(
    k: torch.Tensor, v: torch.Tensor, qbar: torch.Tensor, parts: tuple[SummaryPart, ...], scale: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per slot: partial unit key, and the local softmax over this rank's members (output, log-sum-exp)."""
    B, H, _, D = k.shape
    kparts, outs, lses = [k.new_zeros(B, H, 0, D)], [k.new_zeros(B, H, 0, D)], [k.new_zeros(B, H, 0)]
    at = 0
    for p in parts:
        n, Ur = p.query_pos.shape
        S = p.members.shape[1]
        for a, b in _spans(n, B * H * max(Ur, D) * S):
            valid = p.members[a:b] >= 0 if p.padded else None
            km, vm = _members(k, p, a, b), _members(v, p, a, b)
            qb = qbar[:, :, at + a * Ur : at + b * Ur].view(B, H, b - a, Ur, D)
            logits = torch.matmul(qb, km.transpose(-1, -2)) * scale  # [B, H, c, Ur, S]
            if valid is not None:
                logits = logits.masked_fill(~valid[:, None, :], NEG_INF)
            lses.append(torch.logsumexp(logits, -1).reshape(B, H, -1))
            outs.append(torch.matmul(torch.softmax(logits, -1), vm).reshape(B, H, -1, D))
            if p.key_pool is None:
                kparts.append(k[:, :, p.key_pos[a:b].clamp(min=0).flatten()])
            else:
                pooled = _pool(km, p.key_pool, valid)
                kparts.append(pooled[:, :, :, None, :].expand(-1, -1, -1, Ur, -1).reshape(B, H, -1, D))
        at += n * Ur
    return torch.cat(kparts, 2), torch.cat(outs, 2), torch.cat(lses, 2)


def merge_pool(table: torch.Tensor, index: torch.Tensor, kind: torch.Tensor, div: torch.Tensor) -> torch.Tensor:
    """Merge each target's contributions (rows `index`, -1 none): max for kind 0, else sum / div; 0 if none."""
    B, H, _, D = table.shape
    if index.shape[1] == 0:
        return table.new_zeros(B, H, index.shape[0], D)
    valid = index >= 0
    rows = table[:, :, index.clamp(min=0)]  # [B, H, n, m, D]
    top = rows.masked_fill(~valid[..., None], NEG_INF).amax(-2)
    total = rows.masked_fill(~valid[..., None], 0.0).sum(-2) / div.to(table.dtype)[:, None]
    merged = torch.where((kind == 0)[:, None], top, total)
    return torch.where(valid.any(1)[:, None], merged, 0.0)


def merge_softmax(o: torch.Tensor, lse: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Local expectations over disjoint member sets merged through their log-sum-exp (every target has one)."""
    B, H, _, D = o.shape
    if index.shape[1] == 0:
        return o.new_zeros(B, H, index.shape[0], D)
    valid = index >= 0
    at = index.clamp(min=0)
    s = lse[:, :, at].masked_fill(~valid, NEG_INF)  # [B, H, n, m]
    w = torch.exp(s - torch.logsumexp(s, -1, keepdim=True))
    return (w[..., None] * o[:, :, at]).sum(-2)


def _main_pass(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kbar: torch.Tensor, vbar: torch.Tensor, rs: RankSchedule, scale: float) -> torch.Tensor:
    if not rs.segments:  # none of this rank's queries has a logit: zeros, still attached to q
        return torch.where(torch.zeros_like(q, dtype=torch.bool), q, 0.0)
    lse_too = len(rs.segments) > 1
    parts = [segment_pass(q, k, v, kbar, vbar, seg, scale, lse_too) for seg in rs.segments]
    return merge(parts)[0] if len(parts) > 1 else parts[0][0]  # type: ignore[arg-type]


def rank_steps(schedules: tuple[PlanSchedule, ...], rank: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> Steps:
    """This rank's output chunk (padded to its C positions); yields two rounds per softmax of the plan."""
    B, H, C, D = q.shape
    outs = []
    for ps in schedules:
        rs = ps.ranks[rank]
        W = len(ps.ranks)
        ql, kl, vl = q[:, :, : rs.n_real], k[:, :, : rs.n_real], v[:, :, : rs.n_real]
        one, two = round_sizes(ps, B, H, D)

        qpart = _query_partials(ql, rs.parts)
        sent = [_pack([kl[:, :, ps.kv.send[rank][y]], vl[:, :, ps.kv.send[rank][y]], qpart[:, :, ps.q.send[rank][y]]]) for y in range(W)]
        inbox = yield sent, [one[s][rank] for s in range(W)], sum(map(sum, one))
        recv = [_unpack(inbox[s], [(B, H, ps.kv.rows(s, rank), D)] * 2 + [(B, H, ps.q.rows(s, rank), D)]) for s in range(W) if s != rank]
        ktab = torch.cat([kl, *(m[0] for m in recv)], 2)
        vtab = torch.cat([vl, *(m[1] for m in recv)], 2)
        qbar = merge_pool(torch.cat([qpart, *(m[2] for m in recv)], 2), ps.q.index[rank], rs.q_kind, rs.q_div)

        kpart, o, lse = _summary_partials(kl, vl, qbar, rs.parts, scale)
        sent = [_pack([kpart[:, :, ps.k.send[rank][y]], o[:, :, ps.ov.send[rank][y]], lse[:, :, ps.ov.send[rank][y]]]) for y in range(W)]
        inbox = yield sent, [two[s][rank] for s in range(W)], sum(map(sum, two))
        recv = [_unpack(inbox[s], [(B, H, ps.k.rows(s, rank), D), (B, H, ps.ov.rows(s, rank), D), (B, H, ps.ov.rows(s, rank))]) for s in range(W) if s != rank]
        kbar = merge_pool(torch.cat([kpart, *(m[0] for m in recv)], 2), ps.k.index[rank], rs.k_kind, rs.k_div)
        vbar = merge_softmax(torch.cat([o, *(m[1] for m in recv)], 2), torch.cat([lse, *(m[2] for m in recv)], 2), ps.ov.index[rank])
        outs.append(_main_pass(ql, ktab, vtab, kbar, vbar, rs, scale) if rs.n_real else ql)
    out = outs[0] if len(outs) == 1 else torch.stack(outs).mean(0)
    return torch.nn.functional.pad(out, (0, 0, 0, C - out.shape[2]))
