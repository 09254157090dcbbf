"""The torch target's module class: the batched torch attention, and cached decoding."""

from __future__ import annotations

import torch

from .attention import combiner_attention
from .decode import DecodeCache
from .module import CombinerModule
from .plan import PatternPlan


class TorchCombinerModule(CombinerModule):
    """The torch target: summary pass, then one batched joint-softmax pass per segment."""

    target = "torch"

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: PatternPlan, scale: float | None) -> torch.Tensor:
        return combiner_attention(q, k, v, plan, scale)

    def new_cache(
        self, *, max_length: int, batch: int, heads: int, head_dim: int, kv_heads: int | None = None,
        dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", scale: float | None = None,
    ) -> DecodeCache:
        """A decoding cache (`step`, `extend`) for up to `max_length` positions; exact only for a
        prefix-stable spec (`combiner check` reports "streaming")."""
        return DecodeCache(self.spec, max_length, batch, heads, kv_heads or heads, head_dim, dtype=dtype, device=device, scale=scale)
