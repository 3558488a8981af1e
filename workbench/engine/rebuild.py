"""Rebuild a model with chosen Conv2D layers split into vertical and horizontal pairs.

The rebuild edits the model's serialized config. Each chosen layer's entry becomes
two entries: `<name>_v`, a (kh, 1) conv to r channels with no bias and a linear
activation, and `<name>_h`, a (1, kw) conv to the original channels with the
original bias and activation. Every reference to the old layer in the same graph
then points to `<name>_h`. A layer that is an output of its graph (listed in a
Functional model's outputs, or the last layer of a Sequential model) gives its
name to the horizontal conv instead, so the model's output names, and a compiled
loss keyed by them, stay valid.

The model is deserialized from that config, which keeps Sequential models
Sequential and nested sub-models nested. Then every other layer's weights are
copied across by path. The input model is not modified.
"""

from __future__ import annotations

import copy
import logging
from typing import Mapping

import keras

from workbench.costs import CostMetric
from workbench.engine.layers import SEPARATOR, analyze_model, check_graph_model, is_graph_model, iter_layers
from workbench.engine.svd import LayerSVD

logger = logging.getLogger(__name__)

VERTICAL_SUFFIX = "_v"
HORIZONTAL_SUFFIX = "_h"
GRAPH_CLASSES = ("Functional", "Sequential")


def split_layers_for_ratios(
    model,
    ratios: Mapping[str, object],
    metric: CostMetric | str = "mac",
    multiplicity: int = 1,
) -> dict[str, int]:
    """Translate per-layer ratios into ranks; layers with ratio None are left out.

    Raises:
        KeyError: for a layer name that is not in the model.
        ValueError: for an ineligible layer (with the reason) or a ratio outside (0, 1].
    """
    analysis = analyze_model(model)
    by_name = {record.name: record for record in analysis.layers}
    ranks: dict[str, int] = {}
    for name, ratio in ratios.items():
        record = check_split_target(by_name, name, analysis.model_name)
        if ratio is None:
            continue
        try:
            ranks[name] = record.geometry.rank_for_ratio(ratio, metric, multiplicity)
        except ValueError as error:
            raise ValueError(f"{error} for layer '{name}'") from None
    return ranks


def check_split_target(by_name, name: str, model_name: str):
    """Return the record of an eligible layer, or raise naming what is wrong."""
    if name not in by_name:
        known = sorted(record for record, value in by_name.items() if value.eligible)
        raise KeyError(
            f"No weighted layer '{name}' in model '{model_name}'. Compressible layers: {known[:20]}"
            + (" ..." if len(known) > 20 else "")
        )
    record = by_name[name]
    if not record.eligible:
        raise ValueError(f"Layer '{name}' ({record.class_name}) cannot be split: {record.reason}.")
    return record


def _unique_name(base: str, taken: set[str]) -> str:
    name = base
    counter = 1
    while name in taken:
        counter += 1
        name = f"{base}_{counter}"
    taken.add(name)
    return name


def _pair_configs(layer_config: dict, rank: int, vertical_name: str, horizontal_name: str) -> tuple[dict, dict]:
    kernel_h, kernel_w = layer_config["kernel_size"]
    stride_h, stride_w = layer_config["strides"]
    dilation_h, dilation_w = layer_config["dilation_rate"]
    vertical = copy.deepcopy(layer_config)
    vertical.update(
        name=vertical_name,
        filters=rank,
        kernel_size=[kernel_h, 1],
        strides=[stride_h, 1],
        dilation_rate=[dilation_h, 1],
        groups=1,
        activation="linear",
        use_bias=False,
        bias_regularizer=None,
        bias_constraint=None,
        activity_regularizer=None,
    )
    horizontal = copy.deepcopy(layer_config)
    horizontal.update(
        name=horizontal_name,
        kernel_size=[1, kernel_w],
        strides=[1, stride_w],
        dilation_rate=[1, dilation_w],
        groups=1,
    )
    return vertical, horizontal


def _rename_history(value, old: str, new: str):
    """Point every keras_history and output reference to layer `old` at `new`."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            history = value["config"].get("keras_history")
            if history and history[0] == old:
                value["config"]["keras_history"] = [new, *history[1:]]
            return value
        return {key: _rename_history(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        if len(value) == 3 and value[0] == old and isinstance(value[1], int) and isinstance(value[2], int):
            return [new, value[1], value[2]]
        return [_rename_history(item, old, new) for item in value]
    if isinstance(value, tuple):
        return tuple(_rename_history(item, old, new) for item in value)
    return value


def _referenced_layers(value) -> set[str]:
    """Return the layer names in a Functional config's `output_layers` value.

    The value is one [layer_name, node_index, tensor_index] triple, or a list or
    dict of them.
    """
    if isinstance(value, dict):
        return set().union(*(_referenced_layers(item) for item in value.values()))
    if isinstance(value, (list, tuple)):
        if len(value) == 3 and isinstance(value[0], str) and isinstance(value[1], int):
            return {value[0]}
        return set().union(*(_referenced_layers(item) for item in value))
    return set()


def _edit_graph_config(serialized: dict, prefix: str, ranks: Mapping[str, int], done: dict) -> dict:
    """Return a copy of a serialized Functional/Sequential model with layers split."""
    serialized = copy.deepcopy(serialized)
    config = serialized["config"]
    entries = config["layers"]
    is_functional = serialized["class_name"] == "Functional"
    taken = {entry["config"]["name"] for entry in entries}
    if is_functional:
        output_names = _referenced_layers(config["output_layers"])
    else:
        output_names = {entries[-1]["config"]["name"]} if entries else set()
    new_entries = []
    renames: list[tuple[str, str]] = []
    for entry in entries:
        name = entry["config"]["name"]
        path = prefix + name
        if entry.get("class_name") in GRAPH_CLASSES and "layers" in entry.get("config", {}):
            new_entries.append(_edit_graph_config(entry, path + SEPARATOR, ranks, done))
            continue
        if path not in ranks:
            new_entries.append(entry)
            continue
        vertical_name = _unique_name(name + VERTICAL_SUFFIX, taken)
        if name in output_names:
            horizontal_name = name
        else:
            horizontal_name = _unique_name(name + HORIZONTAL_SUFFIX, taken)
        vertical_config, horizontal_config = _pair_configs(entry["config"], ranks[path], vertical_name, horizontal_name)
        vertical = {key: value for key, value in entry.items() if key != "build_config"}
        horizontal = {key: value for key, value in entry.items() if key != "build_config"}
        vertical["config"], horizontal["config"] = vertical_config, horizontal_config
        if is_functional:
            vertical["name"], horizontal["name"] = vertical_name, horizontal_name
            horizontal["inbound_nodes"] = _point_inbound_at(copy.deepcopy(entry["inbound_nodes"]), vertical_name)
            if horizontal_name != name:
                renames.append((name, horizontal_name))
        new_entries.extend([vertical, horizontal])
        done[path] = (prefix + vertical_name, prefix + horizontal_name)
    for old, new in renames:
        # Only consumers of the old layer reference it; the new pair never does.
        for entry in new_entries:
            if "inbound_nodes" in entry:
                entry["inbound_nodes"] = _rename_history(entry["inbound_nodes"], old, new)
        config["output_layers"] = _rename_history(config["output_layers"], old, new)
    config["layers"] = new_entries
    return serialized


def _point_inbound_at(inbound_nodes: list, source: str) -> list:
    """Make a single-input node read the output of layer `source`."""
    if len(inbound_nodes) != 1:
        raise ValueError("A split layer must have exactly one call site.")
    node = inbound_nodes[0]
    tensor = node["args"][0]
    if not (isinstance(tensor, dict) and tensor.get("class_name") == "__keras_tensor__"):
        raise ValueError("A split layer must be called on a single tensor.")
    tensor["config"]["keras_history"] = [source, 0, 0]
    return [node]


def rebuild_model(model, ranks: Mapping[str, int], svds: Mapping[str, LayerSVD] | None = None):
    """Return a new model with each layer in `ranks` split at its rank.

    Args:
        model: A built Functional or Sequential model; it is not modified.
        ranks: Layer path -> rank, for eligible Conv2D layers.
        svds: Optional precomputed `LayerSVD` per path, to skip recomputing.

    Raises:
        UnsupportedModelError: for subclassed or unbuilt models.
        KeyError / ValueError: for unknown or ineligible layers and ranks out of range.
    """
    check_graph_model(model)
    analysis = analyze_model(model)
    by_name = {record.name: record for record in analysis.layers}
    old_layers = dict(iter_layers(model))
    factors = {}
    for path, rank in ranks.items():
        check_split_target(by_name, path, model.name)
        kernel_shape = tuple(old_layers[path].kernel.shape)
        svd = (svds or {}).get(path)
        if svd is None:
            svd = LayerSVD(old_layers[path].kernel.numpy())
        elif tuple(svd.shape) != kernel_shape:
            raise ValueError(
                f"The SVD given for layer '{path}' is of a kernel of shape {tuple(svd.shape)}, "
                f"but the layer's kernel has shape {kernel_shape}. Compute it from this model's layer."
            )
        factors[path] = svd.factor_kernels(rank)

    serialized = keras.saving.serialize_keras_object(model)
    done: dict[str, tuple[str, str]] = {}
    edited = _edit_graph_config(serialized, "", ranks, done)
    missing = sorted(set(ranks) - set(done))
    if missing:
        raise ValueError(f"Layers {missing} were not found in the model config; they cannot be split.")
    new_model = keras.saving.deserialize_keras_object(edited)

    new_layers = dict(iter_layers(new_model))
    produced = {}
    for path, (vertical_path, horizontal_path) in done.items():
        produced[vertical_path] = (path, "vertical")
        produced[horizontal_path] = (path, "horizontal")
    for path, layer in new_layers.items():
        if is_graph_model(layer):
            continue
        if path in produced:
            source, side = produced[path]
            vertical_kernel, horizontal_kernel = factors[source]
            original = old_layers[source]
            if side == "vertical":
                layer.kernel.assign(vertical_kernel)
            else:
                layer.kernel.assign(horizontal_kernel)
                if original.use_bias:
                    layer.bias.assign(original.bias.numpy())
            continue
        if path not in old_layers:
            raise RuntimeError(f"Rebuilt model has an unexpected layer '{path}'.")
        weights = old_layers[path].get_weights()
        if weights:
            layer.set_weights(weights)
    return new_model
