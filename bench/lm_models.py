"""The attention kinds compared by `lm_small.py`, and the tiny transformer they sit in.

Every kind maps q, k, v `[B, H, L, D]` to `[B, H, L, D]` and has no parameters, so models that differ
only in the kind have the same parameter count:

- `full`: exact causal attention, `F.scaled_dot_product_attention(is_causal=True)`;
- a paper variant from `examples/` (`combiner_*`): the module `combiner_dsl.compile(spec)` generates;
- a source pattern from `examples/sparse/` (`sparse_*`): SDPA with the pattern's boolean mask at L,
  read from `combiner_dsl.layout.build_layout` (the pattern has no regions: the mask is all of it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import combiner_dsl
from combiner_dsl.layout import build_layout

ROOT = Path(__file__).resolve().parent.parent
# Causal paper variants and the source patterns they come from (bidirectional ones cannot model a language left to right).
COMBINER_KINDS = ("combiner_fixed", "combiner_logsparse", "combiner_axial", "combiner_axial_horizontal", "combiner_axial_vertical", "combiner_mixture")
SPARSE_KINDS = ("sparse_fixed", "sparse_logsparse", "sparse_axial")
KINDS = ("full", *COMBINER_KINDS, *SPARSE_KINDS)

Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def spec_path(kind: str) -> Path:
    return ROOT / "examples" / ("sparse" if kind.startswith("sparse_") else "") / f"{kind}.cmb"


@dataclass(frozen=True)
class KindInfo:
    """What the cost model and the layout say about one kind at one length."""

    kind: str
    family: str  # full, combiner (has regions) or sparse (direct keys only)
    L: int
    pairs_per_head: int  # direct + region + summary pairs (contract.md); L(L+1)/2 for full
    reach_last: float  # fraction of keys 0..L-1 the last query reaches in one layer (direct or via a region)
    reachable_last: torch.Tensor  # bool [L]: which keys the last query reaches
    at_key: tuple[str, ...] = ()  # partitions whose summary key is `at(...)`: one member's key stands for the region


def _full_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def build_attention(kind: str, L: int, path: Path | None = None) -> tuple[Attention, KindInfo]:
    """The attention function of `kind` (or of the causal spec at `path`) at length L, with its cost
    and one-layer reach; a spec with regions runs as its generated module, one without as masked SDPA."""
    if kind not in KINDS and path is None:
        raise ValueError(f"unknown attention kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "full":
        reach = torch.ones(L, dtype=torch.bool)
        return _full_attention, KindInfo(kind, "full", L, L * (L + 1) // 2, 1.0, reach)
    spec = combiner_dsl.load(path or spec_path(kind))
    regions = any(plan.partitions for plan in spec.pattern.plans)
    cost = spec.cost(L)
    pairs = cost.direct_pairs + cost.region_pairs + cost.summary_pairs
    layout = build_layout(spec.pattern, L)
    reach = torch.zeros(L, dtype=torch.bool)
    for plan in layout.plans:
        reach |= plan.direct[L - 1]
        for rs in plan.regions:
            reach |= (rs.member & rs.select[L - 1][:, None]).any(0)
    at_key = tuple(part.name for plan in spec.pattern.plans for part in plan.partitions if part.key.is_at)
    info = KindInfo(kind, "combiner" if regions else "sparse", L, pairs, float(reach.float().mean()), reach, at_key)
    if not regions:
        mask = layout.plans[0].direct
        if not bool(mask.diagonal().all()):  # a row with no key would make SDPA return NaN
            raise ValueError(f"{kind}: some query sees no key at L = {L}")

        def sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

        return sparse_attention, info
    module = combiner_dsl.compile(spec, target="torch")
    return module, info


class Block(nn.Module):
    """Pre-LayerNorm transformer block; the attention kind is the only thing that varies."""

    def __init__(self, d: int, heads: int, attention: Attention) -> None:
        super().__init__()
        self.heads = heads
        self.attention = attention
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        B, L, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, L, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = self.attention(q, k, v).transpose(1, 2).reshape(B, L, d)
        if last_only:  # only the last position is read out: the MLP need not run elsewhere
            x, a = x[:, -1:], a[:, -1:]
        x = x + self.proj(a)
        return x + self.mlp(self.ln2(x))


class TinyLM(nn.Module):
    """Token (+ learned position) embedding, `layers` blocks, final LayerNorm, linear head."""

    def __init__(self, vocab: int, n_out: int, L: int, d: int, heads: int, layers: int, attention: Attention, positions: bool) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(L, d) * 0.02) if positions else None
        self.blocks = nn.ModuleList(Block(d, heads, attention) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, n_out)

    def set_attention(self, attention: Attention) -> None:
        """Swap the attention of every block (e.g. the module built for another length)."""
        for block in self.blocks:
            block.attention = attention  # type: ignore[union-attr]

    def forward(self, tokens: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        x = self.tok(tokens)
        if self.pos is not None:
            x = x + self.pos[: tokens.shape[1]]
        for n, block in enumerate(self.blocks):
            x = block(x, last_only=last_only and n == len(self.blocks) - 1)
        return self.head(self.ln(x))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def bits(nats: float) -> float:
    return nats / math.log(2)
