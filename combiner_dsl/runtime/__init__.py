"""The runtime of generated modules (imports only torch; the Triton target adds `triton_attention`).

A generated file imports what it needs from here; `combiner compile --standalone` inlines the same
code instead. The compiler's own checks run this very code too.
"""

from .attention import combiner_attention
from .decode import DecodeCache, new_cache
from .module import RUNTIME_API, CombinerModule, require_runtime
from .plan import PatternPlan, build_plan, length_problem
from .spec import Binder, DirectSpec, Feature, PartitionSpec, PatternSpec, SoftmaxSpec, Solved, SummarySource
from .torch_module import TorchCombinerModule

__all__ = [
    "RUNTIME_API",
    "Binder",
    "CombinerModule",
    "DecodeCache",
    "DirectSpec",
    "Feature",
    "PartitionSpec",
    "PatternPlan",
    "PatternSpec",
    "SoftmaxSpec",
    "Solved",
    "SummarySource",
    "TorchCombinerModule",
    "build_plan",
    "combiner_attention",
    "length_problem",
    "new_cache",
    "require_runtime",
]
