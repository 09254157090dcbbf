"""`combiner`: check, cost, show and compile specs (contract.md). Exit 0 holds, 1 refuted, 2 bad input."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import api
from .errors import CombinerError
from .report_formats import FORMATS, Result
from .verdict import CHECKS, Verdict

OK, REFUTED, BAD_INPUT, INTERNAL = 0, 1, 2, 3
DEFAULT_COST_LENGTHS = (1024, 4096, 16384, 65536)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="combiner", description="Check, cost, draw and compile Combiner attention pattern specs.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("check", help="prove or refute full attention (C0-C3)")
    c.add_argument("specs", nargs="+", metavar="SPEC")
    c.add_argument("--L", type=int, action="append", dest="lengths", metavar="N", help="check this length (repeatable); default: a standard set")
    c.add_argument("--prove", action=argparse.BooleanOptionalAction, default=True, help="also prove for every L (default: on)")
    c.add_argument("--timeout", type=float, default=5.0, metavar="S", help="solver time limit per query, seconds")
    c.add_argument("--json", action="store_true", help="one JSON document on stdout (the same as --format json)")
    c.add_argument("--format", choices=FORMATS, default="text", help="text, json, GitHub annotations, JUnit XML or SARIF 2.1.0 on stdout")
    c.add_argument("--cache", metavar="DIR", help="proof cache directory (default: the user cache directory)")
    c.add_argument("--no-cache", action="store_true", help="neither read nor write the proof cache")
    c.add_argument("--certify", metavar="DIR", help="write each proof obligation as an SMT-LIB 2 file under DIR (proves afresh)")

    v = sub.add_parser("certify", help="re-check the SMT-LIB certificates of check --certify with cvc5")
    v.add_argument("directory", metavar="DIR")
    v.add_argument("--timeout", type=float, default=60.0, metavar="S", help="cvc5 time limit per obligation, seconds")

    k = sub.add_parser("cost", help="the cost model: exact pairs per length and the asymptotic order")
    k.add_argument("specs", nargs="+", metavar="SPEC")
    k.add_argument("--L", type=int, action="append", dest="lengths", metavar="N", help="length to count (repeatable)")
    k.add_argument("--d", type=int, default=64, help="head dimension for the FLOP count")
    k.add_argument("--json", action="store_true")

    s = sub.add_parser("show", help="draw the pattern at one length")
    s.add_argument("spec", metavar="SPEC")
    s.add_argument("--L", type=int, required=True, metavar="N")
    s.add_argument("-o", "--output", metavar="FILE.png", help="write a PNG; without it, print text")

    g = sub.add_parser("compile", help="write a self-contained attention module")
    g.add_argument("spec", metavar="SPEC")
    g.add_argument("--target", choices=api.TARGETS, required=True)
    g.add_argument("-o", "--output", metavar="FILE.py", help="output file; default: standard output")
    return p


def _positive(lengths: Sequence[int] | None) -> None:
    for L in lengths or ():
        if L < 1:
            raise CombinerError(f"--L {L}: a length is at least 1")


def _error_entry(path: str, err: CombinerError) -> dict[str, Any]:
    return {"path": path, "pattern": None, "verdict": "error", "scope": None, "witness": None, "message": str(err), "location": err.location}


def _each_spec(args: argparse.Namespace, run: Callable[[str, api.Spec], tuple[int, dict[str, Any], Callable[[], None]]], results: list[Result] | None = None) -> int:
    """Run `run` on every spec; a bad spec is reported and the others still run.

    `run` returns (exit status, JSON entry, human printer); the worst status wins.
    """
    entries: list[dict[str, Any]] = []
    status = OK
    for path in args.specs:
        try:
            code, entry, show = run(path, api.load(path))
        except CombinerError as err:
            status = BAD_INPUT
            entries.append(_error_entry(path, err))
            if results is not None:
                results.append(Result(path, error=err))
            if not args.json and results is None:
                print(str(err), file=sys.stderr)
            continue
        status = max(status, code)
        entries.append(entry)
        if not args.json and results is None:
            show()
    if args.json:
        print(json.dumps({"specs": entries}, indent=2))
    return status


def cmd_check(args: argparse.Namespace) -> int:
    from . import proof_cache, report_formats  # not certify: it imports the prover, and torch, which a cached run never needs

    _positive(args.lengths)
    if args.json and args.format not in ("text", "json"):
        raise CombinerError(f"--json and --format {args.format}: give one of them")
    args.json = args.json or args.format == "json"
    store = None if args.no_cache or args.certify else proof_cache.ProofCache.open(args.cache)
    results: list[Result] | None = [] if args.format in ("github", "junit", "sarif") else None

    def run(path: str, spec: api.Spec) -> tuple[int, dict[str, Any], Callable[[], None]]:
        if args.certify:
            from . import certify
            from .prove import prove

            with certify.recording(args.certify, path, spec.name, lambda: prove(spec.pattern, timeout_s=args.timeout)) as write:
                verdict = spec.check(args.lengths, prove=args.prove, timeout_s=args.timeout)
                n = write(verdict)
            print(f"{path}: wrote {n} obligations under {args.certify}", file=sys.stderr)
        else:
            verdict = proof_cache.check(spec, store, args.lengths, args.prove, args.timeout)
        if results is not None:
            results.append(Result(path, spec.pattern, verdict))
        code = REFUTED if verdict.status == "refuted" else OK
        return code, {"path": path, "pattern": spec.name, **verdict.to_json()}, lambda: print(_verdict_line(path, spec.name, verdict))

    status = _each_spec(args, run, results)
    if results is not None:
        print(report_formats.render(args.format, results))
    return status


def cmd_certify(args: argparse.Namespace) -> int:
    from .certify import recheck_dir

    return recheck_dir(args.directory, args.timeout)


def _verdict_line(path: str, name: str, v: Verdict) -> str:
    head = f"{path}: {name}:"
    if v.status == "refuted" and v.witness:
        w = v.witness
        return f"{head} REFUTED {w.check} ({CHECKS[w.check].split(':')[0]}): {w.explain()}"
    text = f"{head} full attention {v.status.upper()} for {v.scope_text()}"
    if v.status == "checked" and v.reason:
        text += f"\n    no proof for every L: {v.reason}"
    for rule in v.derived:
        text += f"\n    derived select: {rule}"
    return text


def cmd_cost(args: argparse.Namespace) -> int:
    _positive(args.lengths)
    lengths = args.lengths or list(DEFAULT_COST_LENGTHS)

    def run(path: str, spec: api.Spec) -> tuple[int, dict[str, Any], Callable[[], None]]:
        figures = [spec.cost(L, d=args.d) for L in lengths]
        order = str(spec.order())
        entry = {"path": path, "pattern": spec.name, "order": order, "by_L": [f.to_json() for f in figures]}
        return OK, entry, lambda: _print_cost_table(spec.name, order, figures)

    return _each_spec(args, run)


def _print_cost_table(name: str, order: str, figures: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{name}: total pairs ~ {order}", title_justify="left")
    for col in ("L", "direct_pairs", "region_pairs", "summary_pairs", "logits_max", "flops", "dense_pairs", "ratio"):
        table.add_column(col, justify="right")
    for f in figures:
        row = f.to_json()
        table.add_row(*(f"{row[c]:,}" if isinstance(row[c], int) else f"{row[c]:.1f}x" for c in ("L", "direct_pairs", "region_pairs", "summary_pairs", "logits_max", "flops", "dense_pairs", "ratio")))
    Console(width=max(Console().width, 140)).print(table)  # the full table even when piped


def cmd_show(args: argparse.Namespace) -> int:
    from .show import render_png, render_text

    _positive([args.L])
    spec = api.load(args.spec)
    from .evaluate import failed_require

    if failed_require(spec.pattern, args.L) is not None:
        raise CombinerError(f"{args.spec}: L = {args.L} is rejected by the spec's requires")
    if args.output:
        render_png(spec.pattern, args.L, args.output)
        print(f"wrote {args.output}")
    else:
        print(render_text(spec.pattern, args.L))
    return OK


def cmd_compile(args: argparse.Namespace) -> int:
    spec = api.load(args.spec)
    verdict = spec.check(prove=True)
    source = api.generate(spec, args.target, verdict=verdict)
    if args.output:
        Path(args.output).write_text(source)
        print(f"wrote {args.output} ({spec.name}, target {args.target}, {verdict.status})", file=sys.stderr)
    else:
        sys.stdout.write(source)
    return OK if verdict.holds else REFUTED


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"check": cmd_check, "cost": cmd_cost, "show": cmd_show, "compile": cmd_compile, "certify": cmd_certify}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except CombinerError as err:
        print(str(err), file=sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # a bug of ours: say so plainly, without a traceback
        print(f"combiner: internal error: {type(err).__name__}: {err}\nplease report it with the spec that caused it", file=sys.stderr)
        return INTERNAL


if __name__ == "__main__":
    sys.exit(main())
