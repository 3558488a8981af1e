"""Cost model of spatial SVD: MACs and memory of a conv and of its rank-r pair.

A Conv2D with kernel (kh, kw), Cin input and Cout output channels and an output of
Ho x Wo costs `kh*kw*Cin*Cout` weights (bias excluded) and that times `Ho*Wo` MACs.
Its rank-r pair costs `r*(kh*Cin + kw*Cout)` weights and
`r*kh*Cin*Ho*Win + r*kw*Cout*Ho*Wo` MACs: the vertical (kh, 1) conv keeps the input
width Win because it has no width stride, so its output is Ho x Win. Both costs are
linear in r, so the rank for a ratio has a closed form.

This module does not import TensorFlow: the terminal app costs any rank with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Iterable, Mapping

from workbench.defs import CostMetric

METRICS = ("mac", "memory")


def metric_name(metric: CostMetric | str | int) -> str:
    """Normalise a cost metric to 'mac' or 'memory'.

    Raises:
        ValueError: for anything else.
    """
    if isinstance(metric, CostMetric):
        return metric.name
    if isinstance(metric, str) and metric.lower() in METRICS:
        return metric.lower()
    if isinstance(metric, int) and not isinstance(metric, bool) and metric in (1, 2):
        return CostMetric(metric).name
    raise ValueError(
        f"Expected cost metric 'mac' or 'memory' (CostMetric.mac or CostMetric.memory). Received: metric={metric!r}"
    )


def to_fraction(ratio: Decimal | float | str | Fraction) -> Fraction:
    """Convert a ratio to an exact fraction; floats go through their shortest repr."""
    if isinstance(ratio, Fraction):
        return ratio
    if isinstance(ratio, float):
        return Fraction(repr(ratio))
    return Fraction(str(ratio))


def check_ratio(ratio, what: str = "ratio") -> Fraction:
    """Validate that a ratio is a finite number in (0, 1] and return it as a fraction.

    Raises:
        ValueError: naming the received value.
    """
    try:
        value = to_fraction(ratio)
    except (ValueError, TypeError, ZeroDivisionError, ArithmeticError):
        raise ValueError(f"Expected {what} to be a number in (0, 1]. Received: {what}={ratio!r}") from None
    if not 0 < value <= 1:
        raise ValueError(f"Expected {what} in (0, 1]. Received: {what}={ratio!r}")
    return value


@dataclass(frozen=True)
class ConvGeometry:
    """Shape facts of an eligible Conv2D that its costs depend on.

    Heights and widths are read in the layer's data_format, so channels_first
    layers cost the same as their channels_last twins.
    """

    kernel_h: int
    kernel_w: int
    in_channels: int
    out_channels: int
    input_w: int
    output_h: int
    output_w: int

    @property
    def max_rank(self) -> int:
        """Rank of the reshaped kernel matrix, (Cin*kh) x (Cout*kw)."""
        return min(self.in_channels * self.kernel_h, self.out_channels * self.kernel_w)

    def original_cost(self, metric: CostMetric | str) -> int:
        memory = self.kernel_h * self.kernel_w * self.in_channels * self.out_channels
        if metric_name(metric) == "memory":
            return memory
        return memory * self.output_h * self.output_w

    def cost_per_rank(self, metric: CostMetric | str) -> int:
        vertical = self.kernel_h * self.in_channels
        horizontal = self.kernel_w * self.out_channels
        if metric_name(metric) == "memory":
            return vertical + horizontal
        return vertical * self.output_h * self.input_w + horizontal * self.output_h * self.output_w

    def rank_cost(self, rank: int, metric: CostMetric | str) -> int:
        return rank * self.cost_per_rank(metric)

    def full_ratio_rank(self, metric: CostMetric | str) -> int:
        """Rank chosen for ratio 1.0: full rank unless that costs more than the original."""
        affordable = self.original_cost(metric) // self.cost_per_rank(metric)
        return max(1, min(self.max_rank, affordable))

    def rank_for_ratio(self, ratio, metric: CostMetric | str, multiplicity: int = 1) -> int:
        """Return the largest rank whose cost is at most `ratio` times the original cost.

        The rank is at least 1. With `multiplicity` m > 1 it is rounded up to a
        multiple of m, but never above the rank for ratio 1.0.

        Raises:
            ValueError: if `ratio` is outside (0, 1] or `multiplicity` is below 1.
        """
        value = check_ratio(ratio)
        check_multiplicity(multiplicity)
        budget = value * self.original_cost(metric)
        rank = math.floor(budget / self.cost_per_rank(metric))
        cap = self.full_ratio_rank(metric)
        rank = max(1, min(rank, cap))
        if multiplicity > 1:
            rank = min(cap, -(-rank // multiplicity) * multiplicity)
        return rank

    def ratio_of_rank(self, rank: int, metric: CostMetric | str) -> float:
        return self.rank_cost(rank, metric) / self.original_cost(metric)

    def to_dict(self) -> dict:
        return {
            "kernel_h": self.kernel_h,
            "kernel_w": self.kernel_w,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "input_w": self.input_w,
            "output_h": self.output_h,
            "output_w": self.output_w,
        }


def check_multiplicity(multiplicity) -> int:
    if isinstance(multiplicity, bool) or not isinstance(multiplicity, int) or multiplicity < 1:
        raise ValueError(
            f"Expected multiplicity to be an integer of at least 1. Received: multiplicity={multiplicity!r}"
        )
    return multiplicity


@dataclass(frozen=True)
class CostItem:
    """One cost-bearing layer, as counted in the model cost.

    `geometry` is None for layers that spatial SVD cannot split; they always count
    at their original cost.
    """

    name: str
    macs: int
    memory: int
    geometry: ConvGeometry | None = None

    def original_cost(self, metric: CostMetric | str) -> int:
        return self.memory if metric_name(metric) == "memory" else self.macs


def layer_cost(item: CostItem, ratio, metric: CostMetric | str, multiplicity: int = 1) -> int:
    """Return the cost of one layer compressed to `ratio` (None: kept as it is)."""
    if ratio is None or item.geometry is None:
        return item.original_cost(metric)
    rank = item.geometry.rank_for_ratio(ratio, metric, multiplicity)
    return item.geometry.rank_cost(rank, metric)


@dataclass(frozen=True)
class ModelCost:
    original: int
    compressed: int

    @property
    def ratio(self) -> float:
        return self.compressed / self.original if self.original else 1.0


def model_cost(
    items: Iterable[CostItem],
    selection: Mapping[str, object],
    metric: CostMetric | str,
    multiplicity: int = 1,
) -> ModelCost:
    """Sum the cost of all layers, each at its selected ratio or at full cost.

    A layer missing from `selection`, or selected as None, counts at its original
    cost. Ranks are chosen against `metric` too; to cost a selection in the other
    metric, take its ranks from `selection_ranks` and use `costs_at_ranks`.
    """
    original = 0
    compressed = 0
    for item in items:
        original += item.original_cost(metric)
        compressed += layer_cost(item, selection.get(item.name), metric, multiplicity)
    return ModelCost(original, compressed)


def selection_ranks(
    items: Iterable[CostItem],
    selection: Mapping[str, object],
    metric: CostMetric | str,
    multiplicity: int = 1,
) -> dict[str, int | None]:
    """Return the rank of every layer under `selection` (None: kept as it is)."""
    ranks: dict[str, int | None] = {}
    for item in items:
        ratio = selection.get(item.name)
        if ratio is None or item.geometry is None:
            ranks[item.name] = None
        else:
            ranks[item.name] = item.geometry.rank_for_ratio(ratio, metric, multiplicity)
    return ranks


def rank_metric_cost(item: CostItem, rank: int | None, metric: CostMetric | str) -> int:
    """Return the cost of a layer at an explicit rank (None: kept as it is)."""
    if rank is None or item.geometry is None:
        return item.original_cost(metric)
    return item.geometry.rank_cost(rank, metric)


def costs_at_ranks(items: Iterable[CostItem], ranks: Mapping[str, int | None]) -> dict[str, ModelCost]:
    """Return the model's MAC and memory cost with each layer at its rank in `ranks`."""
    totals = {"mac": [0, 0], "memory": [0, 0]}
    for item in items:
        rank = ranks.get(item.name)
        for metric, pair in totals.items():
            pair[0] += item.original_cost(metric)
            pair[1] += rank_metric_cost(item, rank, metric)
    return {metric: ModelCost(*pair) for metric, pair in totals.items()}
