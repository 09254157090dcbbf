"""Summaries of regions that are prefixes (or suffixes) of shared windows of keys.

The axial plans' regions are nested runs: `colprefix[c, a]` is the first a keys of column c,
`rowleft[r, c]` the first c keys of row r, `rowright[r, c]` the last ones. Gathering every region's
members copies about L * sqrt(L) key and value rows (and scatters as much back in the backward
pass). Here each window is read once, as a strided view: pooled summaries are cumulative pools along
the window, and every region of a window takes its local expectation in one matmul against it, the
entries beyond the region masked. The regions of a window sit in a grid of `per_window` slots;
unused slots take the whole window (finite values, never read).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .ops import NEG_INF


@dataclass(frozen=True)
class Windows:
    """Window g holds the keys start + g * window_step + step * s, s < width; region r is the first
    (or, `suffix`, the last) sizes[r] keys of window `window[r]`, at grid slot `slot[r]`."""

    start: int
    window_step: int
    step: int
    windows: int
    width: int
    per_window: int
    suffix: bool
    window: torch.Tensor  # int64 [R]
    slot: torch.Tensor  # int64 [R]: window * per_window + rank among the window's regions
    grid_size: torch.Tensor  # int64 [windows * per_window]: each slot's size (width when unused)

    @property
    def reach(self) -> int:
        """One past the last position any window reads (a window may run past L: the input is padded)."""
        return self.start + (self.windows - 1) * self.window_step + self.step * (self.width - 1) + 1


def window_family(members: torch.Tensor, sizes: torch.Tensor) -> Windows | None:
    """The windows of a bucket's regions (members [R, S] padded with -1), or None when the regions
    are not prefixes or suffixes of shared windows in arithmetic progression."""
    R, S = members.shape
    if R < 2 or S < 2 or bool((sizes < 1).any()):
        return None
    first = members[:, 0]
    last = members.gather(1, (sizes - 1)[:, None])[:, 0]
    multi = sizes >= 2
    if not bool(multi.any()):
        return None
    step = int(members[multi, 1][0] - members[multi, 0][0])
    col = torch.arange(S)
    valid = col[None, :] < sizes[:, None]
    if step < 1 or not torch.equal(torch.where(valid, members, -1), torch.where(valid, first[:, None] + step * col[None, :], -1)):
        return None
    for suffix in (False, True):
        anchors, window = torch.unique(last if suffix else first, return_inverse=True)
        G = anchors.numel()
        starts = anchors - step * (S - 1) if suffix else anchors
        window_step = int(starts[1] - starts[0]) if G > 1 else 0
        if G == R or int(starts[0]) < 0 or not torch.equal(starts, starts[0] + window_step * torch.arange(G)):
            continue  # nothing shared, or windows a strided view cannot read
        counts = torch.bincount(window, minlength=G)
        per_window = int(counts.max())
        if G * per_window > 2 * R:
            continue  # a ragged grid: more wasted slots than regions
        order = torch.argsort(window, stable=True)
        rank = torch.empty(R, dtype=torch.int64)
        rank[order] = torch.arange(R) - (torch.cumsum(counts, 0) - counts)[window[order]]
        slot = window * per_window + rank
        grid_size = torch.full((G * per_window,), S, dtype=torch.int64)
        grid_size[slot] = sizes
        return Windows(int(starts[0]), window_step, step, G, S, per_window, suffix, window, slot, grid_size)
    return None


def _read(x: torch.Tensor, w: Windows) -> torch.Tensor:
    """x's windows as a [B, H, windows, width, D] strided view (of a padded copy when they run past L)."""
    if w.reach > x.shape[2]:
        x = torch.nn.functional.pad(x, (0, 0, 0, w.reach - x.shape[2]))
    B, H, _L, D = x.shape
    sb, sh, sl, sd = x.stride()
    return x.as_strided((B, H, w.windows, w.width, D), (sb, sh, w.window_step * sl, w.step * sl, sd), x.storage_offset() + w.start * sl)


def _pools(xw: torch.Tensor, pool: str, w: Windows) -> torch.Tensor:
    """Every grid slot's pool over its region: [B, H, windows * per_window, D]."""
    if w.suffix:
        xw = xw.flip(-2)
    running = xw.cummax(-2).values if pool == "max" else xw.cumsum(-2)
    grid_window = torch.arange(w.windows, device=xw.device).repeat_interleave(w.per_window)
    size = w.grid_size.to(xw.device)
    out = running[:, :, grid_window, size - 1]
    return out / size[:, None].to(out.dtype) if pool == "mean" else out


def window_summaries(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: Windows, query_pool: str, key_pool: str, scale: float, budget: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """kbar, vbar [B, H, R, D] of the regions, in the bucket's order."""
    B, H, _, D = q.shape
    G, P, S = w.windows, w.per_window, w.width
    kw, vw = _read(k, w), _read(v, w)
    qbar = _pools(_read(q, w), query_pool, w).view(B, H, G, P, D)
    kbar = _pools(kw, key_pool, w)
    col = torch.arange(S, device=q.device)
    size = w.grid_size.to(q.device).view(G, P, 1)
    inside = col >= S - size if w.suffix else col < size  # [G, P, S]
    step = max(1, budget // max(1, B * H * P * max(S, D)))
    vbars = []
    for a in range(0, G, step):  # windows in chunks: the logits stay small
        b = min(G, a + step)
        logits = torch.matmul(qbar[:, :, a:b], kw[:, :, a:b].transpose(-1, -2)) * scale  # [B, H, n, P, S]
        weights = torch.softmax(logits.masked_fill(~inside[a:b], NEG_INF), dim=-1)
        vbars.append(torch.matmul(weights, vw[:, :, a:b]))
    vbar = torch.cat(vbars, 2).view(B, H, G * P, D)
    slot = w.slot.to(q.device)
    return kbar[:, :, slot], vbar[:, :, slot]
