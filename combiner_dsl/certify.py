"""Proof certificates: each prover query as an SMT-LIB 2 file, re-checked by an independent solver.

`combiner check --certify DIR` writes one file per conclusive query (one per check, plan and
partition, plus the definedness query) with a header naming the spec, the check and the expected
answer; `combiner certify DIR` asks cvc5 (the optional `cvc5` extra) and reports agreement.

z3 relates floor division to the prover's fresh quotient constants (`a == b*q + r`, `0 <= r < b`);
cvc5 is much stronger on SMT-LIB's own `div`/`mod`, so each file also asserts the bridge
`b > 0 => q == (div a b) and r == (mod a b)` for every such division. A bridge follows from the
query's own definitions of q and r by the lemma in `floordiv-lemma.smt2`, written and re-checked
with the rest, so the files prove exactly what the prover's queries do.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import z3

from . import prove
from .errors import CombinerError
from .verdict import CHECKS, Verdict

LEMMA_FILE = "floordiv-lemma.smt2"
LEMMA = """\
; combiner-dsl proof obligation (SMT-LIB 2)
; spec: (none: the lemma every certificate's bridge assertions rely on)
; check: for all a, b > 0, q, r: a == b*q + r and 0 <= r < b imply q == (div a b) and r == (mod a b)
; expected: unsat
; (the negation, for arbitrary a, b, q, r, is unsatisfiable)
(set-logic ALL)
(set-info :status unsat)
(declare-fun a () Int)
(declare-fun b () Int)
(declare-fun q () Int)
(declare-fun r () Int)
(assert (and (> b 0) (= a (+ (* b q) r)) (<= 0 r) (< r b)))
(assert (not (and (= q (div a b)) (= r (mod a b)))))
(check-sat)
"""
ALLOWED = {"set-logic", "set-info", "declare-fun", "declare-const", "define-fun", "declare-sort", "assert", "check-sat"}
_HEADER = re.compile(r"^; expected: (sat|unsat)$", re.MULTILINE)


def _bridges(assertions: list[z3.BoolRef]) -> list[z3.BoolRef]:
    """`b > 0 => q == div(a, b) and r == mod(a, b)` for every `a == b*q + r` of smt.py's encoding."""
    found: dict[tuple[int, int, int], tuple[z3.ArithRef, z3.ArithRef, z3.ArithRef, z3.ArithRef]] = {}
    seen: set[int] = set()
    todo: list[z3.ExprRef] = list(assertions)
    while todo:
        e = todo.pop()
        if e.get_id() in seen:
            continue
        seen.add(e.get_id())
        todo.extend(e.children())
        if not z3.is_eq(e) or not z3.is_add(e.arg(1)) or e.arg(1).num_args() != 2:
            continue
        prod, r = e.arg(1).arg(0), e.arg(1).arg(1)
        if not (z3.is_mul(prod) and prod.num_args() == 2):
            continue
        b, q = prod.arg(0), prod.arg(1)
        if all(z3.is_const(x) and not z3.is_int_value(x) for x in (q, r)) and str(q).startswith("q!") and str(r).startswith("r!"):
            found[(e.arg(0).get_id(), b.get_id(), q.get_id())] = (e.arg(0), b, q, r)
    return [z3.Implies(b > 0, z3.And(q == a / b, r == a % b)) for a, b, q, r in found.values()]  # z3's / and % on Int are SMT-LIB div and mod


def render(ob: prove.Obligation, spec_path: str, pattern: str) -> str:
    """The certificate text of one obligation: header comments, then the query with its bridges."""
    s = z3.Solver()
    s.from_string(ob.smt2)
    assertions = list(s.assertions())
    out = z3.Solver()
    out.add(*assertions, *_bridges(assertions))
    body = [line for line in out.to_smt2().splitlines() if not line.startswith(("; benchmark", "(set-info :status"))]
    title = CHECKS[ob.check].split(":")[0] if ob.check in CHECKS else "definedness"
    header = [
        "; combiner-dsl proof obligation (SMT-LIB 2)",
        f"; spec: {spec_path}",
        f"; pattern: {pattern}",
        f"; plan: {ob.plan}",
        f"; check: {ob.check} ({title}): {ob.what}",
        f"; scope: {ob.scope}",
        f"; expected: {ob.expected}",
        f"; {'unsat proves the check' if ob.expected == 'unsat' else 'sat: the violation behind the refutation'}; bridge asserts rely on {LEMMA_FILE}",
        "(set-logic ALL)",
        f"(set-info :status {ob.expected})",
    ]
    return "\n".join(header + body) + "\n"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "x"


@contextmanager
def recording(directory: str | Path, spec_path: str, pattern: str, refute: Callable[[], object]) -> Iterator[Callable[[Verdict], int]]:
    """Record the queries the prover settles inside the block; call the yielded `write(verdict)`.

    `refute` re-runs the prover when the exhaustive checker refuted the spec before z3 was asked,
    so a refutation also leaves its satisfiable query behind.
    """
    got: list[prove.Obligation] = []
    token = prove.OBLIGATION_HOOK.set(got.append)

    def write(verdict: Verdict) -> int:
        if verdict.status == "refuted" and not any(o.expected == "sat" for o in got):
            refute()
        root = Path(directory)
        try:
            root.mkdir(parents=True, exist_ok=True)
            (root / LEMMA_FILE).write_text(LEMMA)
            sub = root / _slug(f"{Path(spec_path).stem}-{pattern}")
            sub.mkdir(exist_ok=True)
            for old in sub.glob("*.smt2"):
                old.unlink()
            for n, ob in enumerate(got):
                (sub / f"{n:02d}-{_slug(ob.plan)}-{ob.check}-{_slug(ob.what)}.smt2").write_text(render(ob, spec_path, pattern))
        except OSError as err:
            raise CombinerError(f"--certify {directory}: cannot write: {err.strerror or err}") from None
        return len(got)

    try:
        yield write
    finally:
        prove.OBLIGATION_HOOK.reset(token)


@dataclass(frozen=True, slots=True)
class Recheck:
    path: str
    expected: str
    answer: str  # "sat" | "unsat" | "unknown (...)"
    seconds: float

    @property
    def agrees(self) -> bool:
        return self.answer == self.expected


def recheck_file(path: Path, timeout_s: float) -> Recheck:
    """Ask cvc5 about one certificate; only the commands a certificate needs are accepted."""
    try:
        import cvc5
    except ImportError:
        raise CombinerError("combiner certify needs cvc5: pip install 'combiner-dsl[cvc5]'") from None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CombinerError(f"{path}: cannot read: {err}") from None
    m = _HEADER.search(text)
    if m is None:
        raise CombinerError(f"{path}: no '; expected: sat|unsat' header line: not a certificate written by combiner check --certify")
    start = time.perf_counter()
    solver = cvc5.Solver()
    solver.setOption("tlimit-per", str(max(1, int(timeout_s * 1000))))
    parser = cvc5.InputParser(solver)
    parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, text, str(path))
    symbols = parser.getSymbolManager()
    answers: list[str] = []
    try:
        while True:
            cmd = parser.nextCommand()
            if cmd.isNull():
                break
            if cmd.getCommandName() not in ALLOWED:  # no options, no output channels, no includes
                raise CombinerError(f"{path}: command ({cmd.getCommandName()} ...) is not allowed in a certificate")
            out = cmd.invoke(solver, symbols)
            if cmd.getCommandName() == "check-sat":
                answers.append(out.strip())
    except RuntimeError as err:  # cvc5's parse and type errors
        raise CombinerError(f"{path}: cvc5 cannot read it: {err}") from None
    if len(answers) != 1:
        raise CombinerError(f"{path}: a certificate has exactly one (check-sat), this one has {len(answers)}")
    return Recheck(str(path), m.group(1), answers[0], time.perf_counter() - start)


def recheck_dir(directory: str | Path, timeout_s: float = 60.0, echo: Callable[[str], None] = print) -> int:
    """Re-check every `*.smt2` under `directory`: 0 all agree, 1 some disagree or stay unknown."""
    root = Path(directory)
    if not root.is_dir():
        raise CombinerError(f"{directory}: not a directory")
    files = sorted(root.rglob("*.smt2"))
    if not files:
        raise CombinerError(f"{directory}: no .smt2 certificates (write them with combiner check --certify {directory})")
    import cvc5

    bad = 0
    for f in files:
        r = recheck_file(f, timeout_s)
        bad += not r.agrees
        echo(f"{r.path}: cvc5 says {r.answer}, expected {r.expected}: {'agrees' if r.agrees else 'DISAGREES'} ({r.seconds:.1f} s)")
    echo(f"{len(files)} obligations: {len(files) - bad} confirmed by cvc5 {cvc5.__version__}, {bad} not confirmed")
    return 1 if bad else 0
