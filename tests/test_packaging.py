"""The built wheel carries the grammar, the runtime and the templates, and works when installed."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.slow  # builds and installs a wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)], check=True, capture_output=True, timeout=600)
    return next(out.glob("combiner_dsl-*.whl"))


def test_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "combiner_dsl/grammar.lark" in names
    assert "combiner_dsl/runtime/plan.py" in names
    templates = {n for n in names if n.startswith("combiner_dsl/templates/")}
    expected = {f"combiner_dsl/templates/{p.name}" for p in (ROOT / "templates").glob("*.jinja")}
    assert expected and expected <= templates


def test_installed_wheel_checks_and_generates(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)], check=True, capture_output=True, timeout=600)
    script = (
        "import combiner_dsl, sys\n"
        "assert combiner_dsl.__file__.startswith(sys.argv[1]), combiner_dsl.__file__\n"
        "spec = combiner_dsl.load(sys.argv[2])\n"
        "assert spec.check(L=[16, 100], prove=False).holds\n"
        "src = combiner_dsl.generate(spec, 'torch')\n"
        "assert 'from combiner_dsl.runtime import' in src\n"
        "alone = combiner_dsl.generate(spec, 'torch', standalone=True)\n"
        "assert 'import torch' in alone and 'import combiner_dsl' not in alone and 'from combiner_dsl' not in alone\n"
        "import torch\n"
        "q = torch.randn(1, 1, 20, 4)\n"
        "for flag in (False, True):\n"
        "    assert combiner_dsl.compile(spec, standalone=flag)(q, q, q).shape == q.shape\n"
        "print('ok')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(target), str(ROOT / "examples" / "combiner_fixed.cmb")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": ""},
    )
    assert run.stdout.strip() == "ok", run.stderr
