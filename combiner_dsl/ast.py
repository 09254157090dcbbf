"""The syntax tree: frozen nodes with source spans (spans do not take part in equality)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .source import NO_SPAN, Span

# ---------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class Expr:
    span: Span = field(default=NO_SPAN, compare=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class IntLit(Expr):
    value: int


@dataclass(frozen=True, slots=True)
class BoolLit(Expr):
    value: bool


@dataclass(frozen=True, slots=True)
class Name(Expr):
    id: str


@dataclass(frozen=True, slots=True)
class Unary(Expr):
    """op is "neg" (integer `-x`) or "not" (the operators registry's names)."""

    op: str
    operand: Expr


@dataclass(frozen=True, slots=True)
class Binary(Expr):
    """Arithmetic: op is one of + - * // % **."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Compare(Expr):
    """A comparison chain `a < b <= c`: ops[k] sits between operands[k] and operands[k+1]."""

    ops: tuple[str, ...]
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class BoolOp(Expr):
    """`and` / `or` over two or more operands."""

    op: str
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Call(Expr):
    func: str
    args: tuple[Expr, ...]
    func_span: Span = field(default=NO_SPAN, compare=False)


# ---------------------------------------------------------------- statements


@dataclass(frozen=True, slots=True)
class Node:
    span: Span = field(default=NO_SPAN, compare=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Mode(Node):
    causal: bool


@dataclass(frozen=True, slots=True)
class Let(Node):
    name: str
    value: Expr
    name_span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class Require(Node):
    condition: Expr


@dataclass(frozen=True, slots=True)
class Direct(Node):
    condition: Expr


@dataclass(frozen=True, slots=True)
class Binder(Node):
    name: str
    lo: Expr
    hi: Expr
    name_span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class SourceSpec(Node):
    """One side of a summary: a pool (`max`/`mean`/`sum`) or `at(position)`."""

    pool: str | None
    position: Expr | None = None


@dataclass(frozen=True, slots=True)
class Member(Node):
    condition: Expr


@dataclass(frozen=True, slots=True)
class Select(Node):
    condition: Expr


@dataclass(frozen=True, slots=True)
class SummaryItem(Node):
    query: SourceSpec
    key: SourceSpec


@dataclass(frozen=True, slots=True)
class Partition(Node):
    name: str
    binders: tuple[Binder, ...]
    items: tuple[Member | Select | SummaryItem, ...]
    name_span: Span = field(default=NO_SPAN, compare=False)


@dataclass(frozen=True, slots=True)
class Mix(Node):
    kind: str


@dataclass(frozen=True, slots=True)
class PlanBlock(Node):
    name: str
    items: tuple[Direct | Partition, ...]
    name_span: Span = field(default=NO_SPAN, compare=False)


Item = Mode | Let | Require | Direct | Partition | Mix | PlanBlock


@dataclass(frozen=True, slots=True)
class PatternDecl(Node):
    name: str
    items: tuple[Item, ...]
    name_span: Span = field(default=NO_SPAN, compare=False)
