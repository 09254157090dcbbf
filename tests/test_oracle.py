"""The dense oracle against the paper's testable properties (combiner-paper.md section 6)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from combiner_dsl import ir
from combiner_dsl.layout import build_layout
from combiner_dsl.oracle import oracle_attention
from combiner_dsl.parse import parse
from combiner_dsl.semantics import analyze
from combiner_dsl.source import Source

ROOT = Path(__file__).resolve().parent.parent
FULL = sorted(ROOT.glob("examples/*.cmb"))
SPARSE = sorted(ROOT.glob("examples/sparse/*.cmb"))


@cache
def example(path: Path) -> ir.Pattern:
    src = Source(str(path), path.read_text())
    return analyze(parse(src), src)


def effective_attention(pattern: ir.Pattern, L: int, D: int = 6, seed: int = 0) -> torch.Tensor:
    """Q_eff [L, L]: values are one-hot (V = I), keys independent of V (section 6's harness)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(1, 1, L, D, generator=g, dtype=torch.float64)
    k = torch.randn(1, 1, L, D, generator=g, dtype=torch.float64)
    v = torch.eye(L, dtype=torch.float64)[None, None]
    return oracle_attention(pattern, q, k, v)[0, 0]


@pytest.mark.parametrize("L", [1, 12, 13, 31, 64, 100])
@pytest.mark.parametrize("path", FULL, ids=lambda p: p.stem)
def test_full_attention_is_a_distribution_over_exactly_the_allowed_keys(path: Path, L: int) -> None:
    pattern = example(path)
    att = effective_attention(pattern, L)
    allowed = torch.ones(L, L, dtype=torch.bool)
    if pattern.causal:
        allowed = torch.tril(allowed)
    assert torch.allclose(att.sum(1), torch.ones(L, dtype=torch.float64), atol=1e-12)
    assert torch.all(att[~allowed] == 0), "weight on a key the query may not see"
    assert torch.all(att[allowed] > 0), "an allowed key without weight: not full attention"


@pytest.mark.parametrize("L", [9, 40])
@pytest.mark.parametrize("path", SPARSE, ids=lambda p: p.stem)
def test_sparse_patterns_are_masked_softmax_over_the_direct_set(path: Path, L: int) -> None:
    pattern = example(path)
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, L, 5, generator=g, dtype=torch.float64) for _ in range(3))
    direct = build_layout(pattern, L).plans[0].direct
    exact = F.scaled_dot_product_attention(q, k, v, attn_mask=direct)
    assert (oracle_attention(pattern, q, k, v) - exact).abs().max().item() < 1e-12


def test_singleton_regions_are_exact_attention() -> None:
    text = (ROOT / "examples" / "combiner_fixed.cmb").read_text().replace("isqrt(L)", "1")
    src = Source("s1", text)
    pattern = analyze(parse(src), src)
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 3, 33, 4, generator=g, dtype=torch.float64) for _ in range(3))
    exact = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert (oracle_attention(pattern, q, k, v) - exact).abs().max().item() < 1e-12


def test_rank_one_blocks_of_combiner_fixed() -> None:
    """Queries sharing a region weigh its keys proportionally (section 1.6): the block has rank 1."""
    att = effective_attention(example(ROOT / "examples" / "combiner_fixed.cmb"), 16)
    block = att[8:16, 0:4]  # queries of blocks 2-3, keys of block 0 (s = 4)
    assert torch.linalg.matrix_rank(block).item() == 1
    assert torch.linalg.matrix_rank(att[4:8, 4:8]).item() == 4  # a direct causal block is full rank


def test_average_mixture_is_the_mean_of_its_plans() -> None:
    text = (ROOT / "examples" / "combiner_mixture.cmb").read_text().replace("mix: joint", "mix: average")
    src = Source("avg", text)
    avg = analyze(parse(src), src)
    vertical = example(ROOT / "examples" / "combiner_axial_vertical.cmb")
    horizontal = example(ROOT / "examples" / "combiner_axial_horizontal.cmb")
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, 30, 4, generator=g, dtype=torch.float64) for _ in range(3))
    both = (oracle_attention(vertical, q, k, v) + oracle_attention(horizontal, q, k, v)) / 2
    assert (oracle_attention(avg, q, k, v) - both).abs().max().item() < 1e-12


def test_joint_mixture_counts_a_shared_direct_key_once() -> None:
    """Two plans both attend j == i directly: the joint softmax weighs that key once, not twice."""
    text = """
pattern overlap:
    causal
    plan a:
        direct: j == i
    plan b:
        direct: j == i or j == i - 1
    mix: joint
"""
    src = Source("overlap", text)
    pattern = analyze(parse(src), src)
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, 2, 12, 4, generator=g, dtype=torch.float64) for _ in range(3))
    idx = torch.arange(12)
    union = (idx[None, :] == idx[:, None]) | (idx[None, :] == idx[:, None] - 1)
    exact = F.scaled_dot_product_attention(q, k, v, attn_mask=union)
    assert (oracle_attention(pattern, q, k, v) - exact).abs().max().item() < 1e-12


def test_float32_is_supported() -> None:
    pattern = example(ROOT / "examples" / "combiner_logsparse.cmb")
    q, k, v = (torch.randn(1, 1, 20, 4) for _ in range(3))
    out = oracle_attention(pattern, q, k, v)
    assert out.dtype == torch.float32
    assert (out.double() - oracle_attention(pattern, q.double(), k.double(), v.double())).abs().max().item() < 1e-5
