"""Text -> AST. Lark (LALR) does the parsing; this module turns its trees and errors into ours."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer_NonRecursive, Tree, v_args
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.indenter import DedentError, Indenter

from . import ast
from .errors import Diagnostic, SpecSyntaxError, located
from .limits import MAX_DEPTH, MAX_FILE_BYTES, MAX_NAME_CHARS, MAX_TOKENS
from .source import Source, Span

MAX_BYTES = MAX_FILE_BYTES  # characters; a file is refused by its byte count before it is decoded
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+|\*\*|//|[<>=!]=|#[^\n]*|\S")

KEYWORDS = frozenset(
    "pattern causal bidirectional let require direct partition member select summary mix plan "
    "in and or not true false query key at".split()
)

_READABLE = {
    "NAME": "a name",
    "INT": "an integer",
    "_NL": "end of line",
    "_INDENT": "an indented block",
    "_DEDENT": "end of the block",
    "$END": "end of file",
    "COMP_OP": "a comparison",
    "PLUS": '"+"',
    "MINUS": '"-"',
    "MUL_OP": '"*", "//" or "%"',
    "POW": '"**"',
}


class _SpecIndenter(Indenter):
    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR", "LSQB"]  # noqa: RUF012 - lark reads these as class attributes
    CLOSE_PAREN_types = ["RPAR", "RSQB"]  # noqa: RUF012
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8


@cache
def _parser() -> Lark:
    grammar = resources.files("combiner_dsl").joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", postlex=_SpecIndenter(), propagate_positions=True, maybe_placeholders=False)


def _span(meta: Any) -> Span:
    if getattr(meta, "empty", True):
        return Span(0, 0)
    return Span(meta.start_pos, meta.end_pos)


def _tok_span(tok: Token) -> Span:
    return Span(tok.start_pos or 0, tok.end_pos or (tok.start_pos or 0) + len(tok))


@v_args(meta=True)
class _ToAst(Transformer_NonRecursive):  # type: ignore[type-arg]
    """Builds AST nodes bottom-up (non-recursive, so deep input cannot overflow the stack)."""

    # expressions
    def int_lit(self, meta: Any, c: list[Token]) -> ast.Expr:
        digits = str(c[0])  # a literal too long for int() is out of range anyway: the checker reports it
        return ast.IntLit(int(digits) if len(digits) <= 40 else 10**40, span=_tok_span(c[0]))

    def true_lit(self, meta: Any, c: list[Any]) -> ast.Expr:
        return ast.BoolLit(True, span=_span(meta))

    def false_lit(self, meta: Any, c: list[Any]) -> ast.Expr:
        return ast.BoolLit(False, span=_span(meta))

    def name(self, meta: Any, c: list[Token]) -> ast.Expr:
        return ast.Name(str(c[0]), span=_tok_span(c[0]))

    def paren(self, meta: Any, c: list[Any]) -> ast.Expr:
        inner: ast.Expr = c[1]
        return inner

    def call(self, meta: Any, c: list[Any]) -> ast.Expr:
        args = tuple(x for x in c[2:] if not isinstance(x, Token))
        return ast.Call(str(c[0]), args, _tok_span(c[0]), span=_span(meta))

    def neg(self, meta: Any, c: list[Any]) -> ast.Expr:
        return ast.Unary("neg", c[1], span=_span(meta))

    def not_op(self, meta: Any, c: list[Any]) -> ast.Expr:
        return ast.Unary("not", c[0], span=_span(meta))

    def power(self, meta: Any, c: list[Any]) -> ast.Expr:
        return ast.Binary("**", c[0], c[2], span=_span(meta))

    def _fold(self, c: list[Any]) -> ast.Expr:
        left: ast.Expr = c[0]
        for op, right in zip(c[1::2], c[2::2], strict=True):
            left = ast.Binary(str(op), left, right, span=left.span.join(right.span))
        return left

    def arith(self, meta: Any, c: list[Any]) -> ast.Expr:
        return self._fold(c)

    def term(self, meta: Any, c: list[Any]) -> ast.Expr:
        return self._fold(c)

    def comparison(self, meta: Any, c: list[Any]) -> ast.Expr:
        return ast.Compare(tuple(str(t) for t in c[1::2]), tuple(c[0::2]), span=_span(meta))

    def or_test(self, meta: Any, c: list[Any]) -> ast.Expr:
        return ast.BoolOp("or", tuple(c), span=_span(meta))

    def and_test(self, meta: Any, c: list[Any]) -> ast.Expr:
        return ast.BoolOp("and", tuple(c), span=_span(meta))

    # statements
    def causal(self, meta: Any, c: list[Any]) -> ast.Node:
        return ast.Mode(True, span=_span(meta))

    def bidirectional(self, meta: Any, c: list[Any]) -> ast.Node:
        return ast.Mode(False, span=_span(meta))

    def let(self, meta: Any, c: list[Any]) -> ast.Node:
        return ast.Let(str(c[0]), c[1], _tok_span(c[0]), span=_span(meta))

    def require(self, meta: Any, c: list[Any]) -> ast.Node:
        return ast.Require(c[0], span=_span(meta))

    def direct(self, meta: Any, c: list[Any]) -> ast.Node:
        return ast.Direct(c[0], span=_span(meta))

    def mix(self, meta: Any, c: list[Token]) -> ast.Node:
        return ast.Mix(str(c[0]), span=_tok_span(c[0]))

    def plan(self, meta: Any, c: list[Any]) -> ast.Node:
        return ast.PlanBlock(str(c[0]), tuple(c[1:]), _tok_span(c[0]), span=_span(meta))

    def binder(self, meta: Any, c: list[Any]) -> ast.Node:
        return ast.Binder(str(c[0]), c[1], c[2], _tok_span(c[0]), span=_span(meta))

    def partition(self, meta: Any, c: list[Any]) -> ast.Node:
        binders = tuple(x for x in c[1:] if isinstance(x, ast.Binder))
        items = tuple(x for x in c[1:] if isinstance(x, ast.Member | ast.Select | ast.SummaryItem))
        return ast.Partition(str(c[0]), binders, items, _tok_span(c[0]), span=_span(meta))

    def member(self, meta: Any, c: list[Any]) -> ast.Node:
        return ast.Member(c[0], span=_span(meta))

    def select(self, meta: Any, c: list[Any]) -> ast.Node:
        return ast.Select(c[0], span=_span(meta))

    def pool_source(self, meta: Any, c: list[Token]) -> ast.SourceSpec:
        return ast.SourceSpec(str(c[0]), None, span=_tok_span(c[0]))

    def at_source(self, meta: Any, c: list[Any]) -> ast.SourceSpec:
        return ast.SourceSpec(None, c[1], span=_span(meta))

    def summary_pool(self, meta: Any, c: list[Token]) -> ast.Node:
        pool = ast.SourceSpec(str(c[0]), None, span=_tok_span(c[0]))
        return ast.SummaryItem(pool, pool, span=_span(meta))

    def summary_pair(self, meta: Any, c: list[Any]) -> ast.Node:
        return ast.SummaryItem(c[0], c[1], span=_span(meta))

    def pattern(self, meta: Any, c: list[Any]) -> ast.Node:
        return ast.PatternDecl(str(c[0]), tuple(c[1:]), _tok_span(c[0]), span=_span(meta))

    def start(self, meta: Any, c: list[Any]) -> ast.Node:
        decl: ast.Node = c[-1]
        return decl


def _expected(names: set[str]) -> str:
    terms = {t.name: t for t in _parser().terminals}
    words = set()
    for n in names:
        if n in _READABLE:
            words.add(_READABLE[n])
        elif n in terms and terms[n].pattern.type == "str":
            words.add(f'"{terms[n].pattern.value}"')
        else:
            words.add(n.lower())
    ordered = sorted(words)
    if len(ordered) > 8:
        ordered = [*ordered[:8], "..."]
    return ", ".join(ordered)


def _precheck(source: Source) -> None:
    """Reject what would confuse the lexer: tabs, control characters, runaway nesting."""
    text = source.text
    if len(text) > MAX_BYTES:
        raise located(SpecSyntaxError, source, Span(MAX_BYTES, MAX_BYTES + 1), "spec is too large", f"a spec holds at most {MAX_BYTES} characters")
    openers: list[int] = []
    in_comment = False
    for pos, ch in enumerate(text):
        if ch == "\n":
            in_comment = False
            continue
        if not (ch.isprintable() or ch == "\t"):  # comments too: generated code quotes them
            raise located(SpecSyntaxError, source, Span(pos, pos + 1), f"unexpected character {ch!r}", "a spec is plain text")
        if in_comment:
            continue
        if ch == "#":
            in_comment = True
        elif ch == "\t":
            raise located(SpecSyntaxError, source, Span(pos, pos + 1), "tab character", "indent with spaces; tabs are not allowed")
        elif ch in "([":
            openers.append(pos)
            if len(openers) > MAX_DEPTH:
                raise located(SpecSyntaxError, source, Span(pos, pos + 1), "brackets nested too deeply", f"at most {MAX_DEPTH} levels")
        elif ch in ")]" and openers:
            openers.pop()
    _count_tokens(source)
    if openers:
        pos = openers[-1]
        closer = ")" if text[pos] == "(" else "]"
        raise located(SpecSyntaxError, source, Span(pos, pos + 1), f"unclosed {text[pos]!r}", f"add the matching {closer!r}")


def _count_tokens(source: Source) -> None:
    """Bound the parser's work before it starts: the token count, and the length of every name."""
    count = 0
    for m in _TOKEN.finditer(source.text):
        tok = m.group()
        if tok[0] == "#":
            continue
        count += 1
        if count > MAX_TOKENS:
            raise located(SpecSyntaxError, source, Span(m.start(), m.end()), "spec has too many tokens", f"a spec holds at most {MAX_TOKENS:,} tokens; use `let` for repeated parts")
        if len(tok) > MAX_NAME_CHARS and (tok[0].isalpha() or tok[0] == "_"):
            raise located(SpecSyntaxError, source, Span(m.start(), m.end()), "name too long", f"a name has at most {MAX_NAME_CHARS} characters")


def _syntax_error(source: Source, err: UnexpectedInput) -> SpecSyntaxError:
    if isinstance(err, UnexpectedCharacters):
        pos = err.pos_in_stream or 0
        ch = source.text[pos] if pos < len(source.text) else ""
        msg = f"unexpected character {ch!r}"
        hint = "operators are + - * // % ** == != < <= > >= and or not; names are letters, digits and _"
        return located(SpecSyntaxError, source, Span(pos, pos + 1), msg, hint)  # type: ignore[return-value]
    if isinstance(err, UnexpectedToken):
        tok = err.token
        pos = tok.start_pos if tok.start_pos is not None else len(source.text)
        expected = _expected(set(err.expected))
        if tok.type == "$END":
            pos = len(source.text.rstrip("\n"))
            msg = "unexpected end of file"
        elif tok.type == "_INDENT":
            msg = "unexpected indentation"
        elif tok.type == "_DEDENT":
            msg = "block ends too early"
        elif tok.type == "_NL":
            pos = tok.start_pos if tok.start_pos is not None else pos
            msg = "unexpected end of line"
        elif str(tok) == "pattern":
            msg = "a second pattern"
            expected = "nothing more: one file holds one pattern"
        elif str(tok) in KEYWORDS and "NAME" in err.expected:
            msg = f"`{tok}` is a keyword"
            expected = f"a name (`{tok}` is reserved); otherwise {expected}"
        else:
            msg = f"unexpected {str(tok)!r}"
        end = pos + max(1, len(str(tok)) if tok.type not in ("$END", "_NL", "_INDENT", "_DEDENT") else 1)
        return located(SpecSyntaxError, source, Span(pos, end), msg, f"expected {expected}")  # type: ignore[return-value]
    assert isinstance(err, UnexpectedEOF)
    pos = len(source.text.rstrip("\n"))
    return located(SpecSyntaxError, source, Span(pos, pos + 1), "unexpected end of file", f"expected {_expected(set(err.expected))}")  # type: ignore[return-value]


def _check_depth(source: Source, root: ast.Node) -> None:
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, ast.Expr) and depth > MAX_DEPTH:
            raise located(SpecSyntaxError, source, node.span, "expression nested too deeply", f"at most {MAX_DEPTH} levels; split it with `let`")
        for child in _children(node):
            stack.append((child, depth + 1 if isinstance(node, ast.Expr) else 0))


def _children(node: Any) -> list[Any]:
    out: list[Any] = []
    for name in getattr(node, "__slots__", ()):
        value = getattr(node, name, None)
        if isinstance(value, ast.Expr | ast.Node):
            out.append(value)
        elif isinstance(value, tuple):
            out.extend(v for v in value if isinstance(v, ast.Expr | ast.Node))
    return out


def parse(source: Source) -> ast.PatternDecl:
    """Parse one spec; raise `SpecSyntaxError` with its location on any malformed input."""
    _precheck(source)
    text = source.text if source.text.endswith("\n") else source.text + "\n"
    try:
        tree: Tree[Token] = _parser().parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(source, err) from None
    except DedentError:
        pos = _bad_dedent_offset(source.text)
        raise located(SpecSyntaxError, source, Span(pos, pos + 1), "indentation does not match any outer block", "dedent to the column of an enclosing block") from None
    except LarkError as err:  # any other parser failure is still a located syntax error
        raise SpecSyntaxError(f"{source.name}:1:1: cannot parse: {err}", (Diagnostic(source, Span(0, 1), "cannot parse"),)) from None
    result = _ToAst().transform(tree)
    assert isinstance(result, ast.PatternDecl)
    _check_depth(source, result)
    return result


def _bad_dedent_offset(text: str) -> int:
    levels = [0]
    offset = 0
    for line in text.split("\n"):
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if stripped and not stripped.startswith("#"):
            if indent > levels[-1]:
                levels.append(indent)
            else:
                while indent < levels[-1]:
                    levels.pop()
                if indent != levels[-1]:
                    return offset + indent
        offset += len(line) + 1
    return 0
