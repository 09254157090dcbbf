"""Generated modules for every target: the template, the runtime names it imports, `--standalone`.

A default module holds only what is specific to the spec (its rendered predicates, `SPEC`, and a
subclass of the target's module class) and imports the rest from `combiner_dsl.runtime`; the
standalone one has that runtime code inlined by `bundle.bundle`.
"""

from __future__ import annotations

import ast as pyast
from dataclasses import dataclass

from .. import ir
from ..analysis import analyze
from ..errors import CombinerError
from ..runtime import RUNTIME_API
from .bundle import bundle, import_line
from .emit import docstring_text, spec_code
from .render import checked_name, render_template

CLASS_NAME = "CombinerAttention"


@dataclass(frozen=True)
class Target:
    name: str
    title: str
    base_class: str
    base_module: str  # where the base class lives in the runtime
    needs: str  # what a standalone file imports


TARGETS = {
    "torch": Target("torch", "torch", "TorchCombinerModule", "combiner_dsl.runtime", "torch"),
    "triton": Target("triton", "Triton", "TritonCombinerModule", "combiner_dsl.runtime.triton_attention", "torch and triton"),
}


def target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise CombinerError(f"unknown target {name!r}; expected one of {', '.join(TARGETS)}") from None


def _runtime_imports(code: str, tgt: Target, standalone: bool) -> list[str]:
    """The `from ... import ...` lines for the runtime names the spec's code and class use."""
    from .. import runtime

    used = {n.id for n in pyast.walk(pyast.parse(code)) if isinstance(n, pyast.Name)}
    stamp = [] if standalone else ["require_runtime"]  # a standalone file carries its runtime with it
    imports = {"combiner_dsl.runtime": [*sorted(used & set(runtime.__all__)), *stamp]}
    imports.setdefault(tgt.base_module, []).append(tgt.base_class)
    return [import_line(m, names) for m, names in sorted(imports.items())]


def generate_module(pattern: ir.Pattern, target_name: str, *, standalone: bool = False, verdict_text: str | None = None, cost_text: str | None = None) -> str:
    """The source of the module computing `pattern`'s attention on `target_name`."""
    tgt = target(target_name)
    checked_name(pattern.name)
    code = spec_code(analyze(pattern))
    spec_lines = [("    " + line if line.strip() else "") for line in pattern.source.text.strip("\n").splitlines()]
    text = render_template(
        f"{tgt.name}_module.py.jinja",
        name=pattern.name,
        target_title=tgt.title,
        class_name=CLASS_NAME,
        base_class=tgt.base_class,
        spec_text=docstring_text("\n".join(spec_lines)),
        verdict=docstring_text(" ".join((verdict_text or "not given (compile through the checker to record it)").split())),
        cost=docstring_text(" ".join((cost_text or "not given").split())),
        imports=_runtime_imports(code, tgt, standalone),
        api=RUNTIME_API,
        standalone=standalone,
        needs=tgt.needs,
        spec_code=code,
    )
    return bundle(text) if standalone else text
