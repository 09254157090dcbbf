"""The operator registry: every function and operator of the language, declared once.

An entry gives the spelling, the kind of node it appears in, its arity, the name of its method on
the runtime's domains (`runtime.ops.Exact` for ints and int64 tensors, `runtime.intervals.Bounds`
for intervals; rendered code calls `d.<method>`), its z3 encoding and its sympy growth law. The
type checker, the interpreter, the renderer, the SMT encoder and the growth analysis all read this
table; adding a function to the language is one `register(Operator(...))`.

The runtime implementations stay in `runtime/` (generated modules import only torch); an entry
that brings its own `exact` / `bounds` functions installs them on the domains when registered.
The z3 and sympy sides receive the encoder / the sympy module as their first argument, so this
module imports neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from . import ast
from .runtime.intervals import Bounds
from .runtime.ops import Exact

Kind = Literal["call", "binary", "unary", "compare", "logic"]
SmtRule = Callable[..., Any]  # (encoder, node, *z3 terms) -> z3 term
GrowthRule = Callable[..., Any]  # (sympy module, *sympy expressions) -> sympy expression
DOMAINS: tuple[type, ...] = (Exact, Bounds)


@dataclass(frozen=True, slots=True)
class Operator:
    """One operator of the language and everything each stage needs to know about it."""

    name: str  # as written: "isqrt", "+", "==", "and", "neg" / "not" for the prefix operators
    kind: Kind
    method: str  # Exact.<method> / Bounds.<method>; rendered as d.<method>(...)
    arity: tuple[int, int | None]  # (least, most or None for any number)
    smt: SmtRule
    growth: GrowthRule | None = None  # None: no growth law (conditions)
    exact: Callable[..., Any] | None = None  # only for entries added after import: installed on Exact
    bounds: Callable[..., Any] | None = None  # likewise on Bounds

    def accepts(self, n: int) -> bool:
        lo, hi = self.arity
        return n >= lo and (hi is None or n <= hi)

    def arity_text(self) -> str:
        lo, hi = self.arity
        return f"{lo}" if lo == hi else f"at least {lo}" if hi is None else f"{lo} to {hi}"

    def apply(self, dom: Any, *args: Any) -> Any:
        """Evaluate on a domain (`Exact`, `Bounds`, or any object with the method)."""
        return getattr(dom, self.method)(*args)


REGISTRY: dict[tuple[Kind, str], Operator] = {}


def register(op: Operator) -> Operator:
    """Add `op` to the language (installing its runtime implementations on the domains)."""
    for dom, impl in zip(DOMAINS, (op.exact, op.bounds), strict=True):
        if impl is not None:
            setattr(dom, op.method, staticmethod(impl))
        elif not hasattr(dom, op.method):
            raise ValueError(f"operator {op.name!r}: {dom.__name__} has no method {op.method!r} and the entry brings none")
    REGISTRY[(op.kind, op.name)] = op
    return op


def unregister(op: Operator) -> None:
    """Remove an entry added by `register` (and the domain methods it installed)."""
    REGISTRY.pop((op.kind, op.name), None)
    for dom, impl in zip(DOMAINS, (op.exact, op.bounds), strict=True):
        if impl is not None and op.method in vars(dom):
            delattr(dom, op.method)


def lookup(kind: Kind, name: str) -> Operator | None:
    return REGISTRY.get((kind, name))


def get(kind: Kind, name: str) -> Operator:
    op = REGISTRY.get((kind, name))
    if op is None:
        raise KeyError(f"no {kind} operator {name!r}")
    return op


def node_operator(e: ast.Expr) -> tuple[Kind, str, tuple[ast.Expr, ...]]:
    """(kind, name, operands) of an operator node (a comparison chain is named by its first link)."""
    if isinstance(e, ast.Unary):
        return "unary", e.op, (e.operand,)
    if isinstance(e, ast.Binary):
        return "binary", e.op, (e.left, e.right)
    if isinstance(e, ast.Compare):
        return "compare", e.ops[0], e.operands
    if isinstance(e, ast.BoolOp):
        return "logic", e.op, e.operands
    if isinstance(e, ast.Call):
        return "call", e.func, e.args
    raise AssertionError(f"not an operator node: {e!r}")


def functions() -> dict[str, Operator]:
    """The callable functions, by name (`min`, `isqrt`, ...)."""
    return {name: op for (kind, name), op in REGISTRY.items() if kind == "call"}


# ---------------------------------------------------------------- the language's operators


def _fold(pick: str) -> SmtRule:
    def rule(enc: Any, node: Any, *args: Any) -> Any:
        out = args[0]
        for x in args[1:]:
            out = enc.ite(x < out, x, out) if pick == "min" else enc.ite(x > out, x, out)
        return out

    return rule


def _log2(enc: Any, r: Any, x: Any, ceil: bool) -> Any:
    p = enc.pow(enc.const(2), r, None)
    if ceil:
        return enc.and_(r >= 0, x <= p, enc.implies(r >= 1, p < 2 * x))
    return enc.and_(r >= 0, p <= x, x < 2 * p)


for _op in (
    # arithmetic
    Operator("+", "binary", "add", (2, 2), lambda enc, n, a, b: a + b, lambda g, a, b: g.Add(a, b)),
    Operator("-", "binary", "sub", (2, 2), lambda enc, n, a, b: a - b, lambda g, a, b: a - b),
    Operator("*", "binary", "mul", (2, 2), lambda enc, n, a, b: a * b, lambda g, a, b: g.Mul(a, b)),
    Operator("//", "binary", "floordiv", (2, 2), lambda enc, n, a, b: enc.floordiv(a, b, n)[0], lambda g, a, b: a / b),
    Operator("%", "binary", "mod", (2, 2), lambda enc, n, a, b: enc.floordiv(a, b, n)[1], lambda g, a, b: b),
    Operator("**", "binary", "pow", (2, 2), lambda enc, n, a, b: enc.pow(a, b, n), lambda g, a, b: g.Pow(a, b)),
    Operator("neg", "unary", "neg", (1, 1), lambda enc, n, a: -a, lambda g, a: -a),
    # functions
    Operator("min", "call", "min", (2, None), _fold("min"), lambda g, *xs: g.Min(*xs)),
    Operator("max", "call", "max", (2, None), _fold("max"), lambda g, *xs: g.Max(*xs)),
    Operator("abs", "call", "abs", (1, 1), lambda enc, n, a: enc.ite(a < 0, -a, a), lambda g, a: g.Abs(a)),
    Operator(
        "isqrt",
        "call",
        "isqrt",
        (1, 1),
        lambda enc, n, x: enc.implicit("isqrt", x, n, 0, lambda r: enc.and_(r >= 0, r * r <= x, x < (r + 1) * (r + 1))),
        lambda g, a: g.sqrt(a),
    ),
    # r >= 0 follows from x >= 1; 2**r <= x < 2**(r+1), and 2**(r-1) < x <= 2**r for clog2
    Operator("ilog2", "call", "ilog2", (1, 1), lambda enc, n, x: enc.implicit("ilog2", x, n, 1, lambda r: _log2(enc, r, x, False)), lambda g, a: g.log(a, 2)),
    Operator("clog2", "call", "clog2", (1, 1), lambda enc, n, x: enc.implicit("clog2", x, n, 1, lambda r: _log2(enc, r, x, True)), lambda g, a: g.log(a, 2)),
    Operator("cdiv", "call", "cdiv", (2, 2), lambda enc, n, a, b: -enc.floordiv(-a, b, n)[0], lambda g, a, b: a / b),
    # comparisons (a chain `a < b <= c` is the conjunction of its links)
    Operator("==", "compare", "eq", (2, 2), lambda enc, n, a, b: a == b),
    Operator("!=", "compare", "ne", (2, 2), lambda enc, n, a, b: a != b),
    Operator("<", "compare", "lt", (2, 2), lambda enc, n, a, b: a < b),
    Operator("<=", "compare", "le", (2, 2), lambda enc, n, a, b: a <= b),
    Operator(">", "compare", "gt", (2, 2), lambda enc, n, a, b: a > b),
    Operator(">=", "compare", "ge", (2, 2), lambda enc, n, a, b: a >= b),
    # conditions
    Operator("and", "logic", "and_", (1, None), lambda enc, n, *xs: enc.and_(*xs)),
    Operator("or", "logic", "or_", (1, None), lambda enc, n, *xs: enc.or_(*xs)),
    Operator("not", "unary", "not_", (1, 1), lambda enc, n, a: enc.not_(a)),
):
    register(_op)
