"""Grouped-query attention: k, v with fewer heads than q, against the oracle on repeated K/V."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from combiner_dsl import api
from combiner_dsl.codegen.torch_target import build_module, load_generated
from combiner_dsl.oracle import oracle_attention

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(ROOT.glob("examples/*.cmb"))
LENGTHS = (1, 7, 100, 127)
FAST = ("combiner_fixed", "combiner_logsparse", "combiner_axial")


def cases(names: list[str]) -> list[object]:
    """(name, L) pairs; long lengths of the slower specs are in the slow tier."""
    return [pytest.param(n, L, marks=() if n in FAST or L < 100 else pytest.mark.slow, id=f"{n}-{L}") for n in names for L in LENGTHS]


@cache
def spec(path: Path) -> api.Spec:
    return api.load(path)


@cache
def torch_module(path: Path) -> torch.nn.Module:
    return build_module(spec(path).pattern)


def gqa_inputs(L: int, H: int, Hkv: int, dtype: torch.dtype = torch.float64, D: int = 8, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, H, L, D, generator=g, dtype=torch.float64).to(dtype)
    k, v = (torch.randn(2, Hkv, L, D, generator=g, dtype=torch.float64).to(dtype) for _ in range(2))
    return q, k, v


def repeated_oracle(path: Path, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    G = q.shape[1] // k.shape[1]
    return oracle_attention(spec(path).pattern, q, k.repeat_interleave(G, 1), v.repeat_interleave(G, 1))


@pytest.mark.parametrize(("name", "L"), cases([p.stem for p in EXAMPLES]))
def test_torch_gqa_matches_oracle(name: str, L: int) -> None:
    path = ROOT / "examples" / f"{name}.cmb"
    q, k, v = gqa_inputs(L, H=4, Hkv=2)
    out = torch_module(path)(q, k, v)
    torch.testing.assert_close(out, repeated_oracle(path, q, k, v), rtol=1e-10, atol=1e-10)


def test_torch_gqa_single_kv_head_and_gradients() -> None:
    path = ROOT / "examples" / "combiner_fixed.cmb"
    q, k, v = (x.requires_grad_() for x in gqa_inputs(37, H=3, Hkv=1))
    out = torch_module(path)(q, k, v)
    torch.testing.assert_close(out, repeated_oracle(path, q, k, v), rtol=1e-10, atol=1e-10)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    refs = torch.autograd.grad(repeated_oracle(path, q, k, v).square().sum(), (q, k, v))
    for got, want in zip(grads, refs, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("shape_k", "msg"), [((2, 3, 7, 8), "must divide"), ((2, 2, 6, 8), "with q's B, L and D")])
def test_gqa_shape_errors(shape_k: tuple[int, ...], msg: str) -> None:
    q = torch.randn(2, 4, 7, 8)
    k = torch.randn(*shape_k)
    with pytest.raises(ValueError, match=msg):
        torch_module(ROOT / "examples" / "combiner_fixed.cmb")(q, k, k)


TRITON = [pytest.param("combiner_fixed", 37, id="combiner_fixed-37")] + [pytest.param(n, L, marks=pytest.mark.slow, id=f"{n}-{L}") for n in FAST for L in LENGTHS]


@pytest.mark.parametrize(("name", "L"), TRITON)
def test_triton_gqa_matches_oracle(name: str, L: int) -> None:
    pytest.importorskip("triton")
    path = ROOT / "examples" / f"{name}.cmb"
    attn = load_generated(api.generate(spec(path), "triton"), name).CombinerAttention()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    q, k, v = gqa_inputs(L, H=4, Hkv=2, dtype=torch.float32, D=16)
    out = attn(q.to(device), k.to(device), v.to(device)).cpu()
    torch.testing.assert_close(out, repeated_oracle(path, q, k, v), rtol=2e-3, atol=2e-3)
