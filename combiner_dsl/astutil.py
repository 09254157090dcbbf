"""Walking and taking apart expressions: the one place that knows the shape of every node."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace

from . import ast


def children(e: ast.Expr) -> tuple[ast.Expr, ...]:
    if isinstance(e, ast.Unary):
        return (e.operand,)
    if isinstance(e, ast.Binary):
        return (e.left, e.right)
    if isinstance(e, ast.Compare | ast.BoolOp):
        return e.operands
    if isinstance(e, ast.Call):
        return e.args
    return ()


def walk(e: ast.Expr) -> Iterator[ast.Expr]:
    """Every node of `e`, parents before children."""
    stack = [e]
    while stack:
        x = stack.pop()
        yield x
        stack.extend(reversed(children(x)))


def names(e: ast.Expr) -> frozenset[str]:
    """Every name `e` refers to."""
    return frozenset(x.id for x in walk(e) if isinstance(x, ast.Name))


def conjuncts(e: ast.Expr) -> tuple[ast.Expr, ...]:
    """Top-level `and` parts; a comparison chain `a < b <= c` counts as its pairwise links."""
    if isinstance(e, ast.BoolOp) and e.op == "and":
        return tuple(c for x in e.operands for c in conjuncts(x))
    if isinstance(e, ast.Compare) and len(e.ops) > 1:
        return tuple(ast.Compare((op,), (e.operands[k], e.operands[k + 1]), span=e.span) for k, op in enumerate(e.ops))
    return (e,)


def disjuncts(e: ast.Expr) -> tuple[ast.Expr, ...]:
    """Top-level `or` parts."""
    if isinstance(e, ast.BoolOp) and e.op == "or":
        return tuple(d for x in e.operands for d in disjuncts(x))
    return (e,)


def conj(parts: list[ast.Expr] | tuple[ast.Expr, ...]) -> ast.Expr:
    """`and` of the parts (literal `true`s dropped)."""
    parts = [p for p in parts if not (isinstance(p, ast.BoolLit) and p.value)]
    if not parts:
        return ast.BoolLit(True)
    return parts[0] if len(parts) == 1 else ast.BoolOp("and", tuple(parts))


def disj(parts: list[ast.Expr] | tuple[ast.Expr, ...]) -> ast.Expr:
    if not parts:
        return ast.BoolLit(False)
    return parts[0] if len(parts) == 1 else ast.BoolOp("or", tuple(parts))


def substitute(e: ast.Expr, table: Mapping[ast.Expr, ast.Expr]) -> ast.Expr:
    """`e` with every subexpression found in `table` replaced (outermost first)."""
    if e in table:
        return table[e]
    if isinstance(e, ast.Unary):
        return replace(e, operand=substitute(e.operand, table))
    if isinstance(e, ast.Binary):
        return replace(e, left=substitute(e.left, table), right=substitute(e.right, table))
    if isinstance(e, ast.Compare | ast.BoolOp):
        return replace(e, operands=tuple(substitute(x, table) for x in e.operands))
    if isinstance(e, ast.Call):
        return replace(e, args=tuple(substitute(x, table) for x in e.args))
    return e
