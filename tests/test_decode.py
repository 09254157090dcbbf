"""Cached decoding: step by step against a full forward over every prefix (float64), and what the cache keeps."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import torch

from combiner_dsl import api
from combiner_dsl.codegen.torch_target import build_module
from combiner_dsl.runtime.decode import DecodeCache, new_cache

ROOT = Path(__file__).resolve().parent.parent
STREAMING = [*sorted((ROOT / "examples" / "streaming").glob("*.cmb")), ROOT / "examples" / "combiner_logsparse.cmb"]


@cache
def module(path: Path) -> torch.nn.Module:
    return build_module(api.load(path).pattern)


def inputs(L: int, H: int = 4, Hkv: int = 2, D: int = 8, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, H, L, D, generator=g, dtype=torch.float64)
    k, v = (torch.randn(2, Hkv, L, D, generator=g, dtype=torch.float64) for _ in range(2))
    return q, k, v


def decode(path: Path, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, prefill: int, capacity: int) -> tuple[torch.Tensor, DecodeCache]:
    B, H, L, D = q.shape
    c = new_cache(module(path), max_length=capacity, batch=B, heads=H, kv_heads=k.shape[1], head_dim=D, dtype=q.dtype)
    outs = [c.extend(q[:, :, :prefill], k[:, :, :prefill], v[:, :, :prefill])] if prefill else []
    outs += [c.step(q[:, :, t : t + 1], k[:, :, t : t + 1], v[:, :, t : t + 1]) for t in range(prefill, L)]
    return torch.cat(outs, 2), c


def check_every_prefix(path: Path, L: int, every: int) -> None:
    q, k, v = inputs(L)
    out, _ = decode(path, q, k, v, prefill=0, capacity=L + 30)
    attn = module(path)
    for t in [*range(0, L, every), L - 1]:
        want = attn(q[:, :, : t + 1], k[:, :, : t + 1], v[:, :, : t + 1])[:, :, t]
        torch.testing.assert_close(out[:, :, t], want, rtol=0, atol=1e-10, msg=f"{path.stem}: step {t}")


@pytest.mark.parametrize("path", [pytest.param(p, marks=() if p.stem in ("fixed_block16", "combiner_logsparse") else pytest.mark.slow) for p in STREAMING], ids=lambda p: p.stem)
def test_steps_equal_a_full_forward_over_their_prefix(path: Path) -> None:
    check_every_prefix(path, 48, 5)


@pytest.mark.slow
@pytest.mark.parametrize("path", STREAMING, ids=lambda p: p.stem)
def test_every_step_up_to_128_equals_a_full_forward_over_its_prefix(path: Path) -> None:
    check_every_prefix(path, 128, 1)  # (the prefill test compares 130 steps with one forward over all of them)


@pytest.mark.parametrize("path", [pytest.param(p, marks=() if p.stem == "fixed_block16" else pytest.mark.slow) for p in STREAMING], ids=lambda p: p.stem)
def test_prefill_then_steps_equal_the_forward_at_every_position(path: Path) -> None:
    L = 130
    q, k, v = inputs(L, seed=1)
    out, c = decode(path, q, k, v, prefill=37, capacity=256)
    attn = module(path)
    torch.testing.assert_close(out, attn(q, k, v), rtol=0, atol=1e-10)  # rows are prefix-stable (proved)
    for t in (37, 64, 129):  # and each is the forward over its own prefix
        torch.testing.assert_close(out[:, :, t], attn(q[:, :, : t + 1], k[:, :, : t + 1], v[:, :, : t + 1])[:, :, t], rtol=0, atol=1e-10)
    assert c.length == L


def test_the_cache_keeps_one_block_and_the_summaries() -> None:
    path = ROOT / "examples" / "streaming" / "fixed_block16.cmb"
    q, k, v = inputs(100, H=4, Hkv=4)
    _, c = decode(path, q, k, v, prefill=50, capacity=512)
    plan = c.plans[0]
    assert plan.n_pos <= 17  # raw q, k, v of the open block only
    assert plan.n_unit_slots == 512 // 16 - 1  # a summary per complete block still selected later
    full_kv = 2 * 2 * 4 * 512 * 8 * 8  # K and V over the whole capacity, float64
    assert c.nbytes() < full_kv / 4


def test_errors_name_the_remedy() -> None:
    path = ROOT / "examples" / "streaming" / "fixed_block16.cmb"
    q, k, v = inputs(5)
    c = new_cache(module(path), max_length=4, batch=2, heads=4, kv_heads=2, head_dim=8, dtype=torch.float64)
    with pytest.raises(ValueError, match="larger max_length"):
        c.extend(q, k, v)
    with pytest.raises(ValueError, match="causal"):
        new_cache(module(ROOT / "examples" / "combiner_fixed_bidir.cmb"), max_length=8, batch=1, heads=1, head_dim=8)
