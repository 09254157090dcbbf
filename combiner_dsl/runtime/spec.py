"""A spec as the runtime sees it: rendered predicate functions and what code generation found about them.

Generated modules build one `PatternSpec` from their rendered functions; `plan.build_plan` reads
only this. A function `fn(d, e)` computes one expression of the spec over a domain `d` (`Exact` or
`Bounds`) and an env `e` of names (L, lets, i, j, binders, and features keyed "@i0", "@j0", ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .tiling import Binder, Fn

E = TypeVar("E")  # one expression of the spec: its AST in the compiler's analysis, its rendered function here
D = TypeVar("D")
P = TypeVar("P")


@dataclass(frozen=True)
class Feature(Generic[E]):
    key: str  # "@i0", "@j1", ...
    side: str  # "i" or "j"
    expr: E


@dataclass(frozen=True)
class DirectSpec:
    pred: Fn  # allowed, in this group, in no earlier group
    query_order: tuple[str, ...]
    key_order: tuple[str, ...]


@dataclass(frozen=True)
class Solved(Generic[E]):
    """A predicate over (var, binders): `solved` binders follow from the others, `residual` is the rest."""

    free: tuple[str, ...]  # binders to enumerate, in declaration order
    solved: tuple[tuple[str, E], ...]  # in evaluation order
    residual: E

    def as_dict(self) -> dict[str, E]:
        return dict(self.solved)


@dataclass(frozen=True)
class SummarySource:
    pool: str | None  # "max" | "mean" | "sum", or None for at(position)
    at: Fn | None = None


@dataclass(frozen=True)
class PartitionSpec:
    name: str
    binders: tuple[Binder, ...]
    member: Solved[Fn]
    select: Solved[Fn] | None  # None: derived selection
    order: tuple[str, ...]
    query: SummarySource
    key: SummarySource
    free: Fn | None = None  # derived selection: allowed and not direct in the partition's plan


@dataclass(frozen=True)
class SoftmaxSpec(Generic[D, P]):
    """One joint softmax: direct groups plus the partitions whose units it takes."""

    directs: tuple[D, ...]
    partitions: tuple[P, ...]


@dataclass(frozen=True)
class PatternSpec:
    name: str
    causal: bool
    lets: Callable[[Any, int], dict[str, Any]]
    requires: tuple[tuple[str, Fn], ...]
    features: tuple[Feature[Fn], ...]
    softmaxes: tuple[SoftmaxSpec[DirectSpec, PartitionSpec], ...]
    mix: str | None


__all__ = ["Binder", "DirectSpec", "Feature", "PartitionSpec", "PatternSpec", "SoftmaxSpec", "Solved", "SummarySource"]
