"""The spec-specific part of a generated module: its predicates as functions, and `SPEC`.

Each rendered function computes one expression of the spec over a domain `d` (`Exact` or `Bounds`)
and an env `e`, and carries the spec text it came from as a comment.
"""

from __future__ import annotations

from .. import ast
from ..analysis import PartitionModel, PatternModel, Solved
from .render import checked_name, render, source_text


class _Emitter:
    """Collects the spec's rendered functions; each gets a numbered name and its spec text as comment."""

    def __init__(self, model: PatternModel) -> None:
        self.model = model
        self.text = model.pattern.source.text
        self.subst = model.subst()
        self.lines: list[str] = []
        self.count = 0

    def fn(self, what: str, e: ast.Expr, *, features: bool = True, comment: str | None = None) -> str:
        name = f"_{what}_{self.count}"
        self.count += 1
        note = comment if comment is not None else source_text(self.text, e)
        self.lines.append(f"def {name}(d, e):")
        if note:
            self.lines.append(f"    # {note}")
        self.lines += [f"    return {render(e, self.subst if features else None)}", "", ""]
        return name

    def lets(self) -> str:
        body = ["def _lets(d, L):", "    # the length, then each `let` of the spec in order", '    e = {"L": L}']
        for let in self.model.pattern.lets:
            body.append(f"    e[{checked_name(let.name)!r}] = {render(let.value)}  # let {let.name} = {source_text(self.text, let.value)}")
        body += ["    return e", "", ""]
        self.lines += body
        return "_lets"

    def solved(self, s: Solved, features: bool) -> str:
        pairs = [f"({checked_name(n)!r}, {self.fn('solve', x, features=features, comment=f'{n} = {source_text(self.text, x)}')})" for n, x in s.solved]
        residual = self.fn("rest", s.residual, features=features, comment=_describe(self.text, s.residual))
        return f"Solved(free={_tuple([repr(checked_name(n)) for n in s.free])}, solved={_tuple(pairs)}, residual={residual})"

    def partition(self, pm: PartitionModel) -> list[str]:
        part = pm.partition
        binders = []
        for b in part.binders:
            lo = self.fn("lo", b.lo, features=False, comment=f"{b.name} from {source_text(self.text, b.lo)}")
            hi = self.fn("hi", b.hi, features=False, comment=f"{b.name} below {source_text(self.text, b.hi)}")
            binders.append(f"Binder({checked_name(b.name)!r}, {lo}, {hi})")
        member = self.solved(pm.member, False)
        select = self.solved(pm.select, True) if pm.select is not None else "None"
        sources = []
        for src in (part.query, part.key):
            sources.append(f"SummarySource({src.pool!r})" if src.position is None else f"SummarySource(None, {self.fn('at', src.position)})")
        free = "None" if pm.free is None else self.fn("free", pm.free, comment="derived select: the keys a region must lie in")
        return [
            "PartitionSpec(",
            f"    name={checked_name(part.name)!r},",
            f"    binders={_tuple(binders)},",
            f"    member={member},",
            f"    select={select},",
            f"    order={_tuple([repr(k) for k in pm.order])},",
            f"    query={sources[0]},",
            f"    key={sources[1]},",
            f"    free={free},",
            "),",
        ]


def _tuple(items: list[str]) -> str:
    return "()" if not items else f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


def _indent(lines: list[str], n: int) -> list[str]:
    return [" " * n + line for line in lines]


def _describe(text: str, e: ast.Expr) -> str:
    if isinstance(e, ast.BoolLit):
        return "true" if e.value else "false"
    if isinstance(e, ast.BoolOp) and all(x.span.end > x.span.start for x in e.operands):
        return f" {e.op} ".join(source_text(text, x) for x in e.operands)
    return source_text(text, e)


def spec_code(model: PatternModel) -> str:
    """The spec's functions and its `SPEC = PatternSpec(...)`."""
    em = _Emitter(model)
    pattern = model.pattern
    lets = em.lets()
    requires = [f"({source_text(em.text, r)!r}, {em.fn('require', r, features=False)})" for r in pattern.requires]
    features = [f"Feature({f.key!r}, {f.side!r}, {em.fn('feature', f.expr, features=False)})," for f in model.features]
    softmaxes: list[str] = []
    for sm in model.softmaxes:
        directs = []
        for n, g in enumerate(sm.directs):
            note = "direct: " + " or ".join(source_text(em.text, x) if x.span.end > x.span.start else "true" for x in g.disjuncts)
            extras = [w for w, on in (("allowed keys", pattern.causal), ("not in an earlier group", n > 0)) if on]
            pred = em.fn("direct", g.pred, comment=note + (f" ({', '.join(extras)})" if extras else ""))
            orders = f"query_order={_tuple([repr(k) for k in g.query_order])}, key_order={_tuple([repr(k) for k in g.key_order])}"
            directs.append(f"DirectSpec({pred}, {orders}),")
        parts = [line for pm in sm.partitions for line in em.partition(pm)]
        softmaxes += ["SoftmaxSpec(", "    directs=(", *_indent(directs, 8), "    ),", "    partitions=(", *_indent(parts, 8), "    ),", "),"]
    lines = [
        "SPEC = PatternSpec(",
        f"    name={pattern.name!r},",
        f"    causal={pattern.causal!r},",
        f"    lets={lets},",
        f"    requires={_tuple(requires)},",
        "    features=(",
        *_indent(features, 8),
        "    ),",
        "    softmaxes=(",
        *_indent(softmaxes, 8),
        "    ),",
        f"    mix={pattern.mix!r},",
        ")",
    ]
    body = "\n".join(em.lines).rstrip("\n")
    return body + "\n\n\n" + "\n".join(lines) + "\n"


def docstring_text(text: str) -> str:
    """Spec text safe inside a triple-quoted docstring (no escapes fire, no early close)."""
    out = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return "".join(ch if ch.isprintable() or ch == "\n" else f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}" for ch in out)
