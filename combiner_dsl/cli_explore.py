"""`combiner explore`, `reach`, `tree` and `show --query`: the subcommands on the search and graph modules."""

from __future__ import annotations

import argparse
import json
from typing import Any

from . import api
from .errors import CombinerError
from .evaluate import failed_require

OK, REFUTED = 0, 1


def add_parsers(sub: Any) -> None:
    e = sub.add_parser("explore", help="search, check, prove and rank Combiner factorizations of a sparse pattern")
    e.add_argument("spec", metavar="SPEC")
    e.add_argument("--L", type=int, default=1024, metavar="N", help="length for the exact pair counts (default 1024)")
    e.add_argument("--top", type=int, default=3, metavar="K", help="candidates shown, proved and written (default 3)")
    e.add_argument("--families", default=None, metavar="F,...", help="region families to try (default: all)")
    e.add_argument("--keep", default="both", metavar="all|disjuncts|both|window:W", help="direct sets to try")
    e.add_argument("--summaries", default="max", metavar="S,...", help="summaries: max, mean, sum (pooled) and at")
    e.add_argument("--mix", action="store_true", help="also try joint mixtures of two plans")
    e.add_argument("--prove", action=argparse.BooleanOptionalAction, default=True, help="prove the top candidates (default: on)")
    e.add_argument("--timeout", type=float, default=10.0, metavar="S", help="solver time limit per query (default 10)")
    e.add_argument("--all", action="store_true", help="list every candidate, refuted ones with witnesses")
    e.add_argument("-o", "--output", metavar="DIR", help="write the top candidates as .cmb files here")
    e.add_argument("--json", action="store_true")

    r = sub.add_parser("reach", help="layers of the attention graph needed to join every allowed pair")
    r.add_argument("spec", metavar="SPEC")
    r.add_argument("--L", type=int, required=True, metavar="N")
    r.add_argument("--graph", metavar="FILE", help="export the graph (.graphml or .dot)")
    r.add_argument("--json", action="store_true")

    t = sub.add_parser("tree", help="the containment forest of each partition")
    t.add_argument("spec", metavar="SPEC")
    t.add_argument("--L", type=int, required=True, metavar="N")
    t.add_argument("--json", action="store_true")


def _spec_at(path: str, L: int) -> api.Spec:
    if L < 1:
        raise CombinerError(f"--L {L}: a length is at least 1")
    spec = api.load(path)
    if failed_require(spec.pattern, L) is not None:
        raise CombinerError(f"{path}: L = {L} is rejected by the spec's requires")
    return spec


def cmd_explore(args: argparse.Namespace) -> int:
    from .explore import FAMILIES, explore
    from .explore.emit import print_table, to_json, write_specs

    if args.L < 1 or args.top < 1:
        raise CombinerError("--L and --top take a number at least 1")
    kinds = tuple(args.families.split(",")) if args.families else FAMILIES
    summaries = tuple(s.strip() for s in args.summaries.replace("pooled", "max").split(","))
    for s in summaries:
        if s not in ("max", "mean", "sum", "at"):
            raise CombinerError(f"--summaries: unknown summary {s!r}; expected max, mean, sum, pooled or at")
    keep = args.keep
    if not (keep in ("all", "disjuncts", "both") or (keep.startswith("window:") and keep[7:].isdigit() and int(keep[7:]) >= 1)):
        raise CombinerError(f"--keep {keep}: expected all, disjuncts, both or window:W with W >= 1")
    spec = api.load(args.spec)
    result = explore(spec.pattern, L=args.L, kinds=kinds, keep=keep, summaries=summaries, mix=args.mix, prove_top=args.top if args.prove else 0, timeout_s=args.timeout)
    paths = write_specs(result, args.output, args.top) if args.output else []
    if args.json:
        print(json.dumps({**to_json(result, args.all), "written": [str(p) for p in paths]}, indent=2))
    else:
        print_table(result, args.top, args.all)
        for p in paths:
            print(f"wrote {p}")
    return OK if result.holding else REFUTED


def cmd_reach(args: argparse.Namespace) -> int:
    from .reach import export, reach

    spec = _spec_at(args.spec, args.L)
    r = reach(spec.pattern, args.L)
    if args.graph:
        export(r.graph, args.graph)
    if args.json:
        print(json.dumps({"path": args.spec, "pattern": spec.name, **r.to_json()}, indent=2))
    elif r.layers is None and r.pair:
        print(f"{args.spec}: {spec.name}: at L={args.L} never: key j={r.pair[1]} never reaches query i={r.pair[0]}, however many layers")
    else:
        far = f"; farthest pair i={r.pair[0]}, j={r.pair[1]}: {' -> '.join(map(str, r.path))}" if r.pair else ""
        print(f"{args.spec}: {spec.name}: at L={args.L} every query reaches every key it may see in {r.layers} layer{'s' if r.layers != 1 else ''}{far}")
    return OK if r.layers is not None else REFUTED


def cmd_tree(args: argparse.Namespace) -> int:
    from .forest import describe, forests

    spec = _spec_at(args.spec, args.L)
    fs = forests(spec.pattern, args.L)
    if args.json:
        print(json.dumps({"path": args.spec, "pattern": spec.name, "L": args.L, "partitions": [f.to_json() for f in fs]}, indent=2))
    else:
        print(f"{args.spec}: {spec.name} at L={args.L}:" + ("" if fs else " no partitions"))
        for f in fs:
            print("  " + describe(f))
    return OK if all(f.laminar for f in fs) else REFUTED


def show_query(args: argparse.Namespace) -> int:
    from .flow import render_flow

    spec = _spec_at(args.spec, args.L)
    print(render_flow(spec.pattern, args.L, args.query))
    return OK


COMMANDS = {"explore": cmd_explore, "reach": cmd_reach, "tree": cmd_tree}
