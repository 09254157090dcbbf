"""One error hierarchy for every phase; each error renders `FILE:LINE:COL` with a caret."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .source import Source, Span, render_location

if TYPE_CHECKING:
    from .verdict import Witness


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One located problem: where, what, and what would fix it."""

    source: Source
    span: Span
    message: str
    hint: str | None = None

    def render(self) -> str:
        return render_location(self.source, self.span, self.message, self.hint)

    @property
    def location(self) -> str:
        line, col = self.source.line_col(self.span.start)
        return f"{self.source.name}:{line}:{col}"


class CombinerError(Exception):
    """Base of every error the compiler raises on purpose."""

    def __init__(self, message: str, diagnostics: tuple[Diagnostic, ...] = ()) -> None:
        self.diagnostics = diagnostics
        super().__init__(message if not diagnostics else "\n".join(d.render() for d in diagnostics))

    @property
    def location(self) -> str | None:
        return self.diagnostics[0].location if self.diagnostics else None


class SpecSyntaxError(CombinerError):
    """The text is not a spec: bad characters, tokens or indentation."""


class SpecSemanticError(CombinerError):
    """The spec parses but breaks a rule: scope, type, arity, names, structure."""


class SpecEvaluationError(CombinerError):
    """An expression fails at some length (division by zero, isqrt of a negative, ...)."""

    def __init__(self, message: str, diagnostics: tuple[Diagnostic, ...] = (), L: int | None = None) -> None:
        self.L = L
        super().__init__(message, diagnostics)


class CoverageError(CombinerError):
    """A refutation raised as an error (e.g. derived selection with overlapping regions)."""

    def __init__(self, message: str, witness: Witness | None = None) -> None:
        self.witness = witness
        super().__init__(message)


class CodegenError(CombinerError):
    """Code generation failed (a template problem, an unsupported construct)."""


class LengthError(CombinerError, ValueError):
    """A length the spec's `require`s reject."""


def located(kind: type[CombinerError], source: Source, span: Span, message: str, hint: str | None = None, **extra: Any) -> CombinerError:
    """Build an error of `kind` with one diagnostic."""
    return kind(message, (Diagnostic(source, span, message, hint),), **extra)
