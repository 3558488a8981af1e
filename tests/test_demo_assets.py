"""Checks on the bundled demo model, its evaluation subset and the training script's helpers."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from workbench import demo
from workbench.demo import train


@pytest.fixture(scope="module")
def model():
    return keras.models.load_model(demo.model_path())


@pytest.fixture(scope="module")
def eval_data():
    with np.load(demo.eval_data_path()) as data:
        return data["x"], data["y"]


def conv_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def test_bundled_files_exist():
    assert demo.model_path().is_file()
    assert demo.eval_data_path().is_file()
    assert demo.license_path().is_file()


def test_model_file_under_two_megabytes():
    assert demo.model_path().stat().st_size < 2_000_000


def test_license_note_contents():
    text = demo.license_path().read_text(encoding="utf-8")
    assert "Zalando SE" in text
    assert "Permission is hereby granted, free of charge" in text
    assert "dataset-fashion-mnist" in text


def test_eval_arrays_shapes_and_dtypes(eval_data):
    x, y = eval_data
    assert x.shape == (demo.EVAL_SIZE, 28, 28, 1)
    assert x.dtype == np.float32
    assert y.shape == (demo.EVAL_SIZE,)
    assert y.dtype == np.int64


def test_eval_pixels_in_unit_range(eval_data):
    x, _ = eval_data
    assert x.min() >= 0.0
    assert x.max() <= 1.0
    # The pixels are uint8 values divided by 255, and some pixel in 2,000 images is 255.
    assert x.max() == 1.0


def test_eval_classes_balanced(eval_data):
    _, y = eval_data
    counts = np.bincount(y, minlength=demo.NUM_CLASSES)
    assert len(counts) == demo.NUM_CLASSES
    assert counts.tolist() == [demo.EVAL_PER_CLASS] * demo.NUM_CLASSES


def test_model_input_and_output(model):
    assert tuple(model.input_shape) == (None, 28, 28, 1)
    assert tuple(model.output_shape) == (None, demo.NUM_CLASSES)
    head = model.layers[-1]
    assert isinstance(head, keras.layers.Dense)
    assert head.name == "dense"
    assert head.activation is keras.activations.softmax


def test_model_has_five_svd_eligible_convs(model):
    eligible = [
        layer
        for layer in conv_layers(model)
        if tuple(layer.kernel_size) == (3, 3) and layer.groups == 1
    ]
    assert len(eligible) >= 5


def test_convs_named_and_fused_relu(model):
    convs = conv_layers(model)
    assert [layer.name for layer in convs] == [f"conv{i}" for i in range(1, 7)]
    for layer in convs:
        assert layer.activation is keras.activations.relu, layer.name


def test_model_has_strided_and_valid_convs(model):
    convs = conv_layers(model)
    assert any(tuple(layer.strides) == (2, 2) for layer in convs)
    assert any(layer.padding == "valid" for layer in convs)


def test_eval_subset_accuracy(model, eval_data):
    x, y = eval_data
    predictions = np.argmax(model.predict(x, batch_size=500, verbose=0), axis=1)
    measured = float(np.mean(predictions == y))
    assert measured >= 0.88
    # The documented number must describe this file. The tolerance allows a few
    # flipped predictions on a different CPU or TensorFlow build.
    assert measured == pytest.approx(demo.EVAL_ACCURACY, abs=0.003)


def test_documented_accuracies_meet_target():
    assert demo.TEST_ACCURACY >= 0.88
    assert demo.EVAL_ACCURACY >= 0.88


def test_demo_import_skips_tensorflow():
    code = (
        "import sys, workbench.demo as d; d.model_path(); d.eval_data_path(); "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.stdout.split() == ["False", "False"]


def write_idx(path, magic, shape, values):
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape)
    with gzip.open(path, "wb") as stream:
        stream.write(header + bytes(values))


def test_read_idx_images(tmp_path):
    path = tmp_path / "images.gz"
    write_idx(path, train.IDX_IMAGES_MAGIC, (2, 2, 3), range(12))
    images = train.read_idx(path, train.IDX_IMAGES_MAGIC)
    assert images.dtype == np.uint8
    assert images.shape == (2, 2, 3)
    assert images[1, 1, 2] == 11


def test_read_idx_rejects_wrong_magic(tmp_path):
    path = tmp_path / "labels.gz"
    write_idx(path, train.IDX_LABELS_MAGIC, (3,), [1, 2, 3])
    with pytest.raises(ValueError, match="expected magic"):
        train.read_idx(path, train.IDX_IMAGES_MAGIC)


def test_read_idx_rejects_truncated_data(tmp_path):
    path = tmp_path / "labels.gz"
    write_idx(path, train.IDX_LABELS_MAGIC, (5,), [1, 2, 3])
    with pytest.raises(ValueError, match="needs 5 bytes"):
        train.read_idx(path, train.IDX_LABELS_MAGIC)


def test_load_missing_folder_names_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        train.load_fashion_mnist(tmp_path / "absent")


def test_train_cli_missing_data_exits_1(tmp_path, capsys):
    status = train.main(["--data-dir", str(tmp_path), "--output-dir", str(tmp_path)])
    assert status == 1
    assert "dataset-fashion-mnist" in capsys.readouterr().err
    assert not (tmp_path / demo.MODEL_FILENAME).exists()


def test_stratified_subset_balanced_and_seeded():
    labels = np.repeat(np.arange(demo.NUM_CLASSES), 30)
    first = train.stratified_subset(labels, 7, seed=1)
    assert np.bincount(labels[first]).tolist() == [7] * demo.NUM_CLASSES
    assert len(np.unique(first)) == len(first)
    assert np.array_equal(first, train.stratified_subset(labels, 7, seed=1))
    assert not np.array_equal(first, train.stratified_subset(labels, 7, seed=2))


def test_read_expat_license(tmp_path):
    copyright_file = tmp_path / "copyright"
    copyright_file.write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        "\n"
        "Files: *\n"
        "Copyright: 2017, Example GmbH\n"
        "License: Expat\n"
        "\n"
        "License: Expat\n"
        " First paragraph.\n"
        " .\n"
        " Second paragraph.\n",
        encoding="utf-8",
    )
    copyright_line, license_text = train.read_expat_license(copyright_file)
    assert copyright_line == "Copyright 2017, Example GmbH"
    assert license_text == "First paragraph.\n\nSecond paragraph.\n"


def test_read_expat_license_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        train.read_expat_license(tmp_path / "copyright")
