"""Layer database: walk a Keras model and describe every weighted layer.

Each layer is named by its path, the names of the nested Functional or Sequential
models that contain it joined with '/', so 'backbone/conv1' is the layer 'conv1'
inside the sub-model 'backbone'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

import keras

# Keras 3 exports no public name for the class of keras.Model(inputs, outputs).
from keras.src.models.functional import Functional

from workbench.records import LayerRecord

SEPARATOR = "/"


class UnsupportedModelError(TypeError):
    """The model cannot be analysed or rebuilt by spatial SVD."""


def is_graph_model(layer) -> bool:
    """True for Functional and Sequential models, whose structure is in their config."""
    return isinstance(layer, (keras.Sequential, Functional))


def check_graph_model(model) -> None:
    """Raise UnsupportedModelError unless `model` is a built Functional or Sequential model."""
    if not isinstance(model, keras.Model):
        raise UnsupportedModelError(
            f"Expected a keras.Model. Received: {type(model).__name__}. Load it with keras.models.load_model first."
        )
    if not is_graph_model(model):
        raise UnsupportedModelError(
            f"Model '{model.name}' is a subclassed keras.Model ({type(model).__name__}). Spatial SVD rebuilds a "
            "model from its layer graph, which only Functional and Sequential models expose. Rebuild the network "
            "with the functional API (keras.Model(inputs, outputs)) or keras.Sequential, load the trained "
            "weights into it, and compress that model."
        )
    if isinstance(model, keras.Sequential) and not model.built:
        raise UnsupportedModelError(
            f"Sequential model '{model.name}' is not built, so its layer shapes are unknown. Start it with "
            "keras.Input(shape=...) or call model.build(input_shape) first."
        )


def iter_layers(model, prefix: str = "") -> Iterator[tuple[str, keras.layers.Layer]]:
    """Yield (path, layer) for every layer, descending into nested graph models.

    Nested models are yielded themselves too, before their layers.
    """
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        yield path, layer
        if is_graph_model(layer):
            yield from iter_layers(layer, path + SEPARATOR)


def find_layer(model, path: str):
    """Return the layer at `path`, or raise KeyError naming close matches."""
    for candidate, layer in iter_layers(model):
        if candidate == path:
            return layer
    names = [candidate for candidate, _ in iter_layers(model)]
    close = [name for name in names if name.endswith(SEPARATOR + path) or path in name][:5]
    hint = f" Did you mean {close}?" if close else ""
    raise KeyError(f"No layer '{path}' in model '{model.name}'.{hint}")


def _tuple(value) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value,)
    return tuple(int(v) for v in value)


def _shape(tensor) -> tuple | None:
    if tensor is None:
        return None
    return tuple(None if dim is None else int(dim) for dim in tensor.shape[1:])


def graph_node_ids(model) -> set[int]:
    """Return the ids of the call nodes in the graphs of `model` and its nested graph models.

    Keras keeps a node for every call of a layer, including the calls made while
    a loaded Sequential model is rebuilt after each added layer, so a layer's
    `_inbound_nodes` can list nodes that no current graph uses.
    """
    ids: set[int] = set()
    containers = [model] + [layer for _, layer in iter_layers(model) if is_graph_model(layer)]
    for container in containers:
        graph = container._functional if isinstance(container, keras.Sequential) else container
        for nodes in getattr(graph, "_nodes_by_depth", {}).values():
            ids.update(id(node) for node in nodes)
    return ids


def _live_nodes(layer, node_ids: set[int] | None) -> list:
    nodes = list(getattr(layer, "_inbound_nodes", []))
    if node_ids is None:
        return nodes
    return [node for node in nodes if id(node) in node_ids]


def _node_shapes(nodes):
    if not nodes:
        return None, None
    node = nodes[0]
    inputs = node.input_tensors
    outputs = node.output_tensors
    return (_shape(inputs[0]) if inputs else None), (_shape(outputs[0]) if outputs else None)


def _spatial(shape, data_format, dims=2):
    if shape is None:
        return None
    if data_format == "channels_first":
        return tuple(shape[1 : 1 + dims])
    return tuple(shape[:dims])


def _channels(shape, data_format):
    if shape is None:
        return None
    return shape[0] if data_format == "channels_first" else shape[-1]


def _prod(values) -> int:
    return int(math.prod(v for v in values if v is not None)) if values else 0


def _activation_name(layer) -> str | None:
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    return getattr(activation, "__name__", type(activation).__name__)


def _kernel_memory(layer) -> int:
    total = 0
    for attribute in ("kernel", "depthwise_kernel", "pointwise_kernel"):
        variable = getattr(layer, attribute, None)
        if variable is not None:
            total += _prod(variable.shape)
    return total


WEIGHTED_TYPES = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.SeparableConv1D,
    keras.layers.Dense,
)


def describe_layer(path: str, layer, node_ids: set[int] | None = None) -> LayerRecord:
    """Build the LayerRecord of one weighted layer: shapes, costs and eligibility.

    Args:
        node_ids: The `graph_node_ids` of the model; calls outside them are not
            counted as call sites. None counts every call of the layer.
    """
    nodes = _live_nodes(layer, node_ids)
    input_shape, output_shape = _node_shapes(nodes)
    data_format = getattr(layer, "data_format", None) or "channels_last"
    record = LayerRecord(
        name=path,
        class_name=type(layer).__name__,
        eligible=False,
        input_shape=input_shape,
        output_shape=output_shape,
        params=int(layer.count_params()) if layer.built else 0,
        memory=_kernel_memory(layer),
        call_sites=max(1, len(nodes)),
        use_bias=getattr(layer, "use_bias", None),
        activation=_activation_name(layer),
    )
    if isinstance(layer, keras.layers.Dense):
        inputs = input_shape[-1] if input_shape else layer.kernel.shape[0]
        positions = _prod(input_shape[:-1]) if input_shape and len(input_shape) > 1 else 1
        record.in_channels, record.out_channels = int(inputs), int(layer.units)
        record.macs = int(inputs) * int(layer.units) * max(1, positions)
        record.reason = "Dense layer: spatial SVD splits 2-D convolution kernels only"
        return record

    record.kernel_size = _tuple(getattr(layer, "kernel_size", None))
    record.strides = _tuple(getattr(layer, "strides", None))
    record.padding = getattr(layer, "padding", None)
    record.dilation_rate = _tuple(getattr(layer, "dilation_rate", None))
    record.groups = getattr(layer, "groups", 1)
    record.data_format = data_format
    dims = len(record.kernel_size)
    in_spatial = _spatial(input_shape, data_format, dims)
    out_spatial = _spatial(output_shape, data_format, dims)
    record.in_channels = _channels(input_shape, data_format)
    record.out_channels = _channels(output_shape, data_format)
    if dims == 2:
        record.input_hw, record.output_hw = in_spatial, out_spatial
    kernel_volume = _prod(record.kernel_size)
    out_positions = _prod(out_spatial)
    in_positions = _prod(in_spatial)
    cin, cout = record.in_channels or 0, record.out_channels or 0

    if isinstance(layer, (keras.layers.DepthwiseConv2D, keras.layers.DepthwiseConv1D)):
        multiplier = layer.depth_multiplier
        record.macs = kernel_volume * cin * multiplier * out_positions
        record.reason = "depthwise convolution: each kernel sees one channel, so there is no channel matrix to split"
    elif isinstance(layer, (keras.layers.SeparableConv2D, keras.layers.SeparableConv1D)):
        multiplier = layer.depth_multiplier
        record.macs = (kernel_volume * cin * multiplier + cin * multiplier * cout) * out_positions
        record.reason = "separable convolution: it is already factorised into depthwise and pointwise parts"
    elif isinstance(layer, (keras.layers.Conv2DTranspose, keras.layers.Conv1DTranspose, keras.layers.Conv3DTranspose)):
        record.macs = kernel_volume * cin * cout * in_positions
        record.reason = "transposed convolution: not supported by spatial SVD"
    elif dims != 2:
        record.macs = kernel_volume * (cin // max(1, record.groups)) * cout * out_positions
        record.reason = f"{type(layer).__name__}: spatial SVD splits 2-D convolution kernels only"
    else:
        record.macs = kernel_volume * (cin // max(1, record.groups)) * cout * out_positions
        kernel_h, kernel_w = record.kernel_size
        if record.groups != 1:
            record.reason = f"grouped convolution (groups={record.groups}): the split would mix channel groups"
        elif kernel_h == 1 and kernel_w == 1:
            record.reason = "1x1 kernel: nothing to split spatially"
        elif kernel_h == 1 or kernel_w == 1:
            record.reason = f"{kernel_h}x{kernel_w} kernel: already one-dimensional, nothing to split"
        elif type(layer) is not keras.layers.Conv2D:
            # Substitution and the split pair are shown to agree only for Conv2D's own call.
            record.reason = (
                f"subclass of Conv2D ({type(layer).__name__}): its call may differ from Conv2D's, "
                "so the split pair could compute something else"
            )
        elif getattr(layer, "lora_enabled", False):
            record.reason = "LoRA is enabled: merge the LoRA weights into the kernel (or disable LoRA) first"
        elif record.call_sites > 1:
            record.reason = f"shared by {record.call_sites} call sites: splitting it would change every call"
        elif not (in_spatial and out_spatial) or None in in_spatial + out_spatial:
            record.reason = "unknown input or output size: build the model with a fixed input height and width"
        else:
            record.eligible = True
    return record


@dataclass
class ModelAnalysis:
    """The layer database of a model and its totals."""

    model_name: str
    layers: list[LayerRecord]
    total_params: int
    notes: list[str] = field(default_factory=list)

    @property
    def eligible(self) -> list[LayerRecord]:
        return [record for record in self.layers if record.eligible]

    def record(self, name: str) -> LayerRecord:
        for record in self.layers:
            if record.name == name:
                return record
        raise KeyError(name)

    @property
    def total_macs(self) -> int:
        return sum(record.macs for record in self.layers)

    @property
    def total_memory(self) -> int:
        return sum(record.memory for record in self.layers)

    def to_dict(self) -> dict:
        return {
            "model_name": self.model_name,
            "total_params": self.total_params,
            "layers": [record.to_dict() for record in self.layers],
            "notes": list(self.notes),
        }


def analyze_model(model) -> ModelAnalysis:
    """Describe every weighted layer of a Functional or Sequential model.

    Layers of nested Functional and Sequential sub-models are included under their
    paths. A nested subclassed model appears as one record that is not eligible.

    NOTE: a sub-model called at several call sites (a shared encoder) runs its
    layers once per call, but their MACs are counted once. Splitting such a layer
    is still correct, because every call uses the split pair.

    Raises:
        UnsupportedModelError: for a subclassed or unbuilt model.
    """
    check_graph_model(model)
    node_ids = graph_node_ids(model)
    records: list[LayerRecord] = []
    notes: list[str] = []
    for path, layer in iter_layers(model):
        if is_graph_model(layer):
            continue
        if isinstance(layer, keras.Model):
            records.append(
                LayerRecord(
                    name=path,
                    class_name=type(layer).__name__,
                    eligible=False,
                    reason="subclassed sub-model: its layers cannot be rebuilt; rewrite it as a Functional model",
                    params=int(layer.count_params()) if layer.built else 0,
                )
            )
            notes.append(f"Sub-model '{path}' is subclassed; its layers are not compressed.")
            continue
        if isinstance(layer, WEIGHTED_TYPES):
            records.append(describe_layer(path, layer, node_ids))
    return ModelAnalysis(model.name, records, int(model.count_params()), notes)
