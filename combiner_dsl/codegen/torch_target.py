"""The torch target: a module whose main pass is the runtime's batched torch attention."""

from __future__ import annotations

import torch

from .. import ir
from .loader import load_generated
from .targets import CLASS_NAME, generate_module

__all__ = ["build_module", "generate_torch", "load_generated"]


def generate_torch(pattern: ir.Pattern, *, standalone: bool = False, verdict_text: str | None = None, cost_text: str | None = None) -> str:
    """The module's source: imports torch and combiner_dsl.runtime, or only torch when `standalone`."""
    return generate_module(pattern, "torch", standalone=standalone, verdict_text=verdict_text, cost_text=cost_text)


def build_module(pattern: ir.Pattern, *, standalone: bool = False, verdict_text: str | None = None, cost_text: str | None = None) -> torch.nn.Module:
    """A fresh `torch.nn.Module` for `pattern` (generate, load from memory, instantiate)."""
    source = generate_torch(pattern, standalone=standalone, verdict_text=verdict_text, cost_text=cost_text)
    module: torch.nn.Module = getattr(load_generated(source, pattern.name), CLASS_NAME)()
    return module
