"""An independent brute-force oracle of the checks C0-C3: plain Python ints, loops over (i, j).

It shares nothing with the compiler beyond the AST: its own expression interpreter, its own
region enumeration, its own derived selection. Only for small L.

Like the language (docs/language.md, "Evaluation domain"), it evaluates every predicate at every
point of its domain, whether or not the value matters: `direct` at every 0 <= i, j < L (before
the intersection with the allowed set), `member` at every binder tuple and j, `select` and each
`at(...)` at every binder tuple and i (empty and unselected regions included). An error at any
of those points is an error of the spec at that L.
"""

from __future__ import annotations

import math
from typing import Any

from combiner_dsl import ast, ir

FUNCS = {
    "min": min,
    "max": max,
    "abs": abs,
    "isqrt": math.isqrt,
    "ilog2": lambda x: _at_least_1(x).bit_length() - 1,
    "clog2": lambda x: (_at_least_1(x) - 1).bit_length(),
    "cdiv": lambda a, b: -((-a) // b),
}


def _at_least_1(x: int) -> int:
    if x < 1:
        raise ValueError("logarithm of a value below 1")
    return int(x)


class TooBig(Exception):
    """The spec is too large for brute force at this length."""


INT_MIN, INT_MAX = -(1 << 63), (1 << 63) - 1  # the language's integers: exact, and every value in 64 bits


def _fits(v: Any) -> Any:
    """An integer result, or OverflowError when it leaves the signed 64-bit range (bools pass)."""
    if isinstance(v, int) and not isinstance(v, bool) and not INT_MIN <= v <= INT_MAX:
        raise OverflowError("integer overflow")
    return v


def _pow(a: int, b: int) -> int:
    if b < 0:
        raise ValueError("negative exponent")
    if b > 64 and abs(a) > 1:
        raise OverflowError("integer overflow")  # |a| >= 2: past 2**64 already, so never computed
    return int(a**b)


OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "//": lambda a, b: a // b, "%": lambda a, b: a % b, "**": _pow}
CMP = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def ev(e: ast.Expr, env: dict[str, Any]) -> Any:
    if isinstance(e, ast.IntLit | ast.BoolLit):
        return e.value
    if isinstance(e, ast.Name):
        return env[e.id]
    if isinstance(e, ast.Unary):
        return _fits(-ev(e.operand, env)) if e.op == "neg" else not ev(e.operand, env)
    if isinstance(e, ast.Binary):
        return _fits(OPS[e.op](ev(e.left, env), ev(e.right, env)))
    if isinstance(e, ast.Compare):
        vals = [ev(x, env) for x in e.operands]
        return all(CMP[op](vals[k], vals[k + 1]) for k, op in enumerate(e.ops))
    if isinstance(e, ast.BoolOp):
        vals = [ev(x, env) for x in e.operands]  # strict, like the language
        return all(vals) if e.op == "and" else any(vals)
    if isinstance(e, ast.Call):
        return _fits(FUNCS[e.func](*[ev(x, env) for x in e.args]))
    raise AssertionError(e)


def _names(e: ast.Expr) -> set[str]:
    if isinstance(e, ast.Name):
        return {e.id}
    subs = [v for f in ("operand", "left", "right") if isinstance(v := getattr(e, f, None), ast.Expr)]
    subs += [x for f in ("operands", "args") for x in getattr(e, f, ())]
    return set().union(*(_names(x) for x in subs))


def brute_accepts(pattern: ir.Pattern, L: int) -> bool:
    """Whether L satisfies the requires, in order (a later one is evaluated only where the earlier
    ones accept). A `let` undefined at L is an error only if no require that avoids it rejects L;
    an undefined require raises (OverflowError, ZeroDivisionError, ValueError)."""
    env: dict[str, Any] = {"L": L}
    broken: dict[str, Exception] = {}
    for let in pattern.lets:
        if _names(let.value) & broken.keys():
            broken[let.name] = next(broken[n] for n in _names(let.value) if n in broken)
            continue
        try:
            env[let.name] = ev(let.value, env)
        except (ArithmeticError, ValueError) as err:
            broken[let.name] = err
    for cond in pattern.requires:
        if not (_names(cond) & broken.keys()) and not ev(cond, env):
            return False
    if broken:
        raise next(iter(broken.values()))
    return True


MAX_TUPLES = 100_000  # past this the brute force gives up (TooBig) rather than run for hours


def _free_parts(e: ast.Expr, bound: set[str]) -> list[ast.Expr]:
    """The largest subexpressions of `e` that read none of the names in `bound`."""
    if not (_names(e) & bound):
        return [e]
    subs = [v for f in ("operand", "left", "right") if isinstance(v := getattr(e, f, None), ast.Expr)]
    subs += [x for f in ("operands", "args") for x in getattr(e, f, ())]
    return [p for x in subs for p in _free_parts(x, bound)]


def _tuples(part: ir.Partition, env: dict[str, Any]) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = [()]
    for k, b in enumerate(part.binders):
        if not out:  # no earlier tuple: the bound's parts that read no earlier binder are still computed
            for e in (b.lo, b.hi):
                for x in _free_parts(e, set(part.binder_names[:k])):
                    ev(x, env)
        nxt: list[tuple[int, ...]] = []
        for t in out:
            e = {**env, **dict(zip(part.binder_names[:k], t, strict=True))}
            lo, hi = ev(b.lo, e), ev(b.hi, e)
            if len(nxt) + hi - lo > MAX_TUPLES:
                raise TooBig(part.name)
            nxt += [(*t, v) for v in range(lo, hi)]
        out = nxt
    return out


class _Ambiguous(Exception):
    """A derived selection picks two overlapping regions."""

    def __init__(self, found: tuple[str, int, int | None]) -> None:
        self.found = found


def brute_check(pattern: ir.Pattern, L: int) -> tuple[str, int, int | None] | None:
    """(check, i, j) of the first failure at L, in the checker's order, or None."""
    env: dict[str, Any] = {"L": L}
    for let in pattern.lets:
        env[let.name] = ev(let.value, env)
    gamma = [set(range(i + 1)) if pattern.causal else set(range(L)) for i in range(L)]
    built = []
    for plan in pattern.plans:  # derived selections of every plan are resolved before any check
        try:
            built.append(_selection(pattern, plan, env, L, gamma))
        except _Ambiguous as amb:
            return amb.found
    found = []  # each plan's first failure; the most serious of them is reported
    for direct, chosen in built:
        found += [next(((code, i, hit) for code in ("C0", "C1", "C2", "C3") for i in range(L) if (hit := _violation(code, env, L, i, gamma[i], direct[i], chosen[i])) is not None), None)]
    return min((f for f in found if f is not None), key=lambda f: (f[0], f[1], f[2] if f[2] is not None else -1), default=None)


def _selection(pattern: ir.Pattern, plan: ir.PlanDef, env: dict[str, Any], L: int, gamma: list[set[int]]) -> Any:
    # every (i, j) is evaluated, not only j in Γ_i: an error outside Γ_i is still an error
    direct = [{j for j in range(L) if ev(plan.direct, {**env, "i": i, "j": j})} & gamma[i] for i in range(L)]
    chosen: list[list[tuple[ir.Partition, tuple[int, ...], frozenset[int]]]] = [[] for _ in range(L)]
    for part in plan.partitions:
        regions = []
        for t in _tuples(part, env):
            b = dict(zip(part.binder_names, t, strict=True))
            members = frozenset(j for j in range(L) if ev(part.member, {**env, **b, "j": j}))
            for i in range(L):  # select and at(...) are evaluated for every tuple, empty regions too
                for e in (part.select, part.query.position, part.key.position):
                    if e is not None:
                        ev(e, {**env, **b, "i": i})
            if members:
                regions.append((t, b, members))
        for i in range(L):
            if part.select is not None:
                sel = [(t, m) for t, b, m in regions if ev(part.select, {**env, **b, "i": i})]
            else:
                free = gamma[i] - direct[i]
                inside = [(t, m) for t, _, m in regions if m <= free]
                sel = [(t, m) for t, m in inside if not any(m < m2 for _, m2 in inside)]
                common = {j for a in range(len(sel)) for b2 in range(a + 1, len(sel)) for j in sel[a][1] & sel[b2][1]}
                if common:
                    raise _Ambiguous(("C1", i, min(common)))
            chosen[i] += [(part, t, m) for t, m in sel]
    return direct, chosen


def _violation(code: str, env: dict[str, Any], L: int, i: int, gamma: set[int], direct: set[int], chosen: list[Any]) -> int | None:
    if code == "C0":
        bad = [j for _, _, m in chosen for j in m if j not in gamma]
        return min(bad) if bad else None
    count = {j: (1 if j in direct else 0) for j in range(L)}
    for _, _, m in chosen:
        for j in m:
            count[j] += 1
    if code == "C1":
        bad = [j for j in gamma if count[j] > 1]
        return min(bad) if bad else None
    if code == "C2":
        bad = [j for j in gamma if count[j] == 0]
        return min(bad) if bad else None
    for part, t, m in chosen:
        b = dict(zip(part.binder_names, t, strict=True))
        for src in (part.query, part.key):
            if src.position is not None:
                p = ev(src.position, {**env, **b, "i": i})
                if p not in m:
                    return p
    return None


def brute_cost(pattern: ir.Pattern, L: int) -> dict[str, int]:
    """The pair counts of contract.md, by enumeration: direct keys, selected units and their region sizes."""
    env: dict[str, Any] = {"L": L}
    for let in pattern.lets:
        env[let.name] = ev(let.value, env)
    gamma = [set(range(i + 1)) if pattern.causal else set(range(L)) for i in range(L)]
    built = [_selection(pattern, plan, env, L, gamma) for plan in pattern.plans]
    groups = [built] if pattern.mix == "joint" else [[b] for b in built]
    out = {"direct_pairs": 0, "region_pairs": 0, "summary_pairs": 0, "logits_max": 0}
    for group in groups:
        units: dict[tuple[Any, ...], int] = {}
        for i in range(L):
            direct = set().union(*(d[i] for d, _ in group))
            chosen = [c for _, ch in group for c in ch[i]]
            out["direct_pairs"] += len(direct)
            out["region_pairs"] += len(chosen)
            out["logits_max"] = max(out["logits_max"], len(direct) + len(chosen))
            for part, t, m in chosen:
                scope = {**env, **dict(zip(part.binder_names, t, strict=True)), "i": i}
                at = tuple(None if s.position is None else ev(s.position, scope) for s in (part.query, part.key))
                units[(part.name, t, at)] = len(m)
        out["summary_pairs"] += sum(units.values())
    return out
