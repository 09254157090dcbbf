"""GPU check and benchmark of the Triton target, for one call on a lent H200 (see docs/triton-target.md).

Phases, in order, all in one process: (1) correctness on the GPU: every example against the dense
oracle (float64, CPU) at small L, then our module against the torch target (output and gradients) at a
mid L; (2) the table: combiner_fixed / combiner_logsparse / combiner_axial, bf16, B x D x L, forward and
forward+backward, our module vs `F.scaled_dot_product_attention(is_causal=True)` (dense causal, "the
causal row") vs FlexAttention (torch.compile'd) on the same factorization (bench/flex_factorization.py).
TFLOP/s count the useful FLOPs of the cost model, 4*d*(direct + region + summary pairs) per head
(forward+backward: 3.5x forward, the FlashAttention convention); "%pk" is the share of the H200's dense
bf16 peak. A time guard stops the table and lists what it skipped; results also go to --json.

    python3 bench/bench_gpu.py                                 # the GPU run (about 6 to 8 minutes)
    TRITON_INTERPRET=1 python bench/bench_gpu.py --smoke       # CPU, tiny, end to end: catches typos
    python bench/bench_gpu.py --aot                            # no GPU: sm_90 builds, registers and spills

The lent machine has torch and triton but not `lark` (the spec parser). Once, here, in the repo root:
    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
        --platform manylinux_2_28_x86_64 -d .whl lark==1.3.1          (one line)
then one device call with carry [".whl"] and timeout_s 600:
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    && export PYTHONPATH=/tmp/site || exit; set -o pipefail; PYTHONUNBUFFERED=1 timeout 570 python3 bench/bench_gpu.py
    2>&1 | tee $OUT/bench_gpu.log                                     (one line)
Rows go to $OUT/bench_gpu.json as they come. To shorten: --lengths, --dims, --batches, --no-flex, --budget-s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if "--smoke" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from flex_factorization import build_flex, extend  # noqa: E402

import combiner_dsl  # noqa: E402
from combiner_dsl.codegen.torch_target import generate_torch, load_generated  # noqa: E402
from combiner_dsl.codegen.triton_target import generate_triton  # noqa: E402
from combiner_dsl.oracle import oracle_attention  # noqa: E402
from combiner_dsl.runtime.summary import summary_pass  # noqa: E402

PEAK_BF16 = 989.5e12  # H200 SXM dense bf16, datasheet (H200.md: "about 990"); KINDS.md measured 769-798 on random data
FWD_BWD = 3.5  # FLOPs of forward+backward over forward (backward = 2.5x: FlashAttention's convention)
SPECS = ("combiner_fixed", "combiner_logsparse", "combiner_axial")


def log(*parts: object) -> None:
    print(*parts, flush=True)


# ---------------------------------------------------------------- modules, FLOPs, timing


def modules(name: str) -> tuple[Any, Any, Any]:
    """(spec, generated Triton module, generated torch module) of examples/<name>.cmb."""
    path = ROOT / "examples" / f"{name}.cmb"
    if not path.exists():
        path = ROOT / "examples" / "sparse" / f"{name}.cmb"
    spec = combiner_dsl.load(path)
    return spec, load_generated(generate_triton(spec.pattern), spec.name), load_generated(generate_torch(spec.pattern), spec.name)


def useful_pairs(spec: Any, pplan: Any) -> tuple[int, str]:
    """direct + region + summary pairs per head: the cost model when it imports (needs z3), else counted from the plan."""
    try:
        from combiner_dsl.cost import cost_at

        c = cost_at(spec.pattern, pplan.L)
        return int(c.direct_pairs + c.region_pairs + c.summary_pairs), "cost model"
    except ImportError:
        pass
    total = 0
    for plan in pplan.plans:
        for seg in plan.segments():
            total += int(seg.direct_masks.sum()) + int(seg.unit_masks.sum())
        for bk in plan.buckets:  # a unit's value is a softmax over its region: |region| pairs per (real) unit
            real = (bk.query_pos >= 0) | (bk.key_pos >= 0) | (bk.query_pool is not None and bk.key_pool is not None)
            total += int((real.sum(1) * bk.sizes).sum())
    return total, "plan count"


def timed(fn: Callable[[], Any], device: torch.device, budget_ms: float, reps: tuple[int, int] = (3, 30)) -> float:
    """Median milliseconds of fn() after one warm-up call; as many repeats as fit in budget_ms."""
    def once() -> float:
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end)
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    first = once()
    n = max(reps[0], min(reps[1], int(budget_ms / max(first, 1e-3))))
    return statistics.median([first] + [once() for _ in range(n - 1)])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if not torch.isfinite(a).all():
        return math.inf
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


# ---------------------------------------------------------------- phase 1: correctness


def check(args: argparse.Namespace, device: torch.device) -> bool:
    ok = True
    dtypes = [torch.float32] if device.type == "cpu" else [torch.bfloat16, torch.float32]
    tol = {torch.bfloat16: 2e-2, torch.float32: 3e-3}  # float32 runs tf32 dots on the GPU (torch's setting below)
    names = sorted(p.stem for p in (ROOT / "examples").glob("*.cmb")) + sorted(p.stem for p in (ROOT / "examples" / "sparse").glob("*.cmb"))
    gen = torch.Generator().manual_seed(int(time.time()))  # fresh inputs every run (METHOD.md)
    for name in names:
        spec, tmod, _ = modules(name)
        attn = tmod.CombinerAttention()
        for L in args.check_lengths:
            q, k, v = (torch.randn(1, 2, L, args.check_d, generator=gen) for _ in range(3))
            want = oracle_attention(spec.pattern, q.double(), k.double(), v.double())
            for dt in dtypes:
                err = rel(attn(q.to(device, dt), k.to(device, dt), v.to(device, dt)), want)
                good = err < tol[dt]
                ok &= good
                log(f"  {'ok  ' if good else 'FAIL'} {name:<26} L={L:<5} {str(dt)[6:]:<8} vs oracle: rel err {err:.1e}")
    dt = torch.float32 if device.type == "cpu" else torch.bfloat16
    for name in args.specs:
        _, tmod, pmod = modules(name)
        for D in args.dims:
            x = [torch.randn(1, 4, args.mid_length, D, generator=gen).to(device, dt) for _ in range(3)]
            g = torch.randn(1, 4, args.mid_length, D, generator=gen).to(device, dt)
            res = []
            for mod in (tmod, pmod):
                xs = [t.clone().requires_grad_() for t in x]
                out = mod.CombinerAttention()(*xs)
                res.append((out, *torch.autograd.grad(out, xs, g)))
            errs = [rel(a, b) for a, b in zip(*res, strict=True)]
            good = errs[0] < tol[dt] and max(errs[1:]) < 3 * tol[dt]
            ok &= good
            log(f"  {'ok  ' if good else 'FAIL'} {name:<26} L={args.mid_length} D={D} {str(dt)[6:]} vs torch target: out {errs[0]:.1e}, dq dk dv " + " ".join(f"{e:.1e}" for e in errs[1:]))
    return ok


# ---------------------------------------------------------------- phase 2: the table


def run_table(args: argparse.Namespace, device: torch.device, t_start: float) -> list[dict[str, Any]]:
    from torch.nn.attention.flex_attention import flex_attention

    dt = torch.float32 if device.type == "cpu" else torch.bfloat16
    if device.type == "cuda":
        from torch import _dynamo

        _dynamo.config.cache_size_limit = 256  # one compile per shape; never fall back to eager
        flex = torch.compile(flex_attention, dynamic=False)
    else:
        flex = flex_attention
    mods = {name: modules(name) for name in args.specs}
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    flex_shapes = None if "all" in args.flex_shapes else {tuple(int(x) for x in item.split(":")) for item in args.flex_shapes}
    for L in args.lengths:
        for D in args.dims:
            for B in args.batches:
                if time.monotonic() - t_start > args.budget_s:
                    skipped.append(f"L={L} D={D} B={B}")
                    continue
                torch.manual_seed(L + D + B)
                x = [torch.randn(B, args.heads, L, D, device=device, dtype=dt) for _ in range(3)]
                g = torch.randn_like(x[0])
                xs = [t.clone().requires_grad_() for t in x]
                budget = args.rep_ms

                dense = 4 * D * (L * (L + 1) // 2) * B * args.heads
                sdpa = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)  # noqa: E731
                row0 = {"spec": "causal (SDPA, dense)", "L": L, "D": D, "B": B, "flops": dense}
                row0.update(_measure("ours", sdpa, x, _fwd_bwd(sdpa, xs, g), device, budget, args.modes))
                rows.append(row0)
                log(_line(row0))
                save(args, rows)
                for name in args.specs:
                    spec, tmod, _ = mods[name]
                    row: dict[str, Any] = {"spec": name, "L": L, "D": D, "B": B}
                    try:
                        t0 = time.perf_counter()
                        pplan = tmod.CombinerAttention.plan_for(L)
                        attn = tmod.CombinerAttention()
                        dplan = attn.plan(L, device)
                        row["plan_s"] = time.perf_counter() - t0
                        pairs, source = useful_pairs(spec, pplan)
                        row["flops"], row["flops_from"] = 4 * D * pairs * B * args.heads, source
                        row.update(_measure("ours", attn, x, _fwd_bwd(attn, xs, g), device, budget, args.modes))
                        row["sdpa_fwd_ms"], row["sdpa_fwdbwd_ms"] = row0.get("ours_fwd_ms"), row0.get("ours_fwdbwd_ms")
                        if args.flex and (flex_shapes is None or (L, D, B) in flex_shapes):
                            fplan = dplan.plans[0]
                            t0 = time.perf_counter()
                            bm, Lp, _ = build_flex(fplan, L)
                            row["flex_mask_s"] = time.perf_counter() - t0
                            scale = 1.0 / math.sqrt(D)

                            def flex_call(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, fplan: Any = fplan, bm: Any = bm, Lp: int = Lp, scale: float = scale, tmod: Any = tmod) -> torch.Tensor:
                                kbar, vbar = summary_pass(q, k, v, fplan, scale)  # the same summary pass as ours
                                return flex(q, extend(k, kbar, Lp), extend(v, vbar, Lp), block_mask=bm, scale=scale)

                            row.update(_measure("flex", flex_call, x, _fwd_bwd(flex_call, xs, g), device, budget, args.modes))
                    except torch.cuda.OutOfMemoryError:
                        row["note"] = "out of memory"
                    except Exception as err:  # one failing row must not lose the table
                        row["note"] = f"{type(err).__name__}: {str(err)[:160]}"
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    rows.append(row)
                    log(_line(row))
                    save(args, rows)
                del x, xs, g
    if skipped:
        log(f"time guard ({args.budget_s:.0f} s) skipped: " + ", ".join(skipped))
    return rows


def _fwd_bwd(f: Callable[..., torch.Tensor], xs: list[torch.Tensor], g: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        for t in xs:
            t.grad = None
        f(*xs).backward(g)

    return run


def save(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """Rows so far to --json (or $OUT/bench_gpu.json): a run cut short still leaves them."""
    path = args.json or (os.path.join(os.environ["OUT"], "bench_gpu.json") if os.environ.get("OUT") else None)
    if path:
        Path(path).write_text(json.dumps({"correct": getattr(args, "correct", None), "argv": sys.argv[1:], "rows": rows}, indent=1, default=str))


def _measure(tag: str, f: Callable[..., torch.Tensor], x: list[torch.Tensor], fb: Callable[[], None], device: torch.device, budget: float, modes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with torch.no_grad():
        if "fwd" in modes:
            t0 = time.perf_counter()
            f(*x)  # first call: compile / plan upload, reported apart
            if device.type == "cuda":
                torch.cuda.synchronize()
            out[f"{tag}_first_s"] = time.perf_counter() - t0
            out[f"{tag}_fwd_ms"] = timed(lambda: f(*x), device, budget)
    if "fwdbwd" in modes:
        try:
            out[f"{tag}_fwdbwd_ms"] = timed(fb, device, budget)
        except Exception as err:  # e.g. Flex has no backward on CPU
            out[f"{tag}_fwdbwd_note"] = f"{type(err).__name__}"
    return out


def _tf(flops: float | None, ms: float | None, mult: float = 1.0) -> str:
    if not flops or not ms:
        return "-"
    t = flops * mult / (ms * 1e-3)
    return f"{t / 1e12:6.1f} ({100 * t / PEAK_BF16:4.1f}%pk)"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:9.3f}"


def _line(r: dict[str, Any]) -> str:
    head = f"{r['spec']:<22} B={r['B']} D={r['D']:<3} L={r['L']:<6}"
    if "note" in r:
        return f"{head} {r['note']}"
    parts = [head]
    for mode, mult in (("fwd", 1.0), ("fwdbwd", FWD_BWD)):
        ours, sdpa, flex = r.get(f"ours_{mode}_ms"), r.get(f"sdpa_{mode}_ms"), r.get(f"flex_{mode}_ms")
        if ours is None:
            continue
        s = f"| {mode:<6} ours {_ms(ours)} ms {_tf(r.get('flops'), ours, mult)}"
        if sdpa:
            s += f"  sdpa {_ms(sdpa)} ({sdpa / ours:5.2f}x)"
        if flex:
            s += f"  flex {_ms(flex)} ({flex / ours:5.2f}x)"
        elif r.get(f"flex_{mode}_note"):
            s += f"  flex n/a ({r[f'flex_{mode}_note']})"
        parts.append(s)
    if "plan_s" in r:
        parts.append(f"| plan {r['plan_s']:.1f} s")
    return " ".join(parts)


# ---------------------------------------------------------------- --aot: builds for sm_90 without a GPU


def aot(args: argparse.Namespace) -> None:
    """Compile both kernels for sm_90 with the launch defaults and print registers / spill stack per config."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from combiner_dsl.runtime import triton_attention as ta
    from combiner_dsl.runtime.triton_kernels import combiner_bwd_kernel, combiner_fwd_kernel

    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    kinds = {"Q": "*D", "K": "*D", "V": "*D", "KB": "*D", "VB": "*D", "Out": "*D", "DO": "*D", "DQ": "*D", "QS": "*i64", "KS": "*i64",
             "DT": "*i32", "UL": "*i32", "ND": "*i32", "NU": "*i32", "DF": "*u8", "DM": "*i64", "UM": "*i64", "qk_scale": "fp32", "sm_scale": "fp32",
             "LSE": "*fp32", "DELTA": "*fp32", "DK": "*fp32", "DV": "*fp32", "DKB": "*fp32", "DVB": "*fp32", "TQ": "i32", "TK": "i32", "SUBQ": "i32", "DMW": "i32"}  # fmt: skip
    for kernel, backward in ((combiner_fwd_kernel, False), (combiner_bwd_kernel, True)):
        for D in args.dims:
            configs = sorted({ta._blocks(D, T, T, backward, None, None) for T in (32, 64, 128, 256)})
            for (bm, bn, warps), perm in ((c, p) for c in configs for p in (False, True)):
                consts = {"D": D, "D_PAD": D, "BM": bm, "BN": bn, "BU": 32, "Q_PERM": perm, "K_PERM": perm, "COLMASK": perm, "ACC": perm, "I64": False, "PRECISION": "ieee"}
                sig = {n: "constexpr" if n in consts else kinds.get(n, "i32").replace("*D", "*bf16") for n in kernel.arg_names}
                t0 = time.perf_counter()
                ck = triton.compile(ASTSource(fn=kernel, signature=sig, constexprs=consts), target=GPUTarget("cuda", 90, 32), options={"num_warps": warps, "num_stages": 1 if backward else 2})
                with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
                    f.write(ck.asm["cubin"])
                    f.flush()
                    usage = subprocess.run([str(cuobjdump), "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
                res = " ".join(w for line in usage.splitlines() if "REG:" in line for w in line.split() if w.split(":")[0] in ("REG", "STACK", "SHARED"))
                mma = "wgmma" if "wgmma" in ck.asm["ptx"] else ("mma" if "mma.sync" in ck.asm["ptx"] else "no mma")
                log(f"{'bwd' if backward else 'fwd'} bf16 D={D:<3} BM={bm:<3} BN={bn:<3} warps={warps} perm+acc={perm!s:<5} {res} {mma} ({time.perf_counter() - t0:.1f}s)")


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, interpreter: does everything run")
    ap.add_argument("--aot", action="store_true", help="only compile the kernels for sm_90 and print registers / spills (no GPU)")
    ap.add_argument("--specs", nargs="+", default=list(SPECS))
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384, 65536, 131072])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--modes", nargs="+", default=["fwd", "fwdbwd"], choices=["fwd", "fwdbwd"])
    ap.add_argument("--no-flex", dest="flex", action="store_false", help="skip FlexAttention")
    ap.add_argument("--flex-shapes", nargs="+", default=["16384:128:1", "65536:128:1"], metavar="L:D:B",
                    help="run Flex at these shapes only ('all': everywhere); each shape costs a compile per spec and pass")
    ap.add_argument("--rep-ms", type=float, default=60.0, help="timing budget per measurement (after one warm-up call)")
    ap.add_argument("--budget-s", type=float, default=360.0, help="time guard: start no new (L, D, B) group after this many seconds from the start")
    ap.add_argument("--check-lengths", type=int, nargs="+", default=[100, 777])
    ap.add_argument("--check-d", type=int, default=64)
    ap.add_argument("--mid-length", type=int, default=4096, help="length of the check against the torch target")
    ap.add_argument("--skip-check", action="store_true")
    ap.add_argument("--tune", nargs="*", default=[], metavar="PASS.KEY=N", help="launch overrides, e.g. fwd.block_n=64 bwd.num_warps=4")
    ap.add_argument("--json", default=None, help="write every row here (default: $OUT/bench_gpu.json when $OUT is set)")
    args = ap.parse_args()
    if args.aot:
        aot(args)
        return
    if args.smoke:
        args.lengths, args.batches, args.dims, args.heads = [128], [1], [16], 2
        args.check_lengths, args.check_d, args.mid_length, args.rep_ms, args.flex_shapes = [37, 128], 16, 128, 1.0, ["all"]
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if device.type == "cpu" and not args.smoke:
        sys.exit("no CUDA device: run with --smoke (CPU, tiny) or --aot (builds only)")
    torch.backends.cuda.matmul.allow_tf32 = True
    t_start = time.monotonic()
    import triton

    log(f"torch {torch.__version__}, triton {triton.__version__}, device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu (interpreter)'}")
    for item in args.tune:
        key, value = item.split("=")
        which, field = key.split(".")
        for name in args.specs:
            modules(name)[1].TRITON_CONFIG[which][field] = int(value)
    if device.type == "cuda":
        a, b = (torch.randn(8192, 8192, device=device, dtype=torch.bfloat16) for _ in range(2))
        ms = timed(lambda: a @ b, device, 200.0)
        log(f"bf16 8192^3 matmul: {2 * 8192**3 / (ms * 1e-3) / 1e12:.0f} TFLOP/s measured (datasheet peak used for %pk: {PEAK_BF16 / 1e12:.0f})")
        del a, b
    ok = True
    if not args.skip_check:
        log("== correctness")
        ok = check(args, device)
        log(f"== correctness: {'all ok' if ok else 'FAILURES above'} ({time.monotonic() - t_start:.0f} s)")
    log("== table (bf16; ms = median; TFLOP/s on the cost model's useful FLOPs)" if device.type == "cuda" else "== table (smoke: float32, CPU)")
    args.correct = ok
    rows = run_table(args, device, t_start)
    save(args, rows)
    log(f"== done in {time.monotonic() - t_start:.0f} s; correctness {'ok' if ok else 'FAILED'}")
    log("\n".join(_line(r) for r in rows))


if __name__ == "__main__":
    main()
