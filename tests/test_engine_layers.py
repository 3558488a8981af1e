"""Layer database: eligibility reasons, costs, paths and the errors of the engine."""

import keras
import numpy as np
import pytest

from workbench.engine import (
    UnsupportedModelError,
    analyze_model,
    find_layer,
    iter_layers,
    rebuild_model,
    split_layers_for_ratios,
)

L = keras.layers


def single_layer_model(layer, input_shape=(10, 10, 4)):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layer(inputs))


def record_of(model, name):
    return analyze_model(model).record(name)


def shared_layer_model():
    inputs = keras.Input((10, 10, 4))
    shared = L.Conv2D(4, 3, padding="same", name="layer")
    return keras.Model(inputs, shared(shared(inputs)))


def lora_model():
    conv = L.Conv2D(4, 3, name="layer")
    model = single_layer_model(conv)
    conv.enable_lora(2)
    return model


class StandardizedConv2D(L.Conv2D):
    """A Conv2D subclass that changes its call, as weight-standardized convs do."""

    def call(self, inputs):
        return super().call(inputs) * 2.0


INELIGIBLE = {
    "1x1": (lambda: single_layer_model(L.Conv2D(4, 1, name="layer")), "1x1 kernel"),
    "1xk": (lambda: single_layer_model(L.Conv2D(4, (1, 3), name="layer")), "1x3 kernel: already one-dimensional"),
    "kx1": (lambda: single_layer_model(L.Conv2D(4, (5, 1), name="layer")), "5x1 kernel: already one-dimensional"),
    "depthwise": (lambda: single_layer_model(L.DepthwiseConv2D(3, name="layer")), "depthwise convolution"),
    "separable": (lambda: single_layer_model(L.SeparableConv2D(4, 3, name="layer")), "separable convolution"),
    "transposed": (lambda: single_layer_model(L.Conv2DTranspose(4, 3, name="layer")), "transposed convolution"),
    "grouped": (lambda: single_layer_model(L.Conv2D(4, 3, groups=2, name="layer")), "grouped convolution (groups=2)"),
    "conv1d": (lambda: single_layer_model(L.Conv1D(4, 3, name="layer"), (10, 4)), "Conv1D: spatial SVD splits 2-D"),
    "conv3d": (lambda: single_layer_model(L.Conv3D(4, 3, name="layer"), (6, 6, 6, 2)), "Conv3D: spatial SVD splits 2-D"),
    "dense": (lambda: single_layer_model(L.Dense(4, name="layer"), (8,)), "Dense layer"),
    "shared": (shared_layer_model, "shared by 2 call sites"),
    "conv2d_subclass": (lambda: single_layer_model(StandardizedConv2D(4, 3, name="layer")), "subclass of Conv2D"),
    "lora": (lora_model, "LoRA is enabled"),
    "unknown_size": (
        lambda: single_layer_model(L.Conv2D(4, 3, name="layer"), (None, None, 4)),
        "unknown input or output size",
    ),
}


@pytest.mark.parametrize("case", sorted(INELIGIBLE))
def test_ineligible_layer_reason(case):
    build, expected = INELIGIBLE[case]
    record = record_of(build(), "layer")
    assert not record.eligible
    assert record.reason is not None
    assert expected in record.reason
    assert record.geometry is None


def test_square_conv_is_eligible():
    record = record_of(single_layer_model(L.Conv2D(4, 3, name="layer")), "layer")
    assert record.eligible
    assert record.reason is None
    assert record.max_rank == min(4 * 3, 4 * 3)


@pytest.mark.parametrize("case", ["1x1", "depthwise", "grouped", "dense", "shared", "conv1d"])
def test_ineligible_layer_rejected_by_rebuild(case):
    build, expected = INELIGIBLE[case]
    model = build()
    with pytest.raises(ValueError) as raised:
        rebuild_model(model, {"layer": 1})
    assert "'layer'" in str(raised.value)
    assert expected in str(raised.value)
    with pytest.raises(ValueError) as raised:
        split_layers_for_ratios(model, {"layer": 0.5})
    assert "'layer'" in str(raised.value)


def test_unknown_layer_rejected_by_rebuild():
    model = single_layer_model(L.Conv2D(4, 3, name="conv"))
    with pytest.raises(KeyError) as raised:
        rebuild_model(model, {"no_such_layer": 2})
    message = str(raised.value)
    assert "'no_such_layer'" in message
    # The message lists what can be split, so the caller can correct the name.
    assert "conv" in message
    with pytest.raises(KeyError, match="no_such_layer"):
        split_layers_for_ratios(model, {"no_such_layer": 0.5})


def test_rank_out_of_range_rejected():
    model = single_layer_model(L.Conv2D(4, 3, name="conv"))
    max_rank = record_of(model, "conv").max_rank
    for rank in (0, max_rank + 1):
        with pytest.raises(ValueError, match=f"rank={rank}"):
            rebuild_model(model, {"conv": rank})


def test_ratio_out_of_range_names_layer():
    model = single_layer_model(L.Conv2D(4, 3, name="conv"))
    with pytest.raises(ValueError, match="'conv'"):
        split_layers_for_ratios(model, {"conv": 1.5})


def test_ratio_none_leaves_layer_out():
    model = single_layer_model(L.Conv2D(4, 3, name="conv"))
    assert split_layers_for_ratios(model, {"conv": None}) == {}


class SubclassedNet(keras.Model):
    def __init__(self):
        super().__init__(name="subclassed_net")
        self.conv = L.Conv2D(4, 3)

    def call(self, inputs):
        return self.conv(inputs)


def built_subclassed_model():
    model = SubclassedNet()
    model(np.zeros((1, 8, 8, 3), "float32"))
    return model


@pytest.mark.parametrize(
    "call",
    [analyze_model, lambda model: rebuild_model(model, {"conv": 1}), lambda model: split_layers_for_ratios(model, {})],
    ids=["analyze", "rebuild", "split"],
)
def test_subclassed_model_error_says_what_to_do(call):
    with pytest.raises(UnsupportedModelError) as raised:
        call(built_subclassed_model())
    message = str(raised.value)
    assert "subclassed" in message
    assert "SubclassedNet" in message
    assert "keras.Model(inputs, outputs)" in message
    assert "keras.Sequential" in message


def test_unbuilt_sequential_error_says_what_to_do():
    model = keras.Sequential([L.Conv2D(4, 3)])
    with pytest.raises(UnsupportedModelError, match=r"keras.Input\(shape=...\)"):
        analyze_model(model)


def test_non_model_rejected():
    with pytest.raises(UnsupportedModelError, match="Received: Conv2D"):
        analyze_model(L.Conv2D(4, 3))


def test_subclassed_sub_model_is_one_ineligible_record():
    inputs = keras.Input((8, 8, 3))
    outputs = SubclassedNet()(L.Conv2D(3, 3, padding="same", name="conv")(inputs))
    analysis = analyze_model(keras.Model(inputs, outputs))
    record = analysis.record("subclassed_net")
    assert not record.eligible
    assert "subclassed sub-model" in record.reason
    assert analysis.record("conv").eligible
    assert any("subclassed_net" in note for note in analysis.notes)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_reference_conv_macs(data_format):
    # Conv 32->64 with a 5x5 kernel and a 14x14 output: 5*5*32*64 weights, each used 14*14 times.
    shape = (18, 18, 32) if data_format == "channels_last" else (32, 18, 18)
    record = record_of(single_layer_model(L.Conv2D(64, 5, data_format=data_format, name="layer"), shape), "layer")
    assert record.macs == 10_035_200
    assert record.memory == 51_200
    assert record.params == 51_200 + 64
    assert record.input_hw == (18, 18)
    assert record.output_hw == (14, 14)
    assert record.in_channels == 32
    assert record.out_channels == 64
    assert record.max_rank == 160


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_reference_strided_rank_cost(data_format):
    # Stride 2 with 'same' padding: the input is 28 wide, the output 14x14; rank 40 costs 5,017,600 MACs.
    shape = (28, 28, 32) if data_format == "channels_last" else (32, 28, 28)
    layer = L.Conv2D(64, 5, strides=2, padding="same", data_format=data_format, name="layer")
    record = record_of(single_layer_model(layer, shape), "layer")
    assert record.macs == 10_035_200
    assert record.geometry.input_w == 28
    assert record.geometry.rank_cost(40, "mac") == 5_017_600


def test_reference_first_conv_macs():
    record = record_of(single_layer_model(L.Conv2D(32, 5, padding="same", name="layer"), (28, 28, 1)), "layer")
    assert record.macs == 627_200


def test_channels_first_non_square_matches_channels_last():
    last = record_of(single_layer_model(L.Conv2D(6, (3, 5), name="layer"), (9, 13, 4)), "layer")
    first = record_of(
        single_layer_model(L.Conv2D(6, (3, 5), data_format="channels_first", name="layer"), (4, 9, 13)), "layer"
    )
    assert first.output_hw == last.output_hw == (7, 9)
    assert first.input_hw == last.input_hw == (9, 13)
    assert first.macs == last.macs == 3 * 5 * 4 * 6 * 7 * 9
    assert first.geometry == last.geometry


def test_other_layer_macs():
    depthwise = record_of(single_layer_model(L.DepthwiseConv2D(3, depth_multiplier=2, name="layer")), "layer")
    assert depthwise.macs == 3 * 3 * 4 * 2 * 8 * 8
    separable = record_of(single_layer_model(L.SeparableConv2D(6, 3, name="layer")), "layer")
    assert separable.macs == (3 * 3 * 4 + 4 * 6) * 8 * 8
    grouped = record_of(single_layer_model(L.Conv2D(6, 3, groups=2, name="layer")), "layer")
    assert grouped.macs == 3 * 3 * 2 * 6 * 8 * 8
    dense = record_of(single_layer_model(L.Dense(5, name="layer"), (7,)), "layer")
    assert dense.macs == 7 * 5


def test_sequential_built_by_add_is_not_shared():
    # Sequential.add rebuilds the graph after every layer, leaving stale call nodes behind.
    model = keras.Sequential()
    model.add(keras.Input((10, 10, 3)))
    for index in range(3):
        model.add(L.Conv2D(4, 3, name=f"conv{index}"))
    for record in analyze_model(model).layers:
        assert record.call_sites == 1, record.name
        assert record.eligible, f"{record.name}: {record.reason}"


def test_layer_also_used_by_another_model_is_eligible():
    conv = L.Conv2D(4, 3, name="conv")
    first_input = keras.Input((10, 10, 3))
    model = keras.Model(first_input, conv(first_input))
    other_input = keras.Input((12, 12, 3))
    keras.Model(other_input, conv(other_input))
    record = record_of(model, "conv")
    assert record.call_sites == 1
    assert record.eligible
    assert record.output_hw == (8, 8)


def test_layer_shared_between_model_and_sub_model():
    conv = L.Conv2D(3, 3, padding="same", name="conv")
    inner_input = keras.Input((8, 8, 3))
    inner = keras.Model(inner_input, conv(inner_input), name="inner")
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, inner(conv(inputs)))
    analysis = analyze_model(model)
    for path in ("conv", "inner/conv"):
        assert analysis.record(path).call_sites == 2, path
        assert not analysis.record(path).eligible, path


def nested_model():
    block_input = keras.Input((8, 8, 4))
    block = keras.Model(block_input, L.Conv2D(4, 3, padding="same", name="conv")(block_input), name="block")
    stack = keras.Sequential([L.Conv2D(4, 3, padding="same", name="conv"), L.ReLU(name="relu")], name="stack")
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", name="conv")(inputs)
    return keras.Model(inputs, stack(block(x)), name="outer")


def test_nested_layers_have_paths():
    model = nested_model()
    # Input layers get numbered names, so they are left out of the comparison.
    paths = [path for path, layer in iter_layers(model) if not isinstance(layer, L.InputLayer)]
    assert paths == ["conv", "block", "block/conv", "stack", "stack/conv", "stack/relu"]
    analysis = analyze_model(model)
    assert [record.name for record in analysis.eligible] == ["conv", "block/conv", "stack/conv"]
    assert find_layer(model, "block/conv") is model.get_layer("block").get_layer("conv")
    assert find_layer(model, "stack/conv") is model.get_layer("stack").get_layer("conv")


def test_find_layer_suggests_paths():
    with pytest.raises(KeyError) as raised:
        find_layer(nested_model(), "relu")
    assert "'relu'" in str(raised.value)
    assert "stack/relu" in str(raised.value)


def test_analysis_totals():
    model = nested_model()
    analysis = analyze_model(model)
    assert analysis.total_params == model.count_params()
    # Three 3x3 convs with 8x8 outputs: 3->4, then 4->4 twice.
    assert analysis.total_macs == 3 * 3 * 8 * 8 * (3 * 4 + 4 * 4 + 4 * 4)
    assert analysis.total_memory == 3 * 3 * (3 * 4 + 4 * 4 + 4 * 4)
    as_dict = analysis.to_dict()
    assert [layer["name"] for layer in as_dict["layers"]] == ["conv", "block/conv", "stack/conv"]
