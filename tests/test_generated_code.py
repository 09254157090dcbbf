"""The generated code itself: golden files, imports, `--standalone`, lint, loading, the runtime stamp."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import combiner_dsl
from combiner_dsl.codegen import bundle
from combiner_dsl.codegen.loader import load_generated
from combiner_dsl.oracle import oracle_attention
from combiner_dsl.runtime import RUNTIME_API

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(ROOT.glob("examples/*.cmb")) + sorted(ROOT.glob("examples/sparse/*.cmb"))
GOLDEN = ROOT / "tests" / "golden"
STDLIB = set(sys.stdlib_module_names)


def spec_of(path: Path) -> combiner_dsl.Spec:
    return combiner_dsl.load(path.relative_to(ROOT)) if Path.cwd() == ROOT else combiner_dsl.load(path)


def imported_roots(source: str) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import in generated code"
            roots.add((node.module or "").split(".")[0])
    return roots - {"__future__"}


def ruff(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed")
    return subprocess.run([exe, "check", "--no-cache", *args, str(path)], capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------- the default module: the spec only


@pytest.mark.parametrize(("target", "paths"), [("torch", EXAMPLES), ("triton", [ROOT / "examples" / "combiner_fixed.cmb"])])
def test_golden_files(target: str, paths: list[Path], update_golden: bool) -> None:
    """Byte for byte; `pytest --update-golden` rewrites them when the output should change."""
    for path in paths:
        spec = combiner_dsl.load(path)
        source = combiner_dsl.generate(spec, target)
        assert source == combiner_dsl.generate(spec, target), "generation is not deterministic"
        golden = GOLDEN / target / f"{spec.name}.py"
        if update_golden:
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(source, encoding="utf-8")
        assert golden.exists(), f"no golden file {golden}; run pytest --update-golden"
        assert source == golden.read_text(encoding="utf-8"), f"{golden} differs; rerun with --update-golden if intended"


@pytest.mark.parametrize("target", ["torch", "triton"])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_default_module_is_the_spec_and_a_runtime_import(target: str, path: Path) -> None:
    source = combiner_dsl.generate(combiner_dsl.load(path), target)
    assert len(source.splitlines()) < 300
    assert imported_roots(source) == {"combiner_dsl"}
    tree = ast.parse(source)
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} - {"__future__"}
    assert modules <= {"combiner_dsl.runtime", "combiner_dsl.runtime.triton_attention"}
    assert f"require_runtime({RUNTIME_API}, __name__)" in source
    lines = source.splitlines()
    for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
        body = lines[fn.lineno : fn.end_lineno]
        assert any("#" in line for line in body), f"{fn.name} carries no spec line"


def test_star_import_gives_the_module_class(tmp_path: Path) -> None:
    (tmp_path / "gen_fixed.py").write_text(combiner_dsl.generate(combiner_dsl.load(ROOT / "examples" / "combiner_fixed.cmb")))
    sys.path.insert(0, str(tmp_path))
    try:
        namespace: dict[str, object] = {}
        exec("from gen_fixed import *", namespace)  # the user's own import of a file they wrote
        assert {"CombinerAttention", "SPEC"} <= set(namespace)
        attn = namespace["CombinerAttention"]()  # type: ignore[operator]
        q = torch.randn(1, 1, 10, 4)
        assert attn(q, q, q).shape == q.shape
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("gen_fixed", None)


def test_a_runtime_of_another_api_is_refused() -> None:
    source = combiner_dsl.generate(combiner_dsl.load(ROOT / "examples" / "combiner_fixed.cmb"))
    stale = source.replace(f"require_runtime({RUNTIME_API}, __name__)", f"require_runtime({RUNTIME_API + 1}, __name__)")
    with pytest.raises(ImportError, match="regenerate it"):
        load_generated(stale, "combiner_fixed")


# ---------------------------------------------------------------- --standalone


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_standalone_torch_module_matches_the_oracle(path: Path) -> None:
    spec = combiner_dsl.load(path)
    source = combiner_dsl.generate(spec, "torch", standalone=True)
    assert imported_roots(source) - STDLIB == {"torch"} and "require_runtime" not in source
    attn = combiner_dsl.compile(spec, "torch", standalone=True)
    gen = torch.Generator().manual_seed(7)
    for L in (1, 100, 127):
        q, k, v = (torch.randn(1, 2, L, 8, generator=gen, dtype=torch.float64) for _ in range(3))
        torch.testing.assert_close(attn(q, k, v), oracle_attention(spec.pattern, q, k, v), atol=1e-10, rtol=1e-10)


def test_standalone_triton_module_matches_the_oracle() -> None:
    spec = combiner_dsl.load(ROOT / "examples" / "combiner_logsparse.cmb")
    source = combiner_dsl.generate(spec, "triton", standalone=True)
    assert imported_roots(source) - STDLIB == {"torch", "triton"}
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no CUDA and no Triton interpreter")
    attn = combiner_dsl.compile(spec, "triton", standalone=True)
    q, k, v = (torch.randn(1, 2, 100, 16, generator=torch.Generator().manual_seed(1)) for _ in range(3))
    want = oracle_attention(spec.pattern, q.double(), k.double(), v.double())
    torch.testing.assert_close(attn(q, k, v).double(), want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("target", ["torch", "triton"])
def test_generated_files_pass_ruff(target: str, tmp_path: Path) -> None:
    """Both forms, under ruff's defaults and under the project's own rules."""
    for path in (ROOT / "examples" / "combiner_mixture.cmb", ROOT / "examples" / "combiner_axial.cmb"):
        spec = combiner_dsl.load(path)
        for standalone in (False, True):
            out = tmp_path / f"{spec.name}_{target}_{standalone}.py"
            out.write_text(combiner_dsl.generate(spec, target, standalone=standalone))
            for args in (("--isolated",), ("--config", str(ROOT / "pyproject.toml"))):
                run = ruff(out, *args)
                assert run.returncode == 0, f"{out.name} {args}:\n{run.stdout}{run.stderr}"


def test_standalone_keeps_only_what_the_spec_needs() -> None:
    spec = combiner_dsl.load(ROOT / "examples" / "combiner_fixed.cmb")
    torch_file = combiner_dsl.generate(spec, "torch", standalone=True)
    triton_file = combiner_dsl.generate(spec, "triton", standalone=True)
    assert "def triton_combiner_attention" not in torch_file and "@triton.jit" not in torch_file
    assert "@triton.jit" in triton_file and "def triton_combiner_attention" in triton_file
    assert "class TorchCombinerModule" not in triton_file  # neither backend brings the other along
    for text in (torch_file, triton_file):
        tree = ast.parse(text)
        names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
        assert len(names) == len(set(names)), "a definition appears twice"
        assert sum(isinstance(n, ast.Import | ast.ImportFrom) for n in tree.body) == len({ast.unparse(n) for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)})
        assert ast.get_docstring(tree) is not None and text.count('"""') >= 2


def test_runtime_modules_define_each_name_once() -> None:
    """The bundler puts every runtime module into one namespace: a name defined twice is refused."""
    from combiner_dsl.codegen.bundle import _runtime_module

    runtime = ROOT / "combiner_dsl" / "runtime"
    owners: dict[str, str] = {}
    for file in sorted(runtime.glob("*.py")):
        if file.name == "__init__.py":
            continue
        for stmt in _runtime_module(f"combiner_dsl.runtime.{file.stem}").statements:
            for name in stmt.defines:
                assert name not in owners, f"`{name}` is defined in {owners[name]} and {file.name}"
                owners[name] = file.name


def test_bundler_refuses_aliases_and_missing_names() -> None:
    with pytest.raises(combiner_dsl.CodegenError, match="cannot be inlined"):
        bundle.bundle('"""x"""\nfrom combiner_dsl.runtime import PatternSpec as P\nP\n')
    with pytest.raises(combiner_dsl.CodegenError, match="defines no"):
        bundle.bundle('"""x"""\nfrom combiner_dsl.runtime import no_such_name\nno_such_name\n')


# ---------------------------------------------------------------- loading


def test_loading_writes_no_file_and_imports_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated code runs from memory: a file planted where a cache might be is never executed."""
    for var in ("HOME", "XDG_CACHE_HOME", "COMBINER_CACHE_DIR", "TMPDIR"):
        monkeypatch.setenv(var, str(tmp_path))
    spec = combiner_dsl.load(text="pattern planted:\n    causal\n    direct: j <= i\n")
    source = combiner_dsl.generate(spec)
    import hashlib

    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    for folder in (tmp_path, tmp_path / "combiner_dsl" / "torch", tmp_path / f"combiner_dsl-{os.getuid()}" / "torch"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"combiner_generated_planted_{digest}.py").write_text("raise SystemExit('planted code ran')\n")
    before = sorted(p for p in tmp_path.rglob("*"))
    attn = combiner_dsl.compile(spec)
    q = torch.randn(1, 1, 5, 4)
    torch.testing.assert_close(attn(q, q, q), torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True))
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert sys.modules[type(attn).__module__].__file__.startswith("<combiner_dsl generated ")


def test_tracebacks_show_generated_lines() -> None:
    import linecache

    attn = combiner_dsl.compile(combiner_dsl.load(ROOT / "examples" / "combiner_fixed.cmb"))
    filename = sys.modules[type(attn).__module__].__file__
    assert filename is not None and "class CombinerAttention" in "".join(linecache.getlines(filename))


@pytest.mark.parametrize("standalone", [False, True])
def test_generated_module_decodes_with_its_cache(standalone: bool) -> None:
    """`attn.new_cache(...)`: prefill then one token at a time equals a forward over each prefix."""
    spec = combiner_dsl.load(ROOT / "examples" / "streaming" / "fixed_block16.cmb")
    attn = combiner_dsl.compile(spec, standalone=standalone)
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 2, 40, 8, generator=g, dtype=torch.float64) for _ in range(3))
    cache = attn.new_cache(max_length=40, batch=1, heads=2, head_dim=8, dtype=torch.float64)
    outs = [cache.extend(q[:, :, :21], k[:, :, :21], v[:, :, :21])]
    outs += [cache.step(q[:, :, t : t + 1], k[:, :, t : t + 1], v[:, :, t : t + 1]) for t in range(21, 40)]
    got = torch.cat(outs, 2)
    want = torch.cat([attn(q[:, :, : t + 1], k[:, :, : t + 1], v[:, :, : t + 1])[:, :, t : t + 1] for t in range(40)], 2)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
