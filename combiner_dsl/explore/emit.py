"""Writing explore's results: the ranked table, JSON, and the best candidates as `.cmb` files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import ExploreResult
from .rank import Candidate


def write_specs(result: ExploreResult, directory: str, top: int) -> list[Path]:
    """The `top` best holding candidates, one `<name>.cmb` each (names are validated identifiers)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for rank, c in enumerate(result.holding[:top], 1):
        p = out / f"{c.name}.cmb"
        head = f"# explore rank {rank} from {result.source}: {c.strength}, pairs ~ {c.order}, {c.pairs} pairs at L={result.L}\n"
        p.write_text(head + c.text)
        paths.append(p)
    return paths


def to_json(result: ExploreResult, show_all: bool) -> dict[str, Any]:
    cands = result.candidates if show_all else result.holding
    return {"source": result.source, "L": result.L, "candidates": [c.to_json() for c in cands]}


def _row(rank: int, c: Candidate) -> list[str]:
    pairs = f"{c.pairs:,}" if c.pairs is not None else "-"
    width = str(c.logits_max) if c.logits_max is not None else "-"
    units = f"{c.units:,}" if c.units is not None else "-"
    if c.verdict.status == "refuted" and c.verdict.witness:
        w = c.verdict.witness
        status = f"refuted {w.check} (L={w.L}, i={w.i}, j={w.j})"
    else:
        status = c.strength
    faithful = f"{c.fidelity:.0%}" if c.fidelity is not None else "-"
    return [str(rank), c.name, c.direct, " + ".join(c.families), status, c.order or "-", faithful, pairs, width, units, "*" if c.pareto else ""]


def print_table(result: ExploreResult, top: int, show_all: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.source}: candidates ranked by proof, order, fidelity, pairs at L={result.L}", title_justify="left")
    for col in ("#", "candidate", "direct", "regions", "verdict", "order", "fidelity", "pairs", "widest softmax", "summary pairs", "pareto"):
        table.add_column(col, justify="left" if col in ("candidate", "direct", "regions", "verdict", "order") else "right")
    rows = result.candidates if show_all else result.holding[:top]
    for rank, c in enumerate(rows, 1):
        table.add_row(*_row(rank, c))
    Console(width=max(Console().width, 160)).print(table)
