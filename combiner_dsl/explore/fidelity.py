"""Fidelity of a factorization to its sparse source: the paper's recipe, checked query by query.

The paper turns a sparse pattern into a Combiner by keeping a local direct set and letting each
key the source attends outside it stand for the region it ends: "one summary per source key it
replaces". For query i at length L, let X_i be the source's direct keys that the candidate drops
(source direct set minus the candidate's direct set, both inside the keys i may see). The query is
*faithful* when the map "selected region -> its last key (max j)" is a one-to-one correspondence
onto X_i: every selected region ends at a dropped source key, and every dropped key ends exactly
one selected region. A query with nothing dropped and nothing selected is faithful. The score is
the fraction of faithful queries over the screening lengths; 1.0 is the recipe's factorization.
"""

from __future__ import annotations

import torch

from .. import ir
from ..layout import Layout, build_layout


def region_ends(member: torch.Tensor) -> torch.Tensor:
    """[R, L] one-hot of each non-empty region's last key (an empty region has none)."""
    L = member.shape[1]
    last = torch.where(member, torch.arange(L)[None, :], -1).max(dim=1).values if L else torch.zeros(0, dtype=torch.int64)
    return (torch.arange(L)[None, :] == last[:, None]) & member.any(dim=1)[:, None]


def faithful_queries(source: Layout, candidate: Layout) -> torch.Tensor:
    """[L] bool: the queries for which selected regions and dropped source keys correspond one to one."""
    L = candidate.L
    kept = torch.zeros(L, L, dtype=torch.bool)
    ends = torch.zeros(L, L, dtype=torch.int64)  # [i, j]: selected units of i (every plan) that end at j
    for pl in candidate.plans:
        kept |= pl.direct
        for rs in pl.regions:
            ends += rs.select.long() @ region_ends(rs.member).long()
    dropped = source.plans[0].direct & ~kept
    return (ends == dropped.long()).all(dim=1)


def fidelity(source: ir.Pattern, candidate: ir.Pattern, lengths: tuple[int, ...]) -> float:
    """Fraction of faithful queries over every (L, i) of the given lengths."""
    good = total = 0
    for L in lengths:
        ok = faithful_queries(build_layout(source, L), build_layout(candidate, L))
        good += int(ok.sum())
        total += L
    return good / total if total else 1.0
