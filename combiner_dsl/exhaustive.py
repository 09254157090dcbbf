"""The exhaustive checker: C0-C3 at concrete lengths, on tensors, with a witness for any failure."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from . import ir
from .errors import CoverageError
from .evaluate import accepts
from .layout import Layout, PlanLayout, RegionSet, build_layout
from .verdict import Verdict, Witness


def default_lengths() -> tuple[int, ...]:
    """Every L up to 64, lengths around powers of two up to 1024, and a few that divide nothing."""
    around = {n + d for k in range(7, 11) for n in (2**k,) for d in (-1, 0, 1)}
    return tuple(sorted(set(range(1, 65)) | around | {100, 127, 1000}))


def _first(mask: torch.Tensor) -> tuple[int, int] | None:
    """Smallest (i, j) in row-major order where mask holds."""
    hits = mask.nonzero()
    if hits.numel() == 0:
        return None
    i, j = hits[0].tolist()
    return int(i), int(j)


def _holding(rs: RegionSet, i: int, j: int) -> list[str]:
    rows = (rs.select[i] & rs.member[:, j]).nonzero().flatten().tolist()
    return [rs.name(r) for r in rows]


def _check_plan(layout: Layout, pl: PlanLayout) -> Witness | None:
    L, allowed, plan = layout.L, layout.allowed, pl.plan.name
    cov = torch.zeros(L, L)
    leaks: list[tuple[int, int, RegionSet]] = []
    for rs in pl.regions:
        if rs.member.shape[0] == 0:
            continue
        count = rs.select.float() @ rs.member.float()
        cov += count
        hit = _first((count > 0) & ~allowed)
        if hit:
            leaks.append((*hit, rs))
    if leaks:
        i, j, rs = min(leaks, key=lambda t: (t[0], t[1]))
        return Witness("C0", L, i, j, tuple(_holding(rs, i, j)[:1]), plan)
    mult = cov + pl.direct.float()
    hit = _first((mult > 1) & allowed)
    if hit:
        i, j = hit
        names = (["direct"] if bool(pl.direct[i, j]) else []) + [n for rs in pl.regions for n in _holding(rs, i, j)]
        return Witness("C1", L, i, j, tuple(names[:2]), plan)
    hit = _first((mult == 0) & allowed)
    if hit:
        return Witness("C2", L, hit[0], hit[1], (), plan)
    return _check_summaries(layout, pl)


def _check_summaries(layout: Layout, pl: PlanLayout) -> Witness | None:
    L = layout.L
    for rs in pl.regions:
        for at in (rs.query_at, rs.key_at):
            if at is None:
                continue
            in_range = (at >= 0) & (at < L)
            inside = torch.zeros_like(rs.select)
            rows = torch.arange(at.shape[1])[None, :].expand_as(at)
            inside[in_range] = rs.member[rows[in_range], at[in_range]]
            hit = _first(rs.select & ~inside)
            if hit:
                i, r = hit
                return Witness("C3", L, i, int(at[i, r]), (rs.name(r),), pl.plan.name)
    return None


def check_layout(layout: Layout) -> Witness | None:
    """The most serious failure over every plan (C0 before C1 before C2 before C3, then the smallest i, j)."""
    found = [w for w in (_check_plan(layout, pl) for pl in layout.plans) if w is not None]
    return min(found, key=lambda w: (w.check, w.i, w.j if w.j is not None else -1)) if found else None


def check_length(pattern: ir.Pattern, L: int) -> Witness | None:
    """The first failure of C0-C3 at length L (C0 before C1 before C2 before C3), or None; a
    length the requires reject has no failure."""
    if not accepts(pattern, L):
        return None
    try:
        return check_layout(build_layout(pattern, L))
    except CoverageError as err:
        if err.witness is None:
            raise
        return err.witness


def check_lengths(pattern: ir.Pattern, lengths: Iterable[int] | None = None) -> Verdict:
    """Exhaustive verdict over `lengths` (default: `default_lengths()`), skipping rejected lengths.

    A refutation reports the most serious failure found at any length tried (a leak before an
    overlap before a gap before a misplaced summary), at the smallest length that shows it.
    """
    tried: list[int] = []
    derived: tuple[str, ...] = ()
    worst: Witness | None = None
    unsupported: str | None = None
    for L in sorted(set(lengths if lengths is not None else default_lengths())):
        if not accepts(pattern, L):
            continue
        try:
            layout = build_layout(pattern, L)
            derived = derived or tuple(d for pl in layout.plans for d in pl.derived)
            witness = check_layout(layout)
            unsupported = unsupported or next((rs.unsupported for pl in layout.plans for rs in pl.regions if rs.unsupported), None)
        except CoverageError as err:
            if err.witness is None:
                raise
            witness = err.witness
        tried.append(L)
        if witness and (worst is None or witness.severity < worst.severity):
            worst = witness
        if worst and worst.severity == 0:
            break
    if worst:
        return Verdict("refuted", tuple(tried), worst, worst.explain(), derived=derived)
    if unsupported:
        return Verdict("unsupported", tuple(tried), None, f"cannot be compiled: {unsupported}", reason=unsupported, derived=derived)
    if not tried:
        return Verdict("checked", (), None, "no length tried is accepted by the requires", reason="no accepted length")
    return Verdict("checked", tuple(tried), None, f"full attention at every length tried ({len(tried)} lengths, up to L={tried[-1]})", derived=derived)
