"""The Triton target: kernels on hand-made plans, every example against the dense oracle, gradients
against the torch target, and the generated module itself.

Without CUDA these run the kernels under Triton's interpreter, which Triton switches on only if
TRITON_INTERPRET=1 is set before triton is first imported; this module sets it at import (pytest
imports test modules before running any test). GPU-only tests carry the `gpu` marker and skip
without CUDA.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton.language as tl

import combiner_dsl
from combiner_dsl.oracle import oracle_attention
from combiner_dsl.runtime import triton_attention as ta

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.cmb")) + sorted((ROOT / "examples" / "sparse").glob("*.cmb"))
LENGTHS = (1, 37, 100, 127, 256)  # 37, 100, 127: no tile size divides them
HAS_CUDA = torch.cuda.is_available()
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device (these run on a lent GPU; CI runs the interpreter tests)")


@pytest.fixture(scope="module", autouse=True)
def _kernels_can_run() -> None:
    if not HAS_CUDA and type(tl.zeros).__name__ != "InterpretedFunction":
        pytest.fail("triton was imported before TRITON_INTERPRET=1 was set, so its kernels cannot run on CPU; set it in the environment or tests/conftest.py")


DEVICE = "cuda" if HAS_CUDA else "cpu"


# ---------------------------------------------------------------- hand-made plans


def _segment(
    direct: torch.Tensor, select: torch.Tensor, tq: int, tk: int, qperm: torch.Tensor | None = None, kperm: torch.Tensor | None = None, shuffle: bool = False
) -> SimpleNamespace:
    """A plan segment for dense `direct` [L, L] and `select` [L, U], in any tiling and query/key order."""
    L, U = direct.shape[0], select.shape[1]

    def slots(perm: torch.Tensor | None, T: int) -> torch.Tensor:
        s = torch.full((-(-L // T) * T,), -1, dtype=torch.int64)
        s[:L] = torch.arange(L) if perm is None else perm
        return s

    qs, ks = slots(qperm, tq), slots(kperm, tk)
    nq, nk = qs.numel() // tq, ks.numel() // tk
    grid = direct[qs.clamp(min=0)][:, ks.clamp(min=0)] & (qs >= 0)[:, None] & (ks >= 0)[None, :]
    blocks = grid.view(nq, tq, nk, tk).permute(0, 2, 1, 3)
    used, full = blocks.flatten(2).any(-1), blocks.flatten(2).all(-1)
    sel = (select[qs.clamp(min=0)] & (qs >= 0)[:, None]).view(nq, tq, U)
    dmax = int(used.sum(1).max()) + int(shuffle)
    umax = (int(sel.any(1).sum(1).max()) + int(shuffle)) if U else 0
    dt, df = torch.full((nq, dmax), -1, dtype=torch.int32), torch.zeros(nq, dmax, dtype=torch.bool)
    dm = torch.zeros(nq, dmax, tq, tk, dtype=torch.bool)
    ul, um = torch.full((nq, umax), -1, dtype=torch.int32), torch.zeros(nq, tq, umax, dtype=torch.bool)
    for a in range(nq):
        ts = used[a].nonzero().flatten()
        at = torch.randperm(dmax)[: len(ts)] if shuffle else torch.arange(len(ts))  # padding anywhere
        dt[a, at], df[a, at], dm[a, at] = ts.int(), full[a, ts], blocks[a, ts]
        us = sel[a].any(0).nonzero().flatten()
        at = torch.randperm(umax)[: len(us)] if shuffle else torch.arange(len(us))
        ul[a, at], um[a][:, at] = us.int(), sel[a][:, us]
    return SimpleNamespace(
        tile_q=tq,
        tile_k=tk,
        query_slots=None if qperm is None else qs,
        key_slots=None if kperm is None else ks,
        direct_tiles=dt,
        direct_full=df,
        direct_masks=dm,
        unit_lists=ul,
        unit_masks=um,
    )


def _plan(L: int, n_units: int, segs: list[SimpleNamespace]) -> SimpleNamespace:
    return SimpleNamespace(L=L, n_units=n_units, segments=lambda: tuple(segs))


def _reference(q, k, v, kb, vb, direct, select, scale):
    """One dense joint softmax (float64): output and log-sum-exp."""
    s = torch.cat([(q @ k.transpose(-1, -2) * scale).masked_fill(~direct, -math.inf), (q @ kb.transpose(-1, -2) * scale).masked_fill(~select, -math.inf)], -1)
    m = s.amax(-1, keepdim=True)
    p = torch.exp(s - torch.where(m.isinf(), 0, m))
    total = p.sum(-1, keepdim=True)
    return (p @ torch.cat([v, vb], -2)) / torch.where(total > 0, total, 1), (torch.where(m.isinf(), 0, m) + total.log()).squeeze(-1)


CASES = [  # L, tile_q, tile_k, D, U, segments, shuffled padding
    (37, 16, 16, 16, 5, 1, False),
    (100, 32, 16, 24, 9, 2, False),  # a second segment in permuted query and key order
    (1, 16, 16, 8, 0, 1, False),  # no units at all
    (50, 10, 12, 16, 3, 2, True),  # tiles that are no power of two; padding slots anywhere
    (130, 256, 256, 32, 7, 1, False),  # plan tiles taller than the kernel's row block
    (90, 16, 32, 16, 70, 3, True),  # more units than one chunk
]


@pytest.mark.parametrize(("L", "tq", "tk", "D", "U", "nseg", "shuffle"), CASES)
def test_kernels_on_hand_made_plans(L: int, tq: int, tk: int, D: int, U: int, nseg: int, shuffle: bool) -> None:
    gen = torch.Generator().manual_seed(L * 7 + U)
    i = torch.arange(L)
    direct = ((i[:, None] // 7 == i[None, :] // 7) | (torch.rand(L, L, generator=gen) < 0.1)) & (i[None, :] <= i[:, None])
    select = torch.rand(L, U, generator=gen) < 0.3
    direct[L // 2], select[L // 2] = False, False  # a row with no logit: zero output, lse -inf
    part, upart = torch.randint(0, nseg, (L, L), generator=gen), torch.randint(0, nseg, (L, U), generator=gen)
    segs = [
        _segment(
            direct & (part == n),
            select & (upart == n),
            tq,
            tk,
            *((None, None) if n == 0 else (torch.randperm(L, generator=gen), torch.randperm(L, generator=gen))),
            shuffle=shuffle,
        )
        for n in range(nseg)
    ]
    B, H = 1, 2
    ins = [torch.randn(B, H, n, D, dtype=torch.float64, generator=gen) for n in (L, L, L, U, U)]
    ref_in = [x.clone().requires_grad_() for x in ins]
    ref_out, ref_lse = _reference(*ref_in, direct, select, 0.3)
    x32 = [x.float().to(DEVICE).requires_grad_() for x in ins]
    out, lse = ta.TritonPlanAttention.apply(*x32, _plan(L, U, segs), 0.3)
    torch.testing.assert_close(out.double().cpu(), ref_out.detach(), atol=1e-5, rtol=1e-4)
    assert torch.equal(lse.isinf().cpu(), ref_lse.isinf())
    torch.testing.assert_close(lse.double().cpu().nan_to_num(0, 0, 0), ref_lse.detach().nan_to_num(0, 0, 0), atol=1e-5, rtol=1e-4)
    g = torch.randn(ref_out.shape, dtype=torch.float64, generator=gen)
    want = torch.autograd.grad(ref_out, ref_in, g)
    got = torch.autograd.grad(out, x32, g.float().to(DEVICE))
    for name, a, b in zip(("q", "k", "v", "kbar", "vbar"), got, want, strict=True):
        torch.testing.assert_close(a.double().cpu(), b, atol=2e-5, rtol=1e-4, msg=lambda m, name=name: f"d{name}: {m}")


def test_int64_offsets_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The I64 variant (offsets inside a head past 2**31) computes the same thing; forced here at small size."""
    monkeypatch.setattr(ta, "_needs_i64", lambda *a: True)
    test_kernels_on_hand_made_plans(*CASES[1])


def test_needs_i64_thresholds() -> None:
    q = torch.empty(1, 1, 8, 4)
    small = [torch.empty(3)]
    assert not ta._needs_i64(q, q, q, q, small)
    big = SimpleNamespace(numel=lambda: 2**31)
    assert ta._needs_i64(q, q, q, q, [big])


def test_cpu_tensors_need_the_interpreter() -> None:
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        ta._ready(object(), torch.device("cpu"))


# ---------------------------------------------------------------- every example, through the generated module


@pytest.fixture(scope="module")
def modules() -> dict[str, tuple[combiner_dsl.Spec, torch.nn.Module, torch.nn.Module]]:
    out = {}
    for path in EXAMPLES:
        spec = combiner_dsl.load(path)
        out[path.stem] = (spec, combiner_dsl.compile(spec, target="triton"), combiner_dsl.compile(spec, target="torch"))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.stem for p in EXAMPLES])
def test_examples_match_the_oracle(modules: dict, name: str) -> None:
    spec, triton_mod, _ = modules[name]
    gen = torch.Generator().manual_seed(len(name))
    for L in LENGTHS:
        q, k, v = (torch.randn(1, 2, L, 16, generator=gen) for _ in range(3))
        out = triton_mod(q.to(DEVICE), k.to(DEVICE), v.to(DEVICE))
        assert out.shape == q.shape and out.dtype == q.dtype
        want = oracle_attention(spec.pattern, q.double(), k.double(), v.double())
        torch.testing.assert_close(out.double().cpu(), want, atol=1e-4, rtol=1e-4, msg=lambda m, L=L: f"{name} at L = {L}: {m}")


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.stem for p in EXAMPLES if p.parent.name == "examples"])
def test_gradients_match_the_torch_target(modules: dict, name: str) -> None:
    _, triton_mod, torch_mod = modules[name]
    gen = torch.Generator().manual_seed(3)
    L = 100
    ins = [torch.randn(1, 2, L, 16, generator=gen) for _ in range(3)]
    g = torch.randn(1, 2, L, 16, generator=gen)
    grads = []
    for mod in (triton_mod, torch_mod):
        x = [t.to(DEVICE).requires_grad_() for t in ins]
        out = mod(*x, scale=0.2)
        grads.append(torch.autograd.grad(out, x, g.to(DEVICE)))
    for a, b, what in zip(*grads, "qkv", strict=True):
        torch.testing.assert_close(a.cpu(), b.cpu(), atol=1e-4, rtol=1e-4, msg=lambda m, what=what: f"{name} d{what}: {m}")


def test_half_precision_inputs(modules: dict) -> None:
    _, triton_mod, torch_mod = modules["combiner_fixed"]
    gen = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 2, 100, 32, generator=gen) for _ in range(3))
    want = torch_mod(q, k, v)
    for dtype in (torch.float16, torch.bfloat16):
        out = triton_mod(q.to(DEVICE, dtype), k.to(DEVICE, dtype), v.to(DEVICE, dtype))
        assert out.dtype == dtype
        err = (out.float().cpu() - want).norm() / want.norm()
        assert err < (2e-2 if dtype == torch.bfloat16 else 5e-3), f"{dtype}: relative error {err:.2e}"


def test_strided_inputs(modules: dict) -> None:
    """[B, L, H, D] storage seen as [B, H, L, D] (only the last stride is 1): same output and gradients."""
    _, triton_mod, _ = modules["combiner_logsparse"]
    gen = torch.Generator().manual_seed(9)
    base = [torch.randn(2, 50, 3, 16, generator=gen).to(DEVICE) for _ in range(3)]
    strided = [t.transpose(1, 2).requires_grad_() for t in (b.clone() for b in base)]
    packed = [t.transpose(1, 2).contiguous().requires_grad_() for t in base]
    outs = [triton_mod(*x) for x in (strided, packed)]
    torch.testing.assert_close(outs[0], outs[1])
    g = torch.randn(outs[0].shape, generator=gen).to(DEVICE)
    for a, b in zip(torch.autograd.grad(outs[0], strided, g), torch.autograd.grad(outs[1], packed, g), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_rejected_length_is_a_value_error(tmp_path: Path) -> None:
    spec = combiner_dsl.load(text="pattern even:\n    causal\n    require L % 2 == 0\n    direct: j == i\n")
    mod = combiner_dsl.compile(spec, target="triton")
    x = torch.randn(1, 1, 3, 16)
    with pytest.raises(ValueError, match="even"):
        mod(x, x, x)


# ---------------------------------------------------------------- the generated code


def test_api_compile_and_generate_use_this_target() -> None:
    spec = combiner_dsl.load(ROOT / "examples" / "combiner_fixed.cmb")
    mod = combiner_dsl.compile(spec, target="triton")
    assert getattr(mod, "target", None) == "triton"
    assert "Triton target" in combiner_dsl.generate(spec, target="triton")


# ---------------------------------------------------------------- GPU only


@gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_examples_against_the_oracle(modules: dict, dtype: torch.dtype) -> None:
    for name, (spec, triton_mod, _) in modules.items():
        for L in (100, 1000):
            q, k, v = (torch.randn(2, 4, L, 64, device="cuda") for _ in range(3))
            out = triton_mod(q.to(dtype), k.to(dtype), v.to(dtype))
            want = oracle_attention(spec.pattern, q.double().cpu(), k.double().cpu(), v.double().cpu())
            err = (out.double().cpu() - want).norm() / want.norm()
            assert err < (2e-2 if dtype == torch.bfloat16 else 1e-3), f"{name} L={L} {dtype}: {err:.2e}"


@gpu
@needs_cuda
def test_gpu_gradients_against_the_torch_target(modules: dict) -> None:
    for name in ("combiner_fixed", "combiner_logsparse", "combiner_axial", "combiner_mixture"):
        _, triton_mod, torch_mod = modules[name]
        x = [torch.randn(1, 4, 2048, 64, device="cuda") for _ in range(3)]
        g = torch.randn_like(x[0])
        grads = []
        for mod in (triton_mod, torch_mod):
            xs = [t.clone().requires_grad_() for t in x]
            grads.append(torch.autograd.grad(mod(*xs), xs, g))
        for a, b in zip(*grads, strict=True):
            assert ((a - b).norm() / b.norm()) < 1e-2, name
