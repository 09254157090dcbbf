"""The containment forest of each partition at one length (networkx): laminar or not, height, sizes.

A family of regions is laminar when any two are disjoint or nested; its containment relation is
then a forest. With every singleton in the family, the inclusion-maximal regions inside any key
set are disjoint and cover it: that is why derived selection over a laminar family never fails.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any

import networkx as nx
import torch

from . import ast, ir
from .layout import build_layout


@dataclass(frozen=True)
class PartitionForest:
    plan: str
    partition: str
    regions: int  # non-empty regions
    distinct: int  # distinct key sets among them
    laminar: bool
    crossing: tuple[str, str, int, int, int] | None  # two crossing regions, a key in both, one in each alone
    height: int  # nodes on the longest root-to-leaf chain (0 when empty)
    roots: int
    sizes: tuple[tuple[int, int], ...]  # (region size, how many), ascending
    graph: nx.DiGraph  # parent -> child, over distinct key sets, named by their first region

    def to_json(self) -> dict[str, Any]:
        cross = None
        if self.crossing:
            a, b, both, only_a, only_b = self.crossing
            cross = {"regions": [a, b], "in_both": both, "only_first": only_a, "only_second": only_b}
        return {"plan": self.plan, "partition": self.partition, "regions": self.regions, "distinct": self.distinct, "laminar": self.laminar,
                "crossing": cross, "height": self.height, "roots": self.roots, "sizes": [list(s) for s in self.sizes]}


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


def family_forest(member: torch.Tensor, names: list[str]) -> tuple[nx.DiGraph, tuple[int, int] | None]:
    """The containment forest of a family of key sets (rows of `member`), or a crossing pair of rows."""
    parent, cross = parents(member)
    if cross is not None:
        return nx.DiGraph(), cross
    g = nx.DiGraph()
    sizes = member.sum(dim=1).tolist()
    for r, name in enumerate(names):
        g.add_node(name, size=int(sizes[r]))
    g.add_edges_from((names[p], names[r]) for r, p in enumerate(parent) if p >= 0)
    return g, None


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
    sizes = member.sum(dim=1)
    bad = torch.zeros(free.shape[0], R + 1)
    bad.index_add_(1, owner, (~free).float())
    inside = (bad[:, :R] == 0).to(torch.int8)
    depth = torch.zeros(R, dtype=torch.int64)
    for r in sorted(range(R), key=lambda r: -int(sizes[r])):
        depth[r] = depth[parent[r]] + 1 if parent[r] >= 0 else 0
    for d in range(int(depth.max()) if R else 0, 0, -1):
        nodes = (depth == d).nonzero().flatten()
        inside.scatter_reduce_(1, par[nodes].expand(inside.shape[0], -1), inside[:, nodes], reduce="amin", include_self=True)
    has_parent = par >= 0
    parent_inside = torch.zeros_like(inside)
    parent_inside[:, has_parent] = inside[:, par[has_parent]]
    return (inside == 1) & (parent_inside == 0)


def _members_only(pattern: ir.Pattern) -> ir.Pattern:
    """The pattern with derived selections replaced by `false`: the forest needs members only, and
    deriving a selection over a crossing family would stop at its first overlap."""
    plans = tuple(
        dataclasses.replace(pl, partitions=tuple(dataclasses.replace(p, select=p.select or ast.BoolLit(False)) for p in pl.partitions)) for pl in pattern.plans
    )
    return dataclasses.replace(pattern, plans=plans)


def forests(pattern: ir.Pattern, L: int) -> list[PartitionForest]:
    out = []
    for pl in build_layout(_members_only(pattern), L).plans:
        for rs in pl.regions:
            keep = [r for r in range(rs.member.shape[0]) if bool(rs.member[r].any())]
            firsts: dict[bytes, int] = {}
            for r in keep:
                firsts.setdefault(bytes(rs.member[r].to(torch.uint8).tolist()), r)
            uniq = sorted(firsts.values())
            names = [rs.name(r) for r in uniq]
            member = rs.member[uniq] if uniq else torch.zeros(0, L, dtype=torch.bool)
            graph, cross = family_forest(member, names)
            crossing = None
            if cross:
                a, b = cross
                both = int((member[a] & member[b]).nonzero()[0])
                only_a = int((member[a] & ~member[b]).nonzero()[0])
                only_b = int((member[b] & ~member[a]).nonzero()[0])
                crossing = (names[a], names[b], both, only_a, only_b)
            height = nx.dag_longest_path_length(graph) + 1 if graph.number_of_nodes() else 0
            roots = sum(1 for n in graph.nodes if graph.in_degree(n) == 0)
            sizes = tuple(sorted(Counter(int(x) for x in rs.member[keep].sum(dim=1).tolist()).items()))
            out.append(PartitionForest(pl.plan.name, rs.partition.name, len(keep), len(uniq), cross is None, crossing, height if cross is None else 0, roots, sizes, graph))
    return out


def describe(f: PartitionForest) -> str:
    where = f"{f.partition}" if f.plan == "main" else f"{f.plan}.{f.partition}"
    sizes = ", ".join(f"{n}x{s}" for s, n in f.sizes) or "none"
    if not f.laminar and f.crossing:
        a, b, both, only_a, only_b = f.crossing
        return f"{where}: NOT laminar: {a} and {b} cross (both hold key {both}; only {a} holds {only_a}; only {b} holds {only_b}); {f.regions} regions, sizes {sizes}"
    return f"{where}: laminar forest, {f.regions} regions ({f.distinct} distinct), {f.roots} roots, height {f.height}; sizes {sizes}"
