"""A proof cache: verdicts keyed by what decides them, so unchanged specs are not proved again.

The key is the sha256 of the normalised IR (the pattern without spans or file name), the checks,
the options (lengths, prove, timeout) and the tool (package version, z3 version and a hash of the
package's own sources, so an edited prover never answers from an old proof). Entries are JSON in a
private directory: created 0700, used only while it belongs to us and nobody else can write it;
an entry is believed only if it is a regular file of ours whose recorded key matches its name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from . import ir
from .verdict import CHECKS, SEVERITY, Status, Verdict, Witness

FORMAT = 1
# Modules that never change a verdict: editing them keeps the cache (everything else invalidates it).
NOT_VERDICT = {"cli.py", "certify.py", "pytest_plugin.py", "report_formats.py", "show.py", "oracle.py"}


def default_dir() -> Path:
    """The user cache directory (XDG on Linux), subfolder combiner-dsl/proofs."""
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "combiner-dsl" / "proofs"


def _normal(x: Any) -> Any:
    """A JSON-able form of IR/AST values without spans or sources (they do not change a verdict)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        out = {f.name: _normal(getattr(x, f.name)) for f in dataclasses.fields(x) if f.name != "source" and not f.name.endswith("span")}
        return {"_": type(x).__name__, **out}
    if isinstance(x, tuple | list):
        return [_normal(v) for v in x]
    if isinstance(x, str | int | bool) or x is None:
        return x
    raise TypeError(f"cannot normalise {type(x).__name__}")


@cache
def tool_fingerprint() -> str:
    """Package version, z3 version and a hash of the package's sources."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __name__ as pkg

    root = Path(__file__).parent
    h = hashlib.sha256()
    for f in sorted([*root.rglob("*.py"), *root.rglob("*.lark")]):
        if f.name in NOT_VERDICT or "codegen" in f.parts:
            continue
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    vers = []
    for dist in ("combiner-dsl", "z3-solver"):
        try:
            vers.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:  # running from a source tree
            vers.append(f"{dist} unknown")
    return f"{pkg}; {'; '.join(vers)}; sources {h.hexdigest()[:16]}"


def key(pattern: ir.Pattern, lengths: list[int] | None, prove: bool, timeout_s: float, streaming: bool = False) -> str:
    options = {"L": lengths, "prove": prove, "timeout": timeout_s, "streaming": streaming}
    doc = {"format": FORMAT, "ir": _normal(pattern), "checks": sorted(CHECKS), "options": options, "tool": tool_fingerprint()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()



def _verdict_from(d: Any) -> Verdict | None:
    """The verdict an entry holds, or None when anything is off (then the spec is simply re-proved)."""
    try:
        w = d["witness"]
        witness = None
        if w is not None:
            check = next(c for c in SEVERITY if c == w["check"])  # StopIteration: not a check name
            witness = Witness(check, int(w["L"]), int(w["i"]), None if w["j"] is None else int(w["j"]), tuple(str(r) for r in w["regions"]), None if w["plan"] is None else str(w["plan"]))
        scope = d["scope"]
        scope = str(scope) if isinstance(scope, str) else tuple(int(x) for x in scope)
        status: Status | None = next((s for s in ("proved", "checked", "refuted") if s == d["verdict"]), None)
        if status is None:
            return None
        reason = None if d["reason"] is None else str(d["reason"])
        streaming = _streaming_from(d["streaming_detail"], d["streaming_checked"]) if "streaming_detail" in d else None
        return Verdict(status, scope, witness, str(d["message"]), reason, tuple(str(x) for x in d["derived_select"]), streaming=streaming)
    except (KeyError, TypeError, ValueError, StopIteration):
        return None


def _streaming_from(d: Any, checked: Any) -> Any:
    from .streaming import StreamVerdict, StreamWitness

    w = d["witness"]
    witness = None if w is None else StreamWitness(int(w["L1"]), int(w["L2"]), int(w["i"]), int(w["j"]), str(w["what"]), None if w["plan"] is None else str(w["plan"]))
    status = str(d["status"])
    if status not in ("proved", "refuted", "unknown"):
        raise ValueError(status)
    return StreamVerdict(status, witness, str(d["message"]), tuple(int(x) for x in checked))


class ProofCache:
    """A directory of verdicts; every failure to read or write is a miss, never an error."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.hits = 0
        self.misses = 0

    @classmethod
    def open(cls, directory: str | Path | None = None) -> ProofCache | None:
        """The cache at `directory` (default: the user cache dir), or None (with a note) when it is unsafe."""
        d = Path(directory) if directory is not None else default_dir()
        try:
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = os.stat(d, follow_symlinks=False)
        except OSError as err:
            print(f"combiner: proof cache {d} unusable ({err.strerror or err}); proving without it", file=sys.stderr)
            return None
        if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()) or st.st_mode & 0o022:
            print(f"combiner: proof cache {d} is not a private directory of this user; proving without it", file=sys.stderr)
            return None
        return cls(d)

    def get(self, k: str) -> Verdict | None:
        path = self.dir / f"{k}.json"
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            self.misses += 1
            return None
        try:
            st = os.fstat(fd)
            ours = stat.S_ISREG(st.st_mode) and (not hasattr(os, "getuid") or st.st_uid == os.getuid()) and st.st_size < 1 << 20
            data = os.read(fd, 1 << 20) if ours else b""
        finally:
            os.close(fd)
        try:
            doc = json.loads(data)
            verdict = _verdict_from(doc["verdict"]) if doc.get("key") == k and doc.get("format") == FORMAT else None
        except (ValueError, AttributeError, TypeError, KeyError):
            verdict = None
        if verdict is None:
            self.misses += 1
        else:
            self.hits += 1
        return verdict

    def put(self, k: str, verdict: Verdict, spec_path: str) -> None:
        entry = verdict.to_json()
        if verdict.streaming is not None:
            entry["streaming_checked"] = list(verdict.streaming.checked)
        doc = {"format": FORMAT, "key": k, "spec": spec_path, "tool": tool_fingerprint(), "verdict": entry}
        try:
            fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f)
            os.replace(tmp, self.dir / f"{k}.json")  # atomic: a reader sees the old entry or the new one
        except OSError:
            pass


def check(spec: Any, cache_: ProofCache | None, lengths: list[int] | None, prove: bool, timeout_s: float, streaming: bool = False) -> Verdict:
    """`spec.check(...)`, answered from `cache_` when an entry for the same question exists.

    A verdict that stopped at a solver time limit is not stored: a quieter machine may prove it.
    """
    if cache_ is None:
        return spec.check(lengths, prove=prove, timeout_s=timeout_s, streaming=streaming)  # type: ignore[no-any-return]
    k = key(spec.pattern, lengths, prove, timeout_s, streaming)
    hit = cache_.get(k)
    if hit is not None:
        return hit
    verdict: Verdict = spec.check(lengths, prove=prove, timeout_s=timeout_s, streaming=streaming)
    undecided = verdict.streaming is not None and verdict.streaming.status == "unknown"  # may be a time limit too
    if not (verdict.reason and "gave up" in verdict.reason) and not undecided:
        cache_.put(k, verdict, spec.path)
    return verdict
