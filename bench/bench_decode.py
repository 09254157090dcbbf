"""CPU benchmark of cached decoding (not a test): one new token at position L, per L.

Combiner: the decoding cache of a constant-block Combiner-Fixed spec (prefix-stable, proved by
`combiner check`), filled by a prefill over L tokens; each step reads the open block directly and
every complete block through its summary. Peer: `F.scaled_dot_product_attention` of the new query
over a full K/V cache of L + 1 keys (the usual KV cache). Both in one process, same shapes, after
warm-up; the median over `--steps` consecutive steps is reported, and the Combiner step outputs
are checked against a full forward at the smallest L.

    python bench/bench_decode.py                          # L = 4096, 16384, 65536; block 256
    python bench/bench_decode.py --lengths 4096 --block 64 --steps 50 --threads 2

Cache bytes: Combiner counts its raw q/k/v slots and unit summaries (the per-capacity plan, shared
by every sequence and layer, is reported apart); SDPA counts K and V for all L + 1 positions.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import combiner_dsl
from combiner_dsl.runtime.decode import DecodeCache, decode_plans, spec_of

SPEC = """\
pattern fixed_block{s}:
    causal
    direct: j // {s} == i // {s}
    partition block[r in 0 .. cdiv(L, {s})]:
        member: j // {s} == r
        select: r < i // {s}
        summary: max
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384, 65536])
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both (0: torch's choice); a step is many tiny ops, which thread synchronisation on a busy machine swamps")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = combiner_dsl.load(text=SPEC.format(s=args.block), name=f"fixed_block{args.block}")
    verdict = spec.check(L=range(1, 65), streaming=True)
    print(f"spec fixed_block{args.block}: full attention {verdict.status}, streaming {verdict.streaming.status}; B=1 H={args.heads} D={args.dim} fp32, torch threads {torch.get_num_threads()}")
    attn = combiner_dsl.compile(spec)
    H, D, n = args.heads, args.dim, args.steps
    print(f"{'L':>7} {'combiner ms/step':>17} {'sdpa ms/step':>13} {'speedup':>8} {'combiner cache':>15} {'sdpa cache':>11} {'plan (shared)':>14} {'plan build s':>13}")
    for i, L in enumerate(args.lengths):
        total = L + n + 5
        q, k, v = (torch.randn(1, H, total, D) for _ in range(3))
        t0 = time.perf_counter()
        plans = decode_plans(spec_of(attn), total)
        built = time.perf_counter() - t0
        cache = DecodeCache(spec_of(attn), total, 1, H, H, D, plans=plans)
        cache.extend(q[:, :, :L], k[:, :, :L], v[:, :, :L])
        kv_k, kv_v = torch.zeros(1, H, total, D), torch.zeros(1, H, total, D)
        kv_k[:, :, :L], kv_v[:, :, :L] = k[:, :, :L], v[:, :, :L]
        ours, peer, outs = [], [], []
        for t in range(L, L + n):
            a = time.perf_counter()
            outs.append(cache.step(q[:, :, t : t + 1], k[:, :, t : t + 1], v[:, :, t : t + 1]))
            b = time.perf_counter()
            kv_k[:, :, t], kv_v[:, :, t] = k[:, :, t], v[:, :, t]
            F.scaled_dot_product_attention(q[:, :, t : t + 1], kv_k[:, :, : t + 1], kv_v[:, :, : t + 1])
            c = time.perf_counter()
            ours.append(b - a)
            peer.append(c - b)
        if i == 0:  # the steps are exact: rows of one forward over the whole sequence
            full = attn(q[:, :, : L + n], k[:, :, : L + n], v[:, :, : L + n])[:, :, L:]
            err = (torch.cat(outs, 2) - full).abs().max().item()
            print(f"        check at L={L}: max |step - forward| = {err:.2e}")
        skip = min(5, n // 3)  # warm-up steps
        mo, mp = statistics.median(ours[skip:]) * 1e3, statistics.median(peer[skip:]) * 1e3
        sdpa_bytes = 2 * H * (L + 1) * D * 4
        print(f"{L:>7} {mo:>17.3f} {mp:>13.3f} {mp / mo:>7.1f}x {cache.nbytes() / 2**20:>11.2f} MiB {sdpa_bytes / 2**20:>7.1f} MiB {sum(p.nbytes() for p in plans) / 2**20:>10.1f} MiB {built:>13.2f}")


if __name__ == "__main__":
    main()
