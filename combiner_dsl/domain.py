"""Are the requires defined at every length the prover considers?

A proof speaks of every L in 1..MAX_LENGTH that the requires accept, so it needs each `require`
(and the `let`s it reads) to have a value at every such L; one that overflows or divides by zero
at some L is the spec's error at that L, exactly as when the exhaustive checker meets it there
(docs/language.md, "Requires and the lengths a proof covers"). Requires are evaluated in order:
a later one is only evaluated at lengths the earlier ones accept, so `require L <= 40` before
`require 2 ** L >= 64 * L` keeps the power in range.

z3 proposes a length where the first failing require (or a `let`) is undefined; every proposal is
confirmed by evaluating the requires at that L (`evaluate.failed_require`), so the error reported
is always a real one, located, with its L. Up to `SCAN_MAX` the first such L is found by
evaluation (z3 only says whether to look); past it z3's model is confirmed as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import z3

from . import ir
from .errors import SpecEvaluationError
from .evaluate import failed_require
from .ranges import risky_nodes
from .runtime.ops import MAX_LENGTH
from .smt import Encoder

SCAN_MAX = 4096  # up to here an undefined require is located at its first L by evaluation
CAPS = (16, 64, 256, 1024, SCAN_MAX)  # windows searched in turn, so the L reported stays small
MODELS_PAST_SCAN = 3  # z3 models past SCAN_MAX confirmed before giving up
PINS = 24  # c ** e pinned to its value for e <= PINS, so small models are true ones

Status = Literal["defined", "unknown"]


def _undefined_at(pattern: ir.Pattern, L: int) -> SpecEvaluationError | None:
    try:
        failed_require(pattern, L)
    except SpecEvaluationError as err:
        return err
    return None


def _candidates(pattern: ir.Pattern) -> tuple[z3.ArithRef, z3.BoolRef | None, list[z3.BoolRef]]:
    """L, "some require (or let) is undefined at L" (None: nothing can be), and the encoding's constraints."""
    enc = Encoder(False, PINS, risky_nodes(pattern))
    L = z3.Int("L")
    env: dict[str, z3.ExprRef] = {"L": L}
    for let in pattern.lets:
        env[let.name] = enc.constant(let.name, enc.term(let.value, env))
    lets = list(enc.obligations)
    held: list[z3.BoolRef] = []
    cases: list[z3.BoolRef] = []
    for cond in pattern.requires:
        start = len(enc.obligations)
        term = enc.term(cond, env)
        new = enc.obligations[start:]
        if new:  # the first failing require: the earlier ones hold (they are defined there)
            cases.append(z3.And(*held, z3.Or(*(z3.Not(o.holds) for o in new))))
        held.append(term)
    if lets:  # a let undefined at a length every require accepts
        cases.append(z3.And(*held, z3.Or(*(z3.Not(o.holds) for o in lets))))
    return L, (z3.Or(*cases) if cases else None), enc.constraints()


def _first(pattern: ir.Pattern, ask: Callable[[int, int], z3.CheckSatResult | int], hi: int, err: SpecEvaluationError) -> SpecEvaluationError:
    """The error at the smallest L past SCAN_MAX the solver can confirm (bisection on its answers)."""
    lo = SCAN_MAX + 1
    while lo < hi:
        mid = (lo + hi) // 2
        got = ask(lo, mid)
        if got == z3.unsat:
            lo = mid + 1
            continue
        found = _undefined_at(pattern, got) if isinstance(got, int) else None
        if found is None:
            break  # unknown, or a model of the relaxation only: keep the error in hand
        hi, err = got, found
    return err


def check_requires(pattern: ir.Pattern, timeout_s: float, proved: Callable[[z3.Solver, str], None] | None = None) -> tuple[Status, str | None]:
    """("defined", None) when every require has a value at every L in 1..MAX_LENGTH the earlier
    ones accept; ("unknown", why) when the solver cannot tell. Raises the located
    `SpecEvaluationError` (with its L) of a length where one does not. `proved(solver, scope)`
    receives the unsat query behind a "defined" answer (for certificates)."""
    L, undefined, constraints = _candidates(pattern)
    if undefined is None:
        return "defined", None
    last: list[z3.Solver] = []

    def ask(lo: int, hi: int, *extra: z3.BoolRef) -> z3.CheckSatResult | int:
        """The L of a model with lo <= L <= hi, or z3's unsat / unknown."""
        s = z3.Solver()
        s.set("timeout", max(1, int(timeout_s * 1000)))
        s.add(L >= lo, L <= hi, undefined, *constraints, *extra)
        last[:] = [s]
        r = s.check()
        return s.model().eval(L, model_completion=True).as_long() if r == z3.sat else r

    def defined(scope: str) -> tuple[Status, None]:
        if proved is not None:
            proved(last[0], scope)
        return "defined", None

    if ask(1, MAX_LENGTH) == z3.unsat:
        return defined("all L")
    lo = 1
    for cap in CAPS:  # a window where z3 does not rule it out is evaluated length by length
        if ask(lo, cap) != z3.unsat:
            for n in range(lo, cap + 1):
                err = _undefined_at(pattern, n)
                if err is not None:
                    raise err
        lo = cap + 1
    seen: list[z3.BoolRef] = []
    for _ in range(MODELS_PAST_SCAN):
        got = ask(SCAN_MAX + 1, MAX_LENGTH, *seen)
        if got == z3.unsat:  # lengths up to SCAN_MAX were settled by evaluation
            return defined(f"{SCAN_MAX} < L (L <= {SCAN_MAX} by evaluation)" if not seen else f"{SCAN_MAX} < L, but for {len(seen)} lengths evaluated")
        if not isinstance(got, int):
            break
        err = _undefined_at(pattern, got)
        if err is not None:
            raise _first(pattern, ask, got, err)
        seen.append(L != got)  # a model the solver's relaxation allows (c ** e): ask again
    return "unknown", f"could not establish that the requires are defined at every L up to {MAX_LENGTH}"
