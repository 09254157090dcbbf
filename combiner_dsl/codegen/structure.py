"""Code generation reads the spec's structure from the one analysis (`combiner_dsl.analysis`)."""

from ..analysis import DirectGroup, Feature, PartitionModel, PatternModel, SoftmaxModel, Solved, analyze

__all__ = ["DirectGroup", "Feature", "PartitionModel", "PatternModel", "SoftmaxModel", "Solved", "analyze"]
