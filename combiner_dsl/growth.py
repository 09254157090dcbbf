"""The structural side of `cost.order`: which growth laws a pattern's shape suggests.

`order` measures exact totals at a few lengths and picks, among these candidates, the one whose
ratio to the measurements is flattest. Candidates come from the lets (a block size of isqrt(L)
suggests L**(3/2)), so an order is only ever reported in terms the spec itself implies.
"""

from __future__ import annotations

import sympy

from . import ast, ir, operators
from .errors import CombinerError
from .evaluate import accepts

Lsym = sympy.Symbol("L", positive=True)


def _growth(e: ast.Expr, lets: dict[str, sympy.Expr]) -> sympy.Expr:
    """A sympy expression growing like `e` as L grows (floors dropped, logs in base 2)."""
    if isinstance(e, ast.IntLit):
        return sympy.Integer(e.value)
    if isinstance(e, ast.Name):
        return Lsym if e.id == "L" else lets.get(e.id, sympy.Integer(1))
    if (isinstance(e, ast.Unary) and e.op == "neg") or isinstance(e, ast.Binary | ast.Call):
        kind, name, args = (
            ("unary", "neg", (e.operand,)) if isinstance(e, ast.Unary) else ("binary", e.op, (e.left, e.right)) if isinstance(e, ast.Binary) else ("call", e.func, e.args)
        )
        op = operators.get(kind, name)  # type: ignore[arg-type]
        if op.growth is not None:
            return op.growth(sympy, *(_growth(x, lets) for x in args))
    return sympy.Integer(1)


def candidate_orders(pattern: ir.Pattern) -> list[sympy.Expr]:
    """Orders the structure suggests: L and L**2, scaled by the lets' growth (block sizes)."""
    lets: dict[str, sympy.Expr] = {}
    powers = {sympy.Integer(1), sympy.Integer(2)}
    for let in pattern.lets:
        try:
            g = lets[let.name] = _growth(let.value, lets)
            a = sympy.limit(sympy.log(g) / sympy.log(Lsym), Lsym, sympy.oo)
        except (TypeError, ValueError, NotImplementedError):
            continue
        if a.is_Rational and 0 < a < 1:
            powers |= {1 + a, 2 - a}
    return [Lsym**a * sympy.log(Lsym) ** b for a in sorted(powers) for b in (0, 1, 2)]


def accepted_length_near(pattern: ir.Pattern, n: int) -> int:
    """The accepted length closest to n (the spec's requires may reject n itself)."""
    for d in range(n):
        for L in (n + d, n - d):
            if L >= 1 and accepts(pattern, L):
                return L
    raise CombinerError("no accepted length to measure the order at")
