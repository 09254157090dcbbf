"""Differential fuzzing of every stage against the others, on random and mutated specs.

Each spec goes through
  * the independent brute-force evaluator (`tests/brute_force.py`: plain Python ints, loops),
  * the exhaustive checker (`exhaustive.check_length`, torch grids),
  * the prover (`Spec.check`: z3, short timeouts and a small total budget),
  * the generated torch module, against the dense oracle (`oracle.py`),
and any disagreement, or any exception that is not a `CombinerError`, is printed as a minimal
reproduction (the spec shrunk line by line while the same disagreement persists, and the length).

Every PROVED verdict is re-checked by the exhaustive checker at every L <= 64 the spec accepts,
one L in 65..300, and, for a share --long-rate of them, one L in 301..4095 and L = 4096 itself
(`recheck_lengths`). An error `check` raises at a length it did not try (a require undefined
where only the prover looks, docs/language.md) is replayed by brute force at that length.

    python bench/fuzz_differential.py --seed 1 --count 10000 --time-budget 3000

Deterministic for a given --seed and --count (the time budget only cuts the run short). Not part
of the test suite; the regression tests in tests/test_hardening.py cover what it found.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import combiner_dsl  # noqa: E402
from combiner_dsl import ir  # noqa: E402
from combiner_dsl.errors import CombinerError  # noqa: E402
from combiner_dsl.evaluate import accepts  # noqa: E402
from combiner_dsl.exhaustive import check_length  # noqa: E402
from combiner_dsl.oracle import oracle_attention  # noqa: E402
from tests.brute_force import TooBig, brute_accepts, brute_check  # noqa: E402

torch.set_num_threads(1)

# ---------------------------------------------------------------- spec generation

LETS = ["isqrt(L)", "2", "3", "max(1, L // 4)", "clog2(L) + 1", "max(1, isqrt(L) - 1)", "L // 4 + 1", "ilog2(L) + 1", "max(2, L // 3)"]
REQUIRES = ["L >= 3", "L % 2 == 0", "2 ** L >= 64 * L", "L < 0", "L >= 10 and L <= 40", "s * s == L", "L != 7", "L % 3 != 1 or L > 20"]
DIRECTS = [
    "j // s == i // s", "j == i", "abs(i - j) < s", "j % s == i % s", "i - j < s and j <= i", "j // s == i // s or j % s == s - 1",
    "false", "true", "j // s == i // s or j // s < i // s - 1", "j // s == i // s and (i + 1) * 1000000007 > 0",
    "j // s == i // s or j + 4611686018427387904 < 0", "j // s == i // s or 2 ** (i // s) == 0",
]
SELECTS = [
    "r < i // s", "r <= i // s", "r < i // s - 1", "r != i // s", "r < i // s and r % 2 == 0", "r > i // s", "r == i // s - 1",
    "r < i // s and L >= 10", "r < i // s and 2 ** r > 0", "r < i // s and (i * i) % 7 == 3", "r < i // s or r > i // s",
    "r < i // s and r * 1000000000000 >= 0", None, None,
]
MEMBERS = [
    "j // s == r", "j // s == r and j % 2 == 0", "j // s < r", "j // s == r and j % s < s // 2 + 1", "j >= r * s and j < r * s + s + 1",
    "j // s == r or j == L - 1", "j // s == r and j < L",
]
RANGES = ["0 .. cdiv(L, s)", "0 .. cdiv(L, s) - 1", "1 .. cdiv(L, s)", "0 .. L - L", "0 .. cdiv(L, s) + 1", "0 .. L // s"]
SUMMARIES = [
    "max", "mean", "sum", "query = at(r * s), key = max", "query = at(min(r * s + i % s, L - 1)), key = at(r * s)", "query = at(r * s + s), key = sum",
    "query = max, key = at(r * s + s - 1)",
]
BIG = ["4611686018427387904", "1000000000000000000", "9223372036854775807", "2 ** 40", "3 ** 30"]


def _partition(rng: random.Random, name: str) -> list[str]:
    two = rng.random() < 0.2
    lines = [f"    partition {name}[r in {rng.choice(RANGES)}{', c in 0 .. 2' if two else ''}]:", f"        member: {rng.choice(MEMBERS)}{' and j % 2 == c' if two else ''}"]
    select = rng.choice(SELECTS)
    if select:
        lines.append(f"        select: {select}")
    lines.append(f"        summary: {rng.choice(SUMMARIES)}")
    return lines


def _sound_core(rng: random.Random, n: int) -> list[str]:
    """Combiner-Fixed with a random block size: specs that hold, so the prover and module get work."""
    causal = rng.random() < 0.7
    select = "r < i // s" if causal else "r != i // s"
    lines = [f"pattern fuzz{n}:", f"    {'causal' if causal else 'bidirectional'}", f"    let s = {rng.choice(LETS)}", "    direct: j // s == i // s"]
    lines += ["    partition block[r in 0 .. cdiv(L, s)]:", "        member: j // s == r"]
    lines += [f"        select: {select}"] if rng.random() < 0.8 else []
    lines += [f"        summary: {rng.choice([*SUMMARIES[:3], 'query = at(r * s), key = at(r * s)', 'query = at(r * s + i % s), key = max'])}"]
    if rng.random() < 0.3:
        lines.insert(3, f"    require {rng.choice(REQUIRES)}")
    if rng.random() < 0.3:  # a partition with no region at some L, never selected
        lines += ["    partition spare[r in 0 .. cdiv(L, s) - cdiv(L, s)]:", "        member: j == r", "        select: r > i", "        summary: query = at(r + L), key = max"]
    return lines


def random_spec(rng: random.Random, n: int) -> str:
    if rng.random() < 0.4:
        text = "\n".join(_sound_core(rng, n)) + "\n"
        return mutate(rng, text) if rng.random() < 0.25 else text
    lines = [f"pattern fuzz{n}:", f"    {rng.choice(['causal', 'causal', 'bidirectional'])}", f"    let s = {rng.choice(LETS)}"]
    if rng.random() < 0.3:
        lines.append(f"    require {rng.choice(REQUIRES)}")
    if rng.random() < 0.15:  # several plans
        for p in range(2):
            lines.append(f"    plan p{p}:")
            lines += ["    " + x for x in [f"    direct: {rng.choice(DIRECTS)}", *_partition(rng, f"part{p}")]]
        lines.append(f"    mix: {rng.choice(['joint', 'average'])}")
    else:
        lines.append(f"    direct: {rng.choice(DIRECTS)}")
        for k in range(rng.choice([0, 1, 1, 1, 2])):
            lines += _partition(rng, f"part{k}")
    text = "\n".join(lines) + "\n"
    return mutate(rng, text) if rng.random() < 0.25 else text


def mutate(rng: random.Random, text: str) -> str:
    """One small change: a literal made big, a sub-term squared, a comparison flipped."""
    choice = rng.randrange(3)
    if choice == 0:
        digits = [k for k, ch in enumerate(text) if ch.isdigit() and not text[k - 1].isalnum() and text[k - 1] != "_"]
        if digits:
            k = rng.choice(digits)
            end = k
            while end < len(text) and text[end].isdigit():
                end += 1
            return text[:k] + rng.choice(BIG) + text[end:]
    if choice == 1:
        for old, new in (("i // s", "(i // s) ** 2"), ("r * s", "r * s * s"), ("j // s", "j // (s * s)")):
            if old in text and rng.random() < 0.5:
                return text.replace(old, new, 1)
    for old, new in (("<", "<="), ("==", "!="), (" - 1", " + 1")):
        if old in text and rng.random() < 0.5:
            return text.replace(old, new, 1)
    return text


# ---------------------------------------------------------------- one spec through every stage


@dataclass(frozen=True)
class Finding:
    kind: str
    L: int | None
    detail: str


def _brute(pattern: ir.Pattern, L: int) -> tuple[str, Any]:
    try:
        return "ok", brute_check(pattern, L)
    except TooBig:
        return "too big", None
    except (ZeroDivisionError, ValueError, ArithmeticError) as err:
        return "error", type(err).__name__


def _ours(pattern: ir.Pattern, L: int) -> tuple[str, Any]:
    try:
        w = check_length(pattern, L)
    except CombinerError as err:
        return "error", str(err).splitlines()[0]
    return "ok", None if w is None else (w.check, w.i, w.j)


def _brute_accepts(pattern: ir.Pattern, L: int) -> bool | None:
    """Brute force's answer to "does L satisfy the requires?"; None when they are undefined at L."""
    try:
        return brute_accepts(pattern, L)
    except (ZeroDivisionError, ValueError, ArithmeticError, TooBig):
        return None


BRUTE_REPLAY_MAX = 256  # the longest L at which brute force replays a whole check


def _replay_error(pattern: ir.Pattern, err: CombinerError, failing: dict[int, tuple[str, Any]]) -> list[Finding]:
    """`check` raised a located error at some L: brute force must fail to evaluate there as well.

    An error at a length tried agrees when the checker failed there too; one at another length
    (a require undefined where only the prover looks, docs/language.md) is replayed by brute force
    at that L: its requires, then, if it accepts L, the whole check."""
    first = str(err).splitlines()[0]
    L = getattr(err, "L", None)
    if not isinstance(L, int):
        if failing and any(v[0] == "error" for v in failing.values()):
            return []
        return [Finding("check-error", None, f"check raised {first}, with no length named, yet no tried length fails to evaluate")]
    if L in failing and failing[L][0] == "error":
        return []
    accepted = _brute_accepts(pattern, L)
    if accepted is None:
        return []  # brute force cannot evaluate the requires there either: agreement
    if not accepted:
        return [Finding("check-error", L, f"check raised {first}, but brute force rejects L={L}")]
    if L > BRUTE_REPLAY_MAX:
        return [Finding("check-error", L, f"check raised {first}; brute force accepts L={L}, too long to replay")]
    theirs = _brute(pattern, L)
    if theirs[0] in ("error", "too big"):
        return []
    return [Finding("check-error", L, f"check raised {first}, brute force at L={L}: {theirs}")]


def _module(pattern: ir.Pattern) -> Any:
    try:
        from combiner_dsl.codegen.torch_target import build_module

        return build_module(pattern)
    except ImportError:  # the public API is enough (slower where it also computes the docstring's cost)
        return combiner_dsl.compile(pattern, "torch")


def _forget_generated() -> None:
    for name in [m for m in sys.modules if m.startswith("combiner_generated_")]:
        del sys.modules[name]


def run_spec(text: str, lengths: list[int], seed: int, opts: argparse.Namespace) -> tuple[str, list[Finding]]:
    """Every stage on one spec; returns the verdict status (or "rejected") and the disagreements."""
    findings: list[Finding] = []
    try:
        spec = combiner_dsl.load(text=text, name="fuzz.cmb")
    except CombinerError:
        return "rejected", []
    except Exception as err:
        return "crash", [Finding("crash:load", None, f"{type(err).__name__}: {err}")]
    pattern = spec.pattern
    failing: dict[int, tuple[str, Any]] = {}
    accepted: list[int] = []
    for L in lengths:
        try:
            ok = accepts(pattern, L)
        except CombinerError as err:  # a require undefined at L: check reports it too
            ok, failing[L] = None, ("error", str(err).splitlines()[0])
        except Exception as err:
            findings.append(Finding("crash:accepts", L, f"{type(err).__name__}: {err}"))
            continue
        b_ok = _brute_accepts(pattern, L)
        if ok is not None and b_ok is not None and ok != b_ok:
            findings.append(Finding("requires", L, f"compiler accepts={ok}, brute force accepts={b_ok}"))
        if not ok:
            continue
        accepted.append(L)
        try:
            ours = _ours(pattern, L)
        except Exception as err:
            findings.append(Finding("crash:checker", L, f"{type(err).__name__}: {err}"))
            continue
        if ours[0] == "error" or ours[1] is not None:
            failing[L] = ours
        theirs = _brute(pattern, L)
        if theirs[0] == "too big":
            continue
        if ours[0] != theirs[0]:
            findings.append(Finding("checker-vs-brute", L, f"checker {ours}, brute force {theirs}"))
        elif ours[0] == "ok":
            a, b = ours[1], theirs[1]
            same = (a is None) == (b is None) and (a is None or (a[0] == b[0] and (a[0] == "C3" or (a[1], a[2]) == (b[1], b[2]))))
            if not same:
                findings.append(Finding("checker-vs-brute", L, f"checker {a}, brute force {b}"))
    try:
        verdict = spec.check(lengths, prove=True, timeout_s=opts.prover_timeout, budget_s=opts.prover_budget)
    except CombinerError as err:
        verdict = None
        findings += _replay_error(pattern, err, failing)
    except Exception as err:
        return "crash", [*findings, Finding("crash:check", None, f"{type(err).__name__}: {err}")]
    status = verdict.status if verdict else "error"
    refuted_at = [L for L, v in failing.items() if v[0] == "ok" and v[1] is not None]
    if verdict is not None:
        if verdict.holds and refuted_at:
            findings.append(Finding("verdict-vs-checker", refuted_at[0], f"{verdict.status} ({verdict.scope_text()}) but the checker refutes at L={refuted_at[0]}: {failing[refuted_at[0]]}"))
        if verdict.status == "proved" and not accepted and status != "vacuous":
            pass  # accepted only beyond the lengths tried: nothing to compare here
        if verdict.status == "refuted" and verdict.witness is not None:
            w = verdict.witness
            try:
                again = check_length(pattern, w.L) if w.L <= 4096 else None
                if not accepts(pattern, w.L):
                    findings.append(Finding("witness-rejected-length", w.L, f"refuted at L={w.L}, which the requires reject"))
                elif w.L <= 4096 and (again is None or again.check != w.check):
                    findings.append(Finding("witness-not-replayed", w.L, f"witness {w.to_json()} but the checker finds {again}"))
            except CombinerError:
                pass
        if verdict.status == "vacuous" and accepted:
            findings.append(Finding("vacuous-but-accepted", accepted[0], f"vacuous, yet L={accepted[0]} is accepted"))
        if verdict.status == "proved":
            findings += _contradict(pattern, verdict.scope, set(lengths), random.Random(seed), opts)
    if verdict is not None and verdict.holds and opts.module:
        findings += _compare_module(pattern, [L for L in accepted if L not in failing], seed)
    return status, findings


RECHECKED: Counter[str] = Counter()  # what the PROVED verdicts were re-checked against


def recheck_lengths(scope: Any, tried: set[int], rng: random.Random, long_rate: float) -> list[int]:
    """Lengths at which a PROVED verdict is re-checked exhaustively: every L <= 64 not tried yet,
    one L in 65..300, and for a share `long_rate` of the specs one L in 301..top - 1 and top
    itself, where top is 4096 (or the proof's bound, if lower)."""
    top = 4096 if scope == "all L" else min(4096, int(str(scope).rsplit(" ", 1)[-1]))
    picks = [L for L in range(1, min(64, top) + 1) if L not in tried]
    if top > 64:
        picks.append(rng.randint(65, min(300, top)))
    if top > 301 and rng.random() < long_rate:
        picks += [rng.randint(301, top - 1), top]
    return picks


def _contradict(pattern: ir.Pattern, scope: Any, tried: set[int], rng: random.Random, opts: argparse.Namespace) -> list[Finding]:
    """A PROVED verdict against the exhaustive checker at the lengths of `recheck_lengths`."""
    out = []
    RECHECKED["proved verdicts"] += 1
    for L in recheck_lengths(scope, tried, rng, opts.long_rate):
        try:
            if not accepts(pattern, L):
                continue
            w = check_length(pattern, L)
        except CombinerError as err:
            out.append(Finding("proved-but-undefined", L, str(err).splitlines()[0]))
            continue
        RECHECKED["lengths"] += 1
        RECHECKED["L > 64"] += L > 64
        RECHECKED["L = 4096"] += L == 4096
        if w is not None:
            out.append(Finding("proved-but-refuted", L, w.explain()))
    return out


def _compare_module(pattern: ir.Pattern, lengths: list[int], seed: int) -> list[Finding]:
    if not lengths:
        return []
    try:
        module = _module(pattern)
    except CombinerError as err:
        return [Finding("compile-error", None, str(err).splitlines()[0])]
    except Exception as err:
        return [Finding("crash:compile", None, f"{type(err).__name__}: {err}")]
    out = []
    g = torch.Generator().manual_seed(seed)
    try:
        for n, L in enumerate(lengths[:3]):
            q, k, v = (torch.randn(1, 2, L, 4, generator=g, dtype=torch.float64) for _ in range(3))
            if n == 1:  # huge logits: masking must stay exact
                q, k = q * 1e17, -k.abs() * 1e17
            try:
                got = module(q, k, v)
            except Exception as err:
                out.append(Finding("module-error", L, f"{type(err).__name__}: {err}"))
                continue
            want = oracle_attention(pattern, q, k, v)
            bad = ~torch.isclose(got, want, rtol=1e-6, atol=1e-9 * max(1.0, float(v.abs().max())))
            if bool(bad.any()) or bool(got.isnan().any()):
                out.append(Finding("module-vs-oracle", L, f"max |module - oracle| = {float((got - want).abs().nan_to_num(math.inf).max()):.3g}"))
    finally:
        _forget_generated()
    return out


# ---------------------------------------------------------------- shrinking and the campaign


def shrink(text: str, L: int | None, fails: Callable[[str, list[int]], bool], lengths: list[int]) -> tuple[str, list[int]]:
    """Drop lines (and whole indented blocks) while `fails` still holds; keep the one length if it suffices."""
    if L is not None and fails(text, [L]):
        lengths = [L]
    lines = text.splitlines()
    changed = True
    while changed:
        changed = False
        for k in range(len(lines) - 1, 0, -1):
            indent = len(lines[k]) - len(lines[k].lstrip())
            end = k + 1
            while end < len(lines) and len(lines[end]) - len(lines[end].lstrip()) > indent:
                end += 1
            trial = lines[:k] + lines[end:]
            if fails("\n".join(trial) + "\n", lengths):
                lines, changed = trial, True
                break
    return "\n".join(lines) + "\n", lengths


def _wide(text: str) -> bool:
    """A literal of 2**31 or more, or a power: the stages' integer semantics may differ there."""
    return "**" in text or any(int(m) >= 2**31 for m in re.findall(r"\b[0-9]+\b", text))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=1000, help="specs to generate")
    ap.add_argument("--time-budget", type=float, default=3600.0, metavar="S", help="stop after this many seconds")
    ap.add_argument("--prover-timeout", type=float, default=0.2, metavar="S", help="per solver query")
    ap.add_argument("--prover-budget", type=float, default=2.0, metavar="S", help="all solver queries of one spec")
    ap.add_argument("--long-rate", type=float, default=0.03, help="share of proved specs also checked at one length in 301..4095 and at 4096")
    ap.add_argument("--no-module", dest="module", action="store_false", help="skip the torch module")
    ap.add_argument("--max-L", type=int, default=20, help="lengths tried per spec are drawn from 1..max-L")
    opts = ap.parse_args(argv)
    cache = tempfile.mkdtemp(prefix="combiner-fuzz-")
    os.environ["COMBINER_CACHE_DIR"] = cache  # generated modules go to a private, temporary cache
    start = time.perf_counter()
    statuses: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    done = 0
    try:
        for n in range(opts.count):
            if time.perf_counter() - start > opts.time_budget:
                break
            rng = random.Random(opts.seed * 1_000_003 + n)
            text = random_spec(rng, n)
            lengths = sorted(set(rng.sample(range(1, opts.max_L + 1), 4)) | {1})
            try:
                status, findings = run_spec(text, lengths, n, opts)
            except Exception as err:
                status, findings = "crash", [Finding("crash:fuzzer", None, f"{type(err).__name__}: {err}")]
                print(f"--- finding crash:fuzzer (spec #{n}, seed {opts.seed}): {type(err).__name__}: {err}\n{text}", flush=True)
                statuses[status] += 1
                done += 1
                kinds["crash:fuzzer"] += 1
                continue
            statuses[status] += 1
            done += 1
            for f in findings:
                kinds[f.kind] += 1

                def same(t: str, ls: list[int], kind: str = f.kind, n: int = n) -> bool:
                    return any(g.kind == kind for g in run_spec(t, ls, n, opts)[1])

                small, ls = shrink(text, f.L, same, lengths)
                tag = " [integer size: 64-bit wraparound suspected]" if _wide(small) else ""
                print(f"--- finding {f.kind}{tag} (spec #{n}, seed {opts.seed}) at L={f.L}: {f.detail}\n    lengths {ls}\n{small}", flush=True)
            if done % 500 == 0:
                print(f"[{done} specs, {time.perf_counter() - start:.0f} s] {dict(statuses)} findings {dict(kinds)}", flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    elapsed = time.perf_counter() - start
    print(f"done: {done} specs in {elapsed:.0f} s ({elapsed / max(1, done) * 1000:.0f} ms each); verdicts {dict(statuses)}; findings {dict(kinds) or 'none'}")
    print(f"proved verdicts re-checked exhaustively: {dict(RECHECKED)}")
    return 1 if kinds else 0


if __name__ == "__main__":
    sys.exit(main())
