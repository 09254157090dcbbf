"""How long the exhaustive checker and the prover take on the bundled examples (not a test).

    python bench/bench_checker.py            # default length set per example, fixed at L=4096, proofs
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from combiner_dsl import load
from combiner_dsl.exhaustive import check_length, check_lengths

ROOT = Path(__file__).parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-prove", action="store_true", help="skip the proofs")
    args = parser.parse_args()
    print(f"{'spec':32s} {'verdict':9s} {'default set':>12s} {'proof':>8s}")
    total_proof = 0.0
    check_lengths(load(ROOT / "examples" / "combiner_fixed.cmb").pattern, [64])  # warm up torch
    for path in sorted((ROOT / "examples").rglob("*.cmb")):
        spec = load(path)
        start = time.perf_counter()
        verdict = check_lengths(spec.pattern)
        exhaustive = time.perf_counter() - start
        proof = ""
        if not args.no_prove:
            start = time.perf_counter()
            verdict = spec.check(prove=True)
            elapsed = time.perf_counter() - start - exhaustive
            total_proof += elapsed
            proof = f"{elapsed:7.2f}s"
        print(f"{spec.name:32s} {verdict.status:9s} {exhaustive:11.2f}s {proof:>8s}")
    fixed = load(ROOT / "examples" / "combiner_fixed.cmb").pattern
    start = time.perf_counter()
    assert check_length(fixed, 4096) is None
    print(f"combiner_fixed exhaustive at L=4096: {time.perf_counter() - start:.2f}s")
    if not args.no_prove:
        print(f"all proofs together: {total_proof:.2f}s")


if __name__ == "__main__":
    main()
