"""Layout equality of two specs: same direct set and same selected member-sets for every query."""

from __future__ import annotations

from collections.abc import Iterable

from combiner_dsl import ir
from combiner_dsl.layout import build_layout

ACCEPTANCE_LENGTHS = (*range(1, 65), 100, 127, 128, 129)


def plan_views(pattern: ir.Pattern, L: int) -> list[tuple[bytes, list[frozenset[frozenset[int]]]]]:
    """Per plan: the direct mask's bytes, and per query the set of key sets it selects."""
    out = []
    for pl in build_layout(pattern, L).plans:
        members = [[frozenset(rs.member[r].nonzero().flatten().tolist()) for r in range(rs.member.shape[0])] for rs in pl.regions]
        per_query = []
        for i in range(L):
            chosen = {members[k][r] for k, rs in enumerate(pl.regions) for r in rs.select[i].nonzero().flatten().tolist()}
            per_query.append(frozenset(chosen))
        out.append((bytes(pl.direct.flatten().to("cpu").numpy().tobytes()), per_query))
    return out


def first_difference(a: ir.Pattern, b: ir.Pattern, lengths: Iterable[int] = ACCEPTANCE_LENGTHS) -> str | None:
    """None when the layouts agree at every length (plans compared as a set), else where they part."""
    for L in lengths:
        va, vb = plan_views(a, L), plan_views(b, L)
        if len(va) != len(vb):
            return f"L={L}: {len(va)} plans against {len(vb)}"
        unmatched = list(vb)
        for view in va:
            if view not in unmatched:
                direct_ok = any(view[0] == u[0] for u in unmatched)
                return f"L={L}: plan differs ({'selections' if direct_ok else 'direct set'})"
            unmatched.remove(view)
    return None
