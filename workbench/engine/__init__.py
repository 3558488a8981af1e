"""The TensorFlow side of svd-workbench: layer database, SVD, substitution, rebuild.

Importing this package imports Keras and TensorFlow.
"""

from workbench.engine.layers import ModelAnalysis, UnsupportedModelError, analyze_model, find_layer, iter_layers
from workbench.engine.rebuild import rebuild_model, split_layers_for_ratios
from workbench.engine.svd import LayerSVD, substituted_kernel

__all__ = [
    "LayerSVD",
    "ModelAnalysis",
    "UnsupportedModelError",
    "analyze_model",
    "find_layer",
    "iter_layers",
    "rebuild_model",
    "split_layers_for_ratios",
    "substituted_kernel",
]
