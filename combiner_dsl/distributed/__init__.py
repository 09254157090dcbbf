"""Context parallelism on torch.distributed, with the communication read from the plan (see README)."""

from .context_parallel import ContextParallel, Traffic, schedules_for, simulate, traffic

__all__ = ["ContextParallel", "Traffic", "schedules_for", "simulate", "traffic"]
