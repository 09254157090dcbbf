"""Loading generated code: from memory, never from a file another process could have planted.

The text is compiled straight from the string the code generator returned, under a pseudo file
name registered in `linecache`, so tracebacks show the generated lines and Triton (which reads a
kernel's source through `inspect`) finds the source of inlined kernels. Nothing is written to disk.
"""

from __future__ import annotations

import builtins
import hashlib
import linecache
import sys
import types

from ..errors import CodegenError
from .render import checked_name


def load_generated(source: str, name: str) -> types.ModuleType:
    """Import generated module text as a fresh module (shared within the process by content hash)."""
    checked_name(name)
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:20]
    mod_name = f"combiner_generated_{name}_{digest}"
    found = sys.modules.get(mod_name)
    if found is not None and getattr(found, "__combiner_source_sha256__", None) == digest:
        return found
    filename = f"<combiner_dsl generated {mod_name}>"
    try:
        code = builtins.compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as err:
        raise CodegenError(f"the generated module for {name} does not compile: {err}") from None
    module = types.ModuleType(mod_name)
    module.__file__ = filename
    module.__combiner_source_sha256__ = digest  # type: ignore[attr-defined]
    # mtime None: linecache.checkcache keeps the entry although no such file exists
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    sys.modules[mod_name] = module  # dataclasses and Triton look the module up while it executes
    try:
        exec(code, module.__dict__)  # generated from the checked IR, never the user's text
    except BaseException:
        del sys.modules[mod_name]
        raise
    return module
