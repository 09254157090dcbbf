"""The torch target: generated modules against the dense oracle, exact causal attention, gradients, errors."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from combiner_dsl import ir
from combiner_dsl.codegen.torch_target import build_module, generate_torch, load_generated
from combiner_dsl.oracle import oracle_attention
from combiner_dsl.parse import parse
from combiner_dsl.semantics import analyze
from combiner_dsl.source import Source

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(ROOT.glob("examples/*.cmb")) + sorted(ROOT.glob("examples/sparse/*.cmb"))
GOLDEN = ROOT / "tests" / "golden" / "torch"
LENGTHS = (1, 7, 64, 100, 127, 256)


def pattern_of(text: str, name: str = "<test>") -> ir.Pattern:
    src = Source(name, text)
    return analyze(parse(src), src)


@cache
def example(path: Path) -> ir.Pattern:
    return pattern_of(path.read_text(), str(path.relative_to(ROOT)))


@cache
def module_of(path: Path) -> torch.nn.Module:
    return build_module(example(path))


@cache
def module_of_text(text: str) -> torch.nn.Module:
    return build_module(pattern_of(text))


def qkv(L: int, dtype: torch.dtype, B: int = 1, H: int = 2, D: int = 8, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, H, L, D, generator=g, dtype=torch.float64).to(dtype) for _ in range(3))


# ---------------------------------------------------------------- against the oracle


@pytest.mark.parametrize("L", LENGTHS)
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_matches_dense_oracle(path: Path, L: int) -> None:
    pattern, attn = example(path), module_of(path)
    q, k, v = qkv(L, torch.float64)
    ref = oracle_attention(pattern, q, k, v)
    assert (attn(q, k, v) - ref).abs().max().item() < 1e-10
    q32, k32, v32 = (x.float() for x in (q, k, v))
    out32 = attn(q32, k32, v32)
    assert out32.dtype == torch.float32
    assert (out32.double() - ref).abs().max().item() < 1e-5


def test_custom_scale_and_batches() -> None:
    path = ROOT / "examples" / "combiner_logsparse.cmb"
    q, k, v = qkv(100, torch.float64, B=3, H=3, D=5, seed=1)
    ref = oracle_attention(example(path), q, k, v, scale=0.37)
    assert (module_of(path)(q, k, v, scale=0.37) - ref).abs().max().item() < 1e-10


MIX_AVERAGE = (ROOT / "examples" / "combiner_mixture.cmb").read_text().replace("mix: joint", "mix: average").replace("combiner_mixture", "mixture_average")


@pytest.mark.parametrize("L", [5, 64, 130])
def test_mix_average_is_the_mean_of_the_plans(L: int) -> None:
    pattern = pattern_of(MIX_AVERAGE)
    assert pattern.mix == "average"
    q, k, v = qkv(L, torch.float64, seed=2)
    ref = oracle_attention(pattern, q, k, v)
    assert (module_of_text(MIX_AVERAGE)(q, k, v) - ref).abs().max().item() < 1e-10


def derived_variant(path: Path) -> str:
    """The example without its `select` lines: the compiler derives the same selection."""
    lines = [line for line in path.read_text().splitlines() if "select:" not in line]
    return "\n".join(lines).replace(f"pattern {path.stem}:", f"pattern {path.stem}_derived:") + "\n"


@pytest.mark.parametrize("L", [1, 2, 3, 7, 37, 64, 100, 127])  # (37: a run of members in the last block)
@pytest.mark.parametrize("path", sorted(ROOT.glob("examples/*.cmb")), ids=lambda p: p.stem)
def test_derived_selection_matches_the_oracle(path: Path, L: int) -> None:
    text = derived_variant(path)
    pattern = pattern_of(text)
    assert all(part.select is None for _, part in pattern.partitions)
    q, k, v = qkv(L, torch.float64, seed=8)
    assert (module_of_text(text)(q, k, v) - oracle_attention(pattern, q, k, v)).abs().max().item() < 1e-10


# specs beyond the paper's: other summaries, unsolvable members, no direct set, dense, banded
MORE_SPECS = {
    "units_only": """
pattern units_only:
    causal
    let s = 3
    direct: false
    partition blk[r in 0 .. cdiv(L, s)]:
        member: j >= r * s and j < r * s + s
        select: r * s + s - 1 <= i
        summary: query = mean, key = sum
""",
    "at_query_mean_key": """
pattern at_query_mean_key:
    causal
    let w = max(2, isqrt(L))
    direct: j // w == i // w
    partition row[r in 0 .. cdiv(L, w)]:
        member: j // w == r
        select: r < i // w
        summary: query = at(r * w + i % w), key = mean
""",
    "max_query_at_key": """
pattern max_query_at_key:
    bidirectional
    let w = 4
    direct: j // w == i // w
    partition row[r in 0 .. cdiv(L, w)]:
        member: j // w == r
        select: r != i // w
        summary: query = max, key = at(min(r * w + i % w, L - 1))
""",
    "banded_columns": """
pattern banded_columns:
    causal
    let w = 5
    direct: i - j < w
    partition col[c in 0 .. w, t in 0 .. cdiv(L, w)]:
        member: j % w == c and j // w < t and j // w >= t - 3
        select: t == (i - w + 1) // w and i - w + 1 >= 0
""",
    "dense": """
pattern dense:
    bidirectional
    direct: true
""",
    "joint_overlap": """
pattern joint_overlap:
    causal
    plan a:
        direct: j == i
    plan b:
        direct: j == i or j == i - 1
    mix: joint
""",
}


@pytest.mark.parametrize("L", [1, 9, 64, 131])
@pytest.mark.parametrize("name", sorted(MORE_SPECS))
def test_other_specs_match_the_oracle(name: str, L: int) -> None:
    text = MORE_SPECS[name]
    pattern = pattern_of(text)
    q, k, v = (x.requires_grad_() for x in qkv(L, torch.float64, seed=9))
    out = module_of_text(text)(q, k, v)
    assert (out - oracle_attention(pattern, q, k, v)).abs().max().item() < 1e-10
    out.sum().backward()  # rows without any logit (units_only at i < 2) give zeros and finite gradients
    assert all(x.grad is None or torch.isfinite(x.grad).all() for x in (q, k, v))


FIXED_S1 = """
pattern fixed_s1:
    causal
    let s = 1
    direct: j // s == i // s
    partition block[r in 0 .. cdiv(L, s)]:
        member: j // s == r
        select: r < i // s
"""


@pytest.mark.parametrize("L", [1, 17, 64, 129])
def test_singleton_regions_give_exact_causal_attention(L: int) -> None:
    q, k, v = qkv(L, torch.float64, seed=3)
    exact = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert (module_of_text(FIXED_S1)(q, k, v) - exact).abs().max().item() < 1e-12


# ---------------------------------------------------------------- gradients


CAUSAL = [p for p in EXAMPLES if example(p).causal and any(True for _ in example(p).partitions)]


@pytest.mark.parametrize("path", CAUSAL, ids=lambda p: p.stem)
def test_causal_gradients(path: Path) -> None:
    """d out_i / d k_j and d v_j: exactly zero for every j > i, non-zero for every j <= i.

    (Query 0 has one logit, so its output is v_0 whatever k is: its key gradient is zero too.)
    """
    L = 23
    q, k, v = (x.requires_grad_() for x in qkv(L, torch.float64, B=1, H=1, D=4, seed=4))
    out = module_of(path)(q, k, v)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for i in range(L):
        gk, gv = torch.autograd.grad((out[0, 0, i] * weights[0, 0, i]).sum(), (k, v), retain_graph=True)
        dk, dv = gk[0, 0].abs().sum(-1), gv[0, 0].abs().sum(-1)
        assert torch.all(dk[i + 1 :] == 0) and torch.all(dv[i + 1 :] == 0), f"query {i} sees the future"
        assert torch.all(dv[: i + 1] > 0) and (i == 0 or torch.all(dk[: i + 1] > 0)), f"query {i} misses an allowed key"


def test_gradients_match_the_oracle() -> None:
    path = ROOT / "examples" / "combiner_axial.cmb"
    q, k, v = (x.requires_grad_() for x in qkv(40, torch.float64, seed=6))
    (module_of(path)(q, k, v) ** 2).sum().backward()
    mine = [x.grad.clone() for x in (q, k, v)]
    for x in (q, k, v):
        x.grad = None
    (oracle_attention(example(path), q, k, v) ** 2).sum().backward()
    for a, x in zip(mine, (q, k, v), strict=True):
        assert (a - x.grad).abs().max().item() < 1e-10


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype: torch.dtype) -> None:
    path = ROOT / "examples" / "combiner_fixed.cmb"
    q, k, v = qkv(50, dtype, seed=7)
    q.requires_grad_()
    out = module_of(path)(q, k, v)
    assert out.dtype == dtype and out.device == q.device
    ref = oracle_attention(example(path), *(x.detach().double() for x in (q, k, v)))
    assert (out.double() - ref).abs().max().item() < 3e-2
    out.float().sum().backward()
    assert q.grad is not None and q.grad.dtype == dtype


# ---------------------------------------------------------------- errors


def test_wrong_inputs_are_clear_errors() -> None:
    attn = module_of(ROOT / "examples" / "combiner_fixed.cmb")
    q, k, v = qkv(16, torch.float32)
    with pytest.raises(ValueError, match=r"\[B, H, L, D\]"):
        attn(q[0], k[0], v[0])
    with pytest.raises(ValueError, match="same shape"):
        attn(q, k[:, :, :8], v)
    with pytest.raises(TypeError, match="float16, bfloat16, float32"):
        attn(q.long(), k.long(), v.long())
    with pytest.raises(TypeError, match="same dtype"):
        attn(q, k.double(), v)
    with pytest.raises(TypeError, match="scale"):
        attn(q, k, v, scale="big")
    with pytest.raises(ValueError, match="at least 1"):
        attn(q[:, :, :0], k[:, :, :0], v[:, :, :0])


EVEN_ONLY = """
pattern even_fixed:
    causal
    let s = isqrt(L)
    require L % 2 == 0
    direct: j // s == i // s
    partition block[r in 0 .. cdiv(L, s)]:
        member: j // s == r
        select: r < i // s
"""


def test_rejected_length_names_the_requirement() -> None:
    attn = module_of_text(EVEN_ONLY)
    q, k, v = qkv(9, torch.float32)
    with pytest.raises(ValueError, match=r"require L % 2 == 0"):
        attn(q, k, v)
    q, k, v = qkv(10, torch.float64)
    assert (attn(q, k, v) - oracle_attention(pattern_of(EVEN_ONLY), q, k, v)).abs().max().item() < 1e-10


# ---------------------------------------------------------------- the generated source


def test_spec_text_cannot_break_out_of_the_docstring() -> None:
    text = '# a """ quote and a \\ backslash\n' + FIXED_S1.replace("fixed_s1", "tricky")
    module = load_generated(generate_torch(pattern_of(text)), "tricky")
    assert '"""' in module.__doc__ and "\\ backslash" in module.__doc__
