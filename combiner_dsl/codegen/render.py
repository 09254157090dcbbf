"""IR expressions -> Python source over the runtime's operation domains, and the template loader.

A rendered expression is the body of a function `fn(d, e)`: `d` is a domain (`Exact` on ints and
tensors, `Bounds` on intervals) and `e` maps names to values. Names reach the output only as string
keys of `e`, after a regex check, so a rendered function is never more than calls on `d`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import jinja2

from .. import ast, operators
from ..errors import CodegenError

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
FEATURE_KEY = re.compile(r"@[ij][0-9]+\Z")  # env keys of features; '@' keeps them apart from user names


def checked_name(name: str) -> str:
    """`name`, after making sure it is an identifier (the front end guarantees it; we still check)."""
    if not NAME.match(name):
        raise CodegenError(f"refusing to render the name {name!r}: not an identifier")
    return name


def key(name: str) -> str:
    """A Python string literal for an env key: a checked identifier or a feature key."""
    if not (NAME.match(name) or FEATURE_KEY.match(name)):
        raise CodegenError(f"refusing to render the key {name!r}")
    return repr(name)


def render(e: ast.Expr, subst: Mapping[ast.Expr, str] | None = None) -> str:
    """Python source computing `e` with domain `d` over env `e`; `subst` replaces subexpressions by env keys."""
    subst = subst or {}
    return _render(e, subst)


def _render(e: ast.Expr, subst: Mapping[ast.Expr, str]) -> str:
    if e in subst:
        return f"e[{key(subst[e])}]"
    if isinstance(e, ast.BoolLit):
        return "True" if e.value else "False"
    if isinstance(e, ast.IntLit):
        if not isinstance(e.value, int) or isinstance(e.value, bool):
            raise CodegenError(f"not an integer literal: {e.value!r}")
        return str(int(e.value))
    if isinstance(e, ast.Name):
        return f"e[{key(checked_name(e.id))}]"
    if isinstance(e, ast.Unary):
        return _call("unary", e.op, [_render(e.operand, subst)])
    if isinstance(e, ast.Binary):
        return _call("binary", e.op, [_render(e.left, subst), _render(e.right, subst)])
    if isinstance(e, ast.Compare):
        values = [_render(x, subst) for x in e.operands]
        parts = [_call("compare", op, [values[k], values[k + 1]]) for k, op in enumerate(e.ops)]
        return parts[0] if len(parts) == 1 else _call("logic", "and", parts)
    if isinstance(e, ast.BoolOp):
        return _call("logic", e.op, [_render(x, subst) for x in e.operands])
    if isinstance(e, ast.Call):
        return _call("call", e.func, [_render(x, subst) for x in e.args])
    raise CodegenError(f"cannot render {type(e).__name__}")


def _call(kind: operators.Kind, name: str, args: list[str]) -> str:
    op = operators.lookup(kind, name)
    if op is None or not NAME.match(op.method):
        raise CodegenError(f"unknown {kind} operator {name!r}")
    return f"d.{op.method}({', '.join(args)})"


def source_text(text: str, e: ast.Expr | object) -> str:
    """The spec text of a node (its span), on one line, for comments and error messages."""
    span = getattr(e, "span", None)
    if span is None or span.end <= span.start:
        return "<generated>"
    return " ".join(text[span.start : span.end].split())


# ---------------------------------------------------------------- templates


def templates_dir() -> Path:
    """`templates/` next to the package in a checkout, `combiner_dsl/templates` when installed."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package.parent / "templates", package / "templates"):
        if candidate.is_dir():
            return candidate
    raise CodegenError(f"no templates directory next to {package}")


@cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_template(template: str, **context: object) -> str:
    try:
        return environment().get_template(template).render(**context)
    except jinja2.TemplateError as err:
        raise CodegenError(f"template {template}: {err}") from err
