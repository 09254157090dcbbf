"""Pictures of a pattern at one length: which key each query reaches directly, through which region,
and where coverage fails (paper Fig. 1 style). PNG through matplotlib, or text for the terminal."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from . import ir
from .layout import PlanLayout, build_layout

# cell categories; region cells hold REGION + global region index
HIDDEN, FREE, DIRECT, UNCOVERED, LEAK, OVERLAP, REGION = range(7)
TEXT_LIMIT = 160  # widest text rendering; larger L is cut to the first rows and columns


@dataclass(frozen=True)
class PlanPicture:
    plan: str
    cells: torch.Tensor  # int64 [L, L] categories
    region_names: tuple[str, ...]  # global region index -> "block[r=0]"
    partition_of: tuple[str, ...]  # global region index -> partition name


def classify(pl: PlanLayout, allowed: torch.Tensor) -> PlanPicture:
    """One category per (query, key) cell: direct, the owning region, or the failure it shows."""
    L = allowed.shape[0]
    count = torch.zeros(L, L)
    owner = torch.zeros(L, L)
    names: list[str] = []
    parts: list[str] = []
    for rs in pl.regions:
        R = rs.member.shape[0]
        if R == 0:
            continue
        sel = rs.select.float()
        count += sel @ rs.member.float()
        owner += (sel * (torch.arange(R) + 1 + len(names))) @ rs.member.float()
        names.extend(rs.name(r) for r in range(R))
        parts.extend([rs.partition.name] * R)
    mult = count + pl.direct.float()
    cells = torch.full((L, L), HIDDEN, dtype=torch.int64)
    cells[allowed] = FREE
    one_region = (count == 1) & ~pl.direct
    cells[one_region] = REGION + owner[one_region].long() - 1
    cells[pl.direct] = DIRECT
    cells[allowed & (mult == 0)] = UNCOVERED
    cells[(mult > 1) & allowed] = OVERLAP
    cells[(count > 0) & ~allowed] = LEAK
    return PlanPicture(pl.plan.name, cells, tuple(names), tuple(parts))


def pictures(pattern: ir.Pattern, L: int) -> list[PlanPicture]:
    layout = build_layout(pattern, L)
    return [classify(pl, layout.allowed) for pl in layout.plans]


_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def render_text(pattern: ir.Pattern, L: int) -> str:
    """Rows are queries, columns keys: '#' direct, a letter per region, '?' uncovered, 'X' leak, '*' overlap."""
    out: list[str] = []
    for pic in pictures(pattern, L):
        n = min(L, TEXT_LIMIT)
        title = f"{pattern.name} at L={L}" + (f", plan {pic.plan}" if pic.plan != "main" else "")
        out.append(title + (f" (first {n} queries and keys)" if n < L else ""))
        symbols = {HIDDEN: " ", FREE: "?", DIRECT: "#", UNCOVERED: "?", LEAK: "X", OVERLAP: "*"}
        for i in range(n):
            row = pic.cells[i, :n].tolist()
            out.append("".join(symbols.get(c, _LETTERS[(c - REGION) % len(_LETTERS)]) for c in row))
        used = sorted({c - REGION for c in pic.cells[:n, :n].flatten().tolist() if c >= REGION})
        legend = ", ".join(f"{_LETTERS[r % len(_LETTERS)]}={pic.region_names[r]}" for r in used[:24])
        more = f" (+{len(used) - 24} more)" if len(used) > 24 else ""
        out.append("# direct   ? uncovered (C2)   X leak (C0)   * overlap (C1)   letters: regions")
        if legend:
            out.append("regions: " + legend + more)
    return "\n".join(out)


def render_png(pattern: ir.Pattern, L: int, path: str | Path) -> None:
    """Draw each plan's pattern as an image with a legend and write it to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    pics = pictures(pattern, L)
    fig, axes = plt.subplots(1, len(pics), figsize=(6.2 * len(pics), 6.8), squeeze=False)
    region_cmap = plt.get_cmap("tab20")
    fixed = {
        HIDDEN: (1.0, 1.0, 1.0),
        FREE: (1.0, 1.0, 1.0),
        DIRECT: (0.12, 0.30, 0.62),
        UNCOVERED: (0.95, 0.10, 0.10),
        LEAK: (0.0, 0.0, 0.0),
        OVERLAP: (1.0, 0.55, 0.0),
    }
    for ax, pic in zip(axes[0], pics, strict=True):
        n_regions = len(pic.region_names)
        colors = [fixed[k] for k in range(REGION)]
        # lighter tab20 shades so the dark direct set stands out, one shade per region
        colors += [region_cmap((2 * r + 1) % 20)[:3] for r in range(n_regions)]
        ax.imshow(pic.cells.numpy(), cmap=ListedColormap(colors), vmin=0, vmax=len(colors) - 1, interpolation="nearest")
        ax.set_title(f"{pattern.name}, L = {L}" + (f"  (plan {pic.plan})" if pic.plan != "main" else ""))
        ax.set_xlabel("key j")
        ax.set_ylabel("query i")
        handles = [Patch(color=fixed[DIRECT], label="direct (attended key by key)")]
        for part in dict.fromkeys(pic.partition_of):
            first = pic.partition_of.index(part)
            handles.append(Patch(color=region_cmap((2 * first + 1) % 20), label=f"{part}[...] via summary (one shade per region)"))
        present = set(torch.unique(pic.cells).tolist())
        for code, label in ((UNCOVERED, "uncovered key (C2)"), (LEAK, "leaked future key (C0)"), (OVERLAP, "covered twice (C1)")):
            if code in present:
                handles.append(Patch(color=fixed[code], label=label))
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=1, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
