"""Verdicts that carry their evidence: a witness for every refutation, a scope for every claim."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

CheckName = Literal["C0", "C1", "C2", "C3"]
SEVERITY: tuple[CheckName, ...] = get_args(CheckName)  # most serious first: leak, overlap, gap, misplaced summary
Status = Literal["proved", "checked", "refuted", "vacuous", "unsupported"]

CHECKS: dict[CheckName, str] = {
    "C0": "no leak: every selected region lies inside the keys the query may see",
    "C1": "disjoint: the direct set and the selected regions do not overlap",
    "C2": "covering: the direct set and the selected regions hold every key the query may see",
    "C3": "local summaries: each at(p) lies in its region",
}


@dataclass(frozen=True, slots=True)
class Witness:
    """A concrete counterexample: at length L, query i fails `check` at key j."""

    check: CheckName
    L: int
    i: int
    j: int | None  # the leaking / doubly covered / uncovered key, or the at(p) position for C3
    regions: tuple[str, ...] = ()  # names like "block[r=0]", or "direct" for the direct set
    plan: str | None = None  # the plan, for mixtures

    @property
    def severity(self) -> int:
        """0 for the most serious check (C0)."""
        return SEVERITY.index(self.check)

    def explain(self) -> str:
        """The witness in words."""
        where = f" (plan {self.plan})" if self.plan and self.plan != "main" else ""
        names = " and ".join(self.regions)
        if self.check == "C0":
            return f"at L={self.L}, query i={self.i} selects {names}, which holds key j={self.j} that i may not see{where}"
        if self.check == "C1":
            return f"at L={self.L}, key j={self.j} is in both {names} for query i={self.i}{where}"
        if self.check == "C2":
            return f"at L={self.L}, query i={self.i} never reaches key j={self.j}: it is neither direct nor in a selected region{where}"
        if self.check == "C3":
            return f"at L={self.L}, query i={self.i} takes the summary of {names} at position {self.j}, outside that region{where}"
        return f"{self.check} fails at L={self.L}, i={self.i}, j={self.j}{where}"

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "L": self.L, "i": self.i, "j": self.j, "regions": list(self.regions), "plan": self.plan}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The strongest claim reached about C0-C3.

    status: "proved" (scope "all L" or "L <= N"), "checked" (scope: the lengths tried),
    "refuted" (with a witness), "vacuous" (no length satisfies the requires: nothing is claimed) or
    "unsupported" (C0-C3 may hold, but the generated module could not run it; `reason` says why).
    `reason` also says why a proof was not reached, when it was not.
    """

    status: Status
    scope: str | tuple[int, ...]
    witness: Witness | None = None
    message: str = ""
    reason: str | None = None
    derived: tuple[str, ...] = field(default=())  # derived `select` rules, in words
    streaming: Any = None  # a streaming.StreamVerdict when prefix stability was checked

    @property
    def holds(self) -> bool:
        return self.status in ("proved", "checked")

    def scope_text(self) -> str:
        if isinstance(self.scope, str):
            return self.scope
        ls = list(self.scope)
        if len(ls) > 6:
            return f"{len(ls)} lengths in {ls[0]}..{ls[-1]}"
        return "L in {" + ", ".join(map(str, ls)) + "}"

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.status,
            "scope": self.scope if isinstance(self.scope, str) else list(self.scope),
            "witness": self.witness.to_json() if self.witness else None,
            "message": self.message,
            "reason": self.reason,
            "derived_select": list(self.derived),
            **({"streaming": self.streaming.status, "streaming_detail": self.streaming.to_json()} if self.streaming is not None else {}),
        }
