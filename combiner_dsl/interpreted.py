"""The runtime's view of a pattern (`runtime.spec.PatternSpec`) with the interpreter in place of
rendered code, so the compiler itself can plan: the cost model counts pairs with the planner.

Every function is `evaluate` on an expression of the analysis (`analysis.PatternModel`), with the
same feature substitution code generation applies, so both read the spec's structure identically;
errors are located in the spec like every other evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from . import ast, ir
from .analysis import PartitionModel, PatternModel, Solved, analyze
from .astutil import substitute
from .evaluate import evaluate, let_values
from .runtime import spec as rt
from .runtime.tiling import Binder, Fn


class _Functions:
    def __init__(self, model: PatternModel) -> None:
        self.pattern = model.pattern
        self.features: dict[ast.Expr, ast.Expr] = {f.expr: ast.Name(f.key) for f in model.features}

    def fn(self, e: ast.Expr, features: bool = True) -> Fn:
        expr = substitute(e, self.features) if features else e
        pattern = self.pattern

        def run(d: Any, env: Mapping[str, Any]) -> Any:
            return evaluate(pattern, expr, env, env["L"], d)

        return run

    def solved(self, s: Solved, features: bool) -> rt.Solved[Fn]:
        return rt.Solved(s.free, tuple((n, self.fn(x, features)) for n, x in s.solved), self.fn(s.residual, features))

    def source(self, src: ir.SummarySource) -> rt.SummarySource:
        return rt.SummarySource(src.pool, None if src.position is None else self.fn(src.position))

    def partition(self, pm: PartitionModel) -> rt.PartitionSpec:
        part = pm.partition
        return rt.PartitionSpec(
            part.name,
            tuple(Binder(b.name, self.fn(b.lo, False), self.fn(b.hi, False)) for b in part.binders),
            self.solved(pm.member, False),
            None if pm.select is None else self.solved(pm.select, True),
            pm.order,
            self.source(part.query),
            self.source(part.key),
            None if pm.free is None else self.fn(pm.free),
        )


@cache
def interpreted_spec(pattern: ir.Pattern) -> rt.PatternSpec:
    """The pattern as the planner reads it (built once per pattern)."""
    model = analyze(pattern)
    fns = _Functions(model)
    return rt.PatternSpec(
        pattern.name,
        pattern.causal,
        lambda d, L: dict(let_values(pattern, L)),
        tuple((f"require #{k}", fns.fn(r, False)) for k, r in enumerate(pattern.requires)),
        tuple(rt.Feature(f.key, f.side, fns.fn(f.expr, False)) for f in model.features),
        tuple(rt.SoftmaxSpec(tuple(rt.DirectSpec(fns.fn(g.pred), g.query_order, g.key_order) for g in sm.directs), tuple(fns.partition(p) for p in sm.partitions)) for sm in model.softmaxes),
        pattern.mix,
    )
