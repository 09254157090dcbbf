"""Every resource limit the compiler enforces, in one place (docs/language.md, "Limits").

Each limit is checked before the work it bounds, so an input past it fails fast with its location
(or the option) named, never after minutes of work or gigabytes of memory.
"""

from __future__ import annotations

from .runtime.tiling import MAX_REGIONS

__all__ = [
    "MAX_COST_L",
    "MAX_DENSE_CELLS",
    "MAX_DENSE_L",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_HEAD_DIM",
    "MAX_NAME_CHARS",
    "MAX_REGIONS",
    "MAX_TIMEOUT_S",
    "MAX_TOKENS",
    "PROVER_BUDGET_S",
]

# ---------------------------------------------------------------- source text
MAX_FILE_BYTES = 1_000_000  # a spec file; at most this + 1 bytes are ever read
MAX_TOKENS = 20_000  # tokens in one spec, counted before the parser runs
MAX_DEPTH = 100  # nesting of one expression (brackets or operators)
MAX_NAME_CHARS = 100  # characters in one name (pattern, let, binder, partition, plan)

# ---------------------------------------------------------------- lengths and regions
MAX_DENSE_L = 8192  # longest L for the stages that hold L x L grids: check, show, derived-selection cost
MAX_COST_L = 1 << 24  # longest L for `cost` (box counting never builds the grid)
# MAX_REGIONS (regions of one partition at one L) lives in the runtime, which the generated
# modules carry and which must import nothing but torch; every stage reads that one value.
MAX_DENSE_CELLS = 1 << 26  # regions x L of one partition in the exhaustive checker's grids

# ---------------------------------------------------------------- prover and options
PROVER_BUDGET_S = 120.0  # total solver time of one proof, all queries together
MAX_TIMEOUT_S = 600.0  # the largest `--timeout` (per solver query)
MAX_HEAD_DIM = 1 << 16  # the largest `--d`
