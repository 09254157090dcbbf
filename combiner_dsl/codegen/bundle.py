"""`--standalone`: one self-contained file from a generated module and the runtime it imports.

Works on the Python AST of the runtime's own files, not on text patterns: the runtime names the
module imports are traced to their definitions, every definition they need is kept (transitively,
annotations included) and every other one dropped; imports are hoisted, de-duplicated and sorted;
module docstrings, `__all__` lists and the package's relative imports disappear. Each kept
definition is copied as written, with the comment lines directly above it.
"""

from __future__ import annotations

import ast
import graphlib
import sys
from dataclasses import dataclass
from functools import cache
from importlib import resources

from ..errors import CodegenError

RUNTIME = "combiner_dsl.runtime"


@dataclass(frozen=True)
class _Stmt:
    module: str
    text: str
    defines: frozenset[str]
    uses: frozenset[str]


@dataclass(frozen=True)
class _Import:
    """One bound name of an absolute import: `import a.b as c`, `import a` or `from m import n as c`."""

    module: str
    name: str | None  # None for `import module`
    alias: str | None

    @property
    def bound(self) -> str:
        if self.alias:
            return self.alias
        return self.name if self.name is not None else self.module.split(".")[0]


@dataclass(frozen=True)
class _Module:
    name: str
    statements: tuple[_Stmt, ...]
    imports: tuple[_Import, ...]
    relative: tuple[tuple[str, str], ...]  # (runtime module, name) imported from a sibling


@cache
def _runtime_module(name: str) -> _Module:
    if name != RUNTIME and not name.startswith(RUNTIME + "."):
        raise CodegenError(f"{name} is not part of the runtime")
    file = "__init__.py" if name == RUNTIME else name[len(RUNTIME) + 1 :] + ".py"
    text = resources.files(RUNTIME).joinpath(file).read_text(encoding="utf-8")
    return _split(name, text, allow_runtime_imports=False)


def _names_used(node: ast.AST) -> set[str]:
    """Every name a statement reads, including names inside string annotations."""
    out: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            out.add(sub.id)
        annotations: list[ast.expr | None] = []
        if isinstance(sub, ast.arg):
            annotations.append(sub.annotation)
        elif isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef):
            annotations.append(sub.returns)
        elif isinstance(sub, ast.AnnAssign):
            annotations.append(sub.annotation)
        for ann in annotations:
            if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
                try:
                    out |= _names_used(ast.parse(ann.value, mode="eval"))
                except SyntaxError:
                    pass
    return out


def _defined(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, ast.AnnAssign | ast.AugAssign):
        targets = [node.target]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


def _segment(lines: list[str], node: ast.stmt) -> str:
    """The statement's lines, with its decorators and the comment lines directly above it."""
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    end = node.end_lineno or node.lineno
    return "".join(lines[start:end]).rstrip() + "\n"


def _split(name: str, text: str, *, allow_runtime_imports: bool) -> _Module:
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    statements: list[_Stmt] = []
    imports: list[_Import] = []
    relative: list[tuple[str, str]] = []
    package = name if name == RUNTIME else name.rsplit(".", 1)[0]
    for i, node in enumerate(tree.body):
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue  # the module docstring
        if isinstance(node, ast.ImportFrom) and (node.level or (allow_runtime_imports and (node.module or "").startswith(RUNTIME))):
            source = f"{package}.{node.module}" if node.level else str(node.module)
            for a in node.names:
                if a.asname and a.asname != a.name:
                    raise CodegenError(f"{name}: `import {a.name} as {a.asname}` from the runtime cannot be inlined")
                relative.append((source, a.name))
            continue
        if isinstance(node, ast.ImportFrom):
            if node.module != "__future__":
                imports += [_Import(str(node.module), a.name, a.asname) for a in node.names]
            continue
        if isinstance(node, ast.Import):
            imports += [_Import(a.name, None, a.asname) for a in node.names]
            continue
        if _defined(node) == {"__all__"} and not allow_runtime_imports:
            continue  # the runtime module's own export list
        statements.append(_Stmt(name, _segment(lines, node), frozenset(_defined(node)), frozenset(_names_used(node))))
    return _Module(name, tuple(statements), tuple(imports), tuple(relative))


def _owner(module: str, name: str, seen: frozenset[tuple[str, str]] = frozenset()) -> str:
    """The runtime module that defines `name` as imported from `module` (following re-exports)."""
    if (module, name) in seen:
        raise CodegenError(f"the runtime imports {name} in a cycle")
    mod = _runtime_module(module)
    if any(name in s.defines for s in mod.statements):
        return module
    for source, imported in mod.relative:
        if imported == name:
            return _owner(source, name, seen | {(module, name)})
    raise CodegenError(f"{module} defines no {name}")


def _modules_in_order(roots: set[str]) -> list[str]:
    """Runtime modules reachable from `roots` through relative imports, dependencies first."""
    graph: dict[str, set[str]] = {}
    todo = list(roots)
    while todo:
        m = todo.pop()
        if m in graph:
            continue
        deps = {_owner(src, n) for src, n in _runtime_module(m).relative}
        graph[m] = deps
        todo += deps
    return list(graphlib.TopologicalSorter(graph).static_order())


def _by_type(name: str) -> tuple[int, str, str]:
    """isort's order-by-type: CONSTANTS, then Classes, then functions and variables."""
    kind = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
    return (kind, name.lower(), name)


def import_line(module: str, names: list[str]) -> str:
    """`from module import names` in isort's order, wrapped in parentheses past 88 columns."""
    names = sorted(set(names), key=lambda n: _by_type(n.split(" as ")[0]))
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= 88:
        return line
    return f"from {module} import (\n" + "".join(f"    {n},\n" for n in names) + ")"


def _import_lines(imports: list[_Import]) -> str:
    """isort-style: the standard library, then third-party packages; `import x` before `from x import`."""

    def group(imp: _Import) -> int:
        return 0 if imp.module.split(".")[0] in sys.stdlib_module_names else 1

    out: list[str] = []
    for g in (0, 1):
        plain = sorted({(i.module, i.alias) for i in imports if group(i) == g and i.name is None}, key=lambda x: (x[0].lower(), x))
        froms: dict[str, set[tuple[str, str | None]]] = {}
        for i in imports:
            if group(i) == g and i.name is not None:
                froms.setdefault(i.module, set()).add((i.name, i.alias))
        block = [f"import {m}" + (f" as {a}" if a else "") for m, a in plain]
        for m in sorted(froms, key=str.lower):
            block.append(import_line(m, [n + (f" as {a}" if a else "") for n, a in froms[m]]))
        if block:
            out.append("\n".join(block))
    return "\n\n".join(out)


def bundle(module_text: str) -> str:
    """A generated module with its runtime imports replaced by the runtime code they need."""
    tree = ast.parse(module_text)
    gen = _split("<generated>", module_text, allow_runtime_imports=True)
    doc = ast.get_docstring(tree, clean=False)
    roots = {_owner(src, name) for src, name in gen.relative}
    order = _modules_in_order(roots)
    candidates = [s for m in order for s in _runtime_module(m).statements]
    by_name: dict[str, _Stmt] = {}
    for s in candidates:
        for n in s.defines:
            if n in by_name and by_name[n] is not s:
                raise CodegenError(f"`{n}` is defined in both {by_name[n].module} and {s.module}: the standalone file would keep one")
            by_name[n] = s
    needed = set().union(*(s.uses for s in gen.statements)) if gen.statements else set()
    keep: set[int] = set()
    todo = [by_name[n] for n in needed if n in by_name] + [s for s in candidates if not s.defines]
    while todo:
        s = todo.pop()
        if id(s) in keep:
            continue
        keep.add(id(s))
        todo += [by_name[n] for n in s.uses if n in by_name and id(by_name[n]) not in keep]
    kept = [s for s in candidates if id(s) in keep]
    used = set().union(needed, *(s.uses for s in kept))
    imports = [i for m in order for i in _runtime_module(m).imports] + list(gen.imports)
    imports = [i for i in imports if i.bound in used]
    parts = [f'"""{doc}"""' if doc is not None else "", "from __future__ import annotations", _import_lines(imports)]
    body = [s.text for s in kept] + [s.text for s in gen.statements]
    # isort: two blank lines after the imports before a definition, one before anything else
    gap = "\n\n\n" if body and body[0].lstrip().startswith(("def ", "class ", "@")) else "\n\n"
    return "\n\n".join(p for p in parts if p) + gap + "\n\n".join(body)
