"""Decompositions of an anchor other than i (Fenwick of s * (i // s), window plus dyadic): proved for all L."""

from __future__ import annotations

import pytest

import combiner_dsl

FENWICK = """
pattern fenwick:
    causal
    let s = isqrt(L)
    let K = clog2(L)
    direct: j // s == i // s
    partition dyadic[l in 0 .. K, r in 0 .. cdiv(L, 2 ** l)]:
        member: j // 2 ** l == r
        select: (s * (i // s) // 2 ** l) % 2 == 1 and r == s * (i // s) // 2 ** l - 1
"""

WINDOW = """
pattern window_dyadic:
    causal
    let W = 64
    let K = clog2(L)
    direct: i - j < W
    partition dyadic[l in 0 .. K, r in 0 .. cdiv(L, 2 ** l)]:
        member: j // 2 ** l == r
        select: (max(i - W + 1, 0) // 2 ** l) % 2 == 1 and r == max(i - W + 1, 0) // 2 ** l - 1
"""


@pytest.mark.parametrize("text", [FENWICK, WINDOW], ids=["fenwick", "window_dyadic"])
def test_anchored_decompositions_are_proved_for_every_length(text: str) -> None:
    verdict = combiner_dsl.load(text=text).check(L=[1, 2, 3, 5, 16, 65, 100], timeout_s=10.0)
    assert (verdict.status, verdict.scope) == ("proved", "all L"), verdict.reason


def test_an_anchor_one_block_short_is_still_refuted() -> None:
    # The boundary stops a block early: the keys of the previous block are uncovered.
    text = FENWICK.replace("s * (i // s)", "max(s * (i // s) - s, 0)")
    verdict = combiner_dsl.load(text=text).check(L=[16], timeout_s=10.0)
    assert verdict.status == "refuted" and verdict.witness is not None and verdict.witness.check == "C2"
