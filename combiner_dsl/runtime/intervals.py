"""Interval semantics of the spec language: classify whole boxes of (i, j, binders) at once.

`Bounds` mirrors `ops.Exact` operation by operation, but on `Interval`s (elementwise tensors of
lower and upper bounds) and returns `Tri`s for conditions: `can_true` / `can_false` say whether some
point of the box makes the condition true / false. The answer is sound (a box reported all-true
holds at every integer point in it) but may be loose, so callers evaluate mixed boxes exactly.
Bounds are computed with `Exact`'s checked arithmetic: a box whose bounds leave the 64-bit range
raises `DomainError` like the exact evaluation would, never wraps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch

from .ops import DomainError, Exact


@dataclass(frozen=True, slots=True)
class Interval:
    """Integer intervals [lo, hi] (inclusive), elementwise over broadcastable int64 tensors."""

    lo: torch.Tensor
    hi: torch.Tensor

    @staticmethod
    def of(x: object) -> Interval:
        if isinstance(x, Interval):
            return x
        if isinstance(x, bool):
            raise TypeError("a condition where an integer was expected")
        t = torch.as_tensor(x, dtype=torch.int64)
        return Interval(t, t)


@dataclass(frozen=True, slots=True)
class Tri:
    """Three-valued conditions: both flags set means the box is mixed."""

    can_true: torch.Tensor
    can_false: torch.Tensor

    @staticmethod
    def of(x: object) -> Tri:
        if isinstance(x, Tri):
            return x
        t = torch.as_tensor(x, dtype=torch.bool)
        return Tri(t, ~t)

    @property
    def all_true(self) -> torch.Tensor:
        return ~self.can_false

    @property
    def mixed(self) -> torch.Tensor:
        return self.can_true & self.can_false


def _corners(fn: object, a: Interval, b: Interval) -> Interval:
    vals = [fn(x, y) for x in (a.lo, a.hi) for y in (b.lo, b.hi)]  # type: ignore[operator]
    lo = torch.minimum(torch.minimum(vals[0], vals[1]), torch.minimum(vals[2], vals[3]))
    hi = torch.maximum(torch.maximum(vals[0], vals[1]), torch.maximum(vals[2], vals[3]))
    return Interval(lo, hi)


def _hull(a: Interval, b: Interval, use_a: torch.Tensor, use_b: torch.Tensor) -> Interval:
    """Hull of the parts that exist (`use_*` flags), elementwise."""
    big = torch.iinfo(torch.int64).max
    lo = torch.minimum(torch.where(use_a, a.lo, big), torch.where(use_b, b.lo, big))
    hi = torch.maximum(torch.where(use_a, a.hi, -big), torch.where(use_b, b.hi, -big))
    return Interval(lo, hi)


def _floordiv_nonzero(a: Interval, b: Interval) -> Interval:
    # floor(a / b) is monotone in a for fixed b and in b for fixed a (b of one sign): corners suffice.
    pos = Interval(torch.clamp(b.lo, min=1), torch.clamp(b.hi, min=1))
    neg = Interval(torch.clamp(b.lo, max=-1), torch.clamp(b.hi, max=-1))

    def div(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.div(x, y, rounding_mode="floor")

    return _hull(_corners(div, a, pos), _corners(div, a, neg), b.hi >= 1, b.lo <= -1)


def _endpointwise(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], args: tuple[object, ...]) -> Interval:
    """min / max of intervals: both are monotone in every argument, so they act on each endpoint."""
    xs = [Interval.of(a) for a in args]
    return Interval(functools.reduce(fn, [x.lo for x in xs]), functools.reduce(fn, [x.hi for x in xs]))


def _t(x: object) -> torch.Tensor:
    """`Exact`'s checked result on tensors is a tensor."""
    return cast(torch.Tensor, x)


class Bounds:
    """Operations on intervals (ints and exact tensors are degenerate intervals)."""

    @staticmethod
    def add(a: object, b: object) -> Interval:
        x, y = Interval.of(a), Interval.of(b)
        return Interval(_t(Exact.add(x.lo, y.lo)), _t(Exact.add(x.hi, y.hi)))

    @staticmethod
    def sub(a: object, b: object) -> Interval:
        x, y = Interval.of(a), Interval.of(b)
        return Interval(_t(Exact.sub(x.lo, y.hi)), _t(Exact.sub(x.hi, y.lo)))

    @staticmethod
    def mul(a: object, b: object) -> Interval:
        return _corners(Exact.mul, Interval.of(a), Interval.of(b))

    @staticmethod
    def neg(a: object) -> Interval:
        x = Interval.of(a)
        return Interval(_t(Exact.neg(x.hi)), _t(Exact.neg(x.lo)))

    @staticmethod
    def floordiv(a: object, b: object) -> Interval:
        x, y = Interval.of(a), Interval.of(b)
        if bool(((y.lo == 0) & (y.hi == 0)).any()):
            raise DomainError("division by zero")
        return _floordiv_nonzero(x, y)

    @staticmethod
    def mod(a: object, b: object) -> Interval:
        x, y = Interval.of(a), Interval.of(b)
        if bool(((y.lo == 0) & (y.hi == 0)).any()):
            raise DomainError("modulo by zero")
        # Exact when the divisor is one positive constant and a does not wrap around it.
        m = torch.clamp(y.lo, min=1)
        lo_r, hi_r = torch.remainder(x.lo, m), torch.remainder(x.hi, m)
        tight = (y.lo == y.hi) & (y.lo > 0) & (x.hi - x.lo < m) & (lo_r <= hi_r)
        small = (y.lo > 0) & (x.lo >= 0) & (x.hi < y.lo)  # a already below every divisor
        gen_lo = torch.where(y.lo <= -1, y.lo + 1, 0)  # a negative divisor leaves (b, 0]
        gen_hi = torch.where(y.hi >= 1, y.hi - 1, 0)  # a positive one leaves [0, b)
        lo = torch.where(tight, lo_r, torch.where(small, x.lo, gen_lo))
        hi = torch.where(tight, hi_r, torch.where(small, x.hi, gen_hi))
        return Interval(lo, hi)

    @staticmethod
    def cdiv(a: object, b: object) -> Interval:
        return Bounds.neg(Bounds.floordiv(Bounds.neg(a), b))

    @staticmethod
    def pow(a: object, b: object) -> Interval:
        x, y = Interval.of(a), Interval.of(b)
        if bool((y.hi < 0).any()):
            raise DomainError("negative exponent")
        y = Interval(torch.clamp(y.lo, min=0), y.hi)
        # the largest magnitude, |base| ** (top exponent), is a value of the box: it must fit
        top = torch.maximum(_t(Exact.abs(x.lo)), _t(Exact.abs(x.hi)))
        Exact.pow(top, y.hi)
        ints = _corners(Exact.pow, Interval(torch.clamp(x.lo, min=0), torch.clamp(x.hi, min=0)), y)
        bound = torch.pow(top, y.hi)
        return Interval(torch.where(x.lo >= 0, ints.lo, -bound), torch.where(x.lo >= 0, ints.hi, bound))

    @staticmethod
    def abs(a: object) -> Interval:
        x = Interval.of(a)
        lo = torch.where(x.lo >= 0, x.lo, torch.where(x.hi <= 0, -x.hi, 0))
        hi = torch.maximum(_t(Exact.abs(x.lo)), _t(Exact.abs(x.hi)))
        return Interval(lo, hi)

    @staticmethod
    def min(*args: object) -> Interval:
        return _endpointwise(torch.minimum, args)

    @staticmethod
    def max(*args: object) -> Interval:
        return _endpointwise(torch.maximum, args)

    @staticmethod
    def _monotone(fn: object, a: object, least: int) -> Interval:
        x = Interval.of(a)
        if bool((x.hi < least).any()):
            raise DomainError("argument out of the function's domain")
        return Interval(fn(torch.clamp(x.lo, min=least)), fn(torch.clamp(x.hi, min=least)))  # type: ignore[operator]

    @staticmethod
    def isqrt(a: object) -> Interval:
        return Bounds._monotone(Exact.isqrt, a, 0)

    @staticmethod
    def ilog2(a: object) -> Interval:
        return Bounds._monotone(Exact.ilog2, a, 1)

    @staticmethod
    def clog2(a: object) -> Interval:
        return Bounds._monotone(Exact.clog2, a, 1)

    @staticmethod
    def eq(a: object, b: object) -> Tri:
        if isinstance(a, Tri | bool) or isinstance(b, Tri | bool):
            return Bounds.not_(Bounds._xor(Tri.of(a), Tri.of(b)))
        x, y = Interval.of(a), Interval.of(b)
        overlap = (x.lo <= y.hi) & (y.lo <= x.hi)
        single = (x.lo == x.hi) & (y.lo == y.hi) & (x.lo == y.lo)
        return Tri(overlap, ~single)

    @staticmethod
    def ne(a: object, b: object) -> Tri:
        return Bounds.not_(Bounds.eq(a, b))

    @staticmethod
    def lt(a: object, b: object) -> Tri:
        x, y = Interval.of(a), Interval.of(b)
        return Tri(x.lo < y.hi, x.hi >= y.lo)

    @staticmethod
    def le(a: object, b: object) -> Tri:
        x, y = Interval.of(a), Interval.of(b)
        return Tri(x.lo <= y.hi, x.hi > y.lo)

    @staticmethod
    def gt(a: object, b: object) -> Tri:
        return Bounds.lt(b, a)

    @staticmethod
    def ge(a: object, b: object) -> Tri:
        return Bounds.le(b, a)

    @staticmethod
    def _xor(a: Tri, b: Tri) -> Tri:
        return Tri((a.can_true & b.can_false) | (a.can_false & b.can_true), (a.can_true & b.can_true) | (a.can_false & b.can_false))

    @staticmethod
    def and_(*args: object) -> Tri:
        ts = [Tri.of(a) for a in args]
        can_true, can_false = ts[0].can_true, ts[0].can_false
        for t in ts[1:]:
            can_true, can_false = can_true & t.can_true, can_false | t.can_false
        return Tri(can_true, can_false)

    @staticmethod
    def or_(*args: object) -> Tri:
        return Bounds.not_(Bounds.and_(*(Bounds.not_(a) for a in args)))  # De Morgan

    @staticmethod
    def not_(a: object) -> Tri:
        t = Tri.of(a)
        return Tri(t.can_false, t.can_true)
