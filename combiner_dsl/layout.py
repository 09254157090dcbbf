"""Dense evaluation of a pattern at one length: every D_i, region, selection and at(p), as tensors.

This is the exhaustive view (O(L^2) memory for the direct set): it backs the checker, the pictures
and the dense oracle, so it is written for clarity and only ever used at lengths that fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import ir
from .errors import CoverageError, LengthError
from .evaluate import binder_table, evaluate, let_values
from .laminar import forest_selection
from .limits import MAX_DENSE_CELLS, MAX_DENSE_L, MAX_REGIONS
from .verdict import Witness


@dataclass(frozen=True)
class RegionSet:
    """One partition at one L: its R regions, which queries select them, and their at(p)."""

    partition: ir.Partition
    binders: tuple[tuple[int, ...], ...]  # R binder tuples, in enumeration order
    member: torch.Tensor  # bool [R, L]
    select: torch.Tensor  # bool [L, R]: selected and non-empty
    query_at: torch.Tensor | None  # int64 [L, R] position of at(...) for the unit query, None if pooled
    key_at: torch.Tensor | None  # int64 [L, R] likewise for the unit key
    unsupported: str | None = None  # why the generated module cannot plan this partition at this L

    def name(self, r: int) -> str:
        return self.partition.region_name(self.binders[r])


@dataclass(frozen=True)
class PlanLayout:
    plan: ir.PlanDef
    direct: torch.Tensor  # bool [L, L], already intersected with the allowed set
    regions: tuple[RegionSet, ...]
    derived: tuple[str, ...]  # the derived select rules, in words


@dataclass(frozen=True)
class Layout:
    pattern: ir.Pattern
    L: int
    env: dict[str, int | bool]
    allowed: torch.Tensor  # bool [L, L]: Γ_i
    plans: tuple[PlanLayout, ...]


def allowed_mask(causal: bool, L: int) -> torch.Tensor:
    idx = torch.arange(L)
    return idx[None, :] <= idx[:, None] if causal else torch.ones(L, L, dtype=torch.bool)


def _as_grid(value: object, shape: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(value, dtype=dtype).expand(shape).clone()


def derived_rule_text(pattern: ir.Pattern, part: ir.Partition, direct_text: str) -> str:
    """The derived `select` written out with the spec's own direct condition."""
    binders = ", ".join(part.binder_names)
    seen = "j <= i" if pattern.causal else "0 <= j < L"
    return (
        f"select({binders}) := {part.name}[{binders}] is non-empty, lies inside {{j : {seen} and not ({direct_text})}}, "
        f"and no other such region of {part.name} strictly contains it"
    )


def _regions(layout_env: dict[str, object], pattern: ir.Pattern, part: ir.Partition, L: int, direct: torch.Tensor, allowed: torch.Tensor, direct_text: str) -> tuple[RegionSet, str | None]:
    # the [R, L] grids below (and [R, R] for derived selection) bound R by the dense limit as well
    limit = min(MAX_REGIONS, MAX_DENSE_CELLS // L, math.isqrt(MAX_DENSE_CELLS) if part.select is None else MAX_REGIONS)
    cols = binder_table(pattern, part, layout_env, L, limit, " for the exhaustive checker")
    R = cols.shape[0]
    tuples = [tuple(t) for t in cols.tolist()]
    j = torch.arange(L)
    member_env = {**layout_env, "j": j[None, :], **{n: cols[:, k, None] for k, n in enumerate(part.binder_names)}}
    member = _as_grid(evaluate(pattern, part.member, member_env, L), (R, L), torch.bool) if R else torch.zeros(0, L, dtype=torch.bool)
    nonempty = member.any(dim=1)
    sel_env = {**layout_env, "i": j[:, None], **{n: cols[None, :, k] for k, n in enumerate(part.binder_names)}}
    derived_rule = unsupported = None
    if part.select is not None:
        select = _as_grid(evaluate(pattern, part.select, sel_env, L), (L, R), torch.bool) if R else torch.zeros(L, 0, dtype=torch.bool)
    else:
        select, unsupported = derive_selection(member, nonempty, allowed & ~direct, part, tuples, L)
        derived_rule = derived_rule_text(pattern, part, direct_text)
    select = select & nonempty[None, :]

    def at(src: ir.SummarySource) -> torch.Tensor | None:
        if src.position is None:
            return None
        return _as_grid(evaluate(pattern, src.position, sel_env, L), (L, R), torch.int64) if R else torch.zeros(L, 0, dtype=torch.int64)

    return RegionSet(part, tuple(tuples), member, select, at(part.query), at(part.key), unsupported), derived_rule


def derive_selection(member: torch.Tensor, nonempty: torch.Tensor, free: torch.Tensor, part: ir.Partition, tuples: list[tuple[int, ...]], L: int) -> tuple[torch.Tensor, str | None]:
    """Inclusion-maximal non-empty regions inside each query's free keys (Γ_i minus D_i), and why
    the generated module could not plan them (its planner needs nested-or-disjoint regions).

    Laminar families go through their containment forest (`laminar.forest_selection`), as in the
    planner; only a crossing family, which no module can run, is decided from the definition, to
    find its C1 witness or say why it is unsupported. Fails with a C1 witness when two of the
    regions it would select overlap.
    """
    rows = nonempty.nonzero().flatten()
    uniq, back = torch.unique(member[rows], dim=0, return_inverse=True)
    picked = forest_selection(uniq, free)
    if picked is None:
        return _crossing_selection(member, nonempty, free, part, tuples, L)
    chosen = torch.zeros(free.shape[0], member.shape[0], dtype=torch.bool)
    chosen[:, rows] = picked[:, back]
    # distinct sets of a laminar family that are both maximal are disjoint: only copies of one set overlap
    copies = torch.bincount(back, minlength=uniq.shape[0]) > 1
    twice = picked[:, copies]
    if bool(twice.any()):
        i = int(twice.any(1).nonzero()[0])
        j = int(uniq[copies][twice[i]].any(0).nonzero()[0])
        _overlap(chosen, member, part, tuples, L, i, j)
    return chosen, None


def _overlap(chosen: torch.Tensor, member: torch.Tensor, part: ir.Partition, tuples: list[tuple[int, ...]], L: int, i: int, j: int) -> None:
    names = [part.region_name(tuples[r]) for r in (chosen[i] & member[:, j]).nonzero().flatten().tolist()]
    witness = Witness("C1", L, i, j, tuple(names[:2]))
    raise CoverageError(f"derived selection of `{part.name}` is ambiguous: {witness.explain()}", witness)


def _crossing_selection(member: torch.Tensor, nonempty: torch.Tensor, free: torch.Tensor, part: ir.Partition, tuples: list[tuple[int, ...]], L: int) -> tuple[torch.Tensor, str]:
    """The definition, for a family with two crossing regions: O(L^2 R) products."""
    m = member.float()
    inside = ((~free).float() @ m.T == 0) & nonempty[None, :]  # [L, R]: region ⊆ free keys of i
    subset = ((m @ (~member).float().T) == 0) & nonempty[:, None]  # [R, R]: region v ⊆ region w
    strict = subset & ~subset.T
    dominated = (inside.float() @ strict.float().T) > 0  # some selected w strictly contains v
    chosen = inside & ~dominated
    overlap = (chosen.float() @ m) > 1  # [L, L]: a key in two chosen regions
    if bool(overlap.any()):
        i, j = (int(x) for x in overlap.nonzero()[0])
        _overlap(chosen, member, part, tuples, L, i, j)
    crossing = ((m @ m.T) > 0) & ~subset & ~subset.T & nonempty[:, None] & nonempty[None, :]
    v, w = (int(x) for x in crossing.nonzero()[0])
    j = int((member[v] & member[w]).nonzero()[0])
    a, b = part.region_name(tuples[v]), part.region_name(tuples[w])
    return chosen, (
        f"derived selection of `{part.name}`: at L={L}, regions {a} and {b} share key j={j} without one containing the other; "
        "the generated module needs the regions of a derived selection to be nested or disjoint (write a `select`)"
    )


def build_layout(pattern: ir.Pattern, L: int) -> Layout:
    """Evaluate every predicate of `pattern` on the full grid at length L (the caller checks requires)."""
    if L > MAX_DENSE_L:
        raise LengthError(f"L = {L}: the exhaustive checker holds L x L grids and takes L <= {MAX_DENSE_L}")
    env: dict[str, object] = dict(let_values(pattern, L))
    allowed = allowed_mask(pattern.causal, L)
    idx = torch.arange(L)
    plans = []
    for plan in pattern.plans:
        direct_env = {**env, "i": idx[:, None], "j": idx[None, :]}
        direct = _as_grid(evaluate(pattern, plan.direct, direct_env, L), (L, L), torch.bool) & allowed
        regions, derived = [], []
        for part in plan.partitions:
            direct_text = pattern.source.text[plan.direct.span.start : plan.direct.span.end]
            rs, rule = _regions(env, pattern, part, L, direct, allowed, direct_text)
            regions.append(rs)
            if rule:
                derived.append(rule)
        plans.append(PlanLayout(plan, direct, tuple(regions), tuple(derived)))
    return Layout(pattern, L, dict(let_values(pattern, L)), allowed, tuple(plans))
