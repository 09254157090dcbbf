"""Interpret IR expressions over ints or tensors; failures become located `SpecEvaluationError`s."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from . import ast, ir, operators
from .astutil import names
from .errors import SpecEvaluationError, located
from .limits import MAX_REGIONS
from .runtime.ops import DomainError, Exact
from .runtime.tiling import Binder, Enumeration, TooManyTuples


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
        if names(let.value) & undefined.keys():
            undefined[let.name] = undefined[next(iter(names(let.value) & undefined.keys()))]
            continue
        try:
            env[let.name] = evaluate(pattern, let.value, env, L)
        except SpecEvaluationError as err:
            undefined[let.name] = err
    for cond in pattern.requires:
        if not (names(cond) & undefined.keys()) and not evaluate(pattern, cond, env, L):
            return cond
    if undefined:
        raise next(iter(undefined.values()))
    return None


def accepts(pattern: ir.Pattern, L: int) -> bool:
    return failed_require(pattern, L) is None


def compiled(pattern: ir.Pattern, e: ast.Expr, L: int) -> Callable[[Any, Mapping[str, Any]], Any]:
    """`e` as a function `fn(d, env)` of a domain and an env, like a rendered one (errors located)."""
    return lambda dom, env: evaluate(pattern, e, env, L, dom)


def enumeration(pattern: ir.Pattern, part: ir.Partition, env: Mapping[str, Any], L: int, limit: int = MAX_REGIONS, why: str = "") -> Enumeration:
    """Every binder tuple of a partition at one length (bounds may use earlier binders): the
    runtime's enumeration, driven by the interpreter. More than `limit` tuples is an error located
    at the binder that passes it, raised before they are built."""
    binders = tuple(Binder(b.name, compiled(pattern, b.lo, L), compiled(pattern, b.hi, L)) for b in part.binders)
    try:
        return Enumeration(binders, env, limit)
    except TooManyTuples as err:
        raise too_many_regions(pattern, part, part.binders[err.binder], L, limit, why) from None


def binder_table(pattern: ir.Pattern, part: ir.Partition, env: Mapping[str, Any], L: int, limit: int = MAX_REGIONS, why: str = "") -> torch.Tensor:
    """The binder tuples of `enumeration` as an int64 [R, binders] table, in lexicographic order."""
    en = enumeration(pattern, part, env, L, limit, why)
    return torch.stack([en.values[n] for n in part.binder_names], 1) if part.binders else torch.zeros(en.count, 0, dtype=torch.int64)


def too_many_regions(pattern: ir.Pattern, part: ir.Partition, b: ir.Binder, L: int, limit: int = MAX_REGIONS, why: str = "") -> SpecEvaluationError:
    """The error for a partition past a region limit, located at the binder that passes it."""
    msg = f"partition `{part.name}` has more than {limit:,} regions at L = {L}{why}"
    return located(SpecEvaluationError, pattern.source, b.span, msg, "narrow the binder ranges or restrict L with `require`", L=L)  # type: ignore[return-value]
