"""Exact integer semantics of the spec language on Python ints and int64 tensors.

Every operator of the language is one function here, so the interpreter (`evaluate.py`) and the
generated modules (which inline this file) compute exactly the same thing. `//` and `%` floor like
Python's; evaluation is strict (both sides of `and`/`or` are evaluated).
"""

from __future__ import annotations

import math

import torch

Value = int | bool | torch.Tensor


class DomainError(ArithmeticError):
    """An operation undefined on its arguments (division by zero, isqrt of a negative, ...)."""


def _any(x: Value) -> bool:
    return bool(x.any()) if isinstance(x, torch.Tensor) else bool(x)


class Exact:
    """Operations on ints, bools and (broadcastable) int64/bool tensors."""

    @staticmethod
    def add(a: Value, b: Value) -> Value:
        return a + b

    @staticmethod
    def sub(a: Value, b: Value) -> Value:
        return a - b

    @staticmethod
    def mul(a: Value, b: Value) -> Value:
        return a * b

    @staticmethod
    def neg(a: Value) -> Value:
        return -a

    @staticmethod
    def floordiv(a: Value, b: Value) -> Value:
        if _any(b == 0):
            raise DomainError("division by zero")
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            return torch.div(torch.as_tensor(a), b, rounding_mode="floor")
        return a // b

    @staticmethod
    def mod(a: Value, b: Value) -> Value:
        if _any(b == 0):
            raise DomainError("modulo by zero")
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            return torch.remainder(torch.as_tensor(a), b)
        return a % b

    @staticmethod
    def cdiv(a: Value, b: Value) -> Value:
        return Exact.neg(Exact.floordiv(Exact.neg(a), b))

    @staticmethod
    def pow(a: Value, b: Value) -> Value:
        if _any(b < 0):
            raise DomainError("negative exponent")
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            return torch.pow(torch.as_tensor(a), b)
        if b > 4096:
            raise DomainError("exponent too large")
        return a**b

    @staticmethod
    def abs(a: Value) -> Value:
        return a.abs() if isinstance(a, torch.Tensor) else abs(a)

    @staticmethod
    def min(*args: Value) -> Value:
        out = args[0]
        for x in args[1:]:
            if isinstance(out, torch.Tensor) or isinstance(x, torch.Tensor):
                out = torch.minimum(torch.as_tensor(out), torch.as_tensor(x))
            else:
                out = min(out, x)
        return out

    @staticmethod
    def max(*args: Value) -> Value:
        out = args[0]
        for x in args[1:]:
            if isinstance(out, torch.Tensor) or isinstance(x, torch.Tensor):
                out = torch.maximum(torch.as_tensor(out), torch.as_tensor(x))
            else:
                out = max(out, x)
        return out

    @staticmethod
    def isqrt(a: Value) -> Value:
        if _any(a < 0):
            raise DomainError("isqrt of a negative number")
        if not isinstance(a, torch.Tensor):
            return math.isqrt(a)
        r = torch.sqrt(a.double()).floor().long()
        r = r - (r * r > a).long()
        return r + ((r + 1) * (r + 1) <= a).long()

    @staticmethod
    def ilog2(a: Value) -> Value:
        if _any(a < 1):
            raise DomainError("ilog2 of a number below 1")
        if not isinstance(a, torch.Tensor):
            return int(a).bit_length() - 1
        r = torch.log2(a.double()).floor().long()
        r = r - (torch.bitwise_left_shift(torch.ones_like(r), r) > a).long()
        return r + (torch.bitwise_left_shift(torch.ones_like(r), r + 1) <= a).long()

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
