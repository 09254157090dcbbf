"""`combiner`: check, cost, show and compile specs (contract.md). Exit 0 holds, 1 refuted, 2 bad input."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import api, limits
from .errors import CombinerError
from .report_formats import FORMATS, Result
from .verdict import CHECKS, Verdict

OK, REFUTED, BAD_INPUT, INTERNAL = 0, 1, 2, 3
DEFAULT_COST_LENGTHS = (1024, 4096, 16384, 65536)
UNUSABLE = ("vacuous", "unsupported")  # verdicts of a spec that cannot be used as written: exit 2


def _number(kind: type, lo: float, hi: float, what: str) -> Callable[[str], Any]:
    """An argparse type: a finite `kind` in [lo, hi]; anything else is a usage error naming the option."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not (lo <= value <= hi):  # also false for nan
            shown = f"{lo:g}..{hi:g}" if kind is float else f"{int(lo)}..{int(hi)}"
            raise argparse.ArgumentTypeError(f"{text!r} is out of range: {what} in {shown}")
        return value

    return parse


DENSE_L = _number(int, 1, limits.MAX_DENSE_L, "a length")
COST_L = _number(int, 1, limits.MAX_COST_L, "a length")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="combiner", description="Check, cost, draw and compile Combiner attention pattern specs.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("check", help="prove or refute full attention (C0-C3)")
    c.add_argument("specs", nargs="+", metavar="SPEC")
    c.add_argument("--L", type=DENSE_L, action="append", dest="lengths", metavar="N", help=f"check this length (repeatable; at most {limits.MAX_DENSE_L}); default: a standard set")
    c.add_argument("--prove", action=argparse.BooleanOptionalAction, default=True, help="also prove for every L (default: on)")
    c.add_argument("--timeout", type=_number(float, 0.001, limits.MAX_TIMEOUT_S, "seconds"), default=5.0, metavar="S", help="solver time limit per query, seconds")
    c.add_argument("--json", action="store_true", help="one JSON document on stdout (the same as --format json)")
    c.add_argument("--format", choices=FORMATS, default="text", help="text, json, GitHub annotations, JUnit XML or SARIF 2.1.0 on stdout")
    c.add_argument("--streaming", action=argparse.BooleanOptionalAction, default=True, help="also check prefix stability, which exact cached decoding needs (default: on)")
    c.add_argument("--require-streaming", action="store_true", help="exit 1 unless prefix stability is proved too")
    c.add_argument("--cache", metavar="DIR", help="proof cache directory (default: the user cache directory)")
    c.add_argument("--no-cache", action="store_true", help="neither read nor write the proof cache")
    c.add_argument("--certify", metavar="DIR", help="write each proof obligation as an SMT-LIB 2 file under DIR (proves afresh)")

    v = sub.add_parser("certify", help="re-check the SMT-LIB certificates of check --certify with cvc5")
    v.add_argument("directory", metavar="DIR")
    v.add_argument("--timeout", type=_number(float, 0.001, limits.MAX_TIMEOUT_S, "seconds"), default=60.0, metavar="S", help="cvc5 time limit per obligation, seconds")

    k = sub.add_parser("cost", help="the cost model: exact pairs per length and the asymptotic order")
    k.add_argument("specs", nargs="+", metavar="SPEC")
    k.add_argument("--L", type=COST_L, action="append", dest="lengths", metavar="N", help=f"length to count (repeatable; at most {limits.MAX_COST_L})")
    k.add_argument("--d", type=_number(int, 1, limits.MAX_HEAD_DIM, "a head dimension"), default=64, help="head dimension for the FLOP count")
    k.add_argument("--json", action="store_true")

    s = sub.add_parser("show", help="draw the pattern at one length")
    s.add_argument("spec", metavar="SPEC")
    s.add_argument("--L", type=DENSE_L, required=True, metavar="N")
    s.add_argument("-o", "--output", metavar="FILE.png", help="write a PNG; without it, print text")
    s.add_argument("--query", type=int, metavar="I", help="the information flow of query I: routes to keys, doubled and missing keys")

    g = sub.add_parser("compile", help="write the attention module of a spec")
    g.add_argument("spec", metavar="SPEC")
    g.add_argument("--target", choices=api.TARGETS, required=True)
    g.add_argument("--standalone", action="store_true", help="one self-contained file (imports only torch, and triton) instead of importing combiner_dsl.runtime")
    g.add_argument("--check", action=argparse.BooleanOptionalAction, default=True, help="prove the spec first and record the verdict (default: on)")
    g.add_argument("--cost", action=argparse.BooleanOptionalAction, default=True, help="record the exact cost at L = 4096 (default: on)")
    g.add_argument("-o", "--output", metavar="FILE.py", help="output file; default: standard output")
    from .cli_explore import add_parsers  # explore, reach, tree

    add_parsers(sub)
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
        except Exception as err:  # one spec's failure never loses the others' report
            ours = isinstance(err, CombinerError)
            status = max(status, BAD_INPUT if ours else INTERNAL)
            error = err if isinstance(err, CombinerError) else CombinerError(_internal(err))
            entries.append(_error_entry(path, error))
            if results is not None:
                results.append(Result(path, error=error))
            if not args.json and results is None:
                print(str(err) if ours else f"{path}: {_internal(err)}", file=sys.stderr)
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
        streaming = args.streaming or args.require_streaming
        if args.certify:
            from . import certify
            from .prove import prove

            with certify.recording(args.certify, path, spec.name, lambda: prove(spec.pattern, timeout_s=args.timeout)) as write:
                verdict = spec.check(args.lengths, prove=args.prove, timeout_s=args.timeout, streaming=streaming)
                n = write(verdict)
            print(f"{path}: wrote {n} obligations under {args.certify}", file=sys.stderr)
        else:
            verdict = proof_cache.check(spec, store, args.lengths, args.prove, args.timeout, streaming=streaming)
        if results is not None:
            results.append(Result(path, spec.pattern, verdict))
        code = REFUTED if verdict.status == "refuted" else BAD_INPUT if verdict.status in UNUSABLE else OK
        if code == OK and args.require_streaming and (verdict.streaming is None or verdict.streaming.status != "proved"):
            code = REFUTED
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
    if v.status in UNUSABLE:
        return f"{head} {v.status.upper()}: {v.message}"
    text = f"{head} full attention {v.status.upper()} for {v.scope_text()}"
    if v.status == "checked" and v.reason:
        text += f"\n    no proof for every L: {v.reason}"
    for rule in v.derived:
        text += f"\n    derived select: {rule}"
    if v.streaming is not None:  # prefix stability: reported, fails only under --require-streaming
        text += f"\n    streaming (prefix-stable, exact cached decoding) {v.streaming.status.upper()}: {v.streaming.message}"
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
        table.add_row(*(f"{row[c]:,}" if isinstance(row[c], int) else "no pairs" if row[c] is None else f"{row[c]:.1f}x" for c in ("L", "direct_pairs", "region_pairs", "summary_pairs", "logits_max", "flops", "dense_pairs", "ratio")))
    Console(width=max(Console().width, 140)).print(table)  # the full table even when piped


def cmd_show(args: argparse.Namespace) -> int:
    from .show import render_png, render_text

    _positive([args.L])
    if args.query is not None:
        from .cli_explore import show_query

        return show_query(args)
    spec = api.load(args.spec)
    from .evaluate import failed_require

    if failed_require(spec.pattern, args.L) is not None:
        raise CombinerError(f"{args.spec}: L = {args.L} is rejected by the spec's requires")
    if args.output:
        _writable(args.output)
        render_png(spec.pattern, args.L, args.output)
        print(f"wrote {args.output}")
    else:
        print(render_text(spec.pattern, args.L))
    return OK


def cmd_compile(args: argparse.Namespace) -> int:
    if args.output:
        _writable(args.output)
    spec = api.load(args.spec)
    verdict = spec.check(prove=True) if args.check else None
    if verdict is not None and verdict.status in UNUSABLE:
        raise CombinerError(f"{args.spec}: {spec.name}: {verdict.status}: {verdict.message}")
    source = api.generate(spec, args.target, verdict=verdict, cost=args.cost, standalone=args.standalone)
    if args.output:
        try:
            Path(args.output).write_text(source)
        except OSError as err:
            raise CombinerError(f"-o {args.output}: cannot write: {err.strerror or err}") from None
        status = verdict.status if verdict else "not checked"
        print(f"wrote {args.output} ({spec.name}, target {args.target}, {status})", file=sys.stderr)
    else:
        sys.stdout.write(source)
    return OK if verdict is None or verdict.holds else REFUTED


def _writable(output: str) -> None:
    """`-o` must name a file in an existing directory: checked before any work."""
    parent = Path(output).parent
    if not parent.is_dir():
        raise CombinerError(f"-o {output}: directory {str(parent)!r} does not exist")
    if Path(output).is_dir():
        raise CombinerError(f"-o {output}: is a directory")


def _internal(err: Exception) -> str:
    return f"internal error: {type(err).__name__}: {err}"


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"check": cmd_check, "cost": cmd_cost, "show": cmd_show, "compile": cmd_compile, "certify": cmd_certify}
from .cli_explore import COMMANDS as _EXPLORE  # noqa: E402  (explore, reach, tree)

COMMANDS.update(_EXPLORE)


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
        print(f"combiner: {_internal(err)}\nplease report it with the spec that caused it", file=sys.stderr)
        return INTERNAL


if __name__ == "__main__":
    sys.exit(main())
