"""The search space of `combiner explore`: direct sets and region families, as spec text.

Every candidate is written as `.cmb` text and goes through the normal pipeline (parse, analyze,
check, prove, cost), so what explore reports is what `combiner check` and `combiner cost` say
about the emitted file. Names that reach the text are validated identifiers.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import torch

from .. import ast, ir
from ..errors import CombinerError
from ..evaluate import let_values
from ..layout import build_layout

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
FAMILIES = ("blocks", "nested", "dyadic", "powers", "sdyadic", "colprefix", "rowsplit", "residues", "rows_at")
MAX_CONSTANT = 4096  # literals of the source above this are not tried as sizes


def identifier(text: str) -> str:
    """`text` when it is a valid pattern / partition / let name, else a CombinerError."""
    if not NAME.match(text):
        raise CombinerError(f"explore: {text!r} is not a valid name ([A-Za-z_][A-Za-z0-9_]*)")
    return text


@dataclass(frozen=True)
class Part:
    """One partition of a family: its header, member, the select templates to try, the summary."""

    header: str  # e.g. "block[r in 0 .. cdiv(L, s)]"
    member: str
    selects: tuple[str, ...]
    summary: str | None = None  # None: the default pooled summary


@dataclass(frozen=True)
class Family:
    tag: str  # e.g. "blocks(s)"
    kind: str  # one of FAMILIES
    lets: tuple[tuple[str, str], ...]
    parts: tuple[Part, ...]
    joint: bool = False  # the partitions form one laminar family together: written selects only
    provable: bool = True  # False: the prover does not take its rules today; explore does not try


@dataclass(frozen=True)
class DirectSet:
    tag: str  # "all", "d1+d2", "window(64)"
    text: str


@dataclass(frozen=True)
class Source:
    """What explore reads from a sparse pattern: name, mode, lets, direct text and its pieces."""

    name: str
    causal: bool
    lets: tuple[tuple[str, str], ...]
    direct: str
    disjuncts: tuple[str, ...]
    sizes: tuple[str, ...]  # expressions tried as block sizes: int lets, then new lets
    constants: tuple[int, ...]


def _text(pattern: ir.Pattern, e: ast.Expr) -> str:
    return pattern.source.text[e.span.start : e.span.end]


def _literals(e: ast.Expr) -> list[int]:
    out = [e.value] if isinstance(e, ast.IntLit) else []
    for child in (getattr(e, f, None) for f in ("operand", "left", "right")):
        if isinstance(child, ast.Expr):
            out += _literals(child)
    for many in (getattr(e, f, ()) for f in ("operands", "args")):
        for child in many:
            out += _literals(child)
    return out


def read_source(pattern: ir.Pattern) -> Source:
    """The parts of a sparse pattern (one `direct:` rule, no partitions) explore builds on."""
    if len(pattern.plans) != 1 or pattern.plans[0].partitions or pattern.requires:
        raise CombinerError(f"{pattern.source.name}: explore takes a sparse pattern: one `direct:` rule, no partitions, plans or requires")
    direct = pattern.plans[0].direct
    lets = tuple((let.name, _text(pattern, let.value)) for let in pattern.lets)
    values = let_values(pattern, 64)
    sizes = [n for n, _ in lets if isinstance(values[n], int) and not isinstance(values[n], bool)]
    taken = {n for n, _ in lets}
    if not any(t == "isqrt(L)" for _, t in lets):
        new = next(n for n in ("s", "w", "s2", "s3") if n not in taken)
        lets += ((new, "isqrt(L)"),)
        sizes.append(new)
    disjuncts = tuple(_text(pattern, d) for d in direct.operands) if isinstance(direct, ast.BoolOp) and direct.op == "or" else ()
    constants = tuple(sorted({v for v in _literals(direct) if 2 <= v <= MAX_CONSTANT}))
    return Source(pattern.name, pattern.causal, lets, _text(pattern, direct), disjuncts, tuple(sizes), constants)


def _holds_diagonal(src: Source, direct: str, lengths: tuple[int, ...]) -> bool:
    from .. import api

    spec = api.load(text=render(src, "probe", DirectSet("probe", direct), ()))
    for L in lengths:
        lay = build_layout(spec.pattern, L)
        if not bool(torch.diagonal(lay.plans[0].direct).all()):
            return False
    return True


def direct_sets(src: Source, keep: str, lengths: tuple[int, ...]) -> list[DirectSet]:
    """The source's own direct set, unions of its `or` disjuncts that hold j = i, or a window."""
    if keep.startswith("window:"):
        w = int(keep.split(":", 1)[1])
        return [DirectSet(f"window({w})", f"0 <= i - j < {w}" if src.causal else f"abs(i - j) < {w}")]
    out = [DirectSet("all", src.direct)] if keep in ("all", "both") else []
    if keep in ("disjuncts", "both") and len(src.disjuncts) > 1:
        for k in range(1, len(src.disjuncts)):
            for combo in itertools.combinations(range(len(src.disjuncts)), k):
                text = " or ".join(src.disjuncts[c] for c in combo)
                if _holds_diagonal(src, text, lengths):
                    out.append(DirectSet("+".join(f"d{c + 1}" for c in combo), text))
    return out


def _fenwick(boundary: str) -> str:
    b = boundary if re.fullmatch(r"[A-Za-z_0-9]+", boundary) else f"({boundary})"
    return f"({b} // 2 ** l) % 2 == 1 and r == {b} // 2 ** l - 1"


def families(src: Source, summaries: tuple[str, ...], kinds: tuple[str, ...]) -> list[Family]:
    """Laminar region families with sizes from the source's lets, isqrt(L) and its constants."""
    pool = next((p for p in summaries if p != "at"), "max")
    pooled = None if pool == "max" else pool
    sizes = [*src.sizes, *(str(c) for c in src.constants)]
    out: list[Family] = []
    for s in sizes:
        if "blocks" in kinds:
            sel = f"r < i // {s}" if src.causal else f"r != i // {s}"
            out.append(Family(f"blocks({s})", "blocks", (), (Part(f"block[r in 0 .. cdiv(L, {s})]", f"j // {s} == r", (sel,), pooled),)))
        if "nested" in kinds:
            out.append(_nested(src, s, pooled))
        if "colprefix" in kinds and src.causal:
            part = Part(f"colprefix[c in 0 .. {s}, a in 0 .. cdiv(L, {s})]", f"j % {s} == c and j // {s} < a", (f"a == i // {s} and c != i % {s}",), pooled)
            out.append(Family(f"colprefix({s})", "colprefix", (), (part,)))
        if "rowsplit" in kinds and src.causal:
            row = (f"r < i // {s} and c == i % {s}",)
            left = Part(f"rowleft[r in 0 .. cdiv(L, {s}), c in 0 .. {s}]", f"j // {s} == r and j % {s} < c", row, pooled)
            right = Part(f"rowright[r in 0 .. cdiv(L, {s}), c in 0 .. {s}]", f"j // {s} == r and j % {s} > c", row, pooled)
            out.append(Family(f"rowsplit({s})", "rowsplit", (), (left, right)))
        if "residues" in kinds:
            out.append(Family(f"residues({s})", "residues", (), (Part(f"stride[c in 0 .. {s}]", f"j % {s} == c", (), pooled),)))
        if "rows_at" in kinds and "at" in summaries and src.causal:
            at = f"at(r * {s} + i % {s})"
            part = Part(f"row[r in 0 .. cdiv(L, {s})]", f"j // {s} == r", (f"r < i // {s}",), f"query = {at}, key = {at}")
            out.append(Family(f"rows_at({s})", "rows_at", (), (part,)))
    bounds = ["i", *(f"{s} * (i // {s})" for s in src.sizes), *(f"max(i - {c - 1}, 0)" for c in src.constants)]
    if "dyadic" in kinds and src.causal:
        taken = {n for n, _ in src.lets}
        K = next(n for n in ("K", "K2", "levels") if n not in taken)
        part = Part(f"dyadic[l in 0 .. {K}, r in 0 .. cdiv(L, 2 ** l)]", "j // 2 ** l == r", tuple(_fenwick(b) for b in bounds), pooled)
        out.append(Family("dyadic", "dyadic", ((K, "clog2(L)"),), (part,)))
    if "powers" in kinds and src.causal:  # a literal base (2 is `dyadic`); a size let gives `nested`
        out += [_powers(src, str(c), bounds, pooled) for c in src.constants if c >= 3]
    if "sdyadic" in kinds and src.causal:
        out += [_sdyadic(src, s, pooled) for s in sizes]
    return out


def _fresh(src: Source, name: str) -> str:
    """A let name for a family, clear of the source's lets (family lets are shared by equal text)."""
    taken = {n for n, _ in src.lets}
    return next(n for n in (name, f"{name}_", f"{name}__") if n not in taken)


def _nested(src: Source, s: str, pooled: str | None) -> Family:
    """Blocks of s inside blocks of s * max(s, 2) (s ** 2 once s >= 2; the factor 2 keeps the two
    levels distinct at s = 1): earlier big blocks whole, then the earlier small blocks of the
    query's big block."""
    lets: tuple[tuple[str, str], ...] = ()
    if s.isdigit():
        m, t = s, str(int(s) * max(int(s), 2))
    else:
        m, t = _fresh(src, f"m_{s}"), _fresh(src, f"t_{s}")
        lets = ((m, f"max({s}, 2)"), (t, f"{s} * {m}"))
    if src.causal:
        big, small = f"r < i // {t}", f"{m} * (i // {t}) <= r and r < i // {s}"
    else:
        big, small = f"r != i // {t}", f"r // {m} == i // {t} and r != i // {s}"
    parts = (
        Part(f"coarse[r in 0 .. cdiv(L, {t})]", f"j // {t} == r", (big,), pooled),
        Part(f"fine[r in 0 .. cdiv(L, {s})]", f"j // {s} == r", (small,), pooled),
    )
    # two partitions (one per level) keep every rule linear in the blocks, which the prover takes;
    # derived selection works per partition, so it would pick both levels: `joint`
    return Family(f"nested({s})", "nested", lets, parts, joint=True)


def _powers(src: Source, b: str, bounds: list[str], pooled: str | None) -> Family:
    """Blocks of b ** l for every level l: singletons, b, b ** 2, ... up to b ** K >= L, which
    K * ilog2(b) >= clog2(L) guarantees without a log base b."""
    K = _fresh(src, f"lv_{b}")
    lets = ((K, f"cdiv(clog2(L), ilog2({b}))"),)

    def digits(B: str) -> str:  # the base-b digits of B: level l takes the regions below B under its parent
        B = B if re.fullmatch(r"[A-Za-z_0-9]+", B) else f"({B})"
        return f"{B} // {b} ** (l + 1) * {b} <= r and r < {B} // {b} ** l"

    part = Part(f"nest[l in 0 .. {K}, r in 0 .. cdiv(L, {b} ** l)]", f"j // {b} ** l == r", tuple(digits(B) for B in bounds), pooled)
    # `b ** l` with b >= 3: the prover's power axioms do not settle C2 within its budget
    return Family(f"powers({b})", "powers", lets, (part,), provable=False)


def _sdyadic(src: Source, s: str, pooled: str | None) -> Family:
    """Blocks of s * 2 ** l: the Fenwick decomposition of the earlier blocks of size s."""
    K = _fresh(src, f"ls_{s}")
    sel = f"(i // {s} // 2 ** l) % 2 == 1 and r == i // {s} // 2 ** l - 1"
    part = Part(f"sdyadic[l in 0 .. {K}, r in 0 .. cdiv(L, {s} * 2 ** l)]", f"j // ({s} * 2 ** l) == r", (sel,), pooled)
    # a block size s * 2 ** l is non-linear unless s is a literal: outside the prover's reach
    return Family(f"sdyadic({s})", "sdyadic", ((K, f"clog2(cdiv(L, {s}))"),), (part,), provable=s.isdigit())


def render(src: Source, name: str, direct: DirectSet, plans: tuple[tuple[Family, tuple[str | None, ...]], ...], mix: str | None = None) -> str:
    """Spec text: the source's lets, the family lets, and one plan per (family, chosen selects)."""
    lines = [f"pattern {identifier(name)}:", "    causal" if src.causal else "    bidirectional"]
    lets = list(src.lets)
    for fam, _ in plans:
        lets += [x for x in fam.lets if x not in lets]
    lines += [f"    let {identifier(n)} = {t}" for n, t in lets]
    pad = "    " if mix is None else "        "
    for k, (fam, selects) in enumerate(plans):
        if mix is not None:
            lines.append(f"    plan {identifier(f'p{k + 1}_{fam.kind}')}:")
        lines.append(f"{pad}direct: {direct.text}")
        for part, sel in zip(fam.parts, selects, strict=True):
            lines.append(f"{pad}partition {part.header}:")
            lines.append(f"{pad}    member: {part.member}")
            if sel is not None:
                lines.append(f"{pad}    select: {sel}")
            if part.summary is not None:
                lines.append(f"{pad}    summary: {part.summary}")
    if not plans:
        lines.append(f"    direct: {direct.text}")
    if mix is not None:
        lines.append(f"    mix: {mix}")
    return "\n".join(lines) + "\n"
