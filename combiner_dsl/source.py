"""Source text, spans and the `FILE:LINE:COL` rendering every diagnostic uses."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Source:
    """A spec's text and the name it is reported under."""

    name: str
    text: str

    def line_col(self, offset: int) -> tuple[int, int]:
        """1-based line and column of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        line = self.text.count("\n", 0, offset) + 1
        start = self.text.rfind("\n", 0, offset) + 1
        return line, offset - start + 1

    def line_text(self, line: int) -> str:
        lines = self.text.split("\n")
        return lines[line - 1] if 0 < line <= len(lines) else ""


@dataclass(frozen=True, slots=True)
class Span:
    """Half-open character range [start, end) in a source."""

    start: int
    end: int

    def join(self, other: Span) -> Span:
        return Span(min(self.start, other.start), max(self.end, other.end))


NO_SPAN = Span(0, 0)

_MAX_SHOWN = 120  # columns of the source line shown in a diagnostic


def render_location(source: Source, span: Span, message: str, hint: str | None = None) -> str:
    """`FILE:LINE:COL: message`, the source line, a caret under the culprit, and a hint."""
    line, col = source.line_col(span.start)
    text = source.line_text(line)
    line_end = source.text.find("\n", span.start)
    line_end = len(source.text) if line_end < 0 else line_end
    width = max(1, min(span.end, line_end) - span.start)
    first = max(0, col - 1 - _MAX_SHOWN // 2) if len(text) > _MAX_SHOWN else 0
    shown = text[first : first + _MAX_SHOWN]
    shown = "".join(ch if ch.isprintable() else " " if ch == "\t" else "?" for ch in shown)
    caret_col = col - 1 - first
    width = max(1, min(width, len(shown) - caret_col))
    out = [f"{source.name}:{line}:{col}: {message}", f"    {shown}", "    " + " " * caret_col + "^" * width]
    if hint:
        out.append(f"    hint: {hint}")
    return "\n".join(out)
