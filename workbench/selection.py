"""Greedy per-layer ratio selection on an eval-score dict.

An eval-score dict maps each layer name to `{Decimal(ratio): score}`, each score
being the evaluator's result for the model with only that layer compressed to
that ratio; a higher score is better. For a score threshold t, every layer takes
its most compressed candidate scoring at least t, or stays uncompressed. Lowering
t only adds admissible candidates, so the model's cost ratio never increases as t
falls; a binary search over the distinct scores finds the highest threshold whose
selection meets the target, which is the selection closest to the target from
below.

This module does not import TensorFlow: the terminal app reruns the selection on
cached scores with it.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Iterable, Mapping, Sequence

from workbench.costs import CostItem, CostMetric, check_multiplicity, check_ratio, layer_cost, model_cost

ScoreDict = dict[str, dict[Decimal, float]]

# Two scores closer than this (relative to their size) count as equal when a
# curve is checked for being flat.
FLAT_TOLERANCE = 1e-9


def candidate_ratios(count: int) -> list[Decimal]:
    """Return the candidate ratios i/N for i = 1 .. N-1, as AIMET computes them.

    Raises:
        ValueError: if `count` is not an integer of at least 2.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 2:
        raise ValueError(
            "Expected num_comp_ratio_candidates to be an integer of at least 2 "
            f"(candidates are i/N for i = 1 .. N-1). Received: {count!r}"
        )
    return [Decimal(i) / Decimal(count) for i in range(1, count)]


def format_ratio(ratio) -> str:
    """Format a ratio for people: '0.5', '0.333', 'none'; never a 28-digit Decimal."""
    if ratio is None:
        return "none"
    value = float(ratio)
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text if text else "0"


def monotonic_fit(curve: Mapping[Decimal, float]) -> dict[Decimal, float]:
    """Return the non-decreasing least-squares fit of a score curve in ratio.

    Uses the pool-adjacent-violators algorithm: neighbouring points that decrease
    are merged into their mean until the sequence is non-decreasing.
    """
    ratios = sorted(curve)
    blocks: list[list[float]] = []  # each block: [sum, count]
    for ratio in ratios:
        blocks.append([float(curve[ratio]), 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    fitted: dict[Decimal, float] = {}
    index = 0
    for total, count in blocks:
        mean = total / count
        for _ in range(int(count)):
            fitted[ratios[index]] = mean
            index += 1
    return fitted


def fit_scores(scores: Mapping[str, Mapping[Decimal, float]]) -> ScoreDict:
    """Apply `monotonic_fit` to every layer's curve."""
    return {layer: monotonic_fit(curve) for layer, curve in scores.items()}


def select_for_threshold(scores: Mapping[str, Mapping[Decimal, float]], threshold: float) -> dict[str, Decimal | None]:
    """Give each layer its most compressed candidate scoring at least `threshold`."""
    selection: dict[str, Decimal | None] = {}
    for layer, curve in scores.items():
        admissible = [ratio for ratio, score in curve.items() if score >= threshold]
        selection[layer] = min(admissible) if admissible else None
    return selection


def is_flat(curve: Mapping[Decimal, float]) -> bool:
    values = list(curve.values())
    if len(values) < 2:
        return False
    low, high = min(values), max(values)
    return high - low <= FLAT_TOLERANCE * max(1.0, abs(high), abs(low))


@dataclass
class SelectionResult:
    """Outcome of `greedy_select`.

    Attributes:
        selection: Ratio per layer of the eval-score dict; None keeps a layer as it is.
        target: The requested cost ratio.
        achieved: The model's cost ratio under `selection`, in the chosen metric.
        threshold: The score threshold that produced `selection`; None when no
            layer is compressed.
        reachable: False when even the most compressed candidates miss the target.
        notes: Sentences for people: why the target was missed, which curves are flat.
    """

    selection: dict[str, Decimal | None]
    target: float
    achieved: float
    threshold: float | None
    reachable: bool
    notes: list[str] = field(default_factory=list)
    flat_layers: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        return " ".join(self.notes)


def greedy_select(
    scores: Mapping[str, Mapping[Decimal, float]],
    items: Sequence[CostItem],
    target,
    metric: CostMetric | str = "mac",
    multiplicity: int = 1,
    use_monotonic_fit: bool = False,
) -> SelectionResult:
    """Select per-layer ratios whose model cost ratio is closest to `target` from below.

    Args:
        scores: The eval-score dict of the layers that may be compressed. Every
            layer in it must be one of `items` with a geometry.
        items: Every cost-bearing layer of the model; layers absent from `scores`
            count at their full cost.
        target: Target cost ratio in (0, 1].
        metric: 'mac' or 'memory' (or a `CostMetric`).
        multiplicity: Ranks are rounded up to a multiple of this.
        use_monotonic_fit: Select on the monotonic fit of each curve.

    Returns:
        A `SelectionResult`. When the target cannot be met, it contains the most
        compressed selection, `reachable` is False and `notes` explains why.

    Raises:
        ValueError: for a target outside (0, 1], a bad multiplicity, or a layer of
            `scores` that is not a splittable layer of `items`.
    """
    target_value = float(check_ratio(target, "target_comp_ratio"))
    check_multiplicity(multiplicity)
    by_name = {item.name: item for item in items}
    unknown = [layer for layer in scores if layer not in by_name or by_name[layer].geometry is None]
    if unknown:
        raise ValueError(
            f"The eval-score dict names layers that are not splittable layers of the model: {sorted(unknown)}. "
            "Recompute the scores for this model or drop those layers."
        )
    curves = {layer: dict(curve) for layer, curve in scores.items() if curve}
    if use_monotonic_fit:
        curves = fit_scores(curves)

    # Each layer's cost at each candidate is computed once; a selection's cost is
    # then the full cost minus the savings of its selected candidates.
    full_cost = model_cost(items, {}, metric, multiplicity).original
    savings = {
        layer: {
            ratio: by_name[layer].original_cost(metric) - layer_cost(by_name[layer], ratio, metric, multiplicity)
            for ratio in curve
        }
        for layer, curve in curves.items()
    }

    def ratio_of(selection) -> float:
        if not full_cost:
            return 1.0
        saved = sum(savings[layer][ratio] for layer, ratio in selection.items() if ratio is not None)
        return (full_cost - saved) / full_cost

    notes: list[str] = []
    flat_layers = sorted(layer for layer, curve in curves.items() if is_flat(curve))
    if flat_layers:
        shown = ", ".join(flat_layers[:5]) + (f" and {len(flat_layers) - 5} more" if len(flat_layers) > 5 else "")
        notes.append(
            f"{len(flat_layers)} layer(s) score the same at every candidate ratio ({shown}); "
            "they switch from uncompressed to their smallest candidate at one threshold. "
            "If that is unexpected, evaluate on more data (eval_iterations) or check the evaluator."
        )

    thresholds = sorted({score for curve in curves.values() for score in curve.values()})
    if not thresholds or ratio_of({}) <= target_value:
        # Nothing to compress, or the uncompressed model already meets the target.
        achieved = ratio_of({})
        if not thresholds and achieved > target_value:
            notes.insert(0, "No layer has eval scores, so nothing can be compressed and the target cannot be met.")
            return SelectionResult({}, target_value, achieved, None, False, notes, flat_layers)
        return SelectionResult({layer: None for layer in curves}, target_value, achieved, None, True, notes, flat_layers)

    most_compressed = select_for_threshold(curves, thresholds[0])
    lowest_ratio = ratio_of(most_compressed)
    if lowest_ratio > target_value:
        notes.insert(
            0,
            f"Target ratio {format_ratio(target_value)} cannot be reached with these candidates: "
            f"every layer at its smallest candidate gives {lowest_ratio:.4f}. "
            "Use more candidates, ignore fewer layers, or raise the target.",
        )
        return SelectionResult(most_compressed, target_value, lowest_ratio, thresholds[0], False, notes, flat_layers)

    # Binary search for the highest threshold whose selection meets the target.
    low, high = 0, len(thresholds) - 1  # thresholds[low] meets the target
    while low < high:
        middle = (low + high + 1) // 2
        if ratio_of(select_for_threshold(curves, thresholds[middle])) <= target_value:
            low = middle
        else:
            high = middle - 1
    threshold = thresholds[low]
    selection = select_for_threshold(curves, threshold)
    return SelectionResult(selection, target_value, ratio_of(selection), threshold, True, notes, flat_layers)


def interpolate_score(curve: Mapping[Decimal, float], ratio, baseline: float | None) -> tuple[float | None, bool]:
    """Estimate a layer's score at `ratio` from its cached curve.

    Returns:
        (score, exact): the cached score and True when `ratio` is a candidate;
        otherwise a linear interpolation between the neighbouring candidates
        (ratio 1.0 taken as the baseline) and False. (None, False) when the
        curve is empty.
    """
    if not curve:
        return None, False
    key = Decimal(str(ratio)) if not isinstance(ratio, Decimal) else ratio
    for candidate, score in curve.items():
        if candidate == key:
            return float(score), True
    points = sorted((float(candidate), float(score)) for candidate, score in curve.items())
    if baseline is not None and points[-1][0] < 1.0:
        points.append((1.0, float(baseline)))
    xs = [x for x, _ in points]
    value = float(key)
    index = bisect.bisect_left(xs, value)
    if index == 0:
        return points[0][1], False
    if index >= len(points):
        return points[-1][1], False
    (x0, y0), (x1, y1) = points[index - 1], points[index]
    return y0 + (y1 - y0) * (value - x0) / (x1 - x0), False


def predict_score(
    baseline: float | None,
    scores: Mapping[str, Mapping[Decimal, float]],
    selection: Mapping[str, object],
) -> float | None:
    """Estimate the score of the model with every selected layer compressed.

    An estimate, not a measurement: it assumes the per-layer score drops from the
    baseline add up. Ratios that were not evaluated are interpolated.
    """
    if baseline is None or not math.isfinite(baseline):
        return None
    predicted = float(baseline)
    for layer, ratio in selection.items():
        if ratio is None:
            continue
        score, _ = interpolate_score(scores.get(layer, {}), ratio, baseline)
        if score is not None:
            predicted += score - baseline
    return predicted


def layers_without_scores(scores: Mapping[str, Mapping], layers: Iterable[str]) -> list[str]:
    return sorted(set(layers) - {layer for layer, curve in scores.items() if curve})
