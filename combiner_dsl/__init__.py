"""combiner-dsl: declare a sparse attention pattern and its partition, prove full attention, emit code."""

from .api import Spec, compile, generate, load
from .errors import CodegenError, CombinerError, CoverageError, LengthError, SpecEvaluationError, SpecSemanticError, SpecSyntaxError
from .verdict import Verdict, Witness

__all__ = [
    "CodegenError",
    "CombinerError",
    "CoverageError",
    "LengthError",
    "Spec",
    "SpecEvaluationError",
    "SpecSemanticError",
    "SpecSyntaxError",
    "Verdict",
    "Witness",
    "compile",
    "generate",
    "load",
]
