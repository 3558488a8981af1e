"""keras.applications architectures: layer counts, and a rebuild at ratio 0.5.

Every family of keras.applications that builds offline with weights=None is
rebuilt with all its eligible layers split. Deeper members of a family (VGG19,
ResNet101, DenseNet169, EfficientNetB1-B7, ConvNeXtSmall, ...) are built by the
same code from the same layer types, so they would add run time but no new case.
"""

import contextlib

import keras
import numpy as np
import pytest

from workbench.engine import LayerSVD, analyze_model, find_layer, rebuild_model, split_layers_for_ratios, substituted_kernel

pytestmark = pytest.mark.slow

# Eligible and total Conv2D layers at the default input size, and how many Conv2D
# layers have a 1xn or nx1 kernel. DepthwiseConv2D and SeparableConv2D are other
# classes and not counted as Conv2D. ConvNeXtTiny's 7x7 convs are depthwise convs
# written as Conv2D with groups equal to the channels. Its 4 eligible convs, the
# 4x4 stem and three 2x2 downsampling convs, sit in nested Sequential models.
DEFAULT_SIZE_COUNTS = {
    "ResNet50": (17, 53, 0),
    "VGG16": (13, 13, 0),
    "MobileNetV2": (1, 35, 0),
    "DenseNet121": (59, 120, 0),
    "EfficientNetB0": (1, 65, 0),
    "InceptionV3": (20, 94, 34),
    "ConvNeXtTiny": (4, 22, 0),
}

# The smallest input each architecture accepts (or close to it), to keep the rebuild checks fast.
SMALL_INPUT_SIZES = {
    "VGG16": 32,
    "ResNet50": 32,
    "ResNet50V2": 32,
    "MobileNet": 32,
    "MobileNetV2": 32,
    "MobileNetV3Small": 32,
    "DenseNet121": 32,
    "InceptionV3": 75,
    "InceptionResNetV2": 75,
    "Xception": 71,
    "NASNetMobile": 32,
    "EfficientNetB0": 32,
    "EfficientNetV2B0": 32,
    "ConvNeXtTiny": 32,
}

# These rescale raw pixels inside the model, so they get inputs in [0, 255].
RAW_PIXEL_MODELS = {"MobileNetV3Small", "EfficientNetB0", "EfficientNetV2B0", "ConvNeXtTiny"}

# Relative to the largest output value. The rebuilt model and the model with
# substituted kernels differ only in float32 summation order, through up to ~200
# layers with batch normalization. On TensorFlow 2.21 CPU the largest error over
# these models was 2.2e-6 (VGG16), so 1e-4 leaves a 45x margin. Scaling every
# vertical factor by 1.001 gave errors of 1e-3 or more in the four models tried.
TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def fresh_session():
    yield
    keras.backend.clear_session()


@pytest.mark.parametrize("name", sorted(DEFAULT_SIZE_COUNTS))
def test_conv2d_counts_at_default_size(name):
    model = getattr(keras.applications, name)(weights=None)
    records = analyze_model(model).layers
    conv2d = [record for record in records if record.class_name == "Conv2D"]
    one_dimensional = [record for record in conv2d if 1 in record.kernel_size and record.kernel_size != (1, 1)]
    eligible = [record for record in records if record.eligible]
    expected_eligible, expected_conv2d, expected_one_dimensional = DEFAULT_SIZE_COUNTS[name]
    assert len(eligible) == expected_eligible
    assert len(conv2d) == expected_conv2d
    assert len(one_dimensional) == expected_one_dimensional
    assert all(record.class_name == "Conv2D" for record in eligible)


def outputs_with_substituted_kernels(model, ranks, svds, inputs) -> np.ndarray:
    with contextlib.ExitStack() as stack:
        for path, rank in ranks.items():
            stack.enter_context(substituted_kernel(find_layer(model, path), svds[path].kernel(rank)))
        return np.asarray(model(inputs), dtype=np.float64)


@pytest.mark.parametrize("name", sorted(SMALL_INPUT_SIZES))
def test_rebuild_at_half_macs_matches_substitution(name, rng):
    size = SMALL_INPUT_SIZES[name]
    model = getattr(keras.applications, name)(weights=None, include_top=False, input_shape=(size, size, 3))
    analysis = analyze_model(model)
    eligible = analysis.eligible
    assert eligible, f"{name} has no eligible layer at {size}x{size}"

    ranks = split_layers_for_ratios(model, {record.name: 0.5 for record in eligible}, "mac")
    assert sorted(ranks) == sorted(record.name for record in eligible)
    for record in eligible:
        assert record.geometry.ratio_of_rank(ranks[record.name], "mac") <= 0.5, record.name

    svds = {path: LayerSVD(find_layer(model, path).kernel.numpy()) for path in ranks}
    rebuilt = rebuild_model(model, ranks, svds)

    # Every eligible layer became a pair of 1-D convs, and the MACs are those the cost model predicts.
    rebuilt_analysis = analyze_model(rebuilt)
    assert rebuilt_analysis.eligible == []
    split_macs = sum(record.geometry.rank_cost(ranks[record.name], "mac") for record in eligible)
    other_macs = analysis.total_macs - sum(record.macs for record in eligible)
    assert rebuilt_analysis.total_macs == other_macs + split_macs

    high = 255.0 if name in RAW_PIXEL_MODELS else 1.0
    inputs = rng.uniform(-high if high == 1.0 else 0.0, high, size=(2, size, size, 3)).astype("float32")
    expected = outputs_with_substituted_kernels(model, ranks, svds, inputs)
    actual = np.asarray(rebuilt(inputs), dtype=np.float64)
    assert actual.shape == expected.shape
    scale = np.abs(expected).max()
    assert scale > 0
    assert np.abs(actual - expected).max() / scale < TOLERANCE
