"""Context parallelism for a compiled Combiner module on torch.distributed.

`ContextParallel(attn, group)` wraps a module from `combiner_dsl.compile(spec)`: rank r of the
group holds the contiguous chunk [r*C, (r+1)*C) of the sequence (q, k, v of shape [B, H, C, D]) and
gets the same chunk of the output. What moves between ranks is read from the module's plan at the
global length (`schedule.py`); the two rounds per softmax are `all_to_all_single` collectives with
autograd, so gradients of q, k, v are exact on every rank.

`simulate` runs all ranks in one process (messages handed over in memory): the same arithmetic,
without a process group, for tests and for reading the traffic of a split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..runtime.module import check_inputs, compute_dtype
from .compute import Steps, rank_steps, round_sizes
from .schedule import PlanSchedule, build_schedule


@dataclass(frozen=True)
class Traffic:
    """Bytes one rank moves per call, and what ring attention over the same split would move."""

    rank: int
    forward_sent: int
    forward_received: int
    backward_sent: int  # the backward of an all-to-all is the all-to-all of the transposed splits
    backward_received: int
    ring_forward: int  # ring attention: (W-1) chunks of K and V pass through each rank, each way
    ring_backward: int  # ... and K, V plus their gradients dK, dV travel the ring in the backward

    def __str__(self) -> str:
        return (
            f"rank {self.rank}: forward sent {self.forward_sent:,} B, received {self.forward_received:,} B; "
            f"backward sent {self.backward_sent:,} B, received {self.backward_received:,} B; "
            f"ring attention: forward {self.ring_forward:,} B, backward {self.ring_backward:,} B each way"
        )


def chunk_size(L: int, world: int) -> int:
    return -(-L // world)


def schedules_for(attn: torch.nn.Module, L: int, world: int, device: torch.device | str = "cpu") -> tuple[PlanSchedule, ...]:
    """The exchange schedule of `attn` (a compiled module) at global length L over `world` ranks."""
    plan = attn.plan(L, "cpu")  # type: ignore[operator]
    scheds = tuple(build_schedule(p, world, chunk_size(L, world)) for p in plan.plans)
    device = torch.device(device)
    return scheds if device.type == "cpu" else tuple(s.to(device) for s in scheds)


def traffic(attn: torch.nn.Module, L: int, world: int, B: int, H: int, D: int, dtype: torch.dtype = torch.float32) -> list[Traffic]:
    """Per rank, the bytes moved by one forward and one backward of `ContextParallel(attn)` at global L."""
    size = torch.finfo(compute_dtype(dtype)).bits // 8
    C = chunk_size(L, world)
    ring = (world - 1) * 2 * B * H * C * D * torch.finfo(dtype).bits // 8
    sent, got = [0] * world, [0] * world
    for ps in schedules_for(attn, L, world):
        for m in round_sizes(ps, B, H, D):
            for x in range(world):
                sent[x] += sum(m[x]) * size
                got[x] += sum(m[y][x] for y in range(world)) * size
    return [Traffic(r, sent[r], got[r], got[r], sent[r], ring, 2 * ring) for r in range(world)]


def _drive(steps: Steps, group: Any) -> tuple[torch.Tensor, int, int]:
    """Run one rank's steps with all-to-all collectives (autograd), in the same order on every rank.

    Returns the output and the elements this rank sent and received.
    """
    import torch.distributed._functional_collectives as fc

    msg = next(steps)
    prev: torch.Tensor | None = None
    n_sent = n_received = 0
    while True:
        sent, sizes, total = msg
        n_sent += sum(t.numel() for t in sent)
        n_received += sum(sizes)
        if total == 0:
            inbox = [sent[0].new_zeros(0) for _ in sizes]
        else:
            flat = torch.cat(sent)
            if prev is not None:
                # ties this round to the previous one, so that every rank runs the backward
                # collectives in the same (reverse) order, even where no data depends on them
                flat = flat + prev.sum() * 0.0
            recv = fc.wait_tensor(fc.all_to_all_single_autograd(flat, list(sizes), [t.numel() for t in sent], group))  # type: ignore[no-untyped-call]
            prev = recv
            inbox = list(torch.split(recv, list(sizes)))
        try:
            msg = steps.send(inbox)
        except StopIteration as done:
            out: torch.Tensor = done.value
            return (out if prev is None else out + prev.sum() * 0.0), n_sent, n_received


def simulate(
    attn: torch.nn.Module,
    q: Sequence[torch.Tensor],
    k: Sequence[torch.Tensor],
    v: Sequence[torch.Tensor],
    scale: float | None = None,
    length: int | None = None,
) -> list[torch.Tensor]:
    """All ranks of a split in one process: q[r], k[r], v[r] are rank r's chunks; returns each rank's output."""
    W = len(q)
    C = int(q[0].shape[2])
    L = _length(length, W, C)
    D = int(q[0].shape[-1])
    sc = 1.0 / math.sqrt(D) if scale is None else float(scale)
    scheds = schedules_for(attn, L, W, q[0].device)
    dt = compute_dtype(q[0].dtype)
    gens = [rank_steps(scheds, r, q[r].to(dt), k[r].to(dt), v[r].to(dt), sc) for r in range(W)]
    msgs: list[Any] = [next(g) for g in gens]
    results: list[torch.Tensor | None] = [None] * W
    while results[0] is None:
        inboxes = [[msgs[s][0][y] for s in range(W)] for y in range(W)]
        for r, g in enumerate(gens):
            try:
                msgs[r] = g.send(inboxes[r])
            except StopIteration as done:
                results[r] = done.value
    return [out.to(q[0].dtype) for out in results if out is not None]


def _length(length: int | None, W: int, C: int) -> int:
    L = W * C if length is None else length
    if isinstance(L, bool) or not isinstance(L, int) or not (W * C - C < L <= W * C or (W == 1 and L == C)):
        raise ValueError(f"length = {length!r}: with {W} ranks holding {C} positions each, the global length must be in {W * C - C + 1}..{W * C}")
    return L


class ContextParallel(torch.nn.Module):
    """Combiner attention of a compiled module over the ranks of a process group, one chunk per rank.

    forward(q, k, v, scale=None, length=None): q, k, v are this rank's [B, H, C, D] chunk (positions
    rank*C .. rank*C+C-1 of the sequence); returns this rank's [B, H, C, D] chunk of the output.
    The global length is W*C, or `length` when the sequence was right-padded so that W divides it
    (then (W-1)*C < length <= W*C; positions from `length` on are ignored and get zero output).
    """

    def __init__(self, attn: torch.nn.Module, group: Any = None) -> None:
        super().__init__()
        if not callable(getattr(attn, "plan", None)):
            raise TypeError("ContextParallel wraps a module from combiner_dsl.compile(spec) (it needs its .plan(L, device))")
        self.attn = attn
        self.group = group
        self._schedules: dict[tuple[int, int, str], tuple[PlanSchedule, ...]] = {}
        self.last_bytes = (0, 0)  # (sent, received) by this rank in the last forward

    def _world(self) -> tuple[Any, int, int]:
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("ContextParallel needs an initialised torch.distributed process group")
        group = self.group if self.group is not None else dist.group.WORLD
        return group, dist.get_rank(group), dist.get_world_size(group)

    def prepare(self, L: int, device: torch.device | str = "cpu", schedules: tuple[PlanSchedule, ...] | None = None) -> tuple[PlanSchedule, ...]:
        """The schedules at global length L, built now (or `schedules` built elsewhere by `schedules_for`)."""
        _, _, W = self._world()
        return self._schedule(L, W, torch.device(device), schedules)

    def _schedule(self, L: int, world: int, device: torch.device, given: tuple[PlanSchedule, ...] | None = None) -> tuple[PlanSchedule, ...]:
        key = (L, world, str(device))
        if given is not None:
            if any(len(s.ranks) != world for s in given):
                raise ValueError(f"the schedules given are for {len(given[0].ranks)} ranks, the group has {world}")
            self._schedules[key] = tuple(s.to(device) for s in given)
        elif key not in self._schedules:
            self._schedules[key] = schedules_for(self.attn, L, world, device)
        return self._schedules[key]

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None, length: int | None = None) -> torch.Tensor:
        check_inputs(q, k, v, scale)
        group, rank, W = self._world()
        C = int(q.shape[2])
        L = _length(length, W, C)
        D = int(q.shape[-1])
        sc = 1.0 / math.sqrt(D) if scale is None else float(scale)
        dt = compute_dtype(q.dtype)
        steps = rank_steps(self._schedule(L, W, q.device), rank, q.to(dt), k.to(dt), v.to(dt), sc)
        out, n_sent, n_received = _drive(steps, group)
        size = torch.finfo(dt).bits // 8
        self.last_bytes = (n_sent * size, n_received * size)
        return out.to(q.dtype)

    def traffic(self, L: int, B: int, H: int, D: int, dtype: torch.dtype = torch.float32) -> list[Traffic]:
        _, _, W = self._world()
        return traffic(self.attn, L, W, B, H, D, dtype)

    def extra_repr(self) -> str:
        return f"attn={type(self.attn).__name__}"
