"""The information flow of one query at one length: query -> direct keys and units -> keys.

C1 shows as a key with two routes, C2 as a key the query may see with none, C0 as a route to a
key it may not see.
"""

from __future__ import annotations

from typing import Any

from . import ir
from .errors import CombinerError
from .layout import build_layout


def _ranges(keys: list[int]) -> str:
    runs: list[list[int]] = []
    for k in keys:
        if runs and runs[-1][1] == k - 1:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in runs) or "none"


def query_flow(pattern: ir.Pattern, L: int, i: int) -> list[dict[str, Any]]:
    """Per plan: the routes (direct, or a selected unit) and every key's number of routes."""
    if not 0 <= i < L:
        raise CombinerError(f"--query {i}: a query is in 0..{L - 1} at L = {L}")
    lay = build_layout(pattern, L)
    out = []
    for pl in lay.plans:
        routes: list[tuple[str, list[int]]] = [("direct", pl.direct[i].nonzero().flatten().tolist())]
        for rs in pl.regions:
            for r in rs.select[i].nonzero().flatten().tolist():
                routes.append((rs.name(r), rs.member[r].nonzero().flatten().tolist()))
        count: dict[int, list[str]] = {}
        for name, keys in routes:
            for k in keys:
                count.setdefault(k, []).append(name)
        allowed = lay.allowed[i].nonzero().flatten().tolist()
        out.append({
            "plan": pl.plan.name, "routes": [{"via": n, "keys": k} for n, k in routes],
            "doubled": {k: v for k, v in sorted(count.items()) if len(v) > 1},
            "missing": [k for k in allowed if k not in count],
            "leaking": sorted(k for k in count if k not in set(allowed)),
        })
    return out


def render_flow(pattern: ir.Pattern, L: int, i: int) -> str:
    lines = [f"{pattern.name} at L={L}, query i={i}:"]
    for plan in query_flow(pattern, L, i):
        pad = "  "
        if plan["plan"] != "main":
            lines.append(f"  plan {plan['plan']}:")
            pad = "    "
        for route in plan["routes"]:
            lines.append(f"{pad}i={i} -> {route['via']:<24} -> keys {_ranges(route['keys'])}")
        for k, via in plan["doubled"].items():
            lines.append(f"{pad}C1: key {k} has two routes: {' and '.join(via)}")
        if plan["missing"]:
            lines.append(f"{pad}C2: no route to keys {_ranges(plan['missing'])}")
        if plan["leaking"]:
            lines.append(f"{pad}C0: routes to keys i may not see: {_ranges(plan['leaking'])}")
        if not (plan["doubled"] or plan["missing"] or plan["leaking"]):
            lines.append(f"{pad}every key i may see has exactly one route")
    return "\n".join(lines)
