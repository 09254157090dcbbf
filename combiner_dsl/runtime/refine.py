"""Box refinement: the one routine behind every "which parts of this product hold?" question.

A box is one aligned block per axis (block `idx` of size 2^level in that axis's pyramid of min/max
values) plus the item it answers for (`owner`). The caller's `judge` classifies boxes with the
interval domain; boxes that cannot hold are dropped, boxes that hold everywhere are `full`, mixed
ones are split in two along every axis that is not yet at single entries. What survives at level 0
is exact up to the judge's precision, so callers evaluate only the mixed leaves point by point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .intervals import Tri
from .tiling import TileBounds, chunks

# (levels per axis, block index per axis, owner) -> three-valued verdict per box
Judge = Callable[[list[int], list[torch.Tensor], torch.Tensor], Tri]
# (levels per axis, block index per axis, owner) -> whether each box is still worth looking at
Within = Callable[[list[int], list[torch.Tensor], torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Refined:
    """Leaf boxes (level 0 on every axis) that may hold, and whether each holds on all of it. With
    `split_full=False` full boxes stop early: they are in `whole` (levels, block indices, owners),
    not among the leaves; with `settle` as well, an owner's first full box ends its search."""

    idx: list[torch.Tensor]
    owner: torch.Tensor
    full: torch.Tensor
    whole: list[tuple[list[int], list[torch.Tensor], torch.Tensor]]


def refine(
    axes: Sequence[TileBounds],
    levels: Sequence[int],
    idx: Sequence[torch.Tensor],
    judge: Judge,
    owner: torch.Tensor | None = None,
    within: Within | None = None,
    split_full: bool = True,
    settle: bool = False,
    per_box: int = 64,
) -> Refined:
    lev = list(levels)
    ix = list(idx)
    own = torch.arange(ix[0].numel()) if owner is None else owner
    done = torch.zeros(int(own.max()) + 1 if own.numel() else 0, dtype=torch.bool)
    retired: list[tuple[list[int], list[torch.Tensor], torch.Tensor]] = []
    while True:
        keep = ~done[own]
        for axis, level, x in zip(axes, lev, ix, strict=True):
            keep &= axis.count[level][x] > 0
        if within is not None:
            keep &= within(lev, ix, own)
        at = keep.nonzero().flatten()
        ix, own = [x[at] for x in ix], own[at]
        can = torch.zeros(own.numel(), dtype=torch.bool)
        full = torch.zeros(own.numel(), dtype=torch.bool)
        for a, b in chunks(own.numel(), per_box):
            tri = judge(lev, [x[a:b] for x in ix], own[a:b])
            can[a:b], full[a:b] = tri.can_true, tri.all_true
        if all(level == 0 for level in lev):
            ix, own, full = [x[can] for x in ix], own[can], full[can]
            break
        # full boxes leave the loop now: their leaves are laid out once at the end, not level by level
        if bool(full.any()):
            retired.append((list(lev), [x[full] for x in ix], own[full]))
            if settle:  # one full box answers for its owner: the owner's other boxes can stop
                done[own[full]] = True
        at = (can & ~full).nonzero().flatten()
        ix, own = [x[at] for x in ix], own[at]
        for n, level in enumerate(lev):
            if level == 0:
                continue
            ix = [(x[:, None] * 2 + torch.tensor([0, 1])).flatten() if m == n else x.repeat_interleave(2) for m, x in enumerate(ix)]
            own = own.repeat_interleave(2)
            lev[n] = level - 1
    if not split_full:
        return Refined(ix, own, full, retired)
    parts = [(ix, own, full)] + [_leaves(axes, *r) for r in retired]
    return Refined([torch.cat([p[0][n] for p in parts]) for n in range(len(ix))], torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts]), [])


def _leaves(axes: Sequence[TileBounds], lev: list[int], ix: list[torch.Tensor], own: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Every non-empty leaf of boxes that all sit at levels `lev`."""
    local = torch.cartesian_prod(*[torch.arange(1 << level) for level in lev]).view(-1, len(lev))
    out = [((x[:, None] << level) + local[None, :, n]).flatten() for n, (x, level) in enumerate(zip(ix, lev, strict=True))]
    keep = torch.ones(out[0].numel(), dtype=torch.bool)
    for axis, x in zip(axes, out, strict=True):
        keep &= axis.count[0][x] > 0
    own = own.repeat_interleave(local.shape[0])[keep]
    return [x[keep] for x in out], own, torch.ones(own.numel(), dtype=torch.bool)
