from decimal import Decimal

import pytest

from workbench.costs import ConvGeometry, CostItem, costs_at_ranks, model_cost, selection_ranks


def conv(cin, cout, k, out_hw, in_w=None):
    return ConvGeometry(k, k, cin, cout, in_w if in_w is not None else out_hw, out_hw, out_hw)


def test_reference_memory_and_macs():
    geometry = conv(32, 64, 5, 14)
    assert geometry.original_cost("memory") == 51_200
    assert geometry.original_cost("mac") == 10_035_200


def test_reference_stride_two_rank_forty():
    # Stride 2 with 'same' padding: the input is 28 wide, the output 14x14.
    geometry = conv(32, 64, 5, 14, in_w=28)
    assert geometry.rank_cost(40, "mac") == 5_017_600


def test_reference_first_conv_macs():
    assert conv(1, 32, 5, 28).original_cost("mac") == 627_200


def test_reference_max_rank():
    assert conv(32, 64, 5, 14).max_rank == 160


def test_full_rank_costs_more_than_original():
    geometry = conv(32, 64, 5, 14)
    assert geometry.rank_cost(geometry.max_rank, "memory") / geometry.original_cost("memory") == pytest.approx(1.5)
    # Ratio 1.0 truncates to the affordable rank.
    assert geometry.rank_for_ratio(1, "memory") == 51_200 // 480


@pytest.mark.parametrize("metric", ["mac", "memory"])
@pytest.mark.parametrize("ratio", ["0.1", "0.25", "0.5", "0.9", "1"])
def test_rank_for_ratio_is_largest_within_budget(metric, ratio):
    geometry = conv(32, 64, 5, 14, in_w=28)
    rank = geometry.rank_for_ratio(Decimal(ratio), metric)
    budget = float(ratio) * geometry.original_cost(metric)
    assert geometry.rank_cost(rank, metric) <= budget
    assert rank == geometry.full_ratio_rank(metric) or geometry.rank_cost(rank + 1, metric) > budget


def test_rank_for_ratio_at_least_one():
    assert conv(32, 64, 5, 14).rank_for_ratio(Decimal("0.0001"), "mac") == 1


def test_multiplicity_rounds_up_and_caps():
    geometry = conv(32, 64, 5, 14)
    assert geometry.rank_for_ratio(Decimal("0.5"), "memory") == 53
    assert geometry.rank_for_ratio(Decimal("0.5"), "memory", multiplicity=8) == 56
    cap = geometry.full_ratio_rank("memory")
    assert geometry.rank_for_ratio(Decimal("0.99"), "memory", multiplicity=64) == cap


@pytest.mark.parametrize("ratio", [0, -0.1, 1.5, "abc", float("nan")])
def test_rank_for_ratio_rejects_bad_ratio(ratio):
    with pytest.raises(ValueError, match="ratio"):
        conv(32, 64, 5, 14).rank_for_ratio(ratio, "mac")


def test_multiplicity_below_one_rejected():
    with pytest.raises(ValueError, match="multiplicity=0"):
        conv(32, 64, 5, 14).rank_for_ratio(0.5, "mac", multiplicity=0)


def test_model_cost_counts_unselected_layers_in_full():
    items = [
        CostItem("a", macs=conv(32, 64, 5, 14).original_cost("mac"), memory=51_200, geometry=conv(32, 64, 5, 14)),
        CostItem("dense", macs=1000, memory=1000),
    ]
    total = model_cost(items, {"a": None}, "mac")
    assert total.original == 10_035_200 + 1000
    assert total.compressed == total.original
    half = model_cost(items, {"a": Decimal("0.5"), "dense": Decimal("0.5")}, "mac")
    assert half.compressed < 0.5 * 10_035_200 + 1000 + 1


def test_costs_at_ranks_uses_mac_ranks_for_memory():
    geometry = conv(32, 64, 5, 14, in_w=28)
    items = [CostItem("a", geometry.original_cost("mac"), geometry.original_cost("memory"), geometry)]
    ranks = selection_ranks(items, {"a": Decimal("0.5")}, "mac")
    costs = costs_at_ranks(items, ranks)
    assert costs["mac"].compressed == geometry.rank_cost(ranks["a"], "mac")
    assert costs["memory"].compressed == ranks["a"] * (5 * 32 + 5 * 64)
