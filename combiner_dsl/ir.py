"""The checked pattern: resolved, validated, immutable. Every later stage reads only this."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, get_args

from .ast import Expr
from .source import NO_SPAN, Source, Span

Pool = Literal["max", "mean", "sum"]
Mix = Literal["joint", "average"]
POOLS: tuple[Pool, ...] = get_args(Pool)
MIXES: tuple[Mix, ...] = get_args(Mix)


@dataclass(frozen=True, slots=True)
class SummarySource:
    """How a unit's query or key is formed: pooled over the region, or taken at one position."""

    pool: Pool | None  # None for at(position)
    position: Expr | None = None

    @property
    def is_at(self) -> bool:
        return self.pool is None

    def describe(self) -> str:
        return self.pool if self.pool else "at(...)"


@dataclass(frozen=True, slots=True)
class Binder:
    name: str
    lo: Expr
    hi: Expr
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    binders: tuple[Binder, ...]
    member: Expr
    select: Expr | None  # None: derived (spec-language.md, "Derived selection")
    query: SummarySource
    key: SummarySource
    span: Span = field(default=NO_SPAN, compare=False)

    @property
    def binder_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.binders)

    @property
    def has_at(self) -> bool:
        return self.query.is_at or self.key.is_at

    def region_name(self, values: tuple[int, ...]) -> str:
        inner = ", ".join(f"{n}={v}" for n, v in zip(self.binder_names, values, strict=True))
        return f"{self.name}[{inner}]"


@dataclass(frozen=True, slots=True)
class PlanDef:
    """One `plan` of a pattern (the only one, "main", without plan blocks): a direct set and partitions."""

    name: str  # "main" for a single-plan pattern
    direct: Expr
    partitions: tuple[Partition, ...]
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class Let:
    name: str
    value: Expr
    span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class Pattern:
    name: str
    causal: bool
    lets: tuple[Let, ...]
    requires: tuple[Expr, ...]
    plans: tuple[PlanDef, ...]
    mix: Mix | None  # None for one plan
    source: Source = field(compare=False, repr=False)
    span: Span = field(default=NO_SPAN, compare=False)

    @property
    def partitions(self) -> Iterator[tuple[PlanDef, Partition]]:
        for plan in self.plans:
            for part in plan.partitions:
                yield plan, part
