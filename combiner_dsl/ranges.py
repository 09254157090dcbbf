"""Static ranges: which integer subexpressions of a spec could leave the 64-bit range at any length.

A domain over Python-int intervals (`Range`), evaluated through the operator registry like `Exact`
and `Bounds`, with L in 1 .. MAX_LENGTH, i and j in 0 .. L-1, binders in their bounds. It is sound
and coarse; the prover asks z3 about the nodes it cannot bound (`risky_nodes`), so a spec whose
arithmetic stays small costs the prover nothing extra. Conditions evaluate to None.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from . import ast, ir
from .evaluate import trace
from .runtime.ops import INT_MAX, INT_MIN, MAX_LENGTH

Range = tuple[int, int]
CAP = 2**80  # ranges are clamped here: anything past 64 bits is already out of range
TOP: Range = (-CAP, CAP)


def _clamp(lo: int, hi: int) -> Range:
    return max(-CAP, min(CAP, lo)), max(-CAP, min(CAP, hi))


def _corners(fn: Callable[[int, int], int], a: Range, b: Range) -> Range:
    vals = [fn(x, y) for x in a for y in b]
    return _clamp(min(vals), max(vals))


def _int(x: Any) -> Range | None:
    if isinstance(x, bool) or x is None:
        return None
    if isinstance(x, int):
        return (x, x)
    return x  # type: ignore[no-any-return]


class _Ranges:
    """The domain: the registry's method names on `Range`s; an unknown method gives TOP / None."""

    def __getattr__(self, name: str) -> Callable[..., Range | None]:
        return lambda *args: TOP

    @staticmethod
    def _args(*args: Any) -> list[Range] | None:
        out = [_int(a) for a in args]
        return None if any(a is None for a in out) else out  # type: ignore[return-value]

    def add(self, a: Any, b: Any) -> Range | None:
        r = self._args(a, b)
        return None if r is None else _clamp(r[0][0] + r[1][0], r[0][1] + r[1][1])

    def sub(self, a: Any, b: Any) -> Range | None:
        r = self._args(a, b)
        return None if r is None else _clamp(r[0][0] - r[1][1], r[0][1] - r[1][0])

    def mul(self, a: Any, b: Any) -> Range | None:
        r = self._args(a, b)
        return None if r is None else _corners(lambda x, y: x * y, r[0], r[1])

    def neg(self, a: Any) -> Range | None:
        r = _int(a)
        return None if r is None else (-r[1], -r[0])

    def floordiv(self, a: Any, b: Any) -> Range | None:
        r = self._args(a, b)
        if r is None:
            return None
        alo, ahi = r[0]
        m = max(abs(alo), abs(ahi))
        return (-m, m)  # |a // b| <= |a| for any b != 0

    def mod(self, a: Any, b: Any) -> Range | None:
        r = self._args(a, b)
        if r is None:
            return None
        m = max(abs(r[1][0]), abs(r[1][1]))
        return (-m, m)

    def cdiv(self, a: Any, b: Any) -> Range | None:
        return self.floordiv(a, b)

    def pow(self, a: Any, b: Any) -> Range | None:
        r = self._args(a, b)
        if r is None:
            return None
        (alo, ahi), (_, bhi) = r
        top, e = max(abs(alo), abs(ahi)), max(0, bhi)
        if top >= 2 and e * (top.bit_length() - 1) > 80:
            return TOP
        big = top**e
        return _clamp(0 if alo >= 0 else -big, big)

    def abs(self, a: Any) -> Range | None:
        r = _int(a)
        return None if r is None else (0, max(abs(r[0]), abs(r[1])))

    def min(self, *args: Any) -> Range | None:
        r = self._args(*args)
        return None if r is None else (min(x[0] for x in r), min(x[1] for x in r))

    def max(self, *args: Any) -> Range | None:
        r = self._args(*args)
        return None if r is None else (max(x[0] for x in r), max(x[1] for x in r))

    def isqrt(self, a: Any) -> Range | None:
        r = _int(a)
        return None if r is None else (0, math.isqrt(max(0, r[1])))

    def ilog2(self, a: Any) -> Range | None:
        r = _int(a)
        return None if r is None else (0, max(1, r[1]).bit_length())

    clog2 = ilog2

    def _cond(self, *args: Any) -> None:
        return None

    eq = ne = lt = le = gt = ge = and_ = or_ = not_ = _cond


RANGES = _Ranges()


def fits(r: Any) -> bool:
    v = _int(r)
    return v is None or (INT_MIN <= v[0] and v[1] <= INT_MAX)


def risky_nodes(pattern: ir.Pattern) -> frozenset[int]:
    """ids of the integer nodes whose value may leave the 64-bit range at some L <= MAX_LENGTH."""
    risky: set[int] = set()

    def visit(node: ast.Expr, value: Any) -> None:
        if not fits(value):
            risky.add(id(node))

    env: dict[str, Any] = {"L": (1, MAX_LENGTH)}
    for let in pattern.lets:
        env[let.name] = trace(let.value, env, RANGES, visit)
    for cond in pattern.requires:
        trace(cond, env, RANGES, visit)
    pos = (0, MAX_LENGTH - 1)
    for plan in pattern.plans:
        trace(plan.direct, {**env, "i": pos, "j": pos}, RANGES, visit)
        for part in plan.partitions:
            scope = dict(env)
            for b in part.binders:
                lo, hi = _int(trace(b.lo, scope, RANGES, visit)) or TOP, _int(trace(b.hi, scope, RANGES, visit)) or TOP
                scope[b.name] = (lo[0], hi[1] - 1)
            trace(part.member, {**scope, "j": pos}, RANGES, visit)
            for e in (part.select, part.query.position, part.key.position):
                if e is not None:
                    trace(e, {**scope, "i": pos}, RANGES, visit)
    return frozenset(risky)
