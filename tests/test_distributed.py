"""Context parallelism: every rank's chunk of the output and of the gradients equals one process.

The fast tests run all ranks of a split in one process (`simulate`, the same arithmetic with the
messages handed over in memory); the slow ones spawn 2 and 4 gloo processes and go through the
all-to-all collectives with autograd.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest
import torch

import combiner_dsl as cd
from combiner_dsl.codegen.torch_target import build_module
from combiner_dsl.distributed import ContextParallel, schedules_for, simulate, traffic

EXAMPLES = Path(__file__).parent.parent / "examples"
SPECS = ("combiner_fixed", "combiner_logsparse", "combiner_axial")
TOL = 1e-10


# pools the examples do not use: each earlier block as two halves, one with a mean query and a
# summed key, one with a mean query and an at() key
POOLS = """pattern pools:
    causal
    let s = isqrt(L)
    direct: j // s == i // s
    partition low[r in 0 .. cdiv(L, s)]:
        member: j // s == r and j % s < s // 2
        select: r < i // s
        summary: query = mean, key = sum
    partition high[r in 0 .. cdiv(L, s)]:
        member: j // s == r and j % s >= s // 2
        select: r < i // s
        summary: query = mean, key = at(r * s + s // 2)
"""
TEXTS = {"pools": POOLS, "mixture_average": (EXAMPLES / "combiner_mixture.cmb").read_text().replace("mix: joint", "mix: average")}


@cache
def module(name: str) -> torch.nn.Module:
    """The module of an example or of a spec in TEXTS (compile() without the docstring's cost figures)."""
    spec = cd.load(text=TEXTS[name], name=name) if name in TEXTS else cd.load(EXAMPLES / f"{name}.cmb")
    return build_module(spec.pattern)


def _inputs(L: int, seed: int, B: int = 2, H: int = 2, D: int = 8) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, H, L, D, dtype=torch.float64, generator=g) for _ in range(4))  # q, k, v, upstream grad


def _chunks(x: torch.Tensor, W: int) -> list[torch.Tensor]:
    L = x.shape[2]
    C = -(-L // W)
    return list(torch.nn.functional.pad(x, (0, 0, 0, W * C - L)).split(C, 2))


def _reference(name: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
    q, k, v = (x.clone().requires_grad_() for x in (q, k, v))
    out = module(name)(q, k, v)
    return (out.detach(), *torch.autograd.grad(out, (q, k, v), g))


# ---------------------------------------------------------------- in one process


@pytest.mark.parametrize(
    ("name", "L", "W"),
    [
        ("combiner_fixed", 124, 2),  # s = 11: blocks straddle the rank boundary
        ("combiner_fixed", 123, 4),  # W does not divide L: the last chunk is right-padded
        ("combiner_logsparse", 124, 4),
        ("combiner_logsparse", 37, 3),
        ("combiner_axial", 124, 4),
        ("combiner_axial", 37, 2),
        pytest.param("combiner_mixture", 100, 3, marks=pytest.mark.slow),  # one joint softmax of two plans, extra segments
        ("combiner_fixed_bidir", 100, 4),  # bidirectional: later ranks send to earlier ones too
        ("pools", 90, 4),
        pytest.param("mixture_average", 60, 2, marks=pytest.mark.slow),  # two softmaxes: two pairs of rounds
    ],
)
def test_simulated_split_equals_one_process(name: str, L: int, W: int) -> None:
    q, k, v, g = _inputs(L, seed=L + W)
    ref = _reference(name, q, k, v, g)
    qs, ks, vs = ([c.clone().requires_grad_() for c in _chunks(x, W)] for x in (q, k, v))
    outs = simulate(module(name), qs, ks, vs, length=L)
    got = torch.cat(outs, 2)
    grads = torch.autograd.grad(got, (*qs, *ks, *vs), torch.cat(_chunks(g, W), 2))
    assert torch.equal(got[:, :, L:], torch.zeros_like(got[:, :, L:]))  # padding positions: zero output
    assert (got[:, :, :L] - ref[0]).abs().max() < TOL
    for n, want in enumerate(ref[1:]):
        have = torch.cat(grads[n * W : (n + 1) * W], 2)[:, :, :L]
        assert (have - want).abs().max() < TOL


def test_one_rank_is_the_module_itself() -> None:
    q, k, v, _ = _inputs(37, seed=1)
    assert torch.equal(simulate(module("combiner_fixed"), [q], [k], [v])[0], module("combiner_fixed")(q, k, v))


def test_aligned_blocks_move_no_raw_keys() -> None:
    # L = 4096, s = 64: every chunk of 1024 is whole blocks, so only summaries cross ranks
    (ps,) = schedules_for(module("combiner_fixed"), 4096, 4)
    assert all(ps.kv.rows(x, y) == 0 for x in range(4) for y in range(4))
    assert ps.k.rows(0, 3) == 16 and ps.ov.rows(2, 3) == 16  # rank 3 selects the 16 blocks of each earlier rank


def test_logsparse_moves_a_logarithmic_share() -> None:
    per_rank = traffic(module("combiner_logsparse"), 2048, 4, B=1, H=1, D=64)
    assert max(t.forward_sent for t in per_rank) * 20 < per_rank[0].ring_forward
    assert sum(t.forward_sent for t in per_rank) == sum(t.forward_received for t in per_rank)
    assert all(t.backward_sent == t.forward_received for t in per_rank)


def test_length_must_fit_the_chunks() -> None:
    q, k, v, _ = _inputs(16, seed=2)
    with pytest.raises(ValueError, match=r"global length must be in 13\.\.16"):
        simulate(module("combiner_fixed"), list(q.split(4, 2)), list(k.split(4, 2)), list(v.split(4, 2)), length=12)


def test_wrapper_errors_are_plain() -> None:
    with pytest.raises(TypeError, match="compile"):
        ContextParallel(torch.nn.Linear(2, 2))
    q, k, v, _ = _inputs(8, seed=3)
    with pytest.raises(RuntimeError, match="process group"):
        ContextParallel(module("combiner_fixed"))(q, k, v)


# ---------------------------------------------------------------- gloo processes


def _worker(rank: int, W: int, rendezvous: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    # a file store: no port is picked, freed and raced for between the parent and the ranks
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=W)
    try:
        for name in SPECS:
            for L in (124, 4 * 31 - 1):  # 123: W does not divide it, the last chunk is padded
                q, k, v, g = _inputs(L, seed=L + W)
                ref = _reference(name, q, k, v, g)
                mine = [c[rank].clone().requires_grad_() for c in (_chunks(q, W), _chunks(k, W), _chunks(v, W))]
                out = ContextParallel(module(name))(*mine, length=L)
                grads = torch.autograd.grad(out, mine, _chunks(g, W)[rank])
                C = out.shape[2]
                lo, hi = rank * C, min(L, rank * C + C)
                assert (out[:, :, : hi - lo] - ref[0][:, :, lo:hi]).abs().max() < TOL, (name, L, rank)
                for have, want in zip(grads, ref[1:], strict=True):
                    assert (have[:, :, : hi - lo] - want[:, :, lo:hi]).abs().max() < TOL, (name, L, rank, "grad")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("W", [2, 4])
def test_gloo_ranks_equal_one_process(W: int, tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(W, str(tmp_path / "rendezvous")), nprocs=W, join=True)
