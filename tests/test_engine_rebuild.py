"""Model rebuild: numerical cases of the split pair and model structures.

`check_split` is the one check that every case goes through.
"""

import contextlib

import keras
import numpy as np
import pytest

from workbench.engine import analyze_model, find_layer, iter_layers, rebuild_model, substituted_kernel
from workbench.engine.svd import LayerSVD

L = keras.layers

# Relative error of float32 outputs: a single conv and its split pair sum the same
# products in another order, which moves the result by a few float32 ulps (measured
# below 1e-6). A wrong split (transposed factors, a lost stride or activation) errs
# by 1e-2 or more.
TOLERANCE = 1e-5


def flat_outputs(model, inputs) -> list[np.ndarray]:
    return [np.asarray(output, dtype=np.float64) for output in keras.tree.flatten(model(inputs))]


def relative_error(actual: list[np.ndarray], expected: list[np.ndarray]) -> float:
    """Return max |actual - expected| over max |expected|, across all outputs."""
    scale = max(float(np.abs(array).max()) for array in expected)
    difference = max(float(np.abs(a - e).max()) for a, e in zip(actual, expected))
    return difference / scale


def pair_paths(rebuilt, path: str) -> tuple[str, str]:
    """Return the paths of the vertical and horizontal layers that replace `path`.

    The horizontal layer is '<name>_h', or keeps the original name when the layer
    is an output of its graph; the vertical layer is the one that feeds it.
    """
    names = {candidate for candidate, _ in iter_layers(rebuilt)}
    horizontal = path + "_h" if path + "_h" in names else path
    # A Sequential model keeps stale nodes from its rebuilds; the last node is the live one.
    node = find_layer(rebuilt, horizontal)._inbound_nodes[-1]
    vertical = node.input_tensors[0]._keras_history.operation
    prefix = path[: path.rfind("/") + 1]
    return prefix + vertical.name, horizontal


def weights_by_path(model) -> dict[str, list[np.ndarray]]:
    return {
        path: [np.array(weight) for weight in layer.get_weights()]
        for path, layer in iter_layers(model)
        if not isinstance(layer, keras.Model)
    }


def check_pair_layers(record, rank, vertical, horizontal):
    """Check the shapes, parameter count and config of one split pair."""
    kernel_h, kernel_w = record.kernel_size
    cin, cout = record.in_channels, record.out_channels
    assert tuple(vertical.kernel.shape) == (kernel_h, 1, cin, rank)
    assert tuple(horizontal.kernel.shape) == (1, kernel_w, rank, cout)
    bias = cout if record.use_bias else 0
    assert vertical.count_params() + horizontal.count_params() == rank * (kernel_h * cin + kernel_w * cout) + bias

    stride_h, stride_w = record.strides
    dilation_h, dilation_w = record.dilation_rate
    vertical_config, horizontal_config = vertical.get_config(), horizontal.get_config()
    assert tuple(vertical_config["strides"]) == (stride_h, 1)
    assert tuple(horizontal_config["strides"]) == (1, stride_w)
    assert tuple(vertical_config["dilation_rate"]) == (dilation_h, 1)
    assert tuple(horizontal_config["dilation_rate"]) == (1, dilation_w)
    for config in (vertical_config, horizontal_config):
        assert config["padding"] == record.padding
        assert config["data_format"] == record.data_format
    assert vertical_config["activation"] == "linear"
    assert not vertical_config["use_bias"]
    assert horizontal_config["activation"] == record.activation
    assert horizontal_config["use_bias"] == record.use_bias


def substitution_outputs(model, ranks, svds, inputs) -> list[np.ndarray]:
    """Return the outputs of `model` with every layer in `ranks` given its rank-r kernel in place."""
    layers = {path: find_layer(model, path) for path in ranks}
    originals = {path: layer.kernel.numpy() for path, layer in layers.items()}
    with contextlib.ExitStack() as stack:
        for path, rank in ranks.items():
            stack.enter_context(substituted_kernel(layers[path], svds[path].kernel(rank)))
        outputs = flat_outputs(model, inputs)
    for path, layer in layers.items():
        np.testing.assert_array_equal(layer.kernel.numpy(), originals[path], err_msg=f"kernel of {path} not restored")
    return outputs


def check_split(model, ranks, inputs, tmp_path, tolerance=TOLERANCE):
    """Rebuild `model` with `ranks` and check the result against the original model.

    Each pair is checked for kernel shapes, parameter count, MACs and config.
    Every other layer must keep its weights, and the input model must stay as it
    was. The outputs must equal those of the original model with the rank-r
    kernels substituted in place, and at full rank those of the original model
    itself. A `.keras` save and a load without custom objects must reproduce the
    outputs exactly.

    Returns:
        The rebuilt model.
    """
    analysis = analyze_model(model)
    records = {record.name: record for record in analysis.layers}
    layers_before = [(path, id(layer)) for path, layer in iter_layers(model)]
    weights_before = weights_by_path(model)
    original_outputs = flat_outputs(model, inputs)

    rebuilt = rebuild_model(model, ranks)

    # The input model is unchanged.
    assert [(path, id(layer)) for path, layer in iter_layers(model)] == layers_before
    for path, weights in weights_by_path(model).items():
        for before, after in zip(weights_before[path], weights, strict=True):
            np.testing.assert_array_equal(after, before, err_msg=f"input model's layer {path} changed")
    assert type(rebuilt) is type(model)

    # Each pair: shapes, parameter count, config, and MACs as the cost model predicts them.
    rebuilt_records = {record.name: record for record in analyze_model(rebuilt).layers}
    replaced = set()
    for path, rank in ranks.items():
        vertical_path, horizontal_path = pair_paths(rebuilt, path)
        replaced |= {vertical_path, horizontal_path}
        record = records[path]
        check_pair_layers(record, rank, find_layer(rebuilt, vertical_path), find_layer(rebuilt, horizontal_path))
        pair_macs = rebuilt_records[vertical_path].macs + rebuilt_records[horizontal_path].macs
        assert pair_macs == record.geometry.rank_cost(rank, "mac"), path
        if record.use_bias:
            bias = find_layer(rebuilt, horizontal_path).bias.numpy()
            np.testing.assert_array_equal(bias, find_layer(model, path).bias.numpy())

    # Every other layer keeps its weights.
    rebuilt_weights = weights_by_path(rebuilt)
    for path, weights in weights_before.items():
        if path in ranks:
            continue
        assert path in rebuilt_weights, f"layer {path} missing from the rebuilt model"
        for before, after in zip(weights, rebuilt_weights[path], strict=True):
            np.testing.assert_array_equal(after, before, err_msg=f"weights of {path} changed")
    assert set(rebuilt_weights) == (set(weights_before) - set(ranks)) | replaced

    # Outputs: the pair equals the rank-r kernel substituted in place, and at full rank the original.
    svds = {path: LayerSVD(find_layer(model, path).kernel.numpy()) for path in ranks}
    rebuilt_outputs = flat_outputs(rebuilt, inputs)
    assert [output.shape for output in rebuilt_outputs] == [output.shape for output in original_outputs]
    assert relative_error(rebuilt_outputs, substitution_outputs(model, ranks, svds, inputs)) < tolerance
    if all(rank == records[path].max_rank for path, rank in ranks.items()):
        assert relative_error(rebuilt_outputs, original_outputs) < tolerance

    # Serialization round trip, with no custom objects.
    file = tmp_path / "rebuilt.keras"
    rebuilt.save(file)
    loaded = keras.models.load_model(file)
    assert type(loaded) is type(model)
    for loaded_output, output in zip(flat_outputs(loaded, inputs), rebuilt_outputs, strict=True):
        np.testing.assert_array_equal(loaded_output, output)
    return rebuilt


# --- One Conv2D with each option of the pair's geometry ---------------------------


def conv_model(data_format="channels_last", input_hw=(11, 13), channels=5, **conv_options):
    shape = (*input_hw, channels) if data_format == "channels_last" else (channels, *input_hw)
    inputs = keras.Input(shape)
    conv = L.Conv2D(7, (3, 3), data_format=data_format, name="conv", **conv_options)
    outputs = L.Conv2D(4, 1, data_format=data_format, name="head")(conv(inputs))
    return keras.Model(inputs, outputs)


def model_inputs(model, rng, batch=2):
    return rng.normal(size=(batch, *model.input_shape[1:])).astype("float32")


CONV_CASES = {
    "stride1_same": dict(padding="same"),
    "stride1_valid": dict(padding="valid"),
    "stride2_same": dict(strides=2, padding="same"),
    "stride2_valid": dict(strides=2, padding="valid"),
    "stride21_same": dict(strides=(2, 1), padding="same"),
    "stride21_valid": dict(strides=(2, 1), padding="valid"),
    "stride12_valid": dict(strides=(1, 2), padding="valid"),
    "dilation2_same": dict(dilation_rate=2, padding="same"),
    "dilation2_valid": dict(dilation_rate=2, padding="valid"),
    "dilation21_same": dict(dilation_rate=(2, 1), padding="same"),
    "no_bias": dict(use_bias=False, padding="same"),
    "relu": dict(activation="relu", padding="same"),
    "tanh": dict(activation="tanh", padding="valid", strides=2),
    "gelu_no_bias": dict(activation="gelu", use_bias=False, padding="same"),
    "kernel_3x5": dict(kernel_size=(3, 5), padding="same", strides=(1, 2)),
    "kernel_5x2": dict(kernel_size=(5, 2), padding="valid", dilation_rate=(1, 2)),
}


def conv_case(name, data_format="channels_last"):
    options = dict(CONV_CASES[name])
    kernel_size = options.pop("kernel_size", (3, 3))
    model = conv_model(data_format, **options)
    conv = model.get_layer("conv")
    if kernel_size != (3, 3):
        inputs = keras.Input(model.input_shape[1:])
        conv = L.Conv2D(7, kernel_size, data_format=data_format, name="conv", **options)
        model = keras.Model(inputs, L.Conv2D(4, 1, data_format=data_format, name="head")(conv(inputs)))
    if conv.use_bias:
        # Glorot leaves biases at zero, which would hide a bias lost in the split.
        conv.bias.assign(np.linspace(-1, 1, 7).astype("float32"))
    return model


@pytest.mark.parametrize("name", sorted(CONV_CASES))
def test_full_rank_pair_reproduces_conv(name, rng, tmp_path):
    model = conv_case(name)
    max_rank = analyze_model(model).record("conv").max_rank
    check_split(model, {"conv": max_rank}, model_inputs(model, rng), tmp_path)


@pytest.mark.parametrize("name", sorted(CONV_CASES))
def test_truncated_pair_matches_substitution(name, rng, tmp_path):
    model = conv_case(name)
    check_split(model, {"conv": 2}, model_inputs(model, rng), tmp_path)


def channels_first_runs() -> bool:
    """Return whether this TensorFlow build runs a channels_first (NCHW) Conv2D."""
    model = conv_model("channels_first", padding="same")
    try:
        model(np.zeros((1, *model.input_shape[1:]), "float32"))
    except Exception as error:  # TensorFlow raises several error types for an unsupported format.
        if any(word in str(error) for word in ("NHWC", "NCHW", "channels_first")):
            return False
        raise
    return True


@pytest.mark.parametrize(
    "name", ["stride1_same", "stride2_valid", "stride21_same", "dilation2_same", "tanh", "kernel_3x5"]
)
def test_channels_first_pair(name, rng, tmp_path):
    # TensorFlow 2.21 on CPU runs NCHW Conv2D; older CPU builds rejected it. The layer
    # database and MAC count for channels_first are covered in test_engine_layers.py.
    if not channels_first_runs():
        pytest.skip("this TensorFlow build cannot run channels_first Conv2D on CPU")
    model = conv_case(name, "channels_first")
    record = analyze_model(model).record("conv")
    twin = analyze_model(conv_case(name)).record("conv")
    assert record.macs == twin.macs
    assert record.geometry == twin.geometry
    inputs = model_inputs(model, rng)
    check_split(model, {"conv": record.max_rank}, inputs, tmp_path)
    check_split(model, {"conv": 3}, inputs, tmp_path)


def test_truncated_activation_applies_after_pair(rng, tmp_path):
    # With tanh after a truncated pair, applying the activation between the two
    # convs would give other outputs than the substituted kernel does.
    model = conv_case("tanh")
    rebuilt = check_split(model, {"conv": 1}, model_inputs(model, rng), tmp_path)
    assert rebuilt.get_layer("conv_v").get_config()["activation"] == "linear"
    assert rebuilt.get_layer("conv_h").get_config()["activation"] == "tanh"


def test_precomputed_svd_used(rng):
    model = conv_case("stride1_same")
    kernel = model.get_layer("conv").kernel.numpy()
    svd = LayerSVD(kernel)
    rebuilt = rebuild_model(model, {"conv": 4}, svds={"conv": svd})
    vertical, horizontal = svd.factor_kernels(4)
    np.testing.assert_array_equal(rebuilt.get_layer("conv_v").kernel.numpy(), vertical)
    np.testing.assert_array_equal(rebuilt.get_layer("conv_h").kernel.numpy(), horizontal)
    with pytest.raises(ValueError, match="'conv'"):
        rebuild_model(model, {"conv": 4}, svds={"conv": LayerSVD(kernel[:, :, :2])})


# --- Model structures ----------------------------------------------------------------


def test_sequential_stays_sequential(rng, tmp_path):
    model = keras.Sequential(
        [
            keras.Input((12, 12, 3)),
            L.Conv2D(8, 3, activation="relu", name="conv1"),
            L.BatchNormalization(name="bn"),
            L.Conv2D(8, 3, padding="same", name="conv2"),
            L.MaxPooling2D(name="pool"),
            L.Conv2D(6, 3, name="conv3"),
            L.Flatten(name="flatten"),
            L.Dense(4, name="dense"),
        ],
        name="seq",
    )
    inputs = model_inputs(model, rng)
    rebuilt = check_split(model, {"conv1": 5, "conv3": 7}, inputs, tmp_path)
    assert isinstance(rebuilt, keras.Sequential)
    assert [layer.name for layer in rebuilt.layers] == [
        "conv1_v",
        "conv1_h",
        "bn",
        "conv2",
        "pool",
        "conv3_v",
        "conv3_h",
        "flatten",
        "dense",
    ]


def test_sequential_last_layer_keeps_name(rng, tmp_path):
    model = keras.Sequential([keras.Input((9, 9, 2)), L.Conv2D(4, 3, name="conv1"), L.Conv2D(3, 3, name="last")])
    rebuilt = check_split(model, {"last": 2, "conv1": 6}, model_inputs(model, rng), tmp_path)
    assert [layer.name for layer in rebuilt.layers] == ["conv1_v", "conv1_h", "last_v", "last"]


def branching_model():
    """Two inputs, two outputs, branches, a residual Add and a split output layer."""
    image = keras.Input((12, 12, 3), name="image")
    mask = keras.Input((12, 12, 1), name="mask")
    stem = L.Conv2D(6, 3, padding="same", activation="relu", name="stem")(L.Concatenate(name="concat")([image, mask]))
    left = L.Conv2D(6, 3, padding="same", name="left")(stem)
    right = L.Conv2D(6, (5, 3), padding="same", activation="relu", name="right")(stem)
    right = L.Conv2D(6, 1, name="right_1x1")(right)
    merged = L.Add(name="residual")([stem, left, right])
    detail = L.Conv2D(4, 3, strides=2, padding="valid", name="detail")(merged)
    pooled = L.Dense(3, name="classes")(L.GlobalAveragePooling2D(name="pool")(merged))
    return keras.Model([image, mask], [pooled, detail], name="branching")


def branching_inputs(rng):
    return [rng.normal(size=(2, 12, 12, 3)).astype("float32"), rng.normal(size=(2, 12, 12, 1)).astype("float32")]


def test_functional_branches_and_outputs(rng, tmp_path):
    model = branching_model()
    ranks = {"stem": 4, "left": 18, "right": 5, "detail": 3}
    rebuilt = check_split(model, ranks, branching_inputs(rng), tmp_path)
    names = [layer.name for layer in rebuilt.layers]
    for name in ("stem", "left", "right"):
        assert f"{name}_v" in names
        assert f"{name}_h" in names
        assert name not in names
    # 'detail' is a model output, so its horizontal conv keeps the name and the outputs keep theirs.
    assert "detail_v" in names
    assert "detail" in names
    assert "detail_h" not in names
    assert rebuilt.output_names == model.output_names == ["classes", "detail"]


def test_functional_full_rank_reproduces_model(rng, tmp_path):
    model = branching_model()
    records = analyze_model(model)
    ranks = {record.name: record.max_rank for record in records.eligible}
    assert sorted(ranks) == ["detail", "left", "right", "stem"]
    check_split(model, ranks, branching_inputs(rng), tmp_path)


def test_dict_inputs_and_outputs(rng, tmp_path):
    first = keras.Input((8, 8, 2), name="first")
    second = keras.Input((8, 8, 2), name="second")
    a = L.Conv2D(3, 3, padding="same", name="a")(first)
    b = L.Conv2D(3, 3, padding="same", name="b")(second)
    model = keras.Model({"first": first, "second": second}, {"x": a, "sum": L.Add(name="add")([a, b])})
    inputs = {"first": rng.normal(size=(2, 8, 8, 2)), "second": rng.normal(size=(2, 8, 8, 2))}
    inputs = {key: value.astype("float32") for key, value in inputs.items()}
    rebuilt = check_split(model, {"a": 2, "b": 3}, inputs, tmp_path)
    assert set(rebuilt(inputs)) == {"x", "sum"}


def test_compiled_loss_keyed_by_output_name_still_fits(rng):
    inputs = keras.Input((8, 8, 2))
    features = L.Conv2D(3, 3, padding="same", name="features")(inputs)
    pooled = L.GlobalAveragePooling2D(name="pooled")(features)
    model = keras.Model(inputs, [features, pooled])
    model.compile(optimizer="sgd", loss={"features": "mse", "pooled": "mse"})
    rebuilt = rebuild_model(model, {"features": 2})
    assert rebuilt.compiled
    x = rng.normal(size=(4, 8, 8, 2)).astype("float32")
    history = rebuilt.fit(x, [np.zeros((4, 8, 8, 3)), np.zeros((4, 3))], epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def nested_model():
    block_input = keras.Input((10, 10, 4))
    hidden = L.Conv2D(4, 3, padding="same", activation="relu", name="conv")(block_input)
    # The sub-model's output layer is split too.
    block_output = L.Conv2D(4, 3, padding="same", name="out")(L.BatchNormalization(name="bn")(hidden))
    block = keras.Model(block_input, block_output, name="block")
    stack = keras.Sequential(
        [L.Conv2D(5, 3, padding="same", name="conv"), L.ReLU(name="relu"), L.Conv2D(4, (3, 5), padding="same", name="wide")],
        name="stack",
    )
    inputs = keras.Input((10, 10, 3))
    x = L.Conv2D(4, 3, padding="same", name="conv")(inputs)
    y = stack(block(x))
    outputs = L.Add(name="add")([x, y])
    return keras.Model(inputs, outputs, name="outer")


def test_nested_models_split_by_path(rng, tmp_path):
    model = nested_model()
    eligible = [record.name for record in analyze_model(model).eligible]
    assert eligible == ["conv", "block/conv", "block/out", "stack/conv", "stack/wide"]
    ranks = {"conv": 3, "block/conv": 5, "block/out": 4, "stack/conv": 6, "stack/wide": 2}
    rebuilt = check_split(model, ranks, model_inputs(model, rng), tmp_path)

    block = rebuilt.get_layer("block")
    stack = rebuilt.get_layer("stack")
    assert type(block) is type(model.get_layer("block"))
    assert isinstance(stack, keras.Sequential)
    assert [layer.name for layer in block.layers[1:]] == ["conv_v", "conv_h", "bn", "out_v", "out"]
    assert [layer.name for layer in stack.layers] == ["conv_v", "conv_h", "relu", "wide_v", "wide"]
    rebuilt_paths = [record.name for record in analyze_model(rebuilt).layers]
    assert "block/conv_v" in rebuilt_paths
    assert "stack/wide" in rebuilt_paths


def test_nested_full_rank_reproduces_model(rng, tmp_path):
    model = nested_model()
    ranks = {record.name: record.max_rank for record in analyze_model(model).eligible}
    check_split(model, ranks, model_inputs(model, rng), tmp_path)


def test_shared_sub_model_split_for_every_call(rng, tmp_path):
    encoder_input = keras.Input((8, 8, 3))
    encoder = keras.Model(encoder_input, L.Conv2D(4, 3, padding="same", name="conv")(encoder_input), name="encoder")
    first, second = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    model = keras.Model([first, second], L.Subtract(name="difference")([encoder(first), encoder(second)]))
    record = analyze_model(model).record("encoder/conv")
    assert record.eligible
    assert record.call_sites == 1
    inputs = [rng.normal(size=(2, 8, 8, 3)).astype("float32") for _ in range(2)]
    rebuilt = check_split(model, {"encoder/conv": 3}, inputs, tmp_path)
    # The conv is the encoder's output, so its horizontal half keeps the name.
    assert [layer.name for layer in rebuilt.get_layer("encoder").layers[1:]] == ["conv_v", "conv"]


def test_layer_settings_carry_over(rng, tmp_path):
    inputs = keras.Input((9, 9, 3))
    conv = L.Conv2D(
        6,
        3,
        padding="same",
        activation="relu",
        kernel_regularizer=keras.regularizers.L2(0.01),
        bias_regularizer=keras.regularizers.L1(0.02),
        activity_regularizer=keras.regularizers.L2(0.03),
        kernel_constraint=keras.constraints.MaxNorm(2.0),
        bias_constraint=keras.constraints.NonNeg(),
        dtype="mixed_float16",
        name="conv",
    )
    outputs = L.Conv2D(2, 1, name="head")(conv(inputs))
    model = keras.Model(inputs, outputs)
    conv.trainable = False
    conv.bias.assign(np.linspace(0, 1, 6).astype("float32"))
    original = conv.get_config()

    # float16 compute: the pair and the substituted kernel round differently at about 1e-3.
    rebuilt = check_split(model, {"conv": 4}, model_inputs(model, rng), tmp_path, tolerance=1e-2)
    vertical, horizontal = rebuilt.get_layer("conv_v"), rebuilt.get_layer("conv_h")
    for layer in (vertical, horizontal):
        config = layer.get_config()
        assert layer.dtype_policy.name == "mixed_float16"
        assert layer.compute_dtype == "float16"
        assert layer.kernel.dtype == "float32"
        assert not layer.trainable
        assert layer.trainable_weights == []
        assert config["kernel_regularizer"] == original["kernel_regularizer"]
        assert config["kernel_constraint"] == original["kernel_constraint"]
        assert config["kernel_initializer"] == original["kernel_initializer"]
        assert layer.kernel.regularizer.get_config() == {"l2": pytest.approx(0.01)}
        assert layer.kernel.constraint.get_config() == {"max_value": 2.0, "axis": 0}
    horizontal_config = horizontal.get_config()
    assert horizontal_config["bias_regularizer"] == original["bias_regularizer"]
    assert horizontal_config["bias_constraint"] == original["bias_constraint"]
    # Activity regularization applies to the layer's output, which the horizontal conv now produces.
    assert horizontal_config["activity_regularizer"] == original["activity_regularizer"]
    assert vertical.get_config()["activity_regularizer"] is None
    assert horizontal.bias.regularizer.get_config() == {"l1": pytest.approx(0.02)}
    assert isinstance(horizontal.bias.constraint, keras.constraints.NonNeg)
    assert rebuilt.get_layer("head").trainable


def test_trainable_model_trains_after_rebuild(rng):
    model = conv_case("relu")
    rebuilt = rebuild_model(model, {"conv": 3})
    assert len(rebuilt.trainable_weights) == len(model.trainable_weights) + 1
    rebuilt.compile(optimizer="sgd", loss="mse")
    x = model_inputs(model, rng, batch=4)
    before = rebuilt.get_layer("conv_v").kernel.numpy()
    rebuilt.fit(x, np.ones((4, *rebuilt.output_shape[1:])), epochs=1, verbose=0)
    assert not np.array_equal(rebuilt.get_layer("conv_v").kernel.numpy(), before)


def test_pair_names_avoid_taken_names(rng, tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = L.Conv2D(4, 3, padding="same", name="conv_v")(x)
    model = keras.Model(inputs, L.Conv2D(2, 1, name="head")(x))
    rebuilt = check_split(model, {"conv": 2}, model_inputs(model, rng), tmp_path)
    names = [layer.name for layer in rebuilt.layers[1:]]
    assert names == ["conv_v_2", "conv_h", "conv_v", "head"]
