"""What every generated module shares: plans cached per length and device, and the forward contract.

A generated file defines `SPEC` (its rendered spec) and one subclass of a target's module class
(`TorchCombinerModule` in attention.py, `TritonCombinerModule` in triton_attention.py) that sets
`spec = SPEC`. `RUNTIME_API` is the version of what generated code relies on here; a generated file
states the version it was written for and `require_runtime` refuses a runtime that does not match.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from .plan import PatternPlan, build_plan, length_problem
from .spec import PatternSpec

RUNTIME_API = 1  # bump when a generated file written for the old runtime would no longer work
MAX_CACHED_PLANS = 16  # CPU plans kept per spec (oldest dropped first)


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
        self.check_inputs(q, k, v, scale)
        return self.attend(q, k, v, self.plan(int(q.shape[2]), q.device), scale)

    def check_inputs(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None) -> None:
        raise NotImplementedError

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: PatternPlan, scale: float | None) -> torch.Tensor:
        """The target's attention on a plan already on q's device (inputs checked)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"pattern={self.pattern!r}, target={self.target!r}"
