"""Launch wrappers and autograd for the Triton main pass (kernels in triton_kernels.py).

The summary pass (kbar, vbar) stays in torch (`attention.summary_pass`: O(L) to O(L sqrt L), and
differentiable); only the main pass runs in Triton. Forward: one launch per plan segment
(docs/plan-format.md, `Plan.segments()`); the first writes out/lse, each later one resumes from them
(a plan's segments are one joint softmax). Backward: Triton too, no recomputation through torch: it
recomputes the probabilities from the saved log-sum-exp, writes dq, and adds dk, dv, dkbar, dvbar
atomically in float32, so their summation order (the last bits) may vary from run to run.
Gradients to kbar / vbar flow on through the torch summary pass by autograd.

On CUDA tensors the kernels are compiled. On CPU tensors they run under Triton's interpreter, which
must be switched on (TRITON_INTERPRET=1) before triton is first imported: Triton decides at import
whether its own library functions are interpreted. That path is slow and meant for tests.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import torch
import triton

from .module import CombinerModule, by_kv_group
from .plan import PatternPlan
from .summary import summary_pass
from .triton_kernels import combiner_bwd_kernel, combiner_fwd_kernel

LOG2E = 1.4426950408889634
# Launch overrides for tuning runs (bench/bench_gpu.py): block_m, block_n, num_warps, num_stages per pass;
# None keeps the defaults of `_blocks` / `_opts`. An explicit argument to a wrapper wins over both.
TRITON_CONFIG: dict[str, dict[str, int | None]] = {"fwd": {}, "bwd": {}}


def _ready(kernel: Any, device: torch.device) -> Any:
    """The kernel, after checking that it can run where the tensors are."""
    if device.type != "cuda" and type(kernel).__name__ != "InterpretedFunction":
        raise RuntimeError(
            "the Triton target runs on CPU tensors only under Triton's interpreter: set TRITON_INTERPRET=1 "
            "before triton is first imported (slow; for tests), move the tensors to CUDA, or use the torch target"
        )
    return kernel


def _pow2(n: int) -> int:
    return max(16, int(triton.next_power_of_2(max(1, n))))  # tl.dot wants power-of-two sides of at least 16


# (id of a plan's direct_tiles tensor, device) -> (weak reference to it, the kernels' tensors); an entry
# leaves with its plan tensor (tensors compare elementwise, so no WeakKeyDictionary)
_PREPARED: dict[tuple[int, str], tuple[weakref.ref[torch.Tensor], list[torch.Tensor]]] = {}


def _flat(x: torch.Tensor | None, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A plan tensor as the kernels read it: contiguous, bools as bytes, never empty (one dummy -1)."""
    if x is None or x.numel() == 0:
        return torch.full((1,), -1, dtype=dtype, device=device)
    x = x.to(device).contiguous()
    return x.view(torch.uint8) if x.dtype == torch.bool and dtype == torch.uint8 else x.to(dtype)  # a view: no copy


def _pack(mask: torch.Tensor) -> torch.Tensor:
    """Bool [..., n] -> int64 [..., ceil(n / 64)]: bit b of word w is column 64 w + b (bit 63 wraps negative)."""
    n = mask.shape[-1]
    words = -(-n // 64)
    if n == 0:
        return torch.zeros(*mask.shape[:-1], 0, dtype=torch.int64, device=mask.device)
    padded = torch.nn.functional.pad(mask.to(torch.int64), (0, words * 64 - n)).view(*mask.shape[:-1], words, 64)
    return (padded << torch.arange(64, device=mask.device)).sum(-1)  # distinct bits: the sum is their OR


def _prepared(seg: Any, device: torch.device) -> list[torch.Tensor]:
    """QS, KS, DT, DF, DM, UL, UM, ND, NU for one segment, used slots first; cached per plan tensor.

    The plan builder already fills slots from the left; a hand-made plan may not, and is compacted
    once here (a stable sort per query tile) so the kernels need no padding test in their loops.
    """
    key = (id(seg.direct_tiles), str(device))
    hit = _PREPARED.get(key)
    if hit is not None and hit[0]() is seg.direct_tiles:
        return hit[1]
    dt, df, dm = seg.direct_tiles, seg.direct_full, seg.direct_masks
    ul, um = seg.unit_lists, seg.unit_masks
    if dt.numel() and not bool(((dt >= 0).int().diff(dim=1) <= 0).all()):
        order = torch.sort((dt < 0).int(), dim=1, stable=True).indices
        dt, df, dm = dt.gather(1, order), df.gather(1, order), dm[torch.arange(dt.shape[0], device=dt.device)[:, None], order]
    if ul.numel() and not bool(((ul >= 0).int().diff(dim=1) <= 0).all()):
        order = torch.sort((ul < 0).int(), dim=1, stable=True).indices
        ul, um = ul.gather(1, order), um.gather(2, order[:, None, :].expand_as(um))
    counts = [(x >= 0).sum(1) if x.shape[1] else torch.zeros(x.shape[0], dtype=torch.int64, device=x.device) for x in (dt, ul)]
    tensors = [
        _flat(seg.query_slots, device, torch.int64),
        _flat(seg.key_slots, device, torch.int64),
        _flat(dt, device, torch.int32),
        _flat(df, device, torch.uint8),
        _flat(_pack(dm), device, torch.int64),
        _flat(ul, device, torch.int32),
        _flat(_pack(um), device, torch.int64),
        _flat(counts[0], device, torch.int32),
        _flat(counts[1], device, torch.int32),
    ]
    _PREPARED[key] = (weakref.ref(seg.direct_tiles), tensors)
    weakref.finalize(seg.direct_tiles, _PREPARED.pop, key, None)
    return tensors


def _blocks(D: int, tq: int, tk: int, backward: bool, block_m: int | None, block_n: int | None) -> tuple[int, int, int]:
    """(BM, BN, num_warps). Defaults are the largest blocks whose sm_90 build keeps every value in
    registers (no spill stack; read with cuobjdump --dump-resource-usage, Triton 3.9); BN <= 64 so
    that one key chunk reads one word of packed mask bits. Untimed on a GPU so far: see bench_gpu.py."""
    bm = min(_pow2(tq), block_m or (64 if backward else 128))  # a plan tile taller than BM runs as several programs
    bn = min(_pow2(tk), block_n or (64 if D <= 64 else 32), 64)
    warps = 8 if (backward or bm >= 128) else 4
    return bm, bn, warps


def _segment_args(seg: Any, device: torch.device, D: int, blocks: tuple[int, int, int]) -> tuple[list[Any], dict[str, Any], int]:
    """Tensor and extent arguments, constexprs and the grid's first extent for one segment."""
    tq, tk = int(seg.tile_q), int(seg.tile_k)
    n_qtiles, n_direct = seg.direct_tiles.shape
    n_umax = int(seg.unit_lists.shape[1])
    bm, bn, _ = blocks
    consts = {
        "D": D, "D_PAD": _pow2(D), "BM": bm, "BN": bn, "BU": min(64 if D <= 64 else 32, _pow2(n_umax)),
        "Q_PERM": seg.query_slots is not None, "K_PERM": seg.key_slots is not None, "COLMASK": seg.key_slots is not None or tk % bn != 0,
    }
    subq = -(-tq // bm)
    return [*_prepared(seg, device), n_direct, n_umax, -(-n_umax // 64), tq, tk, subq, -(-tk // 64)], consts, n_qtiles * subq


def _needs_i64(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kbar: torch.Tensor, seg_args: list[Any]) -> bool:
    """Whether an offset inside one head (or into a plan tensor) can reach 2**31: then int64 tile indices."""
    L, D = q.shape[2], q.shape[3]
    inside = max(L * max(x.stride(2) for x in (q, k, v)) + D, L * D, kbar.shape[2] * D)
    return bool(max(inside, *(x.numel() for x in seg_args[:9])) >= 2**31)


def _precision(q: torch.Tensor, tf32: bool | None) -> str:
    if tf32 is None:
        tf32 = q.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
    return "tf32" if (tf32 and q.dtype == torch.float32) else "ieee"


def _opts(q: torch.Tensor, warps: int, num_warps: int | None, num_stages: int | None) -> dict[str, int]:
    if q.device.type != "cuda":
        return {}
    return {"num_warps": num_warps or warps, "num_stages": num_stages or 2}


def _inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kbar: torch.Tensor, vbar: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One dtype; unit stride along D; summaries contiguous, with at least one (dummy) unit row.

    bfloat16 on CPU becomes float32: Triton's interpreter (3.9) multiplies bf16 dot operands as raw bits.
    """
    B, H, _, D = q.shape
    if q.device.type != "cuda" and q.dtype == torch.bfloat16:
        q = q.float()
    k, v = k.to(q.dtype), v.to(q.dtype)
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    kbar = kbar.to(q.dtype).contiguous() if kbar.shape[2] else q.new_zeros(B, H, 1, D)
    vbar = vbar.to(q.dtype).contiguous() if vbar.shape[2] else q.new_zeros(B, H, 1, D)
    return q, k, v, kbar, vbar


def _strides(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> list[int]:
    return [s for x in (q, k, v) for s in x.stride()[:3]]


def _check_launch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: Any) -> None:
    if q.dim() != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q, k, v must share one shape [B, H, L, D]; got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[2] != plan.L:
        raise ValueError(f"the plan is for L = {plan.L}, the input has L = {q.shape[2]}")


def triton_plan_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kbar: torch.Tensor, vbar: torch.Tensor, plan: Any, scale: float | None = None,
    *, tf32: bool | None = None, block_m: int | None = None, block_n: int | None = None, num_warps: int | None = None, num_stages: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One plan's joint softmax: output [B, H, L, D] (q's dtype) and natural-log LSE [B, H, L] (float32).

    kbar / vbar: [B, H, n_units, D], cast to q's dtype. `tf32` (float32 inputs) defaults to torch's
    CUDA matmul setting, off on CPU. `block_m` / `block_n` cap the kernel's row / key block (the plan's
    tiles are split to fit). No autograd here: see `TritonPlanAttention`.
    """
    _check_launch(q, k, v, plan)
    B, H, L, D = q.shape
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    dtype = q.dtype
    q, k, v, kbar, vbar = _inputs(q, k, v, kbar, vbar)
    cfg = TRITON_CONFIG["fwd"]
    block_m, block_n = block_m or cfg.get("block_m"), block_n or cfg.get("block_n")
    num_warps, num_stages = num_warps or cfg.get("num_warps"), num_stages or cfg.get("num_stages")
    segments = plan.segments()
    # several segments resume from each other's output: keep it in float32 until the end
    out = torch.empty(B, H, L, D, device=q.device, dtype=q.dtype if len(segments) == 1 else torch.float32)
    lse = torch.empty(B, H, L, device=q.device, dtype=torch.float32)
    for n, seg in enumerate(segments):
        blocks = _blocks(D, int(seg.tile_q), int(seg.tile_k), False, block_m, block_n)
        args, consts, n_programs = _segment_args(seg, q.device, D, blocks)
        _ready(combiner_fwd_kernel, q.device)[(n_programs, B * H)](
            q, k, v, kbar, vbar, out, lse, *args[:9], scale * LOG2E, H, L, kbar.shape[2], *args[9:], *_strides(q, k, v),
            **consts, ACC=n > 0, I64=_needs_i64(q, k, v, kbar, args), PRECISION=_precision(q, tf32),
            **_opts(q, blocks[2], num_warps, num_stages),
        )  # fmt: skip
    return out.to(dtype), lse


def triton_plan_backward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kbar: torch.Tensor, vbar: torch.Tensor, out: torch.Tensor, lse: torch.Tensor,
    dout: torch.Tensor, plan: Any, scale: float | None = None,
    *, tf32: bool | None = None, block_m: int | None = None, block_n: int | None = None, num_warps: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv, dkbar, dvbar) of `triton_plan_forward` for the output cotangent `dout` (dk.. in float32)."""
    _check_launch(q, k, v, plan)
    B, H, L, D = q.shape
    U = kbar.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    dtype = q.dtype
    q, k, v, kbar, vbar = _inputs(q, k, v, kbar, vbar)
    cfg = TRITON_CONFIG["bwd"]
    block_m, block_n, num_warps = block_m or cfg.get("block_m"), block_n or cfg.get("block_n"), num_warps or cfg.get("num_warps")
    dout = dout.to(q.dtype).contiguous()
    delta = (dout.float() * out.float()).sum(-1).contiguous()  # rowsum(dO * O) = sum_j p_ij dp_ij
    segments = plan.segments()
    dq = torch.empty(B, H, L, D, device=q.device, dtype=q.dtype if len(segments) == 1 else torch.float32)
    def f32(*size: int) -> torch.Tensor:
        return torch.zeros(*size, device=q.device, dtype=torch.float32)

    dk, dv = f32(B, H, L, D), f32(B, H, L, D)
    dkb, dvb = f32(B, H, max(U, 1), D), f32(B, H, max(U, 1), D)
    for n, seg in enumerate(segments):
        blocks = _blocks(D, int(seg.tile_q), int(seg.tile_k), True, block_m, block_n)
        args, consts, n_programs = _segment_args(seg, q.device, D, blocks)
        _ready(combiner_bwd_kernel, q.device)[(n_programs, B * H)](
            q, k, v, kbar, vbar, dout, lse.contiguous(), delta, dq, dk, dv, dkb, dvb, *args[:9],
            scale * LOG2E, scale, H, L, max(U, 1), *args[9:], *_strides(q, k, v),
            **consts, ACC=n > 0, I64=_needs_i64(q, k, v, kbar, args), PRECISION=_precision(q, tf32),
            **_opts(q, blocks[2], num_warps, cfg.get("num_stages") or 1),
        )  # fmt: skip
    return dq.to(dtype), dk, dv, dkb[:, :, :U], dvb[:, :, :U]


class TritonPlanAttention(torch.autograd.Function):
    """`triton_plan_forward` with autograd (Triton backward). Returns (out, lse); lse is not differentiable."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kbar: torch.Tensor, vbar: torch.Tensor, plan: Any, scale: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        out, lse = triton_plan_forward(q, k, v, kbar, vbar, plan, scale)
        ctx.save_for_backward(q, k, v, kbar, vbar, out, lse)
        ctx.plan, ctx.scale = plan, scale
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor, _dlse: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        q, k, v, kbar, vbar, out, lse = ctx.saved_tensors
        dq, dk, dv, dkb, dvb = triton_plan_backward(q, k, v, kbar, vbar, out, lse, dout, ctx.plan, ctx.scale)
        return dq, dk.to(k.dtype), dv.to(v.dtype), dkb.to(kbar.dtype), dvb.to(vbar.dtype), None, None


def triton_combiner_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: PatternPlan, scale: float | None = None) -> torch.Tensor:
    """The pattern's attention (inputs checked, plan on q's device), differentiable in q, k, v.

    The summary pass runs in q's dtype (float16 / bfloat16 stay 16-bit: it reads every key once);
    float64 inputs are computed in float32, the kernels' widest type, and returned as float64.
    """
    D = q.shape[-1]
    if q.numel() == 0:  # B = 0 or H = 0: an empty output, still attached to q (no kernel launch)
        return q * 0.0
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    dtype = q.dtype
    if dtype == torch.float64:
        q, k, v = q.float(), k.float(), v.float()

    def run(qg: torch.Tensor) -> torch.Tensor:  # one group of q heads sharing k, v (GQA)
        qg = qg.contiguous()
        outs = []
        for p in plan.plans:
            kbar, vbar = summary_pass(qg, k, v, p, scale)
            outs.append(TritonPlanAttention.apply(qg, k, v, kbar, vbar, p, scale)[0])  # type: ignore[no-untyped-call]
        return outs[0] if len(outs) == 1 else torch.stack(outs).mean(0)  # mix: average

    return by_kv_group(q, k.shape[1], run).to(dtype)


class TritonCombinerModule(CombinerModule):
    """The Triton target: the torch summary pass, then the fused Triton main pass (and its backward)."""

    target = "triton"

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: PatternPlan, scale: float | None) -> torch.Tensor:
        return triton_combiner_attention(q, k, v, plan, scale)
