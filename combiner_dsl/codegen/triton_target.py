"""The Triton target: the torch summary pass, then a fused Triton kernel per plan segment (and its backward)."""

from __future__ import annotations

import torch

from .. import ir
from .loader import load_generated
from .targets import CLASS_NAME, generate_module

__all__ = ["build_triton_module", "generate_triton"]


def generate_triton(pattern: ir.Pattern, *, standalone: bool = False, verdict_text: str | None = None, cost_text: str | None = None) -> str:
    """The module's source: imports torch, triton and combiner_dsl.runtime, or only torch and triton when `standalone`."""
    return generate_module(pattern, "triton", standalone=standalone, verdict_text=verdict_text, cost_text=cost_text)


def build_triton_module(pattern: ir.Pattern, *, standalone: bool = False, verdict_text: str | None = None, cost_text: str | None = None) -> torch.nn.Module:
    """A fresh `torch.nn.Module` for `pattern` on the Triton target.

    Loading it imports triton: on CPU set TRITON_INTERPRET=1 before that (see the module's docstring).
    """
    source = generate_triton(pattern, standalone=standalone, verdict_text=verdict_text, cost_text=cost_text)
    module: torch.nn.Module = getattr(load_generated(source, pattern.name), CLASS_NAME)()
    return module
