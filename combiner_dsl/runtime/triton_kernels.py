"""Triton kernels of the main pass: one joint softmax over a plan segment's direct tiles and units.

Layout of the work (docs/plan-format.md): program (p, bh) takes rows [sub*BM, sub*BM + BM) of query
tile qt = p // SUBQ (plan tiles larger than BM are split, so a 256-row plan tile still fits in
registers), walks the tile's ND[qt] direct key tiles BN keys at a time, then its NU[qt] units BU at
a time; the wrapper puts used slots first, so neither loop tests for padding. A segment whose
queries (keys) are not in natural order lists them in QS (KS): tile slot -> position, -1 for
padding. Per-head base offsets are int64 (B*H*L*D may pass 2**31); offsets inside a head are int32
unless I64 says one of them may reach 2**31 too.

The backward kernel recomputes p from the saved log-sum-exp and writes dq for its own rows; the
key-side gradients (dk, dv, dkbar, dvbar) go through float32 atomic adds, because the plan lists
keys per query tile only. ACC (constexpr) makes a launch merge its result with what an earlier launch
over the same rows left in Out/LSE (forward) or DQ (backward): how several segments make one softmax.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _idx(x, I64: tl.constexpr):
    """Tile-level index arithmetic in int64 only when some offset inside one head can pass 2**31."""
    if I64:
        return x.to(tl.int64)
    return x.to(tl.int32)


@triton.jit
def _tile_rows(QS, qt, sub, L, TQ, BM: tl.constexpr, Q_PERM: tl.constexpr, I64: tl.constexpr):
    rm = sub * BM + tl.arange(0, BM)  # row inside the plan tile
    rows, row_ok = _tile_cols(QS, qt, rm, L, TQ, Q_PERM, I64)  # rows of a tile are read like its columns
    return rm, rows, row_ok


@triton.jit
def _tile_cols(KS, t, cn, L, TK, K_PERM: tl.constexpr, I64: tl.constexpr):
    if K_PERM:
        cols = _idx(tl.load(KS + t * TK + cn, mask=cn < TK, other=-1), I64)
        col_ok = cols >= 0
        cols = tl.where(col_ok, cols, 0)
    else:
        cols = t * TK + cn
        col_ok = (cn < TK) & (cols < L)
    return cols, col_ok


@triton.jit
def _bits(words, shift, BN: tl.constexpr):
    """[BM] int64 words -> [BM, BN] flags: bits shift .. shift+BN-1 of each row's word."""
    return ((words[:, None] >> (shift + tl.arange(0, BN))[None, :].to(tl.int64)) & 1) != 0


@triton.jit
def _direct_logits(
    q, k, DF, DM, slot, rm, kc, col_ok, qk_scale, TQ, BN: tl.constexpr, DMW, COLMASK: tl.constexpr, PRECISION: tl.constexpr
):
    """scale*log2(e)*q.k on the tile, -inf where the plan says no (a full tile needs no mask load).

    Masks come bit-packed, 64 keys to an int64 word (DMW words per query row): one load per row
    instead of a [BM, BN] tensor of pointers, which cost more registers than the logits themselves.
    """
    qk = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
    if tl.load(DF + slot) != 0:
        if COLMASK:  # padding columns of a full tile
            qk = tl.where(col_ok[None, :], qk, float("-inf"))
    else:
        words = tl.load(DM + (slot * TQ + rm) * DMW + kc // 64, mask=rm < TQ, other=0)
        qk = tl.where(_bits(words, kc % 64, BN), qk, float("-inf"))
    return qk


@triton.jit
def _unit_logits(q, kb, UM, qt, rm, c, umw, qk_scale, TQ, BU: tl.constexpr, PRECISION: tl.constexpr):
    """Like _direct_logits for units c .. c+BU-1 (unit masks bit-packed, umw words per query row)."""
    qk = tl.dot(q, tl.trans(kb), input_precision=PRECISION) * qk_scale
    words = tl.load(UM + (qt * TQ + rm) * umw + c // 64, mask=rm < TQ, other=0)
    return tl.where(_bits(words, c % 64, BU), qk, float("-inf"))


@triton.jit
def _online(qk, m_i, l_i, acc, v, PRECISION: tl.constexpr):
    """One online-softmax step (base 2); a row that has seen no logit yet stays at m = -inf, l = 0."""
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    p = tl.math.exp2(qk - m_use[:, None])
    alpha = tl.math.exp2(m_i - m_use)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return m_new, l_i, acc


@triton.jit
def _query_tile(Q, QS, H, L, TQ, SUBQ, sqb, sqh, sql, D: tl.constexpr, D_PAD: tl.constexpr, BM: tl.constexpr, Q_PERM: tl.constexpr, I64: tl.constexpr):
    """This program's query rows and their q block (both kernels start here)."""
    pid = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)  # per-head bases in int64: B*H*L*D may pass 2**31
    qt = _idx(pid // SUBQ, I64)
    b = bh // H
    h = bh % H
    rd = tl.arange(0, D_PAD)
    d_ok = rd < D
    rm, rows, row_ok = _tile_rows(QS, qt, pid % SUBQ, L, TQ, BM, Q_PERM, I64)
    q_mask = row_ok[:, None] & d_ok[None, :]
    q = tl.load((Q + b * sqb + h * sqh) + rows[:, None] * sql + rd[None, :], mask=q_mask, other=0.0)
    return bh, b, h, qt, rd, d_ok, rm, rows, row_ok, q_mask, q


@triton.jit
def _key_block(K, V, KS, t, kc, b, h, L, TK, skb, skh, skl, svb, svh, svl, rd, d_ok, BN: tl.constexpr, K_PERM: tl.constexpr, I64: tl.constexpr):
    """Columns kc.. kc+BN of direct key tile t: their positions, the valid ones, and k, v."""
    cols, col_ok = _tile_cols(KS, t, kc + tl.arange(0, BN), L, TK, K_PERM, I64)
    kv_mask = col_ok[:, None] & d_ok[None, :]
    k = tl.load((K + b * skb + h * skh) + cols[:, None] * skl + rd[None, :], mask=kv_mask, other=0.0)
    v = tl.load((V + b * svb + h * svh) + cols[:, None] * svl + rd[None, :], mask=kv_mask, other=0.0)
    return cols, col_ok, kv_mask, k, v


@triton.jit
def _unit_block(KB, VB, UL, bh, qt, c, nu, U, n_umax, rd, d_ok, D: tl.constexpr, BU: tl.constexpr, I64: tl.constexpr):
    """Units c.. c+BU of this query tile's list: their ids, the valid ones, and their summaries kbar, vbar."""
    ucols = c + tl.arange(0, BU)
    ids = tl.load(UL + qt * n_umax + ucols, mask=ucols < nu, other=-1)
    id_ok = ids >= 0
    uid = _idx(tl.where(id_ok, ids, 0), I64)
    u_mask = id_ok[:, None] & d_ok[None, :]
    kb = tl.load((KB + bh * U * D) + uid[:, None] * D + rd[None, :], mask=u_mask, other=0.0)  # summaries: contiguous [B, H, U, D]
    vb = tl.load((VB + bh * U * D) + uid[:, None] * D + rd[None, :], mask=u_mask, other=0.0)
    return uid, u_mask, kb, vb


@triton.jit
def combiner_fwd_kernel(
    Q, K, V, KB, VB, Out, LSE,  # Out: [B, H, L, D] contiguous; LSE: [B, H, L] float32; KB, VB: [B, H, U, D] contiguous
    QS, KS, DT, DF, DM, UL, UM, ND, NU,  # the segment: slots, direct_*, unit_* (masks bit-packed), used slots per tile
    qk_scale, H, L, U, n_direct, n_umax, umw, TQ, TK, SUBQ, DMW,  # tile sizes at run time: fewer compiled variants
    sqb, sqh, sql, skb, skh, skl, svb, svh, svl,
    D: tl.constexpr, D_PAD: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BU: tl.constexpr,
    Q_PERM: tl.constexpr, K_PERM: tl.constexpr, COLMASK: tl.constexpr, ACC: tl.constexpr, I64: tl.constexpr,
    PRECISION: tl.constexpr,
):
    bh, b, h, qt, rd, d_ok, rm, rows, row_ok, q_mask, q = _query_tile(Q, QS, H, L, TQ, SUBQ, sqb, sqh, sql, D, D_PAD, BM, Q_PERM, I64)
    m_i = tl.full([BM], float("-inf"), tl.float32)
    l_i = tl.zeros([BM], tl.float32)
    acc = tl.zeros([BM, D_PAD], tl.float32)

    for s in range(tl.load(ND + qt)):  # used slots come first (the wrapper makes sure)
        slot = qt * n_direct + s
        t = _idx(tl.load(DT + slot), I64)
        for kc in range(0, TK, BN):
            _cols, col_ok, _kv_mask, k, v = _key_block(K, V, KS, t, kc, b, h, L, TK, skb, skh, skl, svb, svh, svl, rd, d_ok, BN, K_PERM, I64)
            qk = _direct_logits(q, k, DF, DM, slot, rm, kc, col_ok, qk_scale, TQ, BN, DMW, COLMASK, PRECISION)
            m_i, l_i, acc = _online(qk, m_i, l_i, acc, v, PRECISION)

    nu = tl.load(NU + qt)
    for c in range(0, nu, BU):
        _uid, _u_mask, kb, vb = _unit_block(KB, VB, UL, bh, qt, c, nu, U, n_umax, rd, d_ok, D, BU, I64)
        qk = _unit_logits(q, kb, UM, qt, rm, c, umw, qk_scale, TQ, BU, PRECISION)
        m_i, l_i, acc = _online(qk, m_i, l_i, acc, vb, PRECISION)

    o_ptr = (Out + bh * L * D) + rows[:, None] * D + rd[None, :]
    lse_ptr = (LSE + bh * L) + rows
    if ACC:  # an earlier segment's result joins as one more logit, lse, with value o (read only now: fewer live registers)
        prev = tl.load(lse_ptr, mask=row_ok, other=float("-inf")) * 1.4426950408889634
        m_new = tl.maximum(m_i, prev)
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.math.exp2(m_i - m_use)
        beta = tl.math.exp2(prev - m_use)
        acc = acc * alpha[:, None] + tl.load(o_ptr, mask=q_mask, other=0.0).to(tl.float32) * beta[:, None]
        l_i = l_i * alpha + beta
        m_i = m_new
    has = l_i > 0.0
    out = tl.where(has[:, None], acc / tl.where(has, l_i, 1.0)[:, None], 0.0)  # no logit: zero output
    tl.store(o_ptr, out.to(Out.dtype.element_ty), mask=q_mask)
    lse = tl.where(has, (m_i + tl.math.log2(tl.where(has, l_i, 1.0))) * 0.6931471805599453, float("-inf"))
    tl.store(lse_ptr, lse, mask=row_ok)


@triton.jit
def _grad_block(q, do, k, v, qk, lse, delta, DKX, DVX, kv_ptr, kv_mask, sm_scale, PRECISION: tl.constexpr):
    """One block of keys (direct keys or unit summaries): add its key and value gradients at
    DKX/DVX + kv_ptr, and return its part of dq (before the softmax scale)."""
    p = tl.math.exp2(qk - lse[:, None])
    ds = p * (tl.dot(do, tl.trans(v), input_precision=PRECISION) - delta[:, None])
    tl.atomic_add(DKX + kv_ptr, tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PRECISION) * sm_scale, mask=kv_mask, sem="relaxed")
    tl.atomic_add(DVX + kv_ptr, tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PRECISION), mask=kv_mask, sem="relaxed")
    return tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)


@triton.jit
def combiner_bwd_kernel(
    Q, K, V, KB, VB, DO, LSE, DELTA, DQ, DK, DV, DKB, DVB,  # DO, DQ contiguous; DK, DV, DKB, DVB float32, zeroed
    QS, KS, DT, DF, DM, UL, UM, ND, NU,
    qk_scale, sm_scale, H, L, U, n_direct, n_umax, umw, TQ, TK, SUBQ, DMW,
    sqb, sqh, sql, skb, skh, skl, svb, svh, svl,
    D: tl.constexpr, D_PAD: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BU: tl.constexpr,
    Q_PERM: tl.constexpr, K_PERM: tl.constexpr, COLMASK: tl.constexpr, ACC: tl.constexpr, I64: tl.constexpr,
    PRECISION: tl.constexpr,
):
    bh, b, h, qt, rd, d_ok, rm, rows, row_ok, q_mask, q = _query_tile(Q, QS, H, L, TQ, SUBQ, sqb, sqh, sql, D, D_PAD, BM, Q_PERM, I64)
    do = tl.load((DO + bh * L * D) + rows[:, None] * D + rd[None, :], mask=q_mask, other=0.0)
    lse = tl.load((LSE + bh * L) + rows, mask=row_ok, other=float("-inf")) * 1.4426950408889634
    lse = tl.where(lse == float("-inf"), float("inf"), lse)  # a row with no logit (or no row): p = 0
    delta = tl.load((DELTA + bh * L) + rows, mask=row_ok, other=0.0)
    dq = tl.zeros([BM, D_PAD], tl.float32)

    for s in range(tl.load(ND + qt)):
        slot = qt * n_direct + s
        t = _idx(tl.load(DT + slot), I64)
        for kc in range(0, TK, BN):
            cols, col_ok, kv_mask, k, v = _key_block(K, V, KS, t, kc, b, h, L, TK, skb, skh, skl, svb, svh, svl, rd, d_ok, BN, K_PERM, I64)
            qk = _direct_logits(q, k, DF, DM, slot, rm, kc, col_ok, qk_scale, TQ, BN, DMW, COLMASK, PRECISION)
            dq += _grad_block(q, do, k, v, qk, lse, delta, DK + bh * L * D, DV + bh * L * D, cols[:, None] * D + rd[None, :], kv_mask, sm_scale, PRECISION)

    nu = tl.load(NU + qt)
    for c in range(0, nu, BU):
        uid, u_mask, kb, vb = _unit_block(KB, VB, UL, bh, qt, c, nu, U, n_umax, rd, d_ok, D, BU, I64)
        qk = _unit_logits(q, kb, UM, qt, rm, c, umw, qk_scale, TQ, BU, PRECISION)
        dq += _grad_block(q, do, kb, vb, qk, lse, delta, DKB + bh * U * D, DVB + bh * U * D, uid[:, None] * D + rd[None, :], u_mask, sm_scale, PRECISION)

    dq_ptr = (DQ + bh * L * D) + rows[:, None] * D + rd[None, :]
    dq = dq * sm_scale
    if ACC:  # add to what earlier segments wrote for these rows (read only now: fewer live registers)
        dq += tl.load(dq_ptr, mask=q_mask, other=0.0).to(tl.float32)
    tl.store(dq_ptr, dq.to(DQ.dtype.element_ty), mask=q_mask)
