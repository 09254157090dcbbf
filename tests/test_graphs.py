"""`combiner reach`, `tree` and `show --query`: attention-graph layers, containment forests, query flow."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import combiner_dsl
from combiner_dsl.cli import main
from combiner_dsl.forest import family_forest, forests
from combiner_dsl.laminar import forest_selection
from combiner_dsl.layout import allowed_mask, build_layout, derive_selection
from combiner_dsl.reach import reach

EX = Path(__file__).resolve().parent.parent / "examples"
COMBINER = sorted(EX.glob("*.cmb"))
CROSSING = "pattern windows:\n    causal\n    direct: j == i\n    partition win[r in 0 .. L]:\n        member: r <= j < r + 2\n"


@pytest.mark.parametrize("path", COMBINER, ids=lambda p: p.stem)
def test_every_combiner_example_reaches_in_one_layer(path: Path) -> None:
    for L in (16, 100):
        assert reach(combiner_dsl.load(path).pattern, L).layers == 1


def test_sparse_sources_reach_in_two_log_and_never() -> None:
    fixed = combiner_dsl.load(EX / "sparse/sparse_fixed.cmb").pattern
    logsparse = combiner_dsl.load(EX / "sparse/sparse_logsparse.cmb").pattern
    axial = combiner_dsl.load(EX / "sparse/sparse_axial.cmb").pattern
    assert {reach(fixed, L).layers for L in (16, 64, 100)} == {2}
    for L in (16, 64, 128):  # popcount of the farthest gap: clog2(L) at powers of two, ilog2(L) in general
        r = reach(logsparse, L)
        assert r.layers == (L - 1).bit_length() == (L.bit_length() - 1)
        assert len(r.path) == r.layers + 1 and all(r.graph.has_edge(a, b) for a, b in zip(r.path, r.path[1:], strict=False))
    r = reach(logsparse, 100)
    assert r.layers == 6
    never = reach(axial, 64)
    assert never.layers is None and never.pair is not None
    i, j = never.pair
    assert j <= i and not nx.has_path(never.graph, j, i)


def test_reach_cli_exports_graphml_and_dot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    g = tmp_path / "g.graphml"
    assert main(["reach", str(EX / "sparse/sparse_fixed.cmb"), "--L", "16", "--graph", str(g), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["layers"] == 2
    assert nx.read_graphml(g).number_of_nodes() == 16
    d = tmp_path / "g.dot"
    assert main(["reach", str(EX / "sparse/sparse_axial.cmb"), "--L", "16", "--graph", str(d)]) == 1
    assert "never" in capsys.readouterr().out and d.read_text().startswith("digraph")
    assert main(["reach", str(EX / "sparse/sparse_axial.cmb"), "--L", "16", "--graph", str(tmp_path / "g.png")]) == 2


def test_tree_reports_laminar_forests_and_a_crossing_pair(capsys: pytest.CaptureFixture[str]) -> None:
    (log,) = forests(combiner_dsl.load(EX / "combiner_logsparse.cmb").pattern, 64)
    assert log.laminar and log.height == 6 and log.sizes[-1] == (32, 2)
    (win,) = forests(combiner_dsl.load(text=CROSSING).pattern, 8)
    assert not win.laminar and win.crossing is not None
    _, _, both, only_a, only_b = win.crossing
    assert only_a < both < only_b or only_b < both < only_a
    assert main(["tree", str(EX / "combiner_mixture.cmb"), "--L", "64"]) == 0
    assert "laminar forest" in capsys.readouterr().out


def test_show_query_draws_routes_gaps_and_doubles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(EX / "sparse/sparse_fixed.cmb"), "--L", "16", "--query", "9"]) == 0
    assert "C2: no route to keys 0..2, 4..6" in capsys.readouterr().out
    assert main(["show", str(EX / "combiner_logsparse.cmb"), "--L", "16", "--query", "13"]) == 0
    assert "exactly one route" in capsys.readouterr().out
    assert main(["show", str(EX / "combiner_fixed.cmb"), "--L", "16", "--query", "16"]) == 2


@st.composite
def laminar_family(draw: st.DrawFn) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Nested intervals of a random key order, every singleton, and a direct set holding j = i."""
    L = draw(st.integers(1, 12))
    order = draw(st.permutations(list(range(L))))
    sets = [{k} for k in range(L)]

    def split(lo: int, hi: int, depth: int) -> None:
        if hi - lo < 2 or depth > 4:
            return
        cut = draw(st.integers(lo + 1, hi - 1))
        for a, b in ((lo, cut), (cut, hi)):
            if draw(st.booleans()) and set(order[a:b]) not in sets:  # a repeated set would be two maximal regions
                sets.append(set(order[a:b]))
            split(a, b, depth + 1)

    split(0, L, 0)
    member = torch.zeros(len(sets), L, dtype=torch.bool)
    for r, s in enumerate(sets):
        member[r, list(s)] = True
    direct = torch.tensor(draw(st.lists(st.booleans(), min_size=L * L, max_size=L * L))).reshape(L, L) | torch.eye(L, dtype=torch.bool)
    return L, member, direct


def dense_selection(member: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
    """The definition, independent of any forest: [Q, R], the regions inside free[i] that no other
    region inside free[i] strictly contains."""
    m = member.float()
    nonempty = member.any(dim=1)
    inside = ((~free).float() @ m.T == 0) & nonempty[None, :]
    subset = (m @ (~member).float().T) == 0  # [R, R]: v ⊆ w
    strict = subset & ~subset.T
    return inside & ~((inside.float() @ strict.float().T) > 0)


@settings(max_examples=60, deadline=None)
@given(laminar_family(), st.booleans())
def test_laminar_family_with_singletons_is_never_refuted(case: tuple[int, torch.Tensor, torch.Tensor], causal: bool) -> None:
    L, member, direct = case
    part = combiner_dsl.load(EX / "combiner_fixed.cmb").pattern.plans[0].partitions[0]
    allowed = allowed_mask(causal, L)
    direct = direct & allowed
    tuples = [(r,) for r in range(member.shape[0])]
    chosen, _ = derive_selection(member, member.any(dim=1), allowed & ~direct, part, tuples, L)  # raises on overlap
    routes = direct.long() + chosen.long() @ member.long()
    assert torch.equal(routes, allowed.long())  # disjoint and covering
    graph, cross = family_forest(member, [str(r) for r in range(member.shape[0])])
    assert cross is None and nx.is_forest(graph.to_undirected())
    assert torch.equal(dense_selection(member, allowed & ~direct), chosen)
    assert torch.equal(forest_selection(member, allowed & ~direct), chosen)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["combiner_logsparse", "combiner_axial_vertical", "combiner_axial_horizontal", "combiner_fixed"])
def test_forest_selection_equals_the_dense_derivation_on_the_examples(name: str) -> None:
    pattern = combiner_dsl.load(EX / f"{name}.cmb").pattern
    for L in (7, 64, 100):
        lay = build_layout(pattern, L)
        for rs in lay.plans[0].regions:
            keep = rs.member.any(dim=1)
            free = lay.allowed & ~lay.plans[0].direct
            dense = dense_selection(rs.member[keep], free)
            derived, _ = derive_selection(rs.member, keep, free, rs.partition, list(rs.binders), L)
            assert torch.equal(forest_selection(rs.member[keep], free), dense)  # type: ignore[arg-type]
            assert torch.equal(derived[:, keep], dense)
            assert torch.equal(rs.select[:, keep], dense)  # the written select is the derived one


@settings(max_examples=40, deadline=None)
@given(laminar_family(), st.data())
def test_a_crossing_family_is_reported(case: tuple[int, torch.Tensor, torch.Tensor], data: st.DataObject) -> None:
    L, member, _ = case
    if L < 3:
        return
    a = data.draw(st.integers(0, L - 3))
    extra = torch.zeros(2, L, dtype=torch.bool)
    extra[0, a : a + 2] = True
    extra[1, a + 1 : a + 3] = True
    fam = torch.unique(torch.cat([member, extra]), dim=0)  # distinct sets: a repeat is reported as such, not as a crossing
    _, cross = family_forest(fam, [str(r) for r in range(fam.shape[0])])
    assert cross is not None and forest_selection(fam, torch.ones(L, L, dtype=torch.bool)) is None
    x, y = fam[cross[0]], fam[cross[1]]
    assert bool((x & y).any()) and bool((x & ~y).any()) and bool((y & ~x).any())


@pytest.mark.parametrize("L", [2, 9, 100, 127, 128, 129])
def test_logsparse_layers_are_floor_log2_by_an_independent_bfs(L: int) -> None:
    """Edges j -> i for i - j in {0, 1, 2, 4, ...}: a shortest path takes one hop per set bit of the
    distance, so the layers are the largest popcount of a distance below L, floor(log2 L), which is
    below clog2(L) when L is not a power of two."""
    g = nx.DiGraph()
    g.add_nodes_from(range(L))
    g.add_edges_from((i - (1 << k), i) for i in range(L) for k in range(L.bit_length()) if i - (1 << k) >= 0)
    dist = dict(nx.all_pairs_shortest_path_length(g))
    layers = max(dist[j][i] for i in range(L) for j in range(i))
    popcount = max(bin(d).count("1") for d in range(1, L))
    assert layers == popcount == L.bit_length() - 1  # floor(log2 L)
    assert reach(combiner_dsl.load(EX / "sparse/sparse_logsparse.cmb").pattern, L).layers == layers
    if L & (L - 1):
        assert layers == (L - 1).bit_length() - 1  # clog2(L) - 1: one layer fewer than clog2 would say
