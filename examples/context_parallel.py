"""Combiner attention split over the ranks of torch.distributed (context parallelism).

    torchrun --nproc-per-node 4 examples/context_parallel.py
    torchrun --nproc-per-node 2 examples/context_parallel.py --spec examples/combiner_fixed.cmb --length 1001

Each rank holds its contiguous chunk of q, k, v ([B, H, ceil(L/W), D]; the last chunk is
right-padded when W does not divide L), runs forward and backward, and checks its chunk of the
output and of the gradients against the single-process module on the whole sequence. Rank 0 then
prints what each rank moved and what ring attention would have moved. gloo on CPU, NCCL on GPUs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import torch.distributed as dist

import combiner_dsl as cd
from combiner_dsl.distributed import ContextParallel

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description="Combiner attention over torch.distributed ranks")
    ap.add_argument("--spec", default=str(HERE / "combiner_logsparse.cmb"))
    ap.add_argument("--length", type=int, default=4099, help="global sequence length L")
    ap.add_argument("--shape", nargs=3, type=int, default=[2, 4, 32], metavar=("B", "H", "D"))
    args = ap.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, W = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)

    attn = cd.compile(cd.load(args.spec))
    cp = ContextParallel(attn)
    B, H, D = args.shape
    L = args.length
    C = -(-L // W)

    # every rank draws the same global tensors (same seed) and keeps its chunk
    g = torch.Generator().manual_seed(0)
    q, k, v, grad = (torch.randn(B, H, L, D, dtype=torch.float64, generator=g).to(device) for _ in range(4))

    def chunk(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(x, (0, 0, 0, W * C - L))[:, :, rank * C : rank * C + C].clone()

    mine = [chunk(x).requires_grad_() for x in (q, k, v)]
    out = cp(*mine, length=L)
    out.backward(chunk(grad))

    whole = [x.clone().requires_grad_() for x in (q, k, v)]
    ref = attn(*whole)
    ref.backward(grad)
    n = max(0, min(L, rank * C + C) - rank * C)
    errors = [(out - chunk(ref)).abs()[:, :, :n].max()]
    for m, w in zip(mine, whole, strict=True):
        assert m.grad is not None and w.grad is not None
        errors.append((m.grad - chunk(w.grad)).abs()[:, :, :n].max())
    worst = torch.stack([e.detach().double() for e in errors]).max()
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)

    if rank == 0:
        print(f"{attn.pattern}: L = {L} over {W} ranks of {C} positions; B, H, D = {B}, {H}, {D}; float64")
        print(f"largest difference to one process (outputs and gradients of q, k, v, all ranks): {float(worst):.1e}")
        for t in cp.traffic(L, B, H, D, torch.float64):
            print(" ", t)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
