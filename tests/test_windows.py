"""Summaries of prefix and suffix regions read through shared windows (runtime/windows.py): which
bucket takes the window path, and every pool against the dense oracle, forward and backward."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from combiner_dsl import load
from combiner_dsl.codegen.torch_target import build_module
from combiner_dsl.oracle import oracle_attention
from combiner_dsl.runtime.windows import window_family


def padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    S = max(len(r) for r in rows)
    return torch.tensor([r + [-1] * (S - len(r)) for r in rows]), torch.tensor([len(r) for r in rows])


def test_prefixes_of_columns_share_their_column() -> None:
    w = 4  # colprefix[c, a]: the first a keys of column c, for a = 1..3
    members, sizes = padded([[c + w * t for t in range(a)] for c in range(w) for a in range(1, 4)])
    got = window_family(members, sizes)
    assert got is not None and not got.suffix
    assert (got.start, got.window_step, got.step, got.windows, got.width, got.per_window) == (0, 1, w, w, 3, 3)
    assert got.window.tolist() == [c for c in range(w) for _ in range(3)]
    assert got.reach == (w - 1) + w * 2 + 1  # the last column's third key, plus one


def test_suffixes_of_rows_share_their_row() -> None:
    w = 5  # rowright[r, c]: keys c+1 .. w-1 of row r, for c = 0..3
    members, sizes = padded([[r * w + x for x in range(c + 1, w)] for r in range(3) for c in range(w - 1)])
    got = window_family(members, sizes)
    assert got is not None and got.suffix
    assert (got.start, got.window_step, got.step, got.windows, got.width) == (1, w, 1, 3, w - 1)
    assert sorted(got.slot.tolist()) == list(range(12)) and got.grid_size.tolist() == sizes.tolist()


@pytest.mark.parametrize(
    "rows",
    [
        [[0, 1], [4, 5], [8, 9]],  # disjoint blocks: nothing shared, gathers are as good
        [[0, 2], [0, 1, 2]],  # not arithmetic
        [[0, 1], [0, 1, 2], [5, 6], [9, 10]],  # windows at 0, 5, 9: no strided view reads them
        [[0], [3]],  # one key each
    ],
)
def test_other_families_keep_the_gather(rows: list[list[int]]) -> None:
    assert window_family(*padded(rows)) is None


MIXTURE = (Path(__file__).resolve().parent.parent / "examples" / "combiner_mixture.cmb").read_text()


def mixture_with(summary: str) -> str:
    """combiner_mixture (column prefixes, row prefixes and row suffixes) with another summary."""
    return re.sub(r"(\n( +)select: [^\n]*)", lambda m: f"{m[1]}\n{m[2]}summary: {summary}", MIXTURE)


@pytest.mark.parametrize("summary", ["max", *(pytest.param(s, marks=pytest.mark.slow) for s in ("mean", "sum", "query = mean, key = max"))])
def test_every_pool_through_windows_matches_the_oracle(summary: str) -> None:
    pattern = load(text=mixture_with(summary)).pattern
    attn = build_module(pattern)
    g = torch.Generator().manual_seed(3)
    for L in (7, 50, 100, 127):
        windows = [bk.windows for p in attn.plan_for(L).plans for bk in p.buckets]
        if L > 7:  # (at 7 the rows hold two keys: one-key regions, nothing to share)
            assert sum(w is not None for w in windows) == 3, L  # prefixes of columns and rows, suffixes of rows
            assert any(w is not None and w.suffix for w in windows)
        q, k, v = (torch.randn(2, 2, L, 8, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
        out, ref = attn(q, k, v), oracle_attention(pattern, q, k, v)
        assert (out - ref).abs().max().item() < 1e-10
        grad = torch.randn_like(out)
        for a, b in zip(torch.autograd.grad(out, (q, k, v), grad), torch.autograd.grad(ref, (q, k, v), grad), strict=True):
            assert (a - b).abs().max().item() < 1e-10


PAST_THE_END = """pattern rows:
    bidirectional
    direct: j // 4 == i // 4
    partition rowleft[r in 0 .. cdiv(L, 4), c in 1 .. 5]:
        member: j // 4 == r and j % 4 < c
        select: r != i // 4 and c == i % 4 + 1
"""


def test_windows_past_the_end_are_read_from_a_padded_copy() -> None:
    # L = 4 n + 1: the last row holds one key, and its window of width 4 runs past L
    pattern = load(text=PAST_THE_END).pattern
    attn = build_module(pattern)
    for L in (9, 13, 101):
        assert any(bk.windows is not None and bk.windows.reach > L for p in attn.plan_for(L).plans for bk in p.buckets), L
        q, k, v = (torch.randn(1, 2, L, 4, dtype=torch.float64) for _ in range(3))
        assert (attn(q, k, v) - oracle_attention(pattern, q, k, v)).abs().max().item() < 1e-12
