"""Exact integer semantics of the spec language on Python ints and int64 tensors.

Every operator of the language is one function here, so the interpreter (`evaluate.py`) and the
generated modules (which inline this file) compute exactly the same thing. `//` and `%` floor like
Python's; evaluation is strict (both sides of `and`/`or` are evaluated).

Integers are exact and 64-bit: every value, on ints and tensors alike, lies in [INT_MIN, INT_MAX];
an operation whose result would leave that range raises `DomainError` (it never wraps), and is
refused before the work where the work itself could be large (`**`).
"""

from __future__ import annotations

import math
from typing import Any

import torch

Value = int | bool | torch.Tensor
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # the language's integers (docs/language.md)
MAX_LENGTH = 2**32  # the longest sequence a spec is evaluated at
NEG_INF = float("-inf")  # logit of a masked entry: exactly zero weight beside any real logit, whatever its size


class DomainError(ArithmeticError):
    """An operation undefined on its arguments (division by zero, isqrt of a negative, ...)."""


OVERFLOW = "integer overflow (a value beyond the 64-bit range)"


def _any(x: Value) -> bool:
    return bool(x.any()) if isinstance(x, torch.Tensor) else bool(x)


def _int(x: Value) -> Value:
    """x, after checking that a plain int lies in the 64-bit range."""
    if not isinstance(x, torch.Tensor) and not INT_MIN <= x <= INT_MAX:
        raise DomainError(OVERFLOW)
    return x


def _tensors(a: Value, b: Value) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Both as int64 tensors when either is one (None for two plain ints)."""
    if not (isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor)):
        return None
    return torch.as_tensor(_int(a), dtype=torch.int64), torch.as_tensor(_int(b), dtype=torch.int64)


def _divisor(a: Value, b: Value, what: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`_tensors(a, b)` once b is known to be non-zero everywhere."""
    if _any(b == 0):
        raise DomainError(f"{what} by zero")
    return _tensors(a, b)


def _check(bad: torch.Tensor | bool) -> None:
    if _any(bad):
        raise DomainError(OVERFLOW)


def _fold(on_tensors: Any, on_ints: Any, args: tuple[Value, ...]) -> Value:
    """min / max of two or more values, elementwise once a tensor is involved."""
    out = args[0]
    for x in args[1:]:
        if isinstance(out, torch.Tensor) or isinstance(x, torch.Tensor):
            out = on_tensors(torch.as_tensor(out), torch.as_tensor(x))
        else:
            out = on_ints(out, x)
    return out


class Exact:
    """Operations on ints, bools and (broadcastable) int64/bool tensors."""

    @staticmethod
    def add(a: Value, b: Value) -> Value:
        t = _tensors(a, b)
        if t is None:
            return _int(a + b)
        r = t[0] + t[1]
        _check(((t[0] ^ r) & (t[1] ^ r)) < 0)  # both operands differ in sign from the wrapped sum
        return r

    @staticmethod
    def sub(a: Value, b: Value) -> Value:
        t = _tensors(a, b)
        if t is None:
            return _int(a - b)
        r = t[0] - t[1]
        _check(((t[0] ^ t[1]) & (t[0] ^ r)) < 0)
        return r

    @staticmethod
    def mul(a: Value, b: Value) -> Value:
        t = _tensors(a, b)
        if t is None:
            if abs(int(a)).bit_length() + abs(int(b)).bit_length() > 66:  # refused before the work
                raise DomainError(OVERFLOW)
            return _int(a * b)
        x, y = t
        r = x * y
        near = (x.double() * y.double()).abs() >= 2.0**62  # only these can have wrapped
        if _any(near):
            safe = torch.where((y == 0) | (y == -1), 1, y)
            wrapped = ((y != 0) & (y != -1) & (torch.div(r, safe, rounding_mode="trunc") != x)) | ((y == -1) & (x == INT_MIN))
            _check(near & wrapped)
        return r

    @staticmethod
    def neg(a: Value) -> Value:
        if isinstance(a, torch.Tensor):
            _check(a == INT_MIN)
            return -a
        return _int(-a)

    @staticmethod
    def floordiv(a: Value, b: Value) -> Value:
        t = _divisor(a, b, "division")
        if t is None:
            return _int(a // b)
        _check((t[0] == INT_MIN) & (t[1] == -1))  # the one quotient beyond the range (and a CPU trap)
        return torch.div(t[0], t[1], rounding_mode="floor")

    @staticmethod
    def mod(a: Value, b: Value) -> Value:
        t = _divisor(a, b, "modulo")
        if t is None:
            return _int(a % b)
        return torch.remainder(t[0], torch.where(t[1] == -1, 1, t[1]))  # x % -1 == 0 == x % 1, without the trap

    @staticmethod
    def cdiv(a: Value, b: Value) -> Value:
        return Exact.neg(Exact.floordiv(Exact.neg(a), b))

    @staticmethod
    def pow(a: Value, b: Value) -> Value:
        if _any(b < 0):
            raise DomainError("negative exponent")
        t = _tensors(a, b)
        if t is None:
            if abs(int(a)) >= 2 and int(b) * (abs(int(a)).bit_length() - 1) > 64:  # refused before the work
                raise DomainError(OVERFLOW)
            return _int(a**b)
        x, y = t
        x, y = torch.broadcast_tensors(x, y)  # type: ignore[no-untyped-call]
        est = torch.pow(x.double().abs(), y.double())  # float64: off by far less than a factor 2
        _check(est >= 2.0**64)
        near = (est >= 2.0**62).nonzero().flatten() if x.dim() else (est >= 2.0**62).reshape(1).nonzero().flatten()
        for k in near.tolist():  # the few values close to the limit, exactly
            _int(int(x.reshape(-1)[k]) ** int(y.reshape(-1)[k]))
        return torch.pow(x, y)

    @staticmethod
    def abs(a: Value) -> Value:
        if isinstance(a, torch.Tensor):
            _check(a == INT_MIN)
            return a.abs()
        return _int(abs(a))

    @staticmethod
    def min(*args: Value) -> Value:
        return _fold(torch.minimum, min, args)

    @staticmethod
    def max(*args: Value) -> Value:
        return _fold(torch.maximum, max, args)

    @staticmethod
    def isqrt(a: Value) -> Value:
        if _any(a < 0):
            raise DomainError("isqrt of a negative number")
        if not isinstance(a, torch.Tensor):
            return math.isqrt(a)
        r = torch.sqrt(a.double()).floor().long()
        # r * r > a as r > a // r: squares near 2**63 would wrap
        r = r - ((r > 0) & (r > torch.div(a, r.clamp(min=1), rounding_mode="floor"))).long()
        return r + (r + 1 <= torch.div(a, r + 1, rounding_mode="floor")).long()

    @staticmethod
    def ilog2(a: Value) -> Value:
        if _any(a < 1):
            raise DomainError("ilog2 of a number below 1")
        if not isinstance(a, torch.Tensor):
            return int(a).bit_length() - 1
        r = torch.log2(a.double()).floor().long().clamp(max=62)  # 1 << 63 would wrap
        r = r - (torch.bitwise_left_shift(torch.ones_like(r), r) > a).long()
        return r + ((r < 62) & (torch.bitwise_left_shift(torch.ones_like(r), (r + 1).clamp(max=62)) <= a)).long()

    @staticmethod
    def clog2(a: Value) -> Value:
        if _any(a < 1):
            raise DomainError("clog2 of a number below 1")
        if not isinstance(a, torch.Tensor):
            return (int(a) - 1).bit_length()
        return torch.where(a > 1, Exact.ilog2(torch.clamp(a - 1, min=1)) + 1, 0)

    @staticmethod
    def eq(a: Value, b: Value) -> Value:
        return a == b

    @staticmethod
    def ne(a: Value, b: Value) -> Value:
        return a != b

    @staticmethod
    def lt(a: Value, b: Value) -> Value:
        return a < b

    @staticmethod
    def le(a: Value, b: Value) -> Value:
        return a <= b

    @staticmethod
    def gt(a: Value, b: Value) -> Value:
        return a > b

    @staticmethod
    def ge(a: Value, b: Value) -> Value:
        return a >= b

    @staticmethod
    def and_(*args: Value) -> Value:
        out = args[0]
        for x in args[1:]:
            out = out & x
        return out

    @staticmethod
    def or_(*args: Value) -> Value:
        out = args[0]
        for x in args[1:]:
            out = out | x
        return out

    @staticmethod
    def not_(a: Value) -> Value:
        return ~a if isinstance(a, torch.Tensor) else not a
