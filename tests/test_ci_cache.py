"""The proof cache: a rerun answers from it, an edit re-proves, an unsafe directory or entry is ignored."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import combiner_dsl
from combiner_dsl import proof_cache
from combiner_dsl.proof_cache import ProofCache
from tests.ci_specs import BLOCKS4

SPEC = BLOCKS4


def test_rerun_hits_and_edit_misses(tmp_path: Path) -> None:
    cache = ProofCache.open(tmp_path / "c")
    assert cache is not None and (tmp_path / "c").stat().st_mode & 0o777 == 0o700
    spec = combiner_dsl.load(text=SPEC)
    first = proof_cache.check(spec, cache, [16], True, 5.0)
    assert first.status == "proved" and (cache.hits, cache.misses) == (0, 1)
    again = proof_cache.check(combiner_dsl.load(text="# a comment changes no proof\n" + SPEC), cache, [16], True, 5.0)
    assert again == first and cache.hits == 1
    edited = combiner_dsl.load(text=SPEC.replace("r < i // 4", "r < i // 4 + 1"))
    assert proof_cache.check(edited, cache, [8], False, 5.0).status == "refuted" and cache.misses == 2
    assert proof_cache.check(spec, cache, [8], False, 5.0).status == "checked" and cache.misses == 3  # other options, other key


def test_untrusted_entries_are_misses(tmp_path: Path) -> None:
    cache = ProofCache.open(tmp_path)
    assert cache is not None
    spec = combiner_dsl.load(text=SPEC)
    k = proof_cache.key(spec.pattern, [8], False, 5.0)
    proof_cache.check(spec, cache, [8], False, 5.0)
    entry = tmp_path / f"{k}.json"
    doc = json.loads(entry.read_text())
    entry.write_text(json.dumps({**doc, "key": "0" * 64, "verdict": {**doc["verdict"], "verdict": "proved"}}))
    assert cache.get(k) is None  # recorded key does not match the name
    entry.write_text("{not json")
    assert cache.get(k) is None
    entry.unlink()
    entry.symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_text(json.dumps(doc))
    assert cache.get(k) is None  # never follows a link
    assert proof_cache.check(spec, cache, [8], False, 5.0).status == "checked"


def test_unsafe_directory_is_not_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, 0o777)
    assert ProofCache.open(d) is None
    assert "not a private directory" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert ProofCache.open(tmp_path / "file" / "sub") is None


def test_default_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert proof_cache.default_dir() == tmp_path / "combiner-dsl" / "proofs"
