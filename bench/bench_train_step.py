"""CPU benchmark of one training step (forward + backward) of the torch target (not a test).

For each spec and length: the generated module (plan cached), and exact causal attention
(`F.scaled_dot_product_attention(is_causal=True)`) on the same inputs, in the same process. The
time is the median of `--repeat` steps of `out.sum().backward()` (process CPU time, so another job on
the machine inflates both columns alike); the last column is the ratio.

    python bench/bench_train_step.py
    python bench/bench_train_step.py --lengths 1024 4096 --specs combiner_mixture --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import combiner_dsl

ROOT = Path(__file__).resolve().parent.parent
SPECS = ("combiner_fixed", "combiner_logsparse", "combiner_axial", "combiner_axial_vertical", "combiner_axial_horizontal", "combiner_mixture")


def step_time(fn: Callable[..., torch.Tensor], qkv: tuple[torch.Tensor, ...], repeat: int) -> float:
    def once() -> float:
        for x in qkv:
            x.grad = None
        start = time.process_time()
        fn(*qkv).sum().backward()
        return time.process_time() - start

    once()  # warm-up: plan, allocator
    return statistics.median(once() for _ in range(repeat))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--specs", nargs="+", default=list(SPECS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1: the training runs of lm_small.py)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"B = {args.batch}, H = {args.heads}, D = {args.dim}, float32, {args.threads} thread(s); CPU seconds per step, median of {args.repeat}")
    print("| spec | L | ours | SDPA causal | ours / SDPA |")
    print("|---|---|---|---|---|")
    for L in args.lengths:
        g = torch.Generator().manual_seed(0)
        qkv = tuple(torch.randn(args.batch, args.heads, L, args.dim, generator=g, requires_grad=True) for _ in range(3))
        sdpa = step_time(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), qkv, args.repeat)
        for name in args.specs:
            module = combiner_dsl.compile(combiner_dsl.load(ROOT / "examples" / f"{name}.cmb"))
            ours = step_time(module, qkv, args.repeat)
            print(f"| {name} | {L} | {ours * 1e3:.0f} ms | {sdpa * 1e3:.0f} ms | {ours / sdpa:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
