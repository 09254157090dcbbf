"""The Triton target: the torch target's inlined runtime and rendered spec, plus the Triton main pass.

Nothing of the torch target is copied: the file is rendered by the same function
(`torch_target.render_module`, which inlines the runtime and renders the spec); this target appends
its two runtime modules (kernels, launch + autograd) and swaps the module's forward.
"""

from __future__ import annotations

import torch

from .. import ir
from .torch_target import RUNTIME_MODULES, load_generated, render_module

# after the torch target's modules: the kernels, then their launch wrappers (which use the summary pass)
TRITON_RUNTIME_MODULES = (*RUNTIME_MODULES, "triton_kernels", "triton_attention")


def generate_triton(pattern: ir.Pattern, *, verdict_text: str | None = None, cost_text: str | None = None) -> str:
    """The source of a self-contained module (imports only torch and triton) computing `pattern`'s attention."""
    return render_module(pattern, "triton_module.py.jinja", TRITON_RUNTIME_MODULES, verdict_text=verdict_text, cost_text=cost_text)


def build_triton_module(pattern: ir.Pattern, *, verdict_text: str | None = None, cost_text: str | None = None) -> torch.nn.Module:
    """A fresh `torch.nn.Module` for `pattern` on the Triton target (generate, load, instantiate).

    Loading the module imports triton: on CPU set TRITON_INTERPRET=1 before that (see the module's docstring).
    """
    module = load_generated(generate_triton(pattern, verdict_text=verdict_text, cost_text=cost_text), pattern.name)
    return module.CombinerAttention()
