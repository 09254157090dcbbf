"""Hugging Face transformers: a Combiner spec as an attention implementation (`attn_implementation=name`).

`register(spec_or_path)` checks the spec (full attention, and prefix stability for cached
decoding), compiles it, and registers an attention function and its mask function with
transformers (`AttentionInterface`, `AttentionMaskInterface`). The function serves:

- full forwards (training, prefill, `generate(use_cache=False)`): the compiled module on the
  model's q, k, v (GQA k, v as they come, not repeated); right-padded batches are exact on every
  valid position because C0 is proved (no valid query reads a later position, so no pad);
- decoding steps (query shorter than the keys): a Combiner decoding cache per layer
  (`runtime/decode.py`), filled at prefill, exact when the spec is proved prefix-stable.

Anything it cannot serve exactly (left padding, padding during cached decoding, a bidirectional
spec with padding, a spec that is not prefix-stable with a cache, attention dropout) raises a
`ValueError` that names the reason and the remedy. Needs the `hf` extra (`pip install
combiner-dsl[hf]`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import api
from .errors import CombinerError
from .runtime.decode import DecodeCache, DecodePlan, decode_plans, spec_of
from .verdict import Verdict

CACHE_ATTR = "_combiner_decode_cache"


@dataclass
class Registration:
    """What `register` set up: the name to pass as `attn_implementation`, the spec, its verdict, the module."""

    name: str
    spec: api.Spec
    verdict: Verdict
    attn: torch.nn.Module
    max_length: int | None

    @property
    def streaming(self) -> bool:
        return self.verdict.streaming is not None and self.verdict.streaming.status == "proved"


def register(spec_or_path: api.Spec | str | Path, name: str = "combiner", *, max_length: int | None = None, verdict: Verdict | None = None, timeout_s: float = 5.0) -> Registration:
    """Register the spec with transformers under `name`; returns the `Registration`.

    max_length: the longest sequence a decoding cache serves (default: the model config's
    `max_position_embeddings`). verdict: a verdict from `spec.check(streaming=True)` to reuse.
    """
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface
    except ImportError as err:
        raise CombinerError("combiner_dsl.hf needs transformers: pip install 'combiner-dsl[hf]'") from err
    spec = spec_or_path if isinstance(spec_or_path, api.Spec) else api.load(spec_or_path)
    if verdict is None or verdict.streaming is None:
        verdict = spec.check(timeout_s=timeout_s, streaming=True)
    if not verdict.holds:
        raise CombinerError(f"{spec.path}: {spec.name} does not give full attention ({verdict.message}); fix the spec before using it in a model")
    reg = Registration(name, spec, verdict, api.compile(spec, verdict=verdict), max_length)
    plans: dict[int, list[DecodePlan]] = {}

    def attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: torch.Tensor | None,
                  scaling: float | None = None, dropout: float = 0.0, **kwargs: Any) -> tuple[torch.Tensor, None]:
        return _attention(reg, plans, module, query, key, value, attention_mask, scaling, dropout, kwargs), None

    AttentionInterface.register(name, attention)
    AttentionMaskInterface.register(name, padding_mask)
    return reg


def padding_mask(batch_size: int, q_length: int, kv_length: int, q_offset: int = 0, kv_offset: int = 0, mask_function: Any = None,
                 attention_mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor | None:
    """The mask the attention function receives: None without padding, else the 2-D bool [B, kv_length] of valid keys."""
    if attention_mask is None:
        return None
    mask = attention_mask[:, -kv_length:].to(torch.bool)
    return None if mask.shape[1] == kv_length and bool(mask.all()) else mask


def _check_padding(reg: Registration, mask: torch.Tensor, decoding: bool) -> None:
    if mask.dim() != 2:
        raise ValueError(f"{reg.spec.name}: expected a 2-D padding mask [B, L] from the `{reg.name}` mask function, got shape {tuple(mask.shape)}")
    if decoding:
        raise ValueError(f"{reg.spec.name}: cached decoding of a padded batch is not supported (new tokens would follow the pads); remedy: generate each sequence on its own, or without padding")
    if not reg.spec.pattern.causal:
        raise ValueError(f"{reg.spec.name} is bidirectional: padding would enter the summaries of valid positions; remedy: batch sequences of equal length (no padding) or use a causal spec")
    if bool((mask[:, 1:] > mask[:, :-1]).any()):
        raise ValueError(f"{reg.spec.name}: left padding is not supported (pads before valid tokens would shift every position); remedy: pad on the right (tokenizer.padding_side = 'right')")


def _attention(reg: Registration, plans: dict[int, list[DecodePlan]], module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               mask: torch.Tensor | None, scaling: float | None, dropout: float, kwargs: dict[str, Any]) -> torch.Tensor:
    if dropout:
        raise ValueError(f"{reg.spec.name}: attention dropout is not supported by Combiner attention; remedy: attention_dropout=0.0 in the model config")
    Lq, Lk = query.shape[2], key.shape[2]
    decoding = Lq < Lk
    if mask is not None:
        _check_padding(reg, mask, decoding)
    if not decoding:
        out: torch.Tensor = reg.attn(query, key, value, scale=scaling)
        if not torch.is_grad_enabled() and kwargs.get("use_cache", True) is not False and reg.streaming and reg.spec.pattern.causal:
            fresh = _new_cache(reg, plans, module, query, key, scaling)  # prefill: keep what the next steps read
            if Lk <= fresh.capacity:
                fresh.ingest(query, key, value)
                setattr(module, CACHE_ATTR, fresh)
        return out.transpose(1, 2).contiguous()
    if not reg.streaming:
        why = reg.verdict.streaming.message if reg.verdict.streaming is not None else "prefix stability not checked"
        raise ValueError(f"{reg.spec.name} is not prefix-stable ({why}): a cache would change the output; remedy: generate(..., use_cache=False), or a prefix-stable spec (examples/streaming/)")
    held = getattr(module, CACHE_ATTR, None)
    if not isinstance(held, DecodeCache) or held.length != Lk - Lq or held.B != query.shape[0]:
        have = held.length if isinstance(held, DecodeCache) else 0
        raise ValueError(f"{reg.spec.name}: the Combiner decoding cache holds {have} positions but this step continues {Lk - Lq}; remedy: start with a prefill over the whole prompt (generate does), and do not reorder or crop the cache")
    return held.extend(query, key[:, :, Lk - Lq :], value[:, :, Lk - Lq :]).transpose(1, 2).contiguous()


def _new_cache(reg: Registration, plans: dict[int, list[DecodePlan]], module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, scaling: float | None) -> DecodeCache:
    config = getattr(module, "config", None)
    capacity = reg.max_length or int(getattr(config, "max_position_embeddings", 0) or 0) or 4096
    if capacity not in plans:
        plans[capacity] = decode_plans(spec_of(reg.attn), capacity)
    B, H, _, D = query.shape
    return DecodeCache(spec_of(reg.attn), capacity, B, H, key.shape[1], D, dtype=query.dtype, device=query.device, scale=scaling, plans=plans[capacity])
