"""The pre-commit hook, end to end: `pre-commit try-repo` against a scratch git repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def sh(*argv: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800, check=False)


@pytest.mark.slow
def test_hook_accepts_a_good_spec_and_rejects_a_refuted_one(tmp_path: Path) -> None:
    pytest.importorskip("pre_commit")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    # the hook's environment gets the CPU build of torch this project is tested with
    (tmp_path / "constraints.txt").write_text("torch==2.13.0\n")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit"), "PIP_CONSTRAINT": str(tmp_path / "constraints.txt"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid")
    sh("git", "init", "-q", cwd=repo, env=env)
    try_repo = (sys.executable, "-m", "pre_commit", "try-repo", str(ROOT), "combiner-check", "--color", "never")

    shutil.copy(ROOT / "examples/combiner_fixed.cmb", repo / "good.cmb")
    sh("git", "add", "good.cmb", cwd=repo, env=env)
    ok = sh(*try_repo, cwd=repo, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "combiner_fixed: full attention PROVED for all L" in ok.stdout or "Passed" in ok.stdout
    sh("git", "commit", "-q", "-m", "good spec", cwd=repo, env=env)

    shutil.copy(ROOT / "examples/sparse/sparse_fixed.cmb", repo / "refuted.cmb")
    sh("git", "add", "refuted.cmb", cwd=repo, env=env)
    bad = sh(*try_repo, cwd=repo, env=env)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Failed" in bad.stdout and "refuted.cmb: sparse_fixed: REFUTED C2 (covering): at L=4, query i=2 never reaches key j=0" in bad.stdout
