"""Laminar families of key sets: their containment forest, and derived selection on it.

A family of regions is laminar when any two are disjoint or nested; its containment relation is
then a forest. With every singleton in the family, the inclusion-maximal regions inside any key
set are disjoint and cover it: that is why derived selection over a laminar family never fails.
The checker (`layout.py`), `combiner tree` and the explorer all derive selections here; the
planner walks the same forest tile by tile (`runtime/derived.py`).
"""

from __future__ import annotations

import torch


def parents(member: torch.Tensor) -> tuple[list[int], tuple[int, int] | None]:
    """Each row's parent (the smallest strictly larger row holding it; -1 for a root) when the rows
    form a laminar family of distinct sets, else two crossing (or equal) rows.

    Rows are taken largest first; `owner[j]` is the smallest row so far holding key j. A new row is
    nested exactly when all its keys have one owner (that is its parent); otherwise the smallest of
    their owners meets it without holding it: the two cross. Linear in the total size of the rows.
    """
    parent, cross, _ = _laminar(member)
    return parent, cross


def _laminar(member: torch.Tensor) -> tuple[list[int], tuple[int, int] | None, torch.Tensor]:
    """`parents`, plus each key's smallest row (R for a key in no row)."""
    R, L = member.shape
    sizes = member.sum(dim=1)
    rank = torch.empty(R, dtype=torch.int64)  # rows largest first, ties by index: the order taken below
    rank[torch.argsort(-sizes * (R + 1) + torch.arange(R))] = torch.arange(R)
    key, row = member.T.nonzero(as_tuple=True)  # by key, then by row
    by = torch.argsort(key * (R + 1) + rank[row], stable=True)
    key, row = key[by], row[by]
    # within one key's run, the row before is the owner the sequential pass would find for it
    before = torch.full_like(row, -1)
    same = key[1:] == key[:-1]
    before[1:] = torch.where(same, row[:-1], -1)
    parent = torch.full((R,), -1, dtype=torch.int64)
    parent[row] = before  # any entry: all of a row's entries agree when the family is laminar
    agree = bool((before == parent[row]).all())
    equal = (parent >= 0) & (sizes[parent.clamp(min=0)] == sizes)
    if agree and not bool(equal.any()):
        owner = torch.full((L,), R, dtype=torch.int64)
        last = torch.ones_like(key, dtype=torch.bool)
        last[:-1] = ~same
        owner[key[last]] = row[last]
        return parent.tolist(), None, owner
    return _laminar_witness(member)


def _laminar_witness(member: torch.Tensor) -> tuple[list[int], tuple[int, int] | None, torch.Tensor]:
    """The sequential pass, for a family that is not laminar: it names the first crossing pair."""
    sizes = member.sum(dim=1).tolist()
    order = sorted(range(member.shape[0]), key=lambda r: (-sizes[r], r))
    owner = torch.full((member.shape[1],), -1, dtype=torch.int64)
    parent = [-1] * member.shape[0]
    for r in order:
        keys = member[r].nonzero().flatten()
        owners = torch.unique(owner[keys]).tolist()
        if len(owners) > 1:
            worst = min((o for o in owners if o >= 0), key=lambda o: sizes[o])
            return parent, (worst, r), owner
        if owners and owners[0] >= 0 and sizes[owners[0]] == sizes[r]:
            return parent, (owners[0], r), owner  # the same set twice
        parent[r] = owners[0] if owners else -1
        owner[keys] = r
    owner[owner < 0] = member.shape[0]
    return parent, None, owner


def forest_selection(member: torch.Tensor, free: torch.Tensor) -> torch.Tensor | None:
    """Derived selection over a laminar family of non-empty rows: [Q, R], query i selects row r
    when r lies inside free[i] and its parent does not. None when the family is not laminar.

    Equal rows are one node and are selected together (two selected copies of one set are the
    overlap the dense derivation reports as C1). Work is O(Q * L + Q * R) instead of the dense
    O(Q * L * R): each key is checked once, at its smallest row, and insideness then flows up the
    forest one depth at a time.
    """
    uniq, back = torch.unique(member, dim=0, return_inverse=True)
    if uniq.shape[0] < member.shape[0]:
        got = _forest_selection(uniq, free)
        return None if got is None else got[:, back]
    return _forest_selection(member, free)


def _forest_selection(member: torch.Tensor, free: torch.Tensor) -> torch.Tensor | None:
    parent, cross, owner = _laminar(member)
    if cross is not None:
        return None
    R = member.shape[0]
    par = torch.tensor(parent, dtype=torch.int64)
    bad = torch.zeros(free.shape[0], R + 1)
    bad.index_add_(1, owner, (~free).float())
    inside = (bad[:, :R] == 0).to(torch.int8)
    depth = torch.zeros(R, dtype=torch.int64)
    up = par.clone()
    while bool((up >= 0).any()):  # one step per level of the forest
        depth += (up >= 0).long()
        up = torch.where(up >= 0, par[up.clamp(min=0)], -1)
    for d in range(int(depth.max()) if R else 0, 0, -1):
        nodes = (depth == d).nonzero().flatten()
        inside.scatter_reduce_(1, par[nodes].expand(inside.shape[0], -1), inside[:, nodes], reduce="amin", include_self=True)
    has_parent = par >= 0
    parent_inside = torch.zeros_like(inside)
    parent_inside[:, has_parent] = inside[:, par[has_parent]]
    return (inside == 1) & (parent_inside == 0)
