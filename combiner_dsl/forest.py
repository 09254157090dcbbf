"""The containment forest of each partition at one length (networkx): laminar or not, height,
sizes; `combiner tree` prints it. The forest itself comes from `laminar.py`."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any

import networkx as nx
import torch

from . import ast, ir
from .laminar import parents
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
