"""CPU benchmark of the torch target (not a test).

For each spec and length: the generated module (plan construction timed apart), exact causal
attention (`F.scaled_dot_product_attention(is_causal=True)`), and FlexAttention (`torch.compile` of
`flex_attention`) running the same factorization: the U summary units are appended as extra keys
after the L real keys (padded to a whole block) and a `mask_mod` routes each query to its direct keys
and selected units, read from the plan. Flex's time includes the same summary pass as ours (kbar /
vbar come from it); compile and block-mask construction are reported apart and excluded.

    python bench/bench_cpu.py                      # the default table
    python bench/bench_cpu.py --lengths 4096 16384 --specs combiner_fixed --repeat 3

Peak memory is the rise of the process's peak RSS (VmHWM, reset through /proc/self/clear_refs)
over its RSS before the call, so it counts every allocation of the call, torch's included.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from flex_factorization import build_flex  # bench/ is on sys.path when run as a script

from combiner_dsl.codegen.torch_target import generate_torch, load_generated
from combiner_dsl.parse import parse
from combiner_dsl.runtime import build_plan
from combiner_dsl.runtime.summary import summary_pass
from combiner_dsl.semantics import analyze
from combiner_dsl.source import Source

ROOT = Path(__file__).resolve().parent.parent
SPECS = ("combiner_fixed", "combiner_logsparse", "combiner_axial")


# ---------------------------------------------------------------- measuring


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _trim() -> None:
    """Give freed heap back to the OS, so that RSS is what is live (glibc keeps it otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def peak_added_bytes(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Rise of the peak RSS during fn() over the RSS before it."""
    gc.collect()
    _trim()
    before = _status("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    result = fn()
    return max(0, _status("VmHWM") - before), result


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ---------------------------------------------------------------- the run


def load_module(name: str) -> Any:
    path = ROOT / "examples" / f"{name}.cmb"
    src = Source(str(path), path.read_text())
    pattern = analyze(parse(src), src)
    return load_generated(generate_torch(pattern), pattern.name)


def run(specs: list[str], lengths: list[int], repeat: int, flex_max_L: int, sdpa_max_L: int, flex_budget_s: float) -> list[dict[str, Any]]:
    """Per length: our modules first, then SDPA, then Flex (whose compiles keep worker threads busy a while)."""
    rows: list[dict[str, Any]] = []
    last_flex: dict[str, tuple[int, float]] = {}  # spec -> (L, seconds per call) of its last Flex run
    for L in lengths:
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, 4, L, 64, generator=g) for _ in range(3))
        reps = max(1, repeat if L <= 16384 else min(repeat, 3))
        todo = []
        for name in specs:
            mod = load_module(name)
            t0 = time.perf_counter()
            plan = build_plan(mod.SPEC, L)
            plan_s = time.perf_counter() - t0
            mod.CombinerAttention._plans[L] = plan
            attn = functools.partial(mod.CombinerAttention(), q, k, v)
            with torch.no_grad():
                attn()  # warm-up
                mem, ours = peak_added_bytes(attn)
                ours_s = median_time(attn, reps)
            todo.append((mod, ours, {"spec": name, "L": L, "plan_s": plan_s, "ours_s": ours_s, "ours_mem": mem}))
        sdpa_row: dict[str, Any] = {}
        if L <= sdpa_max_L:
            with torch.no_grad():
                F.scaled_dot_product_attention(q[:, :, :256], k[:, :, :256], v[:, :, :256], is_causal=True)
                sdpa = functools.partial(F.scaled_dot_product_attention, q, k, v, is_causal=True)
                mem, _ = peak_added_bytes(sdpa)
                sdpa_row = {"sdpa_s": median_time(sdpa, max(1, reps - 1) if L > 16384 else reps), "sdpa_mem": mem}
        for mod, ours, row in todo:
            row.update(sdpa_row)
            seen = last_flex.get(row["spec"])
            guess = seen[1] * (L / seen[0]) ** 1.5 if seen else 0.0  # these factorizations grow like L^1.5 at most
            if L > flex_max_L:
                row["flex_note"] = f"skipped above L = {flex_max_L}"
            elif guess > flex_budget_s:
                row["flex_note"] = f"skipped: ~{guess:.0f} s per call expected from L = {seen[0]}"  # type: ignore[index]
            else:
                row.update(flex_row(mod, q, k, v, ours, L, reps))
                last_flex[row["spec"]] = (L, row["flex_s"])
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


def flex_row(mod: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ours: torch.Tensor, L: int, reps: int) -> dict[str, Any]:
    from torch.nn.attention.flex_attention import flex_attention

    torch._dynamo.reset()  # a fresh compile per (spec, L): shapes differ, and recompiles are capped
    flex = torch.compile(flex_attention, dynamic=False)
    t0 = time.perf_counter()
    fplan = build_plan(mod.SPEC, L).plans[0]
    bm, Lp, _U = build_flex(fplan, L)
    mask_s = time.perf_counter() - t0
    scale = 1.0 / math.sqrt(q.shape[-1])

    def call() -> torch.Tensor:
        kbar, vbar = summary_pass(q, k, v, fplan, scale)
        pad = q.new_zeros(1, q.shape[1], Lp - L, q.shape[-1])
        return flex(q, torch.cat([k, pad, kbar], 2), torch.cat([v, pad, vbar], 2), block_mask=bm, scale=scale)

    with torch.no_grad():
        t0 = time.perf_counter()
        out = call()
        compile_s = time.perf_counter() - t0
        mem, _ = peak_added_bytes(call)
        flex_s = median_time(call, reps)
    return {"flex_s": flex_s, "flex_mask_s": mask_s, "flex_compile_s": compile_s, "flex_mem": mem, "flex_err": float((out - ours).abs().max())}


def _fmt_s(x: float | None) -> str:
    return "-" if x is None else (f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s")


def _fmt_mb(x: int | None) -> str:
    return "-" if x is None else f"{x / 2**20:.0f} MiB"


def format_row(r: dict[str, Any]) -> str:
    sdpa, flex = r.get("sdpa_s"), r.get("flex_s")
    parts = [
        f"{r['spec']:<20} L={r['L']:<6}",
        f"plan {_fmt_s(r['plan_s'])}",
        f"ours {_fmt_s(r['ours_s'])} (+{_fmt_mb(r['ours_mem'])})",
        f"sdpa {_fmt_s(sdpa)} (+{_fmt_mb(r.get('sdpa_mem'))})",
        f"flex {_fmt_s(flex)}"
        + (
            f" (mask {_fmt_s(r['flex_mask_s'])}, compile {_fmt_s(r['flex_compile_s'])}, +{_fmt_mb(r['flex_mem'])}, max|diff| {r['flex_err']:.1e})"
            if flex
            else f" ({r.get('flex_note', '')})"
        ),
        f"sdpa/ours {sdpa / r['ours_s']:.1f}x" if sdpa else "",
        f"flex/ours {flex / r['ours_s']:.2f}x" if flex else "",
    ]
    return " | ".join(p for p in parts if p)


def markdown(rows: list[dict[str, Any]]) -> str:
    head = "| spec | L | plan | ours | ours +mem | SDPA causal | SDPA +mem | Flex | Flex mask / compile | Flex +mem | SDPA / ours | Flex / ours |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    lines = [head]
    for r in rows:
        sdpa, flex = r.get("sdpa_s"), r.get("flex_s")
        ratio_sdpa = f"{sdpa / r['ours_s']:.1f}x" if sdpa else "-"
        ratio_flex = f"{flex / r['ours_s']:.2f}x" if flex else "-"
        lines.append(
            f"| {r['spec']} | {r['L']} | {_fmt_s(r['plan_s'])} | {_fmt_s(r['ours_s'])} | {_fmt_mb(r['ours_mem'])} | {_fmt_s(sdpa)} | {_fmt_mb(r.get('sdpa_mem'))} | "
            f"{_fmt_s(flex) if flex else r.get('flex_note', '-')} | {(_fmt_s(r['flex_mask_s']) + ' / ' + _fmt_s(r['flex_compile_s'])) if flex else '-'} | {_fmt_mb(r.get('flex_mem'))} | "
            f"{ratio_sdpa} | {ratio_flex} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384, 65536])
    ap.add_argument("--specs", nargs="+", default=list(SPECS))
    ap.add_argument("--repeat", type=int, default=5, help="calls per measurement (at most 3 above L = 16384)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--flex-max-L", type=int, default=65536, help="skip Flex above this length")
    ap.add_argument("--sdpa-max-L", type=int, default=65536, help="skip SDPA above this length")
    ap.add_argument("--flex-budget-s", type=float, default=20.0, help="skip Flex where a call would take longer (extrapolated)")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown at the end")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, B=1 H=4 D=64 float32")
    rows = run(args.specs, args.lengths, args.repeat, args.flex_max_L, args.sdpa_max_L, args.flex_budget_s)
    if args.markdown:
        print(markdown(rows))


if __name__ == "__main__":
    main()
