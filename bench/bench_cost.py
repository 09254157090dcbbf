"""Cost-model timing: what `combiner cost --L N` spends per example (exact figures at N, plus the
order, which measures three lengths up to 4096), and the exact count at N against the dense
layout's count where the dense grid still fits (its ratio: how much the planner's tile
classification saves).

    python bench/bench_cost.py [--L 65536] [--dense-up-to 4096] [SPEC ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from combiner_dsl import load
from combiner_dsl.cost import cost_at, cost_from_layout, order

ROOT = Path(__file__).resolve().parent.parent


def _timed(fn: object, *args: object) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)  # type: ignore[operator]
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--L", type=int, default=65536)
    ap.add_argument("--dense-up-to", type=int, default=4096, help="also count on the dense layout when L is at most this")
    ap.add_argument("specs", nargs="*", type=Path)
    args = ap.parse_args()
    specs = args.specs or sorted((ROOT / "examples").glob("*.cmb")) + sorted((ROOT / "examples" / "sparse").glob("*.cmb"))
    print(f"| spec | cost at L = {args.L} (wall / cpu) | order (wall / cpu) | dense layout / ours |")
    print("|---|---|---|---|")
    for path in specs:
        pattern = load(path).pattern
        w, c, figures = _timed(cost_at, pattern, args.L)
        ow, oc, _ = _timed(order, pattern)
        ratio = "-"
        if args.L <= args.dense_up_to:
            dw, _, dense = _timed(cost_from_layout, pattern, args.L)
            assert dense == figures, (path, dense, figures)
            ratio = f"{dw / w:.1f}x"
        print(f"| {pattern.name} | {w:.2f} s / {c:.2f} s | {ow:.2f} s / {oc:.2f} s | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
