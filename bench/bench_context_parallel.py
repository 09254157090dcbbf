"""Context parallelism on gloo (CPU): time, bytes moved per rank, ring attention's bytes, peak memory.

For each spec, global length L and world size W: W processes (torch.multiprocessing spawn, gloo)
each hold [B, H, L/W, D] of q, k, v and run `ContextParallel` forward + backward; the parent runs
the single-process module on the whole sequence in the same run, for a ratio.

    python bench/bench_context_parallel.py                       # W in {2, 4}, L in {16384, 65536}
    python bench/bench_context_parallel.py --worlds 2 --lengths 4096 --specs combiner_fixed

- time: median over `--repeat` steps of the slowest rank's forward + backward (ranks start each step
  together, after a barrier). Every process, the parent's included, runs torch on one thread: on a
  small shared machine several OpenMP threads per process contend and run many times slower.
- bytes: what each rank's all-to-alls actually sent and received in one forward (the backward
  moves the same amounts the other way), against ring attention, which passes (W-1) chunks of K
  and V through every rank in the forward and K, V plus dK, dV in the backward.
- peak memory: rise of the rank process's peak RSS (VmHWM, reset before the step) over its RSS
  before one forward + backward: every allocation of the step, torch's included.

Plans and exchange schedules depend only on (spec, L, W): the parent builds them once (timed
apart) and hands them to the ranks, as `ContextParallel.prepare(L, schedules=...)` allows.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import combiner_dsl as cd
from combiner_dsl.codegen.torch_target import build_module
from combiner_dsl.distributed import ContextParallel, schedules_for, traffic

ROOT = Path(__file__).resolve().parent.parent
SPECS = ("combiner_fixed", "combiner_logsparse", "combiner_axial")


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _peak_added(fn: Any) -> int:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    before = _status("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    fn()
    return max(0, _status("VmHWM") - before)


def _inputs(L: int, B: int, H: int, D: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(B, H, L, D, generator=g) for _ in range(4))


def _rank(rank: int, W: int, port: int, spec: str, L: int, sched_path: str, out_dir: str, repeat: int, shape: tuple[int, int, int]) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=W)
    B, H, D = shape
    cp = ContextParallel(build_module(cd.load(ROOT / "examples" / f"{spec}.cmb").pattern))
    cp.prepare(L, schedules=torch.load(sched_path, weights_only=False))
    C = L // W
    q, k, v, g = (x[:, :, rank * C : rank * C + C].clone() for x in _inputs(L, B, H, D))
    q.requires_grad_()
    k.requires_grad_()
    v.requires_grad_()

    def step() -> None:
        cp(q, k, v).backward(g)

    step()  # warm-up
    times = []
    for _ in range(repeat):
        dist.barrier()
        t0 = time.perf_counter()
        step()
        slowest = torch.tensor([time.perf_counter() - t0], dtype=torch.float64)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        times.append(float(slowest))
    dist.barrier()
    peak = _peak_added(step)
    sent, received = cp.last_bytes
    Path(out_dir, f"{rank}.json").write_text(json.dumps({"time": statistics.median(times), "peak": peak, "sent": sent, "received": received}))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(specs: list[str], lengths: list[int], worlds: list[int], repeat: int, shape: tuple[int, int, int]) -> list[dict[str, Any]]:
    import torch.multiprocessing as mp

    B, H, D = shape
    rows = []
    for spec in specs:
        attn = cd.compile(cd.load(ROOT / "examples" / f"{spec}.cmb"))
        for L in lengths:
            t0 = time.perf_counter()
            attn.plan(L)
            plan_s = time.perf_counter() - t0
            q, k, v, g = _inputs(L, B, H, D)
            q.requires_grad_()
            k.requires_grad_()
            v.requires_grad_()

            def whole(m: Any = attn, q: torch.Tensor = q, k: torch.Tensor = k, v: torch.Tensor = v, g: torch.Tensor = g) -> None:
                m(q, k, v).backward(g)

            whole()
            one = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                whole()
                one.append(time.perf_counter() - t0)
            one_peak = _peak_added(whole)
            del q, k, v, g
            for W in worlds:
                if L % W:
                    print(f"skipping {spec} L={L} W={W}: W does not divide L", file=sys.stderr)
                    continue
                t0 = time.perf_counter()
                scheds = schedules_for(attn, L, W)
                sched_s = time.perf_counter() - t0
                ring = traffic(attn, L, W, B, H, D)[0].ring_forward
                with tempfile.TemporaryDirectory() as tmp:
                    path = str(Path(tmp, "schedules.pt"))
                    torch.save(scheds, path)
                    mp.spawn(_rank, args=(W, _free_port(), spec, L, path, tmp, repeat, shape), nprocs=W, join=True)
                    ranks = [json.loads(Path(tmp, f"{r}.json").read_text()) for r in range(W)]
                row = {
                    "spec": spec,
                    "L": L,
                    "W": W,
                    "plan_s": plan_s,
                    "schedule_s": sched_s,
                    "time_s": ranks[0]["time"],
                    "one_process_s": statistics.median(one),
                    "sent_max": max(r["sent"] for r in ranks),
                    "received_max": max(r["received"] for r in ranks),
                    "sent_total": sum(r["sent"] for r in ranks),
                    "ring": ring,
                    "peak_max": max(r["peak"] for r in ranks),
                    "one_process_peak": one_peak,
                }
                rows.append(row)
                print(_line(row), flush=True)
    return rows


def _mb(n: float) -> str:
    return f"{n / 2**20:,.2f} MiB" if n >= 2**20 else f"{n / 2**10:,.1f} KiB"


HEADER = (
    "| spec | L | W | fwd+bwd (s), slowest rank | one process (s) | max sent / rank | max received / rank "
    "| ring / rank | ring / ours | peak / rank | one process peak | plan (s) | schedule (s) |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def _line(r: dict[str, Any]) -> str:
    ratio = r["ring"] / max(1, r["sent_max"])
    return (
        f"| {r['spec']} | {r['L']} | {r['W']} | {r['time_s']:.3f} | {r['one_process_s']:.3f} | {_mb(r['sent_max'])} | {_mb(r['received_max'])} "
        f"| {_mb(r['ring'])} | {ratio:,.1f}x | {_mb(r['peak_max'])} | {_mb(r['one_process_peak'])} | {r['plan_s']:.1f} | {r['schedule_s']:.1f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", nargs="+", default=list(SPECS))
    ap.add_argument("--lengths", nargs="+", type=int, default=[16384, 65536])
    ap.add_argument("--worlds", nargs="+", type=int, default=[2, 4])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--shape", nargs=3, type=int, default=[1, 2, 64], metavar=("B", "H", "D"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    B, H, D = args.shape
    print(f"B = {B}, H = {H}, D = {D}, float32; one thread per process, {os.cpu_count()} cores; forward bytes (the backward moves the same the other way)")
    print(HEADER, flush=True)
    run(args.specs, args.lengths, args.worlds, args.repeat, (B, H, D))


if __name__ == "__main__":
    main()
