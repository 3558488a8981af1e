import math
import pickle
import warnings
from decimal import Decimal

import keras
import numpy as np
import pytest

from workbench.compress import CompressionTargetWarning, EvaluationError, ModelCompressor
from workbench.defs import (
    CompressionScheme,
    CostMetric,
    GreedySelectionParameters,
    ModuleCompRatioPair,
    SpatialSvdParameters,
)
from workbench.scores import AIMET_SCORES_PICKLE, AIMET_SELECTION_PICKLE, load_scores

D = Decimal


def tiny_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Conv2D(16, 3, padding="valid", activation="relu", name="conv3")(x)
    x = keras.layers.Conv2D(16, 1, name="pointwise")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5, name="head")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def model_and_data():
    model = tiny_model()
    inputs = np.random.default_rng(1).random((64, 12, 12, 3), dtype=np.float32)
    reference = np.asarray(model(inputs))
    return model, inputs, reference


def make_evaluator(inputs, reference):
    calls = []

    def evaluate(model, iterations):
        calls.append(iterations)
        output = np.asarray(model(inputs, training=False))
        return float(1.0 - np.mean((output - reference) ** 2) / np.mean(reference**2))

    evaluate.calls = calls
    return evaluate


def auto_params(target=0.5, candidates=10, ignore=None, saved=None, monotonic=False, multiplicity=1):
    greedy = GreedySelectionParameters(target, candidates, monotonic, saved)
    auto = SpatialSvdParameters.AutoModeParams(greedy, modules_to_ignore=ignore)
    return SpatialSvdParameters(None, None, SpatialSvdParameters.Mode.auto, auto, multiplicity)


def test_auto_mode_meets_target_from_below(workdir, model_and_data):
    model, inputs, reference = model_and_data
    evaluator = make_evaluator(inputs, reference)
    compressed, stats = ModelCompressor.compress_model(
        model, evaluator, 10, CompressionScheme.spatial_svd, CostMetric.mac, auto_params(0.6, 5)
    )
    assert stats.mac_compression_ratio <= 0.6
    assert stats.mac_compression_ratio > 0.3
    assert stats.baseline_model_accuracy == pytest.approx(1.0)
    assert stats.macs_after < stats.macs_before
    assert stats.params_after == compressed.count_params()
    assert evaluator.calls[0] == 10
    # Baseline, 3 eligible layers x 4 candidates, final model.
    assert len(evaluator.calls) == 1 + 3 * 4 + 1
    names = [layer.name for layer in compressed.layers]
    assert any(name.endswith("_v") for name in names)


def test_auto_mode_saves_aimet_pickles(workdir, model_and_data):
    model, inputs, reference = model_and_data
    ModelCompressor.compress_model(
        model, make_evaluator(inputs, reference), None, CompressionScheme.spatial_svd, CostMetric.mac, auto_params(0.6, 4)
    )
    scores, _ = load_scores(workdir / AIMET_SCORES_PICKLE)
    assert set(scores) == {"conv1", "conv2", "conv3"}
    assert set(scores["conv1"]) == {D("0.25"), D("0.5"), D("0.75")}
    json_scores, baseline = load_scores((workdir / AIMET_SCORES_PICKLE).with_suffix(".json"))
    assert json_scores == scores
    assert baseline == pytest.approx(1.0)
    pairs = pickle.loads((workdir / AIMET_SELECTION_PICKLE).read_bytes())
    assert [name for name, _ in pairs] == ["conv1", "conv2", "conv3"]


def test_rerun_keeps_earlier_score_file(workdir, model_and_data):
    model, inputs, reference = model_and_data
    for _ in range(2):
        ModelCompressor.compress_model(
            model, make_evaluator(inputs, reference), None, CompressionScheme.spatial_svd, CostMetric.mac, auto_params(0.6, 3)
        )
    assert len(list((workdir / "data").glob("greedy_selection_eval_scores_dict*.pkl"))) == 2


def test_saved_scores_skip_evaluation(workdir, model_and_data):
    model, inputs, reference = model_and_data
    ModelCompressor.compress_model(
        model, make_evaluator(inputs, reference), None, CompressionScheme.spatial_svd, CostMetric.mac, auto_params(0.6, 4)
    )
    saved = workdir / "saved.pkl"
    (workdir / AIMET_SCORES_PICKLE).rename(saved)
    evaluator = make_evaluator(inputs, reference)
    ModelCompressor.compress_model(
        model, evaluator, None, CompressionScheme.spatial_svd, CostMetric.mac, auto_params(0.6, 4, saved=str(saved))
    )
    assert len(evaluator.calls) == 2  # baseline and final model only


def test_saved_scores_checked_against_model(workdir, model_and_data):
    model, inputs, reference = model_and_data
    bad = workdir / "bad.pkl"
    bad.write_bytes(pickle.dumps({"conv1": {D("0.5"): 0.9}, "ghost": {D("0.5"): 0.9}}))
    with pytest.raises(ValueError, match="ghost") as info:
        ModelCompressor.compress_model(
            model, make_evaluator(inputs, reference), None, CompressionScheme.spatial_svd, CostMetric.mac,
            auto_params(0.6, 4, saved=str(bad)),
        )
    assert "conv2" in str(info.value)


def test_unreachable_target_warns(workdir, model_and_data):
    model, inputs, reference = model_and_data
    with pytest.warns(CompressionTargetWarning, match="cannot be reached"):
        _, stats = ModelCompressor.compress_model(
            model, make_evaluator(inputs, reference), None, CompressionScheme.spatial_svd, CostMetric.mac,
            auto_params(0.05, 3, ignore=["conv1"]),
        )
    assert stats.mac_compression_ratio > 0.05
    assert "cannot be reached" in stats.selection_note


def test_ignored_layer_object_stays_whole(workdir, model_and_data):
    model, inputs, reference = model_and_data
    compressed, stats = ModelCompressor.compress_model(
        model, make_evaluator(inputs, reference), None, CompressionScheme.spatial_svd, CostMetric.mac,
        auto_params(0.8, 3, ignore=[model.get_layer("conv1")]),
    )
    assert "conv1" in [layer.name for layer in compressed.layers]
    assert next(layer for layer in stats.layers if layer.name == "conv1").ratio is None


def test_manual_mode_ranks(workdir, model_and_data):
    model, inputs, reference = model_and_data
    pairs = [ModuleCompRatioPair(model.get_layer("conv2"), D("0.5")), ModuleCompRatioPair("conv3", 0.25)]
    params = SpatialSvdParameters(None, None, SpatialSvdParameters.Mode.manual, SpatialSvdParameters.ManualModeParams(pairs))
    compressed, stats = ModelCompressor.compress_model(
        model, make_evaluator(inputs, reference), None, CompressionScheme.spatial_svd, CostMetric.memory, params
    )
    by_name = {layer.name: layer for layer in stats.layers}
    assert by_name["conv2"].rank == 3 * 3 * 8 * 16 // 2 // (3 * 8 + 3 * 16)
    assert by_name["conv3"].ratio == D("0.25")
    assert compressed.get_layer("conv2_v").kernel.shape == (3, 1, 8, by_name["conv2"].rank)
    assert "conv1" in [layer.name for layer in compressed.layers]


@pytest.mark.parametrize("ratio", [0, 1.5, -0.2])
def test_manual_ratio_out_of_range(workdir, model_and_data, ratio):
    model, inputs, reference = model_and_data
    params = SpatialSvdParameters(
        None, None, SpatialSvdParameters.Mode.manual,
        SpatialSvdParameters.ManualModeParams([ModuleCompRatioPair("conv2", ratio)]),
    )
    with pytest.raises(ValueError, match=f"ratio={ratio}.*conv2"):
        ModelCompressor.compress_model(model, make_evaluator(inputs, reference), None, CompressionScheme.spatial_svd, CostMetric.mac, params)


def test_manual_ineligible_layer_says_why(workdir, model_and_data):
    model, inputs, reference = model_and_data
    params = SpatialSvdParameters(
        None, None, SpatialSvdParameters.Mode.manual,
        SpatialSvdParameters.ManualModeParams([ModuleCompRatioPair("pointwise", 0.5)]),
    )
    with pytest.raises(ValueError, match="pointwise.*1x1"):
        ModelCompressor.compress_model(model, make_evaluator(inputs, reference), None, CompressionScheme.spatial_svd, CostMetric.mac, params)


def test_unknown_ignored_layer_named(workdir, model_and_data):
    model, inputs, reference = model_and_data
    with pytest.raises(ValueError, match="nonexistent"):
        ModelCompressor.compress_model(
            model, make_evaluator(inputs, reference), None, CompressionScheme.spatial_svd, CostMetric.mac,
            auto_params(0.5, 3, ignore=["nonexistent"]),
        )


@pytest.mark.parametrize("scheme", [CompressionScheme.weight_svd, CompressionScheme.channel_pruning])
def test_other_schemes_not_implemented(workdir, model_and_data, scheme):
    model, inputs, reference = model_and_data
    with pytest.raises(NotImplementedError, match=scheme.name):
        ModelCompressor.compress_model(model, make_evaluator(inputs, reference), None, scheme, CostMetric.mac, auto_params())


@pytest.mark.parametrize("target, candidates, multiplicity, match", [
    (1.5, 10, 1, "target_comp_ratio"),
    (0, 10, 1, "target_comp_ratio"),
    (0.5, 1, 1, "at least 2"),
    (0.5, 10, 0, "multiplicity"),
])
def test_invalid_parameters(workdir, model_and_data, target, candidates, multiplicity, match):
    model, inputs, reference = model_and_data
    with pytest.raises(ValueError, match=match):
        ModelCompressor.compress_model(
            model, make_evaluator(inputs, reference), None, CompressionScheme.spatial_svd, CostMetric.mac,
            auto_params(target, candidates, multiplicity=multiplicity),
        )


def test_failing_evaluator_keeps_scores_and_kernels(workdir, model_and_data):
    model, inputs, reference = model_and_data
    original = model.get_layer("conv2").kernel.numpy().copy()
    evaluate = make_evaluator(inputs, reference)

    def flaky(model, iterations):
        if len(evaluate.calls) == 6:
            evaluate.calls.append("boom")
            raise RuntimeError("dataset went away")
        return evaluate(model, iterations)

    with pytest.raises(EvaluationError, match="dataset went away") as info:
        ModelCompressor.compress_model(model, flaky, None, CompressionScheme.spatial_svd, CostMetric.mac, auto_params(0.5, 4))
    assert info.value.layer == "conv2"
    np.testing.assert_array_equal(model.get_layer("conv2").kernel.numpy(), original)
    scores, _ = load_scores(workdir / AIMET_SCORES_PICKLE)
    assert len(scores["conv1"]) == 3
    assert len(scores["conv2"]) == 2


def test_nan_score_names_layer_and_ratio(workdir, model_and_data):
    model, inputs, reference = model_and_data
    state = {"calls": 0}

    def nan_after_baseline(model, iterations):
        state["calls"] += 1
        return 0.9 if state["calls"] == 1 else math.nan

    with pytest.raises(EvaluationError, match="conv1.*0.333.*nan|nan.*conv1.*0.333"):
        ModelCompressor.compress_model(model, nan_after_baseline, None, CompressionScheme.spatial_svd, CostMetric.mac, auto_params(0.5, 3))


def test_use_cuda_argument_passed(workdir, model_and_data):
    model, inputs, reference = model_and_data
    seen = []

    def evaluate(model, iterations, use_cuda):
        seen.append(use_cuda)
        return 1.0

    ModelCompressor.compress_model(model, evaluate, None, CompressionScheme.spatial_svd, CostMetric.mac, auto_params(0.9, 2))
    assert seen and all(value in (True, False) for value in seen)


def test_trainer_called_after_each_split(workdir, model_and_data):
    model, inputs, reference = model_and_data
    trained = []

    class Trainer:
        def train_model(self, model, layer):
            trained.append((layer.name, [l.name for l in model.layers]))

    pairs = [ModuleCompRatioPair("conv1", 0.5), ModuleCompRatioPair("conv3", 0.5)]
    params = SpatialSvdParameters(None, None, SpatialSvdParameters.Mode.manual, SpatialSvdParameters.ManualModeParams(pairs))
    ModelCompressor.compress_model(model, make_evaluator(inputs, reference), None, CompressionScheme.spatial_svd, CostMetric.mac, params, trainer=Trainer())
    assert [name for name, _ in trained] == ["conv1", "conv3"]
    assert "conv1_v" in trained[0][1]
    assert "conv3" in trained[0][1]
    assert "conv3_v" in trained[1][1]


def test_stats_text_has_no_decimal_noise(workdir, model_and_data):
    model, inputs, reference = model_and_data
    _, stats = ModelCompressor.compress_model(
        model, make_evaluator(inputs, reference), None, CompressionScheme.spatial_svd, CostMetric.mac, auto_params(0.7, 3)
    )
    text = str(stats)
    assert "0.333" in text or "0.667" in text
    assert "3333333" not in text
    assert "MACs:" in text
    assert "parameters:" in text


def test_stats_have_aimet_attributes(workdir, model_and_data):
    model, inputs, reference = model_and_data
    params = auto_params(0.7, 3)
    assert params.mode_params is params.params
    _, stats = ModelCompressor.compress_model(
        model, make_evaluator(inputs, reference), None, CompressionScheme.spatial_svd, CostMetric.mac, params
    )
    compressed = [layer.name for layer in stats.per_layer_stats]
    assert compressed
    assert all(layer.compression_ratio is not None for layer in stats.per_layer_stats)
    assert set(compressed) <= {"conv1", "conv2", "conv3"}
    eval_scores = stats.compression_ratio_selection_stats.eval_scores_dictionary
    assert set(eval_scores) == {"conv1", "conv2", "conv3"}
    assert set(eval_scores["conv1"]) == {D(1) / D(3), D(2) / D(3)}
