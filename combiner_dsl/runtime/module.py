"""What every generated module shares: plans cached per length and device, and the forward contract.

A generated file defines `SPEC` (its rendered spec) and one subclass of a target's module class
(`TorchCombinerModule` in attention.py, `TritonCombinerModule` in triton_attention.py) that sets
`spec = SPEC`. `RUNTIME_API` is the version of what generated code relies on here; a generated file
states the version it was written for and `require_runtime` refuses a runtime that does not match.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from .plan import PatternPlan, build_plan, length_problem
from .spec import PatternSpec

RUNTIME_API = 1  # bump when a generated file written for the old runtime would no longer work
MAX_CACHED_PLANS = 16  # CPU plans kept per spec (oldest dropped first)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None) -> None:
    """Clear errors for anything but three [B, H, L, D] float tensors of one dtype on one device."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"{name} must have shape [B, H, L, D], got {tuple(x.shape)}")
        if x.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {x.dtype}")
    B, H, L, D = q.shape
    if k.shape != v.shape or k.shape[0] != B or k.shape[2] != L or k.shape[3] != D:
        raise ValueError(f"k and v must have the same shape [B, Hkv, L, D], with q's B, L and D, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if (k.shape[1] < 1 and H > 0) or (k.shape[1] > 0 and H % k.shape[1]):
        raise ValueError(f"k and v have {k.shape[1]} heads, which must divide q's {H} heads (grouped-query attention)")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"q, k and v must have the same dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"q, k and v must be on the same device, got {q.device}, {k.device}, {v.device}")
    if q.shape[-1] == 0:
        raise ValueError("the head dimension D must be at least 1")
    if scale is not None and (isinstance(scale, bool) or not (isinstance(scale, int | float) and math.isfinite(scale))):
        raise TypeError(f"scale must be a finite number or None, got {scale!r}")


def by_kv_group(q: torch.Tensor, kv_heads: int, run: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Grouped-query attention without repeating K/V: `run` once per group of q heads.

    With Hkv = kv_heads key/value heads and G = H / Hkv, q head h reads kv head h // G (the order
    of `repeat_interleave`); group g is q[:, g::G] as [B, Hkv, L, D], so every call sees the
    shared k, v as they are, and pooled query summaries stay per q head.
    """
    B, H, L, D = q.shape
    G = H // kv_heads
    if G == 1:
        return run(q)
    grouped = q.view(B, kv_heads, G, L, D)
    return torch.stack([run(grouped[:, :, g]) for g in range(G)], 2).view(B, H, L, D)


def require_runtime(api: int, module: str) -> None:
    """Refuse to run a generated file against a runtime it was not written for."""
    if api != RUNTIME_API:
        raise ImportError(f"{module} was generated for combiner_dsl runtime API {api}, but this runtime is API {RUNTIME_API}: regenerate it")


class CombinerModule(torch.nn.Module):
    """Combiner attention of `spec`: forward(q, k, v, scale=None), [B, H, L, D] -> [B, H, L, D].

    CPU plans are cached per length and shared by every instance of a class; plans moved to an
    accelerator are cached per instance and device.
    """

    spec: ClassVar[PatternSpec]
    target: ClassVar[str] = "torch"
    pattern: ClassVar[str] = ""
    _plans: ClassVar[dict[int, PatternPlan]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._plans = {}
        if "spec" in cls.__dict__:
            cls.pattern = cls.spec.name

    def __init__(self) -> None:
        super().__init__()
        self._device_plans: dict[tuple[int, str], PatternPlan] = {}

    @classmethod
    def plan_for(cls, L: int) -> PatternPlan:
        """The CPU plan at length L (ValueError naming the failed requirement if the spec rejects L)."""
        problem = length_problem(cls.spec, L)
        if problem is not None:
            raise ValueError(f"{cls.spec.name}: {problem}")
        if L not in cls._plans:
            if len(cls._plans) >= MAX_CACHED_PLANS:
                cls._plans.pop(next(iter(cls._plans)))
            cls._plans[L] = build_plan(cls.spec, L)
        return cls._plans[L]

    def plan(self, L: int, device: torch.device | str = "cpu") -> PatternPlan:
        device = torch.device(device)
        found = self._device_plans.get((L, str(device)))
        if found is None:
            found = self.plan_for(L)
            if device.type != "cpu":
                found = found.to(device)
                self._device_plans[(L, str(device))] = found
        return found

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        check_inputs(q, k, v, scale)
        return self.attend(q, k, v, self.plan(int(q.shape[2]), q.device), scale)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: PatternPlan, scale: float | None) -> torch.Tensor:
        """The target's attention on a plan already on q's device (inputs checked)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"pattern={self.pattern!r}, target={self.target!r}"
