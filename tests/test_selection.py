from decimal import Decimal

import pytest

from workbench.costs import ConvGeometry, CostItem
from workbench.selection import (
    candidate_ratios,
    format_ratio,
    greedy_select,
    interpolate_score,
    monotonic_fit,
    predict_score,
    select_for_threshold,
)

D = Decimal
CURVE = {D("0.1"): 11, D("0.3"): 23, D("0.5"): 47, D("0.7"): 85, D("0.9"): 89}


def test_candidates_for_ten():
    assert candidate_ratios(10) == [D(i) / D(10) for i in range(1, 10)]
    assert str(candidate_ratios(10)[0]) == "0.1"


@pytest.mark.parametrize("count", [1, 0, -3, 2.5, True])
def test_candidates_reject_fewer_than_two(count):
    with pytest.raises(ValueError, match="at least 2"):
        candidate_ratios(count)


@pytest.mark.parametrize("threshold, expected", [(45, D("0.5")), (48, D("0.7")), (90, None)])
def test_threshold_selection_facts(threshold, expected):
    assert select_for_threshold({"conv": CURVE}, threshold)["conv"] == expected


def test_monotonic_fit_is_non_decreasing_least_squares():
    curve = {D("0.1"): 5.0, D("0.2"): 3.0, D("0.3"): 4.0, D("0.4"): 10.0}
    fitted = monotonic_fit(curve)
    values = [fitted[ratio] for ratio in sorted(fitted)]
    assert values == sorted(values)
    assert values[0] == pytest.approx(4.0)
    assert values[3] == pytest.approx(10.0)
    assert sum(values) == pytest.approx(sum(curve.values()))


def test_monotonic_fit_keeps_sorted_curve():
    assert monotonic_fit(CURVE) == {ratio: float(score) for ratio, score in CURVE.items()}


def make_items(count):
    geometry = ConvGeometry(3, 3, 32, 32, 16, 16, 16)
    return [CostItem(f"conv{i}", geometry.original_cost("mac"), geometry.original_cost("memory"), geometry) for i in range(count)]


def test_greedy_lands_closest_below_target():
    items = make_items(4)
    ratios = candidate_ratios(10)
    # Layer i loses (4 - i) points per 0.1 of compression: later layers are robust.
    scores = {f"conv{i}": {ratio: 100 - (4 - i) * float(1 - ratio) * 10 for ratio in ratios} for i in range(4)}
    result = greedy_select(scores, items, D("0.5"), "mac")
    assert result.reachable
    assert result.achieved <= 0.5
    # Every other threshold selection either misses the target or lies further below it.
    all_thresholds = sorted({s for curve in scores.values() for s in curve.values()})
    from workbench.costs import model_cost

    achieved = [model_cost(items, select_for_threshold(scores, t), "mac").ratio for t in all_thresholds]
    best = max(value for value in achieved if value <= 0.5)
    assert result.achieved == pytest.approx(best)
    assert result.achieved > 0.4


def test_greedy_reports_unreachable_target():
    items = make_items(2) + [CostItem("dense", macs=10**9, memory=10)]
    scores = {"conv0": {D("0.5"): 1.0}, "conv1": {D("0.5"): 1.0}}
    result = greedy_select(scores, items, D("0.5"), "mac")
    assert not result.reachable
    assert "cannot be reached" in result.message
    assert result.achieved > 0.5


def test_greedy_explains_flat_curves():
    items = make_items(2)
    scores = {"conv0": {r: 0.9 for r in candidate_ratios(4)}, "conv1": {r: float(r) for r in candidate_ratios(4)}}
    result = greedy_select(scores, items, D("0.6"), "mac")
    assert result.flat_layers == ["conv0"]
    assert "same at every candidate" in result.message


def test_greedy_rejects_unknown_layer():
    with pytest.raises(ValueError, match="ghost"):
        greedy_select({"ghost": {D("0.5"): 1.0}}, make_items(1), D("0.5"))


@pytest.mark.parametrize("target", [0, 1.2, -1])
def test_greedy_rejects_bad_target(target):
    with pytest.raises(ValueError, match="target_comp_ratio"):
        greedy_select({}, make_items(1), target)


def test_target_one_compresses_nothing():
    items = make_items(1)
    result = greedy_select({"conv0": CURVE}, items, 1)
    assert result.selection == {"conv0": None}
    assert result.achieved == 1.0


def test_format_ratio_has_no_decimal_noise():
    assert format_ratio(D(1) / D(3)) == "0.333"
    assert format_ratio(D("0.5000000000000000000000000000")) == "0.5"
    assert format_ratio(None) == "none"


def test_interpolate_between_candidates():
    score, exact = interpolate_score(CURVE, D("0.4"), 100.0)
    assert not exact
    assert score == pytest.approx(35.0)
    assert interpolate_score(CURVE, D("0.5"), 100.0) == (47.0, True)
    assert interpolate_score(CURVE, D("0.95"), 99.0)[0] == pytest.approx(94.0)


def test_predict_score_adds_drops():
    scores = {"a": {D("0.5"): 0.8}, "b": {D("0.5"): 0.85}}
    assert predict_score(0.9, scores, {"a": D("0.5"), "b": D("0.5")}) == pytest.approx(0.75)
    assert predict_score(0.9, scores, {"a": None, "b": None}) == pytest.approx(0.9)
