"""CPU benchmark of the torch target (not a test).

For each spec and length: the generated module (plan construction timed apart), exact causal
attention (`F.scaled_dot_product_attention(is_causal=True)`), and FlexAttention (`torch.compile` of
`flex_attention`) running the same factorization: the U summary units are appended as extra keys
after the L real keys (padded to a whole block) and a `mask_mod` routes each query to its direct keys
and selected units, read from the plan. Flex's time includes the same summary pass as ours (kbar /
vbar come from it); compile and block-mask construction are reported apart and excluded.

    python bench/bench_cpu.py                      # the default table
    python bench/bench_cpu.py --lengths 4096 16384 --specs combiner_fixed --repeat 3

Peak memory is the rise of the process's peak RSS (VmHWM, reset through /proc/self/clear_refs)
over its RSS before the call, so it counts every allocation of the call, torch's included.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from combiner_dsl.codegen.torch_target import generate_torch, load_generated
from combiner_dsl.parse import parse
from combiner_dsl.semantics import analyze
from combiner_dsl.source import Source

ROOT = Path(__file__).resolve().parent.parent
SPECS = ("combiner_fixed", "combiner_logsparse", "combiner_axial")
FLEX_BLOCK = 128


# ---------------------------------------------------------------- measuring


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _trim() -> None:
    """Give freed heap back to the OS, so that RSS is what is live (glibc keeps it otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def peak_added_bytes(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Rise of the peak RSS during fn() over the RSS before it."""
    gc.collect()
    _trim()
    before = _status("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        pass
    result = fn()
    return max(0, _status("VmHWM") - before), result


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ---------------------------------------------------------------- FlexAttention on the same factorization


def _segment_pairs(seg: Any, L: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (query, key) of a segment as flat tensors: direct (i, j) and unit (i, u) pairs."""
    T, Tk = seg.tile_q, seg.tile_k
    nq = seg.direct_tiles.shape[0]
    qslots = seg.query_slots if seg.query_slots is not None else torch.arange(nq * T)
    qslots = torch.where(qslots < L, qslots, -1).view(nq, T)
    t, d, r, c = seg.direct_masks.nonzero().unbind(1)
    kt = seg.direct_tiles[t, d].long()
    key = kt * Tk + c
    if seg.key_slots is not None:
        key = seg.key_slots[key]
    t2, r2, s2 = seg.unit_masks.nonzero().unbind(1)
    return qslots[t, r], key, qslots[t2, r2], seg.unit_lists[t2, s2].long()


def _routing(seg: Any, L: int, U: int) -> tuple[torch.Tensor, ...]:
    """Gather tables answering "does query i take key j / unit u in this segment" (no search in a mask_mod)."""
    T, Tk = seg.tile_q, seg.tile_k
    nq = seg.direct_tiles.shape[0]

    def place(slots: torch.Tensor | None, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
        if slots is None:
            pos = torch.arange(L)
        else:
            pos = torch.empty(L, dtype=torch.int64)
            filled = (slots >= 0).nonzero().flatten()
            pos[slots[filled]] = filled
        return (pos // tile).int(), (pos % tile).int()

    qtile, qrow = place(seg.query_slots, T)
    ktile, kcol = place(seg.key_slots, Tk)
    nk = int(ktile.max()) + 1
    slot_of = torch.full((nq, nk + 1), -1, dtype=torch.int16)
    dt = seg.direct_tiles.long()
    slot_of[torch.arange(nq)[:, None].expand_as(dt), torch.where(dt >= 0, dt, nk)] = torch.arange(dt.shape[1], dtype=torch.int16)[None, :].expand_as(dt)
    upos = torch.full((nq, max(U, 1) + 1), -1, dtype=torch.int16)
    ul = seg.unit_lists.long()
    upos[torch.arange(nq)[:, None].expand_as(ul), torch.where(ul >= 0, ul, max(U, 1))] = torch.arange(ul.shape[1], dtype=torch.int16)[None, :].expand_as(ul)
    dm = seg.direct_masks if seg.direct_masks.shape[1] else torch.zeros(nq, 1, T, Tk, dtype=torch.bool)
    um = seg.unit_masks if seg.unit_masks.shape[2] else torch.zeros(nq, T, 1, dtype=torch.bool)
    return qtile, qrow, ktile, kcol, slot_of[:, :nk].contiguous(), dm.contiguous(), upos[:, : max(U, 1)].contiguous(), um.contiguous()


def build_flex(plan: Any, L: int) -> tuple[Any, int, int]:
    """BlockMask for one plan (all segments): keys [0, L) real, [Lp, Lp + U) units."""
    from torch.nn.attention.flex_attention import BlockMask

    U = int(plan.n_units)
    nQ = -(-L // FLEX_BLOCK)
    Lp = nQ * FLEX_BLOCK
    nK = nQ + -(-max(U, 1) // FLEX_BLOCK)
    dq, dk, uq, uu = (torch.cat(x) for x in zip(*(_segment_pairs(s, L) for s in plan.segments()), strict=True))
    qi = torch.cat([dq, uq])
    kj = torch.cat([dk, Lp + uu])
    count = torch.bincount((qi // FLEX_BLOCK) * nK + kj // FLEX_BLOCK, minlength=nQ * nK).view(nQ, nK)
    sizes_q = torch.clamp(L - torch.arange(nQ) * FLEX_BLOCK, max=FLEX_BLOCK)
    full = torch.zeros(nQ, nK, dtype=torch.bool)
    full[:, :nQ] = count[:, :nQ] == sizes_q[:, None] * sizes_q[None, :]
    partial = (count > 0) & ~full

    def lists(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.argsort((~m).to(torch.int8), dim=1, stable=True).to(torch.int32)
        return m.sum(1).to(torch.int32)[None, None], idx[None, None].contiguous()

    routes = [_routing(seg, L, U) for seg in plan.segments()]

    def mask_mod(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        qq = torch.clamp(q_idx, max=L - 1)  # Flex pads the lengths: clamp every gather
        jj = torch.clamp(kv_idx, max=L - 1)
        u = torch.clamp(kv_idx - Lp, 0, max(U, 1) - 1)
        hit = (q_idx < 0) & (kv_idx < 0)  # all false, with the right shape
        for qtile, qrow, ktile, kcol, slot_of, dm, upos, um in routes:
            t, r = qtile[qq], qrow[qq]
            slot = slot_of[t, ktile[jj]]
            direct = (kv_idx < L) & (slot >= 0) & dm[t, torch.clamp(slot, min=0).int(), r, kcol[jj]]
            pos = upos[t, u]
            unit = (kv_idx >= Lp) & (pos >= 0) & um[t, r, torch.clamp(pos, min=0).int()]
            hit = hit | direct | unit
        return hit & (q_idx < L)

    kv_num, kv_idx = lists(partial)
    full_num, full_idx = lists(full)
    bm = BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=FLEX_BLOCK, mask_mod=mask_mod, seq_lengths=(L, Lp + U))
    return bm, Lp, U


# ---------------------------------------------------------------- the run


def load_module(name: str) -> Any:
    path = ROOT / "examples" / f"{name}.cmb"
    src = Source(str(path), path.read_text())
    pattern = analyze(parse(src), src)
    return load_generated(generate_torch(pattern), pattern.name)


def run(specs: list[str], lengths: list[int], repeat: int, flex_max_L: int, sdpa_max_L: int, flex_budget_s: float) -> list[dict[str, Any]]:
    """Per length: our modules first, then SDPA, then Flex (whose compiles keep worker threads busy a while)."""
    rows: list[dict[str, Any]] = []
    last_flex: dict[str, tuple[int, float]] = {}  # spec -> (L, seconds per call) of its last Flex run
    for L in lengths:
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, 4, L, 64, generator=g) for _ in range(3))
        reps = max(1, repeat if L <= 16384 else min(repeat, 3))
        todo = []
        for name in specs:
            mod = load_module(name)
            t0 = time.perf_counter()
            plan = mod.build_plan(mod.SPEC, L)
            plan_s = time.perf_counter() - t0
            mod._PLANS[L] = plan
            attn = functools.partial(mod.CombinerAttention(), q, k, v)
            with torch.no_grad():
                attn()  # warm-up
                mem, ours = peak_added_bytes(attn)
                ours_s = median_time(attn, reps)
            todo.append((mod, ours, {"spec": name, "L": L, "plan_s": plan_s, "ours_s": ours_s, "ours_mem": mem}))
        sdpa_row: dict[str, Any] = {}
        if L <= sdpa_max_L:
            with torch.no_grad():
                F.scaled_dot_product_attention(q[:, :, :256], k[:, :, :256], v[:, :, :256], is_causal=True)
                sdpa = functools.partial(F.scaled_dot_product_attention, q, k, v, is_causal=True)
                mem, _ = peak_added_bytes(sdpa)
                sdpa_row = {"sdpa_s": median_time(sdpa, max(1, reps - 1) if L > 16384 else reps), "sdpa_mem": mem}
        for mod, ours, row in todo:
            row.update(sdpa_row)
            seen = last_flex.get(row["spec"])
            guess = seen[1] * (L / seen[0]) ** 1.5 if seen else 0.0  # these factorizations grow like L^1.5 at most
            if L > flex_max_L:
                row["flex_note"] = f"skipped above L = {flex_max_L}"
            elif guess > flex_budget_s:
                row["flex_note"] = f"skipped: ~{guess:.0f} s per call expected from L = {seen[0]}"  # type: ignore[index]
            else:
                row.update(flex_row(mod, q, k, v, ours, L, reps))
                last_flex[row["spec"]] = (L, row["flex_s"])
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


def flex_row(mod: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ours: torch.Tensor, L: int, reps: int) -> dict[str, Any]:
    from torch.nn.attention.flex_attention import flex_attention

    torch._dynamo.reset()  # a fresh compile per (spec, L): shapes differ, and recompiles are capped
    flex = torch.compile(flex_attention, dynamic=False)
    t0 = time.perf_counter()
    fplan = mod.build_plan(mod.SPEC, L).plans[0]
    bm, Lp, _U = build_flex(fplan, L)
    mask_s = time.perf_counter() - t0
    scale = 1.0 / math.sqrt(q.shape[-1])

    def call() -> torch.Tensor:
        kbar, vbar = mod.summary_pass(q, k, v, fplan, scale)
        pad = q.new_zeros(1, q.shape[1], Lp - L, q.shape[-1])
        return flex(q, torch.cat([k, pad, kbar], 2), torch.cat([v, pad, vbar], 2), block_mask=bm, scale=scale)

    with torch.no_grad():
        t0 = time.perf_counter()
        out = call()
        compile_s = time.perf_counter() - t0
        mem, _ = peak_added_bytes(call)
        flex_s = median_time(call, reps)
    return {"flex_s": flex_s, "flex_mask_s": mask_s, "flex_compile_s": compile_s, "flex_mem": mem, "flex_err": float((out - ours).abs().max())}


def _fmt_s(x: float | None) -> str:
    return "-" if x is None else (f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s")


def _fmt_mb(x: int | None) -> str:
    return "-" if x is None else f"{x / 2**20:.0f} MiB"


def format_row(r: dict[str, Any]) -> str:
    sdpa, flex = r.get("sdpa_s"), r.get("flex_s")
    parts = [
        f"{r['spec']:<20} L={r['L']:<6}",
        f"plan {_fmt_s(r['plan_s'])}",
        f"ours {_fmt_s(r['ours_s'])} (+{_fmt_mb(r['ours_mem'])})",
        f"sdpa {_fmt_s(sdpa)} (+{_fmt_mb(r.get('sdpa_mem'))})",
        f"flex {_fmt_s(flex)}"
        + (
            f" (mask {_fmt_s(r['flex_mask_s'])}, compile {_fmt_s(r['flex_compile_s'])}, +{_fmt_mb(r['flex_mem'])}, max|diff| {r['flex_err']:.1e})"
            if flex
            else f" ({r.get('flex_note', '')})"
        ),
        f"sdpa/ours {sdpa / r['ours_s']:.1f}x" if sdpa else "",
        f"flex/ours {flex / r['ours_s']:.2f}x" if flex else "",
    ]
    return " | ".join(p for p in parts if p)


def markdown(rows: list[dict[str, Any]]) -> str:
    head = "| spec | L | plan | ours | ours +mem | SDPA causal | SDPA +mem | Flex | Flex mask / compile | Flex +mem | SDPA / ours | Flex / ours |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    lines = [head]
    for r in rows:
        sdpa, flex = r.get("sdpa_s"), r.get("flex_s")
        ratio_sdpa = f"{sdpa / r['ours_s']:.1f}x" if sdpa else "-"
        ratio_flex = f"{flex / r['ours_s']:.2f}x" if flex else "-"
        lines.append(
            f"| {r['spec']} | {r['L']} | {_fmt_s(r['plan_s'])} | {_fmt_s(r['ours_s'])} | {_fmt_mb(r['ours_mem'])} | {_fmt_s(sdpa)} | {_fmt_mb(r.get('sdpa_mem'))} | "
            f"{_fmt_s(flex) if flex else r.get('flex_note', '-')} | {(_fmt_s(r['flex_mask_s']) + ' / ' + _fmt_s(r['flex_compile_s'])) if flex else '-'} | {_fmt_mb(r.get('flex_mem'))} | "
            f"{ratio_sdpa} | {ratio_flex} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384, 65536])
    ap.add_argument("--specs", nargs="+", default=list(SPECS))
    ap.add_argument("--repeat", type=int, default=5, help="calls per measurement (at most 3 above L = 16384)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--flex-max-L", type=int, default=65536, help="skip Flex above this length")
    ap.add_argument("--sdpa-max-L", type=int, default=65536, help="skip SDPA above this length")
    ap.add_argument("--flex-budget-s", type=float, default=20.0, help="skip Flex where a call would take longer (extrapolated)")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown at the end")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, B=1 H=4 D=64 float32")
    rows = run(args.specs, args.lengths, args.repeat, args.flex_max_L, args.sdpa_max_L, args.flex_budget_s)
    if args.markdown:
        print(markdown(rows))


if __name__ == "__main__":
    main()
