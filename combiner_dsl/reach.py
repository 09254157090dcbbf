"""How many layers of a spec's attention graph it takes for every query to reach every key it may see.

The graph at length L has an edge j -> i when query i attends key j in one layer: directly, or
through a selected region that holds j. A key reaches a query in k layers when a path of at most
k edges joins them (a query attends itself through its own direct set or a layer's residual).
Sparse Transformer and BigBird argue with this number; a Combiner layer with full attention has 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from . import ir
from .errors import CombinerError
from .layout import build_layout

MAX_L = 4096


@dataclass(frozen=True)
class Reach:
    L: int
    layers: int | None  # None: some allowed pair is never connected
    pair: tuple[int, int] | None  # (i, j): the farthest pair, or one never connected
    path: tuple[int, ...]  # a shortest path from j to i (empty when never connected)
    graph: nx.DiGraph

    def to_json(self) -> dict[str, Any]:
        return {"L": self.L, "layers": self.layers if self.layers is not None else "never", "pair": list(self.pair) if self.pair else None, "path": list(self.path)}


def attention_graph(pattern: ir.Pattern, L: int) -> nx.DiGraph:
    """Edges j -> i for every key i attends in one layer (every plan of a mixture)."""
    lay = build_layout(pattern, L)
    seen = lay.allowed & False
    for pl in lay.plans:
        seen |= pl.direct
        for rs in pl.regions:
            seen |= (rs.select.float() @ rs.member.float()) > 0
    g = nx.DiGraph()
    g.add_nodes_from(range(L))
    g.add_edges_from((int(j), int(i)) for i, j in seen.nonzero().tolist())
    return g


def reach(pattern: ir.Pattern, L: int) -> Reach:
    """Layers needed for every allowed pair (j visible to i) to be joined; the worst pair and its path."""
    if not 1 <= L <= MAX_L:
        raise CombinerError(f"--L {L}: reach takes a length in 1..{MAX_L}")
    g = attention_graph(pattern, L)
    worst: tuple[int, int, int] | None = None
    for j in range(L):
        dist = nx.single_source_shortest_path_length(g, j)
        for i in range(j if pattern.causal else 0, L):
            if i == j:
                continue
            if i not in dist:
                return Reach(L, None, (i, j), (), g)
            d = dist[i]
            if worst is None or d > worst[0]:
                worst = (d, i, j)
    if worst is None:
        return Reach(L, 1, None, (), g)
    d, i, j = worst
    return Reach(L, max(d, 1), (i, j), tuple(nx.shortest_path(g, j, i)), g)


def export(g: nx.DiGraph, path: str) -> None:
    """GraphML for `.graphml`, Graphviz DOT for `.dot` / `.gv`."""
    p = Path(path)
    if p.suffix == ".graphml":
        nx.write_graphml(g, p)
    elif p.suffix in (".dot", ".gv"):
        lines = ["digraph attention {", *(f"  {n};" for n in g.nodes), *(f"  {a} -> {b};" for a, b in g.edges), "}"]
        p.write_text("\n".join(lines) + "\n")
    else:
        raise CombinerError(f"--graph {path}: write .graphml or .dot")
