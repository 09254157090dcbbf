"""Interpret IR expressions over ints or tensors; failures become located `SpecEvaluationError`s."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import ast, ir, operators
from .errors import SpecEvaluationError, located
from .limits import MAX_REGIONS
from .runtime.ops import DomainError, Exact


class _Failure(Exception):
    def __init__(self, node: ast.Expr, reason: str) -> None:
        self.node = node
        self.reason = reason


Visit = Callable[[ast.Expr, Any], None]


def _eval(e: ast.Expr, env: Mapping[str, Any], dom: Any, visit: Visit | None = None) -> Any:
    if isinstance(e, ast.IntLit | ast.BoolLit):
        value: Any = e.value
    elif isinstance(e, ast.Name):
        value = env[e.id]
    else:
        kind, name, args = operators.node_operator(e)
        values = [_eval(x, env, dom, visit) for x in args]
        try:
            if isinstance(e, ast.Compare):
                parts = [operators.get("compare", op).apply(dom, values[k], values[k + 1]) for k, op in enumerate(e.ops)]
                value = parts[0] if len(parts) == 1 else dom.and_(*parts)
            else:
                value = operators.get(kind, name).apply(dom, *values)
        except DomainError as err:
            raise _Failure(e, str(err)) from None
    if visit is not None:
        visit(e, value)
    return value


def trace(e: ast.Expr, env: Mapping[str, Any], dom: Any, visit: Visit) -> Any:
    """Value of `e`, calling `visit(node, value)` on every node bottom-up (no located errors)."""
    return _eval(e, env, dom, visit)


def evaluate(pattern: ir.Pattern, e: ast.Expr, env: Mapping[str, Any], L: int, dom: Any = Exact) -> Any:
    """Value of `e` in `env`; an undefined operation raises `SpecEvaluationError` naming L and the place."""
    try:
        return _eval(e, env, dom)
    except _Failure as f:
        raise located(SpecEvaluationError, pattern.source, f.node.span, f"{f.reason} at L = {L}", "guard the expression or restrict L with `require`", L=L) from None
    except (OverflowError, RuntimeError) as err:
        raise located(SpecEvaluationError, pattern.source, e.span, f"value out of range at L = {L} ({err})", "restrict L with `require`", L=L) from None


def let_values(pattern: ir.Pattern, L: int) -> dict[str, int | bool]:
    """L and every `let`, in order, as Python values."""
    env: dict[str, int | bool] = {"L": L}
    for let in pattern.lets:
        env[let.name] = evaluate(pattern, let.value, env, L)
    return env


def failed_require(pattern: ir.Pattern, L: int) -> ast.Expr | None:
    """The first `require` that L breaks, or None when L is accepted.

    A `let` undefined at L (say `isqrt(L - 4)` at L = 1) is only an error when no `require` that
    avoids it rejects L: requires exist precisely to keep such lengths out.
    """
    if L < 1:
        return ast.Compare((">=",), (ast.Name("L"), ast.IntLit(1)))
    env: dict[str, int | bool] = {"L": L}
    undefined: dict[str, SpecEvaluationError] = {}
    for let in pattern.lets:
        if _names(let.value) & undefined.keys():
            undefined[let.name] = undefined[next(iter(_names(let.value) & undefined.keys()))]
            continue
        try:
            env[let.name] = evaluate(pattern, let.value, env, L)
        except SpecEvaluationError as err:
            undefined[let.name] = err
    for cond in pattern.requires:
        if not (_names(cond) & undefined.keys()) and not evaluate(pattern, cond, env, L):
            return cond
    if undefined:
        raise next(iter(undefined.values()))
    return None


def _names(e: ast.Expr) -> set[str]:
    if isinstance(e, ast.Name):
        return {e.id}
    out: set[str] = set()
    for child in (getattr(e, f) for f in getattr(e, "__slots__", ())):
        for c in child if isinstance(child, tuple) else (child,):
            if isinstance(c, ast.Expr):
                out |= _names(c)
    return out


def accepts(pattern: ir.Pattern, L: int) -> bool:
    return failed_require(pattern, L) is None


def binder_tuples(pattern: ir.Pattern, part: ir.Partition, env: Mapping[str, Any], L: int, limit: int = MAX_REGIONS, why: str = "") -> list[tuple[int, ...]]:
    """Every binder tuple of a partition at one length (bounds may use earlier binders); more than
    `limit` tuples is an error located at the binder, raised before they are built."""
    tuples: list[tuple[int, ...]] = [()]
    for k, b in enumerate(part.binders):
        grown: list[tuple[int, ...]] = []
        for t in tuples:
            scope = {**env, **dict(zip(part.binder_names[:k], t, strict=True))}
            lo = evaluate(pattern, b.lo, scope, L)
            hi = evaluate(pattern, b.hi, scope, L)
            if len(grown) + max(0, hi - lo) > limit:
                raise too_many_regions(pattern, part, b, L, limit, why)
            grown.extend((*t, v) for v in range(lo, hi))
        tuples = grown
    return tuples


def too_many_regions(pattern: ir.Pattern, part: ir.Partition, b: ir.Binder, L: int, limit: int = MAX_REGIONS, why: str = "") -> SpecEvaluationError:
    """The error for a partition past a region limit, located at the binder that passes it."""
    msg = f"partition `{part.name}` has more than {limit:,} regions at L = {L}{why}"
    return located(SpecEvaluationError, pattern.source, b.span, msg, "narrow the binder ranges or restrict L with `require`", L=L)  # type: ignore[return-value]
