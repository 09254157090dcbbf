"""A spec as the runtime sees it: rendered predicate functions and what code generation found about them.

Generated modules build one `PatternSpec` from their rendered functions; `plan.build_plan` reads
only this. A function `fn(d, e)` computes one expression of the spec over a domain `d` (`Exact` or
`Bounds`) and an env `e` of names (L, lets, i, j, binders, and features keyed "@i0", "@j0", ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .tiling import Binder, Fn


@dataclass(frozen=True)
class Feature:
    key: str  # "@i0", "@j1", ...
    side: str  # "i" or "j"
    fn: Fn


@dataclass(frozen=True)
class DirectSpec:
    pred: Fn  # allowed, in this group, in no earlier group
    query_order: tuple[str, ...]
    key_order: tuple[str, ...]


@dataclass(frozen=True)
class Solved:
    free: tuple[str, ...]
    solved: tuple[tuple[str, Fn], ...]
    residual: Fn


@dataclass(frozen=True)
class SummarySource:
    pool: str | None  # "max" | "mean" | "sum", or None for at(position)
    at: Fn | None = None


@dataclass(frozen=True)
class PartitionSpec:
    name: str
    binders: tuple[Binder, ...]
    member: Solved
    select: Solved | None  # None: derived selection
    order: tuple[str, ...]
    query: SummarySource
    key: SummarySource
    free: Fn | None = None  # derived selection: allowed and not direct in the partition's plan


@dataclass(frozen=True)
class SoftmaxSpec:
    directs: tuple[DirectSpec, ...]
    partitions: tuple[PartitionSpec, ...]


@dataclass(frozen=True)
class PatternSpec:
    name: str
    causal: bool
    lets: Callable[[Any, int], dict[str, Any]]
    requires: tuple[tuple[str, Fn], ...]
    features: tuple[Feature, ...]
    softmaxes: tuple[SoftmaxSpec, ...]
    mix: str | None


__all__ = ["Binder", "DirectSpec", "Feature", "PartitionSpec", "PatternSpec", "SoftmaxSpec", "Solved", "SummarySource"]
