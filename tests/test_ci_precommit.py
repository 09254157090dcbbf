"""The pre-commit hook, end to end: a scratch repository whose commits go through `combiner-check`.

The hook repository is a snapshot of this working tree (what `pre-commit try-repo` would take),
committed once so that pre-commit builds the hook's environment once for both commits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def sh(*argv: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=3000, check=False)


@pytest.mark.slow
def test_hook_accepts_a_good_spec_and_rejects_a_refuted_one(tmp_path: Path) -> None:
    pytest.importorskip("pre_commit")
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    # the hook's environment gets the CPU build of torch this project is tested with
    (tmp_path / "constraints.txt").write_text("torch==2.13.0\n")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit"), "PIP_CONSTRAINT": str(tmp_path / "constraints.txt"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid")

    hooks = tmp_path / "hooks"
    files = sh("git", "ls-files", "-co", "--exclude-standard", cwd=ROOT, env=env).stdout.split("\n")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (hooks / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, hooks / name)
    for argv in (("git", "init", "-q"), ("git", "add", "-A"), ("git", "commit", "-q", "-m", "snapshot")):
        sh(*argv, cwd=hooks, env=env)
    rev = sh("git", "rev-parse", "HEAD", cwd=hooks, env=env).stdout.strip()

    repo = tmp_path / "repo"
    repo.mkdir()
    sh("git", "init", "-q", cwd=repo, env=env)
    (repo / ".pre-commit-config.yaml").write_text(f"repos:\n  - repo: {hooks}\n    rev: {rev}\n    hooks:\n      - id: combiner-check\n")
    installed = sh(sys.executable, "-m", "pre_commit", "install", cwd=repo, env=env)
    assert installed.returncode == 0, installed.stderr

    shutil.copy(ROOT / "examples/combiner_fixed.cmb", repo / "good.cmb")
    sh("git", "add", "good.cmb", ".pre-commit-config.yaml", cwd=repo, env=env)
    ok = sh("git", "commit", "-m", "a proved spec", cwd=repo, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "combiner check" in ok.stdout + ok.stderr and "Passed" in ok.stdout + ok.stderr

    shutil.copy(ROOT / "examples/sparse/sparse_fixed.cmb", repo / "refuted.cmb")
    sh("git", "add", "refuted.cmb", cwd=repo, env=env)
    bad = sh("git", "commit", "-m", "a refuted spec", cwd=repo, env=env)
    out = bad.stdout + bad.stderr
    assert bad.returncode != 0 and "Failed" in out, out
    assert "refuted.cmb: sparse_fixed: REFUTED C2 (covering): at L=4, query i=2 never reaches key j=0" in out
    assert sh("git", "log", "--format=%s", cwd=repo, env=env).stdout.split() == ["a", "proved", "spec"]  # only the good commit landed
