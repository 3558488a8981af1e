"""Analysis of models reloaded from .keras files, as every export is checked."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from workbench.engine import analyze_model, rebuild_model


def small_sequential() -> keras.Sequential:
    return keras.Sequential(
        [
            keras.Input(shape=(12, 12, 2)),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv_a"),
            keras.layers.Conv2D(8, 3, padding="same", name="conv_b"),
            keras.layers.Conv2D(6, 3, strides=2, name="conv_c"),
        ],
        name="small",
    )


def test_reloaded_sequential_layers_stay_eligible(tmp_path):
    # Loading a Sequential model calls each layer once per later layer added,
    # which must not count as sharing the layer.
    model = small_sequential()
    path = tmp_path / "small.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)

    before = {record.name: record for record in analyze_model(model).layers}
    after = {record.name: record for record in analyze_model(reloaded).layers}
    for name, record in after.items():
        assert record.call_sites == 1, name
        assert record.eligible, f"{name}: {record.reason}"
        assert record.macs == before[name].macs, name
        assert record.input_shape == before[name].input_shape, name


def test_reloaded_split_model_counts_pairs(tmp_path):
    model = small_sequential()
    path = tmp_path / "small.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    split = rebuild_model(reloaded, {"conv_b": 4})
    split_path = tmp_path / "split.keras"
    split.save(split_path)
    split_again = keras.models.load_model(split_path)

    names = [record.name for record in analyze_model(split_again).layers]
    assert names == ["conv_a", "conv_b_v", "conv_b_h", "conv_c"]
    pair = {record.name: record for record in analyze_model(split_again).layers}
    assert pair["conv_b_v"].call_sites == 1
    assert pair["conv_b_h"].macs == 1 * 3 * 4 * 8 * 10 * 10

    batch = np.random.default_rng(0).normal(size=(4, 12, 12, 2)).astype("float32")
    np.testing.assert_allclose(split_again.predict(batch, verbose=0), split.predict(batch, verbose=0), atol=1e-5)


def test_shared_layer_still_counted(tmp_path):
    inputs = keras.Input(shape=(8, 8, 3))
    shared = keras.layers.Conv2D(3, 3, padding="same", name="shared")
    model = keras.Model(inputs, shared(shared(inputs)))
    path = tmp_path / "shared.keras"
    model.save(path)
    record = analyze_model(keras.models.load_model(path)).record("shared")
    assert record.call_sites == 2
    assert not record.eligible
