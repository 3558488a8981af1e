"""Compress a Keras ResNet50 with spatial SVD through the AIMET-compatible API.

The script follows the steps of an AIMET Keras spatial SVD script: build the
model, define an evaluation function, fill in the greedy-selection and spatial
SVD parameters, call `ModelCompressor.compress_model` and print the statistics.

Run it from the repository root after `pip install -e .`:

    python examples/resnet50_spatial_svd.py [--input-size 64] [--candidates 10]
        [--samples 256] [--iterations N] [--target 0.5]

It writes the eval-score dict and the chosen ratios as AIMET pickles under
./data/ in the working directory.

Only Conv2D layers with kernels larger than 1x1 in both directions can be split.
In ResNet50 these are the 16 3x3 convolutions of the bottleneck blocks (the 7x7
`conv1_conv` is ignored here), which carry about 47% of the model's MACs. Even
with each of them at 0.1 the model keeps about 0.57 of its MACs, so the target
0.5 cannot be reached: `compress_model` warns with `CompressionTargetWarning`
and returns the most compressed selection. Pass `--target 0.75` to see a target
met from below.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from decimal import Decimal

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from workbench.compress import ModelCompressor  # noqa: E402
from workbench.defs import (  # noqa: E402
    CompressionScheme,
    CostMetric,
    GreedySelectionParameters,
    SpatialSvdParameters,
)

FIRST_CONV = "conv1_conv"
BATCH_SIZE = 32
SEED = 0


def build_model(input_size: int = 64):
    """Build an untrained ResNet50 for square RGB images of `input_size` pixels.

    `weights=None` because ImageNet weights need a download. A real user loads
    their trained model here instead.
    """
    keras.utils.set_random_seed(SEED)
    return keras.applications.ResNet50(weights=None, input_shape=(input_size, input_size, 3))


def make_synthetic_data(model, num_samples: int, seed: int = SEED):
    """Return `(images, labels)`: random images and the model's own top-1 classes.

    With these labels the evaluation score is the top-1 agreement of a model
    with the original, uncompressed one, so the baseline scores 1.0 and each
    candidate scores the share of images whose predicted class it keeps. Random
    weights make most images land in a few classes, so the scores are coarse.
    A real user replaces this function with their labelled validation set.
    """
    rng = np.random.default_rng(seed)
    height, width, channels = model.input_shape[1:]
    pixels = rng.uniform(0.0, 255.0, size=(num_samples, height, width, channels)).astype(np.float32)
    images = keras.applications.resnet50.preprocess_input(pixels)
    logits = model.predict(images, batch_size=BATCH_SIZE, verbose=0)
    labels = np.argmax(logits, axis=-1)
    return images, labels


def make_eval_function(images: np.ndarray, labels: np.ndarray, batch_size: int = BATCH_SIZE):
    """Return `evaluate_model(model, iterations)`: top-1 accuracy on `images`.

    `iterations` is the number of batches to evaluate; None evaluates them all.
    """
    num_batches = math.ceil(len(images) / batch_size)

    def evaluate_model(model, iterations) -> float:
        batches = num_batches if iterations is None else min(int(iterations), num_batches)
        correct = 0
        seen = 0
        for index in range(batches):
            start = index * batch_size
            batch = images[start : start + batch_size]
            predicted = np.argmax(model.predict_on_batch(batch), axis=-1)
            correct += int(np.sum(predicted == labels[start : start + batch_size]))
            seen += len(batch)
        return correct / seen

    return evaluate_model


def compress_resnet50(
    input_size: int = 64,
    num_candidates: int = 10,
    num_samples: int = 256,
    eval_iterations: int | None = None,
    target: float = 0.5,
    saved_eval_scores_dict: str | None = None,
):
    """Compress an untrained ResNet50 with spatial SVD in auto mode.

    Args:
        input_size: Height and width of the input images in pixels (at least 32).
        num_candidates: N; the candidate ratios are 1/N .. (N-1)/N.
        num_samples: Number of synthetic evaluation images.
        eval_iterations: Batches of `BATCH_SIZE` images per evaluation; None for all.
        target: Target MAC ratio of the compressed model.
        saved_eval_scores_dict: Eval-score dict of an earlier run to reuse, for
            example `data/greedy_selection_eval_scores_dict.pkl`.

    Returns:
        `(original_model, compressed_model, stats)`.
    """
    model = build_model(input_size)
    images, labels = make_synthetic_data(model, num_samples)
    evaluate_model = make_eval_function(images, labels)

    greedy_params = GreedySelectionParameters(
        target_comp_ratio=Decimal(str(target)),
        num_comp_ratio_candidates=num_candidates,
        saved_eval_scores_dict=saved_eval_scores_dict,
    )
    auto_params = SpatialSvdParameters.AutoModeParams(
        greedy_params,
        modules_to_ignore=[model.get_layer(FIRST_CONV)],
    )
    # The op names are accepted for AIMET compatibility; a Keras model carries its own.
    params = SpatialSvdParameters(
        input_op_names=[tensor.name for tensor in model.inputs],
        output_op_names=[tensor.name for tensor in model.outputs],
        mode=SpatialSvdParameters.Mode.auto,
        params=auto_params,
    )

    compressed_model, stats = ModelCompressor.compress_model(
        model,
        eval_callback=evaluate_model,
        eval_iterations=eval_iterations,
        compress_scheme=CompressionScheme.spatial_svd,
        cost_metric=CostMetric.mac,
        parameters=params,
    )
    return model, compressed_model, stats


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=64, help="input height and width in pixels (default: 64)")
    parser.add_argument("--candidates", type=int, default=10, help="number of candidate ratios N (default: 10)")
    parser.add_argument("--samples", type=int, default=256, help="number of synthetic evaluation images (default: 256)")
    parser.add_argument(
        "--iterations",
        type=int,
        default=None,
        help=f"batches of {BATCH_SIZE} images per evaluation (default: all)",
    )
    parser.add_argument("--target", type=float, default=0.5, help="target MAC ratio (default: 0.5)")
    parser.add_argument("--saved-scores", default=None, help="eval-score dict (.pkl or .json) of an earlier run to reuse")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    _, _, stats = compress_resnet50(
        input_size=args.input_size,
        num_candidates=args.candidates,
        num_samples=args.samples,
        eval_iterations=args.iterations,
        target=args.target,
        saved_eval_scores_dict=args.saved_scores,
    )
    print(stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
