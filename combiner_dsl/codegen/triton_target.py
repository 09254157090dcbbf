"""The Triton target: the torch target's inlined runtime and rendered spec, plus the Triton main pass.

Nothing of the torch target is copied: the runtime modules are inlined by the same function
(`torch_target.runtime_source`) and the spec by the same renderer (`torch_target.spec_code`); this
target appends its two runtime modules (kernels, launch + autograd) and swaps the module's forward.
"""

from __future__ import annotations

import torch

from .. import ir
from .render import checked_name, render_template
from .structure import analyze
from .torch_target import RUNTIME_MODULES, _docstring_text, load_generated, runtime_source, spec_code

# after the torch target's modules: the kernels, then their launch wrappers (which use the summary pass)
TRITON_RUNTIME_MODULES = (*RUNTIME_MODULES, "triton_kernels", "triton_attention")


def generate_triton(pattern: ir.Pattern, *, verdict_text: str | None = None, cost_text: str | None = None) -> str:
    """The source of a self-contained module (imports only torch and triton) computing `pattern`'s attention."""
    checked_name(pattern.name)
    model = analyze(pattern)
    spec_lines = [("    " + line if line.strip() else "") for line in pattern.source.text.strip("\n").splitlines()]
    return render_template(
        "triton_module.py.jinja",
        name=pattern.name,
        class_name="CombinerAttention",
        spec_text=_docstring_text("\n".join(spec_lines)),
        verdict=_docstring_text(" ".join((verdict_text or "not given (compile through the checker to record it)").split())),
        cost=_docstring_text(" ".join((cost_text or "not given").split())),
        runtime=[(m, runtime_source(m)) for m in TRITON_RUNTIME_MODULES],
        spec_code=spec_code(model),
    )


def build_triton_module(pattern: ir.Pattern, *, verdict_text: str | None = None, cost_text: str | None = None) -> torch.nn.Module:
    """A fresh `torch.nn.Module` for `pattern` on the Triton target (generate, load, instantiate).

    Loading the module imports triton: on CPU set TRITON_INTERPRET=1 before that (see the module's docstring).
    """
    module = load_generated(generate_triton(pattern, verdict_text=verdict_text, cost_text=cost_text), pattern.name)
    return module.CombinerAttention()
