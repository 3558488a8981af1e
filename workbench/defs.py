"""Public definitions of the compression API, named as in AIMET's Keras API.

A script written for AIMET's `aimet_tensorflow.keras` compression API ports by
importing these names from `workbench.defs` instead. This module does not import
TensorFlow.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


class CostMetric(enum.Enum):
    """Cost that the compression ratio is measured in."""

    mac = 1
    memory = 2


class CompressionScheme(enum.Enum):
    """Compression scheme. Only `spatial_svd` is implemented."""

    weight_svd = 1
    spatial_svd = 2
    channel_pruning = 3


class GreedySelectionParameters:
    """Parameters of the greedy per-layer ratio selection.

    Args:
        target_comp_ratio: Target cost of the compressed model as a fraction of the
            original cost, in (0, 1]. 0.5 asks for half the MACs (or memory).
        num_comp_ratio_candidates: N; the candidate ratios are 1/N .. (N-1)/N.
        use_monotonic_fit: Replace each layer's score curve by its best
            non-decreasing fit before selecting.
        saved_eval_scores_dict: Path of an eval-score dict saved by an earlier run
            (AIMET pickle or svd-workbench JSON) to reuse instead of evaluating.
    """

    def __init__(
        self,
        target_comp_ratio: float | Decimal,
        num_comp_ratio_candidates: int = 10,
        use_monotonic_fit: bool = False,
        saved_eval_scores_dict: str | None = None,
    ):
        self.target_comp_ratio = target_comp_ratio
        self.num_comp_ratio_candidates = num_comp_ratio_candidates
        self.use_monotonic_fit = use_monotonic_fit
        self.saved_eval_scores_dict = saved_eval_scores_dict

    def __repr__(self) -> str:
        return (
            f"GreedySelectionParameters(target_comp_ratio={self.target_comp_ratio!r}, "
            f"num_comp_ratio_candidates={self.num_comp_ratio_candidates!r}, "
            f"use_monotonic_fit={self.use_monotonic_fit!r}, "
            f"saved_eval_scores_dict={self.saved_eval_scores_dict!r})"
        )


@dataclass
class ModuleCompRatioPair:
    """A layer (object or name) and the compression ratio chosen for it."""

    module: Any
    comp_ratio: Decimal | float | None


class SpatialSvdParameters:
    """Parameters of spatial SVD compression.

    Args:
        input_op_names: Accepted for AIMET compatibility and ignored: Keras models
            carry their own inputs.
        output_op_names: Accepted for AIMET compatibility and ignored.
        mode: `SpatialSvdParameters.Mode.auto` or `.manual`.
        params: `AutoModeParams` for auto mode, `ManualModeParams` for manual mode.
        multiplicity: Ranks are rounded up to a multiple of this number.
    """

    class Mode(enum.Enum):
        manual = 1
        auto = 2

    class AutoModeParams:
        """Auto mode: greedy selection of per-layer ratios.

        Args:
            greedy_select_params: A `GreedySelectionParameters`.
            modules_to_ignore: Layers (objects or names) to leave uncompressed.
        """

        def __init__(self, greedy_select_params: GreedySelectionParameters, modules_to_ignore=None):
            self.greedy_params = greedy_select_params
            self.modules_to_ignore = list(modules_to_ignore or [])

    class ManualModeParams:
        """Manual mode: the ratio of each layer to compress.

        Args:
            list_of_module_comp_ratio_pairs: `ModuleCompRatioPair` items.
        """

        def __init__(self, list_of_module_comp_ratio_pairs):
            self.list_of_module_comp_ratio_pairs = list(list_of_module_comp_ratio_pairs)

    def __init__(self, input_op_names=None, output_op_names=None, mode=None, params=None, multiplicity: int = 1):
        self.input_op_names = input_op_names
        self.output_op_names = output_op_names
        self.mode = mode
        self.params = params
        self.multiplicity = multiplicity

    @property
    def mode_params(self):
        """The mode's parameters under AIMET's attribute name; the same object as `params`."""
        return self.params

    @mode_params.setter
    def mode_params(self, value) -> None:
        self.params = value


@dataclass
class LayerStats:
    """Per-layer line of `CompressionStats`."""

    name: str
    ratio: Decimal | None
    rank: int | None
    max_rank: int | None
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    score: float | None

    @property
    def compression_ratio(self) -> Decimal | None:
        """The ratio under AIMET's attribute name."""
        return self.ratio


class GreedyCompressionRatioSelectionStats:
    """The eval-score dict of a greedy search, under AIMET's class and attribute names."""

    def __init__(self, eval_scores_dict: dict[str, dict[Decimal, float]]):
        self.eval_scores_dictionary = eval_scores_dict

    def __repr__(self) -> str:
        return f"GreedyCompressionRatioSelectionStats({len(self.eval_scores_dictionary)} layers)"


@dataclass
class CompressionStats:
    """Outcome of `ModelCompressor.compress_model`.

    The first four fields, `per_layer_stats` and `compression_ratio_selection_stats`
    carry AIMET's names and meanings: the `*_accuracy` fields are the evaluator's
    scores, and `mac_compression_ratio` and `memory_compression_ratio` are the
    compressed cost over the original cost. Unlike AIMET, which formats them as
    strings with six decimals, the scores and ratios here are floats.
    """

    baseline_model_accuracy: float
    compressed_model_accuracy: float
    mac_compression_ratio: float
    memory_compression_ratio: float
    compression_scheme: CompressionScheme = CompressionScheme.spatial_svd
    cost_metric: CostMetric = CostMetric.mac
    target_comp_ratio: float | None = None
    macs_before: int = 0
    macs_after: int = 0
    params_before: int = 0
    params_after: int = 0
    memory_before: int = 0
    memory_after: int = 0
    layers: list[LayerStats] = field(default_factory=list)
    selection_note: str = ""
    compression_ratio_selection_stats: GreedyCompressionRatioSelectionStats | None = None

    @property
    def per_layer_stats(self) -> list[LayerStats]:
        """The compressed layers, as AIMET lists them; `layers` has every eligible layer."""
        return [layer for layer in self.layers if layer.ratio is not None]

    @property
    def baseline_score(self) -> float:
        return self.baseline_model_accuracy

    @property
    def compressed_score(self) -> float:
        return self.compressed_model_accuracy

    def __str__(self) -> str:
        from workbench.report import format_compression_stats

        return format_compression_stats(self)
