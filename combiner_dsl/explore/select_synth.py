"""Written `select` rules synthesised from templates, accepted only where they equal the derived
(inclusion-maximal) selection at every screening length, so the prover can take them for every L."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import torch

from .. import api
from ..errors import CombinerError, CoverageError
from ..exhaustive import check_layout
from ..layout import Layout, build_layout
from ..verdict import Witness
from .candidates import DirectSet, Family, Source, render

SCREEN_LENGTHS = (*range(1, 18), 24, 31, 32, 33, 50, 64)


@dataclass(frozen=True)
class Synth:
    name: str
    text: str  # the spec: written selects where a template matched, derived otherwise
    written: bool  # every partition has a written select
    witness: Witness | None  # the derived selection already fails (C1 ambiguity, C2 gap, ...)


def candidate_name(src: Source, direct: DirectSet, fam: Family) -> str:
    raw = f"{src.name}_{direct.tag}_{fam.tag}"
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]+", "_", raw)).strip("_")


def _layouts(text: str, lengths: tuple[int, ...]) -> list[Layout]:
    pattern = api.load(text=text).pattern
    return [build_layout(pattern, L) for L in lengths]


def _joint(src: Source, direct: DirectSet, fam: Family, name: str, lengths: tuple[int, ...]) -> Synth:
    """A family whose partitions are the levels of one laminar family: derived selection (per
    partition) would take every level, so the written templates are taken together, in order, and
    accepted when C0-C3 hold at every screening length."""
    first: Witness | None = None
    text = render(src, name, direct, ((fam, (None,) * len(fam.parts)),))
    for trial in itertools.product(*(part.selects for part in fam.parts)):
        text = render(src, name, direct, ((fam, trial),))
        try:
            witness = next((w for lay in _layouts(text, lengths) if (w := check_layout(lay)) is not None), None)
        except CoverageError as err:
            witness = err.witness
        except CombinerError:
            continue  # a template undefined somewhere: not this one
        if witness is None:
            return Synth(name, text, True, None)
        first = first or witness
    return Synth(name, text, False, first)


def synthesise(src: Source, direct: DirectSet, fam: Family, lengths: tuple[int, ...] = SCREEN_LENGTHS) -> Synth:
    name = candidate_name(src, direct, fam)
    if fam.joint:
        return _joint(src, direct, fam, name, lengths)
    derived_sel: tuple[str | None, ...] = (None,) * len(fam.parts)
    derived_text = render(src, name, direct, ((fam, derived_sel),))
    try:
        derived = _layouts(derived_text, lengths)
    except CoverageError as err:
        return Synth(name, derived_text, False, err.witness)
    for lay in derived:
        witness = check_layout(lay)
        if witness is not None:
            return Synth(name, derived_text, False, witness)
    chosen: list[str | None] = list(derived_sel)
    for k, part in enumerate(fam.parts):
        for template in part.selects:
            trial = tuple(template if n == k else None for n in range(len(fam.parts)))
            try:
                got = _layouts(render(src, name, direct, ((fam, trial),)), lengths)
            except CombinerError:
                continue  # the template is undefined somewhere, or its layout fails: not this one
            if all(torch.equal(g.plans[0].regions[k].select, d.plans[0].regions[k].select) for g, d in zip(got, derived, strict=True)):
                chosen[k] = template
                break
    written = all(c is not None for c in chosen)
    return Synth(name, render(src, name, direct, ((fam, tuple(chosen)),)), written, None)
