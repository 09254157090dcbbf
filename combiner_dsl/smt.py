"""IR expressions -> z3 terms over unbounded integers.

Every operator the solver has no built-in for (floor division, modulo, isqrt, ilog2, clog2,
`**` with a variable exponent) becomes a fresh constant pinned by defining constraints, so
queries stay quantifier-free (but for the prover's `ForAll` fallback). The encoding is a *relaxation*: the standard meaning of any
violation satisfies it (hence `unsat` proves the property), but a model may interpret `c ** e`
non-standardly, so every `sat` answer is replayed by the exhaustive checker before it counts.

Undefined operations (x // 0, isqrt of a negative, ...) are given an arbitrary but functional
value (an uninterpreted function of the operand), so every term stays a function of its
inputs; whether they can happen at all is asked separately through `obligations`.
"""

from __future__ import annotations

import builtins
import itertools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import z3

from . import ast, operators
from .runtime.ops import INT_MAX, INT_MIN, OVERFLOW, DomainError, Exact

Env = Mapping[str, z3.ExprRef]
MAX_UNFOLDED_EXPONENT = 8  # `x ** k` with a literal k up to this becomes a product


@dataclass(frozen=True, slots=True)
class Obligation:
    """A condition that must hold for `node` to be defined (a divisor is not zero, ...)."""

    node: ast.Expr
    holds: z3.BoolRef
    what: str


@dataclass
class _Scope:
    """Fresh constants and their definitions; a nested scope serves a quantifier body."""

    defs: list[z3.BoolRef] = field(default_factory=list)
    fresh: list[z3.ExprRef] = field(default_factory=list)
    memo: dict[tuple[object, ...], tuple[z3.ArithRef, ...]] = field(default_factory=dict)
    pows: list[tuple[int, z3.ArithRef, z3.ArithRef]] = field(default_factory=list)  # base, exponent, term
    divs: list[tuple[z3.ArithRef, z3.ArithRef, z3.ArithRef, z3.ArithRef]] = field(default_factory=list)  # a, b, a // b, a % b


def _value(t: z3.ExprRef) -> int | None:
    return t.as_long() if z3.is_int_value(t) else None


class Encoder:
    """Translates expressions; collects definitions, axioms and definedness obligations."""

    def __init__(self, quotients: bool = False, pins: int = 0, risky: frozenset[int] = frozenset()) -> None:
        self.quotients = quotients  # also relate c**e1 and c**e2 through c**(e1-e2): stronger, slower
        self.pins = pins  # pin c**e to its value for e <= pins: truer models, slower proofs
        self.risky = risky  # ids of nodes that may leave the 64-bit range (ranges.risky_nodes): obligations
        self._scopes: list[_Scope] = [_Scope()]
        self.obligations: list[Obligation] = []
        self._count = 0
        self._undef: dict[str, z3.FuncDeclRef] = {}
        self._powf: dict[int, z3.FuncDeclRef] = {}

    @property
    def has_powers(self) -> bool:
        return any(s.pows for s in self._scopes)

    # ------------------------------------------------------------ bookkeeping
    def fresh(self, prefix: str, sort: z3.SortRef | None = None) -> z3.ExprRef:
        self._count += 1
        v = z3.Const(f"{prefix}!{self._count}", z3.IntSort() if sort is None else sort)
        self._scopes[-1].fresh.append(v)
        return v

    def _define(self, *cs: z3.BoolRef) -> None:
        self._scopes[-1].defs.extend(cs)

    def _lookup(self, key: tuple[object, ...]) -> tuple[z3.ArithRef, ...] | None:
        for scope in reversed(self._scopes):
            if key in scope.memo:
                return scope.memo[key]
        return None

    def _oblige(self, node: ast.Expr | None, holds: z3.BoolRef, what: str) -> None:
        if node is not None:
            self.obligations.append(Obligation(node, holds, what))

    def _undefined(self, name: str, *args: z3.ArithRef) -> z3.ArithRef:
        """An arbitrary but functional value for an operation outside its domain."""
        if name not in self._undef:
            self._undef[name] = z3.Function(f"undef_{name}", *([z3.IntSort()] * (len(args) + 1)))
        return self._undef[name](*args)

    @contextmanager
    def local(self) -> Iterator[_Scope]:
        """A scope whose fresh constants belong to a quantifier body (see `body_constraints`)."""
        scope = _Scope()
        self._scopes.append(scope)
        try:
            yield scope
        finally:
            self._scopes.pop()

    def constraints(self) -> list[z3.BoolRef]:
        """Definitions and axioms of the outermost scope, to assert at top level."""
        top = self._scopes[0]
        axioms = self._axioms(top, [top])  # may add definitions: read defs afterwards
        return [*top.defs, *axioms]

    def body_constraints(self, scope: _Scope) -> list[z3.BoolRef]:
        """Definitions and axioms for a quantifier body (call outside `local`; may add to scope.fresh)."""
        self._scopes.append(scope)
        try:
            axioms = self._axioms(scope, [self._scopes[0], scope])
        finally:
            self._scopes.pop()
        return [*scope.defs, *axioms]

    # ------------------------------------------------------------ axioms for c ** e
    def _axioms(self, scope: _Scope, visible: list[_Scope]) -> list[z3.BoolRef]:
        """Ground facts about the `c ** e` terms of `scope`, alone and paired with every visible one.

        Monotonicity, c**(e+1) == c * c**e and, for a shared dividend, x // c**(e+1) == (x // c**e) // c;
        with `quotients`, the same through c**(e1-e2) for any e2 <= e1. These let the solver reason
        about levels (logsparse's dyadic blocks) without quantified axioms; one round, so it ends.
        """
        out: list[z3.BoolRef] = []
        mine = {p[2].get_id() for p in scope.pows}
        terms = [p for s in visible for p in s.pows]
        divs = [d for s in visible for d in s.divs]
        for (c, e1, t1), (c2, e2, t2) in itertools.permutations(terms, 2):
            if c != c2 or not ({t1.get_id(), t2.get_id()} & mine):
                continue
            gap = z3.simplify(e1 - e2)
            if _value(gap) is not None and _value(gap) < 0:  # type: ignore[operator]
                continue
            le, lt = z3.And(e2 >= 0, e2 <= e1), z3.And(e2 >= 0, e2 < e1)
            step = z3.And(e2 >= 0, e1 == e2 + 1)
            out += [z3.Implies(step, t1 == c * t2), z3.Implies(le, t2 <= t1), z3.Implies(lt, c * t2 <= t1)]
            m = self._pow(z3.IntVal(c), gap, None) if self.quotients else None
            if m is not None:
                out.append(z3.Implies(le, t1 == t2 * m))
            for x, b, q, _ in divs:
                if not b.eq(t2):
                    continue
                for x1, b1, q1, _ in divs:
                    if x1.eq(x) and b1.eq(t1):
                        out.append(z3.Implies(step, z3.And(q1 * c <= q, q < q1 * c + c)))  # q1 == q // c
                        if m is not None:
                            out.append(z3.Implies(le, z3.And(q1 * m <= q, q < q1 * m + m)))  # q1 == q // m
        mine_divs = {id(d) for d in scope.divs}
        for d1, d2 in itertools.combinations(divs, 2):  # division is a function (solvers miss it when b varies)
            if (id(d1) in mine_divs or id(d2) in mine_divs) and (d1[0].eq(d2[0]) or d1[1].eq(d2[1])):
                out.append(z3.Implies(z3.And(d1[0] == d2[0], d1[1] == d2[1]), z3.And(d1[2] == d2[2], d1[3] == d2[3])))
            if (id(d1) in mine_divs or id(d2) in mine_divs) and d1[1].eq(d2[1]):  # monotone in the dividend (b > 0)
                b = d1[1]
                for (x1, _, q1, r1), (x2, _, q2, r2) in ((d1, d2), (d2, d1)):
                    out.append(z3.Implies(z3.And(b > 0, x1 <= x2), q1 <= q2))
                    out.append(z3.Implies(z3.And(b > 0, q1 < q2), x1 - r1 + b <= x2 - r2))  # b*q1 + b <= b*q2
        for c, e, t in scope.pows:
            out += [z3.Implies(e >= 0, t >= e + 1), z3.Implies(e >= 1, z3.And(t >= c, self._floordiv(t, z3.IntVal(c))[1] == 0))]
            if self.pins:
                out += [z3.Implies(e == k, t == c**k) for k in range(self.pins + 1)]
                out.append(z3.Implies(e > self.pins, t >= c ** (self.pins + 1)))
        return out

    # ------------------------------------------------------------ operators
    def _floordiv(self, a: z3.ArithRef, b: z3.ArithRef, node: ast.Expr | None = None) -> tuple[z3.ArithRef, z3.ArithRef]:
        """Python's floor division and modulo: a == q*b + r, r between 0 and b (sign of b)."""
        va, vb = _value(a), _value(b)
        if va is not None and vb is not None and vb != 0:
            return z3.IntVal(va // vb), z3.IntVal(va % vb)
        if vb is None or vb == 0:
            self._oblige(node, b != 0, "division by zero")
        key = ("div", a.get_id(), b.get_id())
        hit = self._lookup(key)
        if hit is not None:
            return hit[0], hit[1]
        q, r = self.fresh("q"), self.fresh("r")
        power = self._power_of(b)
        if vb is not None and vb != 0:
            bound = z3.And(0 <= r, r < vb) if vb > 0 else z3.And(vb < r, r <= 0)
            self._define(a == vb * q + r, bound)
        elif power is not None:  # c ** e is positive exactly when e >= 0: a simpler guard
            self._define(
                z3.Implies(power >= 0, z3.And(a == b * q + r, 0 <= r, r < b)),
                z3.Implies(power < 0, z3.And(q == self._undefined("div", a), r == self._undefined("mod", a))),
            )
        else:
            sign = z3.If(b > 0, z3.And(0 <= r, r < b), z3.And(b < r, r <= 0))
            self._define(
                z3.Implies(b != 0, z3.And(a == b * q + r, sign)),
                z3.Implies(b == 0, z3.And(q == self._undefined("div", a), r == self._undefined("mod", a))),
            )
        if vb is None:  # linear facts the solver misses when b is a term: small and non-negative dividends
            self._define(z3.Implies(z3.And(b > 0, 0 <= a), z3.And(0 <= q, q <= a, z3.Implies(a < b, q == 0))))
        self._scopes[-1].memo[key] = (q, r)
        self._scopes[-1].divs.append((a, b, q, r))
        return q, r

    def _power_of(self, t: z3.ArithRef) -> z3.ArithRef | None:
        """The exponent e when `t` is a modelled `c ** e` term."""
        for s in self._scopes:
            for _, e, u in s.pows:
                if u.eq(t):
                    return e
        return None

    def _pow(self, a: z3.ArithRef, b: z3.ArithRef, node: ast.Expr | None) -> z3.ArithRef:
        va, vb = _value(a), _value(b)
        if vb is not None:
            if vb < 0:
                self._oblige(node, z3.BoolVal(False), "negative exponent")
                return self._undefined("pow", a, b)
            if va is not None and vb <= 4096:
                return z3.IntVal(va**vb)
            if vb <= MAX_UNFOLDED_EXPONENT:
                out: z3.ArithRef = z3.IntVal(1)
                for _ in range(vb):
                    out = out * a
                return out
        self._oblige(node, b >= 0, "negative exponent")
        if va is not None and va in (0, 1):
            return z3.If(b == 0, 1, va) if va == 0 else z3.IntVal(1)
        if va is None or va < 0:
            return self._undefined("pow", a, b)  # honest: only `c ** e` with a literal c >= 2 is modelled
        if va not in self._powf:
            self._powf[va] = z3.Function(f"pow{va}", z3.IntSort(), z3.IntSort())
        t = self._powf[va](b)
        if not any(t.eq(p[2]) for s in self._scopes for p in s.pows):
            self._scopes[-1].pows.append((va, b, t))
        return t

    # ------------------------------------------------------------ helpers for the registry's z3 rules
    @staticmethod
    def const(v: int) -> z3.ArithRef:
        return z3.IntVal(v)

    @staticmethod
    def ite(c: z3.BoolRef, a: z3.ExprRef, b: z3.ExprRef) -> z3.ExprRef:
        return z3.If(c, a, b)

    @staticmethod
    def and_(*xs: z3.BoolRef) -> z3.BoolRef:
        return z3.And(*xs)

    @staticmethod
    def or_(*xs: z3.BoolRef) -> z3.BoolRef:
        return z3.Or(*xs)

    @staticmethod
    def not_(x: z3.BoolRef) -> z3.BoolRef:
        return z3.Not(x)

    @staticmethod
    def implies(a: z3.BoolRef, b: z3.BoolRef) -> z3.BoolRef:
        return z3.Implies(a, b)

    def floordiv(self, a: z3.ArithRef, b: z3.ArithRef, node: ast.Expr | None) -> tuple[z3.ArithRef, z3.ArithRef]:
        return self._floordiv(a, b, node)

    def pow(self, a: z3.ArithRef, b: z3.ArithRef, node: ast.Expr | None) -> z3.ArithRef:
        return self._pow(a, b, node)

    def implicit(self, f: str, x: z3.ArithRef, node: ast.Expr | None, low: builtins.int, ok: Callable[[z3.ArithRef], z3.BoolRef]) -> z3.ArithRef:
        """A function defined implicitly (r = f(x) where ok(r) holds) on x >= low; constants folded."""
        vx = _value(x)
        if vx is not None:
            try:
                return z3.IntVal(operators.get("call", f).apply(Exact, vx))
            except DomainError:
                pass
        self._oblige(node, x >= low, f"{f} of a number below {low}")
        key = (f, x.get_id())
        hit = self._lookup(key)
        if hit is not None:
            return hit[0]
        r = self.fresh(f)
        self._scopes[-1].memo[key] = (r,)
        self._define(z3.Implies(x >= low, ok(r)), z3.Implies(x < low, r == self._undefined(f, x)))
        return r

    # ------------------------------------------------------------ expressions
    def term(self, e: ast.Expr, env: Env) -> z3.ExprRef:
        """The z3 term of `e`, names resolved in `env` (an obligation when it may leave 64 bits)."""
        t = self._term(e, env)
        if id(e) in self.risky and z3.is_int(t):
            self._oblige(e, z3.And(INT_MIN <= t, t <= INT_MAX), OVERFLOW)
        return t

    def _term(self, e: ast.Expr, env: Env) -> z3.ExprRef:
        if isinstance(e, ast.IntLit):
            return z3.IntVal(e.value)
        if isinstance(e, ast.BoolLit):
            return z3.BoolVal(e.value)
        if isinstance(e, ast.Name):
            return env[e.id]
        if isinstance(e, ast.Unary):
            op = operators.get("unary", e.op)
            return op.smt(self, e, self.term(e.operand, env))
        if isinstance(e, ast.Binary):
            if e.op == "*":
                linear = self._linear_product(e, env)
                if linear is not None:
                    return linear
            return operators.get("binary", e.op).smt(self, e, self.term(e.left, env), self.term(e.right, env))
        if isinstance(e, ast.Compare):
            vals = [self.term(x, env) for x in e.operands]
            parts = [operators.get("compare", op).smt(self, e, vals[k], vals[k + 1]) for k, op in enumerate(e.ops)]
            return parts[0] if len(parts) == 1 else z3.And(*parts)
        if isinstance(e, ast.BoolOp):
            return operators.get("logic", e.op).smt(self, e, *(self.term(x, env) for x in e.operands))
        if isinstance(e, ast.Call):
            return operators.get("call", e.func).smt(self, e, *(self.term(x, env) for x in e.args))
        raise AssertionError(f"unknown node {e!r}")

    def _linear_product(self, e: ast.Binary, env: Env) -> z3.ExprRef | None:
        """`s * (x // s)` is `x - x % s`: linear, where the product would be nonlinear (None: no such form)."""
        for f, t in ((e.left, e.right), (e.right, e.left)):
            if isinstance(t, ast.Binary) and t.op == "//" and t.right == f:
                s, x = self.term(f, env), self.term(t.left, env)
                q, r = self.floordiv(x, s, t)  # memoised: the same constants as the quotient itself
                return z3.If(s != 0, x - r, s * q)
        return None

    def constant(self, name: str, value: z3.ExprRef) -> z3.ExprRef:
        """A `let`: a fresh constant equal to its value (keeps terms small)."""
        v = self.fresh(name, value.sort())
        self._define(v == value)
        return v
