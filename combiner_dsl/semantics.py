"""AST -> IR: names, scopes, types, arity and structure. Independent errors are reported together."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from . import ast, ir, operators
from .errors import Diagnostic, SpecSemanticError
from .parse import KEYWORDS
from .runtime.ops import INT_MAX, INT_MIN
from .source import Source, Span

INT, BOOL = "int", "bool"

POSITIONS = ("i", "j", "L")


@dataclass
class _Scope:
    """What an expression may refer to, and why the rest is out of reach."""

    where: str
    names: dict[str, str]  # visible name -> type
    banned: dict[str, str] = field(default_factory=dict)  # name -> why it is not visible here


class _Checker:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.errors: list[Diagnostic] = []
        self.let_types: dict[str, str] = {}

    def error(self, span: Span, message: str, hint: str | None = None) -> None:
        self.errors.append(Diagnostic(self.source, span, message, hint))

    # ------------------------------------------------------------ expressions
    def expr(self, e: ast.Expr, scope: _Scope, want: str | None) -> str | None:
        """Type of `e` (None when already wrong); reports a mismatch against `want`."""
        got = self._type(e, scope)
        if got is not None and want is not None and got != want:
            what = "a condition (true/false)" if want == BOOL else "an integer"
            self.error(e.span, f"expected {what} in {scope.where}, found {'a condition' if got == BOOL else 'an integer'}")
            return None
        return got

    def _type(self, e: ast.Expr, scope: _Scope) -> str | None:
        if isinstance(e, ast.IntLit):
            if not INT_MIN <= e.value <= INT_MAX:
                self.error(e.span, "integer literal beyond the 64-bit range", f"integers lie in {INT_MIN} .. {INT_MAX}")
            return INT
        if isinstance(e, ast.BoolLit):
            return BOOL
        if isinstance(e, ast.Name):
            if e.id in scope.names:
                return scope.names[e.id]
            if e.id in scope.banned:
                self.error(e.span, f"`{e.id}` cannot be used in {scope.where}", scope.banned[e.id])
            elif e.id in operators.functions():
                self.error(e.span, f"`{e.id}` is a function", f"call it: {e.id}(...)")
            else:
                known = ", ".join(sorted(scope.names)) or "nothing"
                self.error(e.span, f"unknown name `{e.id}`", f"{scope.where} may use: {known}")
            return None
        if isinstance(e, ast.Unary):
            typ = INT if e.op == "neg" else BOOL
            self.expr(e.operand, scope, typ)
            return typ
        if isinstance(e, ast.Binary):
            self.expr(e.left, scope, INT)
            self.expr(e.right, scope, INT)
            return INT
        if isinstance(e, ast.Compare):
            types = [self._type(x, scope) for x in e.operands]
            for k, op in enumerate(e.ops):
                a, b = types[k], types[k + 1]
                if a is None or b is None:
                    continue
                if op in ("==", "!=") and a == b:
                    continue
                if a != INT or b != INT:
                    bad = e.operands[k] if a != INT else e.operands[k + 1]
                    self.error(bad.span, f"`{op}` compares integers, found a condition", "combine conditions with and/or/not")
            return BOOL
        if isinstance(e, ast.BoolOp):
            for x in e.operands:
                self.expr(x, scope, BOOL)
            return BOOL
        if isinstance(e, ast.Call):
            functions = operators.functions()  # every function takes and returns integers
            if e.func not in functions:
                self.error(e.func_span, f"unknown function `{e.func}`", "functions: " + ", ".join(functions))
                for x in e.args:
                    self._type(x, scope)
                return None
            fn = functions[e.func]
            n = len(e.args)
            if not fn.accepts(n):
                self.error(e.span, f"`{e.func}` takes {fn.arity_text()} argument{'s' if fn.arity != (1, 1) else ''}, found {n}")
            for x in e.args:
                self.expr(x, scope, INT)
            return INT
        raise AssertionError(f"unknown node {e!r}")

    # ------------------------------------------------------------ names
    def define(self, name: str, span: Span, taken: dict[str, str], what: str) -> bool:
        if name in POSITIONS:
            self.error(span, f"`{name}` is reserved", "i is the query, j the key and L the length; pick another name")
            return False
        if name in KEYWORDS:
            self.error(span, f"`{name}` is a keyword", "pick another name")
            return False
        if name in operators.functions():
            self.error(span, f"`{name}` is a function name", "pick another name")
            return False
        if name in taken:
            self.error(span, f"duplicate name `{name}`", f"already used for {taken[name]}")
            return False
        taken[name] = what
        return True


def _lets_scope(checker: _Checker, where: str) -> dict[str, str]:
    return {"L": INT, **checker.let_types}


def _why_no_i(where: str) -> str:
    return f"a region is the same set for every query, so {where} cannot depend on the query i"


def analyze(decl: ast.PatternDecl, source: Source) -> ir.Pattern:
    """Check a parsed spec and build its IR; raise `SpecSemanticError` listing every problem."""
    ck = _Checker(source)
    taken: dict[str, str] = {}
    modes = [it for it in decl.items if isinstance(it, ast.Mode)]
    lets: list[ir.Let] = []
    requires: list[ast.Expr] = []
    mixes = [it for it in decl.items if isinstance(it, ast.Mix)]
    plan_blocks = [it for it in decl.items if isinstance(it, ast.PlanBlock)]
    top_level = [it for it in decl.items if isinstance(it, ast.Direct | ast.Partition)]

    if not modes:
        ck.error(decl.name_span, f"pattern `{decl.name}` has no mode", "add a line `causal` or `bidirectional`")
    for extra in modes[1:]:
        ck.error(extra.span, "a second mode line", "a pattern is either causal or bidirectional, once")

    for it in decl.items:
        if isinstance(it, ast.Let):
            scope = _Scope("a `let`", _lets_scope(ck, "let"), {"i": "lets depend only on L", "j": "lets depend only on L"})
            t = ck.expr(it.value, scope, None)
            if ck.define(it.name, it.name_span, taken, "a `let`"):
                ck.let_types[it.name] = t or INT
                lets.append(ir.Let(it.name, it.value, span=it.span))
        elif isinstance(it, ast.Require):
            scope = _Scope("a `require`", _lets_scope(ck, "require"), {"i": "requires restrict L only", "j": "requires restrict L only"})
            ck.expr(it.condition, scope, BOOL)
            requires.append(it.condition)

    plans: list[ir.PlanDef] = []
    mix: ir.Mix | None = None
    if plan_blocks:
        for it in top_level:
            ck.error(it.span, f"`{'direct' if isinstance(it, ast.Direct) else 'partition'}` outside a plan", "with `plan` blocks, every direct and partition goes inside one")
        if len(plan_blocks) < 2:
            ck.error(plan_blocks[0].name_span, "a single `plan` block", "a mixture needs two or more plans; for one plan drop the `plan` line")
        if not mixes:
            ck.error(plan_blocks[0].span, "plans without `mix`", "add `mix: joint` or `mix: average`")
        plan_names: dict[str, str] = {}
        for block in plan_blocks:
            ck.define(block.name, block.name_span, plan_names, "a plan")
            plans.append(_plan(ck, block.name, block.items, block.span, block.name_span, taken))
    else:
        for m in mixes:
            ck.error(m.span, "`mix` without plans", "mix combines two or more `plan` blocks")
        plans.append(_plan(ck, "main", tuple(top_level), decl.span, decl.name_span, taken))
    if mixes:
        for again in mixes[1:]:
            ck.error(again.span, "a second `mix` line")
        kind = mixes[0].kind
        if kind not in ir.MIXES:
            ck.error(mixes[0].span, f"unknown mix `{kind}`", "expected joint or average")
        mix = cast(ir.Mix, kind)  # checked just above: a wrong one is an error

    if ck.errors:
        unique = tuple(dict.fromkeys(ck.errors))  # one summary line can be both query and key
        count = len(unique)
        raise SpecSemanticError(f"{count} error{'s' if count > 1 else ''}", unique)
    return ir.Pattern(decl.name, modes[0].causal, tuple(lets), tuple(requires), tuple(plans), mix if plan_blocks else None, source, span=decl.span)


def _plan(ck: _Checker, name: str, items: tuple[ast.Direct | ast.Partition, ...], span: Span, name_span: Span, taken: dict[str, str]) -> ir.PlanDef:
    directs = [it for it in items if isinstance(it, ast.Direct)]
    where = "the pattern" if name == "main" else f"plan `{name}`"
    if not directs:
        ck.error(name_span, f"{where} has no `direct` line", "add `direct: <condition on i and j>`")
    for extra in directs[1:]:
        ck.error(extra.span, f"a second `direct` line in {where}", "combine the conditions with `or`")
    direct_scope = _Scope("`direct`", {"i": INT, "j": INT, **_lets_scope(ck, "direct")})
    for d in directs:
        ck.expr(d.condition, direct_scope, BOOL)
    parts = [_partition(ck, p, taken) for p in items if isinstance(p, ast.Partition)]
    direct = directs[0].condition if directs else ast.BoolLit(False)
    return ir.PlanDef(name, direct, tuple(p for p in parts if p is not None), span=span)


def _partition(ck: _Checker, p: ast.Partition, taken: dict[str, str]) -> ir.Partition | None:
    ck.define(p.name, p.name_span, taken, "a partition")
    base = _lets_scope(ck, "partition")
    binders: list[ir.Binder] = []
    local: dict[str, str] = dict.fromkeys(ck.let_types, "a `let`")
    bound_names: dict[str, str] = {}
    for b in p.binders:
        scope = _Scope("binder bounds", {**base, **bound_names}, {"i": "binder ranges are the same for every query", "j": "binder ranges do not depend on a key"})
        ck.expr(b.lo, scope, INT)
        ck.expr(b.hi, scope, INT)
        if ck.define(b.name, b.name_span, local, "a binder or `let`"):
            bound_names[b.name] = INT
        binders.append(ir.Binder(b.name, b.lo, b.hi, span=b.span))
    members = [it for it in p.items if isinstance(it, ast.Member)]
    selects = [it for it in p.items if isinstance(it, ast.Select)]
    summaries = [it for it in p.items if isinstance(it, ast.SummaryItem)]
    if not members:
        ck.error(p.name_span, f"partition `{p.name}` has no `member` line", "add `member: <condition on j and the binders>`")
    for what, found in (("member", members), ("select", selects), ("summary", summaries)):
        for extra in found[1:]:
            ck.error(extra.span, f"a second `{what}` line in partition `{p.name}`")
    member_scope = _Scope(
        "`member`",
        {"j": INT, **base, **bound_names},
        {"i": _why_no_i("`member`")},
    )
    select_scope = _Scope(
        "`select`",
        {"i": INT, **base, **bound_names},
        {"j": "selection picks whole regions for a query; it cannot depend on a key j"},
    )
    for m in members:
        ck.expr(m.condition, member_scope, BOOL)
    for s in selects:
        ck.expr(s.condition, select_scope, BOOL)
    query = key = ir.SummarySource("max")
    if summaries:
        sm = summaries[0]
        query = _source(ck, sm.query, _Scope("`at(...)`", select_scope.names, select_scope.banned))
        key = _source(ck, sm.key, _Scope("`at(...)`", select_scope.names, select_scope.banned))
    if not members:
        return None
    return ir.Partition(
        p.name,
        tuple(binders),
        members[0].condition,
        selects[0].condition if selects else None,
        query,
        key,
        span=p.span,
    )


def _source(ck: _Checker, s: ast.SourceSpec, scope: _Scope) -> ir.SummarySource:
    if s.pool is not None:
        if s.pool not in ir.POOLS:
            ck.error(s.span, f"unknown summary `{s.pool}`", "expected max, mean, sum or at(position)")
            return ir.SummarySource("max")
        return ir.SummarySource(s.pool)
    assert s.position is not None
    ck.expr(s.position, scope, INT)
    return ir.SummarySource(None, s.position)
