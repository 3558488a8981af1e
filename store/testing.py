"""Synthetic layer records and score curves, for tests, benchmarks and app demos.

They follow the cost model of `workbench.costs` (memory = kh*kw*Cin*Cout,
MACs = memory*Ho*Wo) but come from no real model, so no TensorFlow is needed.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Sequence

from workbench.records import LayerRecord
from workbench.selection import ScoreDict, candidate_ratios


def conv_record(
    name: str,
    in_channels: int,
    out_channels: int,
    size: int,
    kernel: int = 3,
    stride: int = 1,
) -> LayerRecord:
    """Return the record of a square Conv2D with 'same' padding on a `size` x `size` input.

    A 1x1 kernel gives an ineligible layer, as the engine reports it.
    """
    out_size = math.ceil(size / stride)
    memory = kernel * kernel * in_channels * out_channels
    eligible = kernel > 1
    return LayerRecord(
        name=name,
        class_name="Conv2D",
        eligible=eligible,
        reason=None if eligible else "1x1 kernel: nothing to split",
        kernel_size=(kernel, kernel),
        strides=(stride, stride),
        padding="same",
        dilation_rate=(1, 1),
        groups=1,
        data_format="channels_last",
        in_channels=in_channels,
        out_channels=out_channels,
        input_shape=(None, size, size, in_channels),
        output_shape=(None, out_size, out_size, out_channels),
        input_hw=(size, size),
        output_hw=(out_size, out_size),
        use_bias=True,
        activation="relu",
        params=memory + out_channels,
        macs=memory * out_size * out_size,
        memory=memory,
    )


def synthetic_layers(count: int, ineligible_every: int = 0) -> list[LayerRecord]:
    """Return `count` 3x3 conv records of a VGG-like network, deterministic.

    Channels double and the spatial size halves every quarter of the layers.
    With `ineligible_every` = k > 0, a 1x1 conv follows every k-th layer; those
    come on top of `count`.
    """
    records = []
    channels, size = 16, 64
    stage = max(1, count // 4)
    for index in range(count):
        if index and index % stage == 0:
            channels, size = min(channels * 2, 512), max(size // 2, 4)
        in_channels = 3 if index == 0 else channels
        records.append(conv_record(f"block{index // stage}/conv{index}", in_channels, channels, size))
        if ineligible_every and (index + 1) % ineligible_every == 0:
            records.append(conv_record(f"block{index // stage}/project{index}", channels, channels, size, kernel=1))
    return records


def synthetic_scores(records: Sequence[LayerRecord], ratios: Sequence[Decimal], baseline: float = 0.9) -> ScoreDict:
    """Return a score curve per eligible layer that rises with the ratio, deterministic.

    Each layer gets its own sensitivity, so greedy selection has choices to make.
    """
    scores: ScoreDict = {}
    eligible = [record for record in records if record.eligible]
    for index, record in enumerate(eligible):
        sensitivity = 0.001 + 0.02 * ((index * 37) % 11) / 10
        scores[record.name] = {
            ratio: round(baseline - sensitivity * (1 - float(ratio)) ** 2, 6) for ratio in ratios
        }
    return scores


def create_synthetic_project(
    store,
    name: str = "synthetic",
    layer_count: int = 8,
    *,
    ineligible_every: int = 0,
    candidates: int = 10,
    with_scores: bool = True,
    baseline: float | None = 0.9,
    model_hash: str = "0" * 64,
    evaluator_key: str = "synthetic-evaluator",
    **fields,
):
    """Create a project of synthetic layers in `store`, with a full score cache unless `with_scores` is False.

    Extra keyword arguments go to `Store.create_project` (metric, target, ignored, ...).

    Returns:
        The created `Project`.
    """
    project = store.create_project(
        name,
        f"/synthetic/{name}.keras",
        "synthetic:scores",
        evaluator_key,
        model_hash=model_hash,
        candidates=candidates,
        **fields,
    )
    records = synthetic_layers(layer_count, ineligible_every)
    store.set_layers(name, records)
    if with_scores:
        scores = synthetic_scores(records, candidate_ratios(candidates), baseline if baseline is not None else 0.9)
        entries = [(layer, ratio, score) for layer, curve in scores.items() for ratio, score in curve.items()]
        store.put_scores(project.score_key, entries)
        if baseline is not None:
            store.put_baseline(project.score_key, baseline)
    return store.get_project(name)
