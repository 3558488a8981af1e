"""Time candidate scoring two ways: in-place kernel substitution and rebuild per candidate.

Both ways build the same eval-score dict `{layer: {ratio: score}}` with the same
evaluator (top-1 accuracy on a fixed set of images) and the same ranks:

- in place: `CandidateEvaluator.score`, which computes one SVD per layer and
  substitutes each candidate's rank-r kernel into the loaded model;
- rebuild: for each candidate, the steps of AIMET's Keras spatial SVD. It clones
  the model and copies its weights, then splits the layer (`rebuild_model` with
  that one layer's rank). It exports the result as a TensorFlow SavedModel, loads
  it back and evaluates the loaded model through its serving signature.

Layers are processed one after the other, both ways for each layer, so that a
change in machine load affects both ways alike. For each model the script prints
both wall times, their ratio, the time spent inside the evaluation callback, and
the overhead (wall time minus callback time, as a share of callback time) with
the share of it spent computing SVDs. It exits with status 1 if the two dicts
differ by more than 1e-5 anywhere.

Run it from the repository root:

    python benchmarks/search_speed.py [--resnet-size 64] [--json FILE]

The models are the bundled Fashion-MNIST demo CNN (or, if its file is missing,
a CNN of the same shape with random weights) and an untrained ResNet50 at a small
input. For ResNet50 the rebuild way runs on a subset of layers and candidates
only. The in-place way also runs the full search (every eligible layer at every
candidate) to show its overhead on a whole search.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from workbench.demo import eval_data_path, model_path  # noqa: E402
from workbench.engine import analyze_model, rebuild_model  # noqa: E402
from workbench.evaluation import CandidateEvaluator  # noqa: E402
from workbench.selection import candidate_ratios, format_ratio  # noqa: E402

SEED = 0
BATCH_SIZE = 250
TOLERANCE = 1e-5


class TopOneAccuracy:
    """Top-1 accuracy on fixed images, timing every call.

    Accepts a Keras model (run through `predict_on_batch`, which traces once and
    then reads the current kernel values) or a loaded SavedModel (run through its
    `serving_default` signature).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int):
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, model, iterations) -> float:
        started = time.perf_counter()
        try:
            forward = self._forward(model)
            num_batches = math.ceil(len(self.images) / self.batch_size)
            if iterations is not None:
                num_batches = min(num_batches, int(iterations))
            correct = 0
            seen = 0
            for index in range(num_batches):
                start = index * self.batch_size
                batch = self.images[start : start + self.batch_size]
                predicted = np.argmax(forward(batch), axis=-1)
                correct += int(np.sum(predicted == self.labels[start : start + self.batch_size]))
                seen += len(batch)
            return correct / seen
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1

    @staticmethod
    def _forward(model):
        if isinstance(model, keras.Model):
            return model.predict_on_batch
        signature = model.signatures["serving_default"]
        (input_name,) = signature.structured_input_signature[1]

        def run(batch):
            (output,) = signature(**{input_name: tf.constant(batch)}).values()
            return output.numpy()

        return run


@dataclass
class Case:
    """A model, its evaluation images and the candidates that both ways score."""

    name: str
    description: str
    model: keras.Model
    images: np.ndarray
    labels: np.ndarray
    labels_source: str
    layers: list[str]
    ratios: list[Decimal]
    full_search: bool


@dataclass
class WayTiming:
    """Wall time of one way over all its candidates and the part spent in the callback."""

    candidates: int = 0
    wall_seconds: float = 0.0
    callback_seconds: float = 0.0
    # Seconds per step outside the callback: 'svd' for the in-place way, and
    # 'clone', 'split', 'export' and 'load' for the rebuild way.
    phases: dict[str, float] = field(default_factory=dict)

    def add(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds

    @property
    def overhead(self) -> float:
        """Wall time outside the callback, as a share of callback time."""
        return (self.wall_seconds - self.callback_seconds) / self.callback_seconds

    def to_dict(self) -> dict:
        return {**asdict(self), "overhead": self.overhead}


@dataclass
class CaseResult:
    name: str
    description: str
    eval_images: int
    labels_source: str
    layers: list[str]
    ratios: list[str]
    in_place: WayTiming
    rebuild: WayTiming
    max_score_difference: float
    mismatches: list[str] = field(default_factory=list)
    full_search: WayTiming | None = None
    full_search_layers: int = 0
    full_search_ratios: int = 0

    @property
    def speedup(self) -> float:
        return self.rebuild.wall_seconds / self.in_place.wall_seconds


def build_fashion_like_cnn() -> keras.Model:
    """Build a CNN of the demo model's shape (six 3x3 convs on 28x28x1, ten classes)."""
    keras.utils.set_random_seed(SEED)
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
            layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv2"),
            layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3"),
            layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="conv4"),
            layers.Conv2D(128, 3, padding="valid", activation="relu", name="conv5"),
            layers.Conv2D(128, 3, padding="valid", activation="relu", name="conv6"),
            layers.Flatten(),
            layers.Dense(10, name="dense"),
        ],
        name="fashion_like_cnn",
    )


def own_predictions(model, images: np.ndarray) -> np.ndarray:
    """Return the model's own top-1 classes, so that the score is agreement with the original."""
    return np.argmax(model.predict(images, batch_size=BATCH_SIZE, verbose=0), axis=-1)


def fashion_case(num_candidates: int, num_images: int | None) -> Case:
    if model_path().exists() and eval_data_path().exists():
        model = keras.models.load_model(model_path())
        with np.load(eval_data_path()) as data:
            images, labels = data["x"].astype(np.float32), data["y"]
        description = f"bundled demo model {model_path().name}"
        labels_source = f"Fashion-MNIST test labels ({eval_data_path().name})"
    else:
        model = build_fashion_like_cnn()
        rng = np.random.default_rng(SEED)
        images = rng.random((2000, 28, 28, 1), dtype=np.float32)
        labels = own_predictions(model, images)
        description = "Fashion-MNIST-sized CNN with random weights (demo model file not found)"
        labels_source = "the model's own predictions"
    if num_images is not None:
        images, labels = images[:num_images], labels[:num_images]
    layers = [record.name for record in analyze_model(model).eligible]
    return Case("fashion", description, model, images, labels, labels_source, layers,
                candidate_ratios(num_candidates), False)


def resnet50_case(input_size: int, num_images: int, num_layers: int, ratios: list[Decimal]) -> Case:
    keras.utils.set_random_seed(SEED)
    model = keras.applications.ResNet50(weights=None, input_shape=(input_size, input_size, 3))
    rng = np.random.default_rng(SEED)
    pixels = rng.uniform(0.0, 255.0, size=(num_images, input_size, input_size, 3)).astype(np.float32)
    images = keras.applications.resnet50.preprocess_input(pixels)
    labels = own_predictions(model, images)
    eligible = [record.name for record in analyze_model(model).eligible]
    # Spread the subset over the network: small kernels early, the largest SVDs last.
    picks = np.linspace(0, len(eligible) - 1, num_layers).round().astype(int)
    layers = [eligible[index] for index in sorted(set(picks))]
    description = f"keras.applications.ResNet50(weights=None) at {input_size}x{input_size}"
    return Case("resnet50", description, model, images, labels, "the model's own predictions", layers, ratios, True)


def score_by_rebuild(model, layer: str, rank: int, evaluator: TopOneAccuracy, workdir: Path, timing: WayTiming) -> float:
    """Score one candidate the way AIMET does: clone, split, save, reload, evaluate."""
    started = time.perf_counter()
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    timing.add("clone", time.perf_counter() - started)

    started = time.perf_counter()
    split = rebuild_model(clone, {layer: rank})
    timing.add("split", time.perf_counter() - started)

    directory = workdir / "candidate"
    started = time.perf_counter()
    split.export(str(directory), format="tf_saved_model", verbose=False)
    timing.add("export", time.perf_counter() - started)

    started = time.perf_counter()
    loaded = tf.saved_model.load(str(directory))
    timing.add("load", time.perf_counter() - started)

    score = evaluator(loaded, None)
    shutil.rmtree(directory)
    return score


def score_in_place(candidate_evaluator: CandidateEvaluator, layer: str, ratios, timing: WayTiming) -> dict:
    """Score one layer's candidates in place, timing its SVD separately."""
    started = time.perf_counter()
    candidate_evaluator.svd(layer)
    timing.add("svd", time.perf_counter() - started)
    return {ratio: candidate_evaluator.score(layer, ratio)[1] for ratio in ratios}


def run_case(case: Case, workdir: Path, log) -> CaseResult:
    evaluator = TopOneAccuracy(case.images, case.labels, BATCH_SIZE)
    # The baseline is the first evaluation of any search, and it also traces the predict function.
    baseline = evaluator(case.model, None)
    log(f"{case.name}: {case.description}; baseline score {baseline:.4f} on {len(case.images)} images")

    in_place = WayTiming()
    rebuild = WayTiming()
    in_place_scores: dict[str, dict[Decimal, float]] = {}
    rebuild_scores: dict[str, dict[Decimal, float]] = {}

    started = time.perf_counter()
    candidate_evaluator = CandidateEvaluator(case.model, evaluator, None, "mac", use_cuda=False)
    in_place.wall_seconds += time.perf_counter() - started

    for layer in case.layers:
        callback_before = evaluator.seconds
        started = time.perf_counter()
        in_place_scores[layer] = score_in_place(candidate_evaluator, layer, case.ratios, in_place)
        in_place.wall_seconds += time.perf_counter() - started
        in_place.callback_seconds += evaluator.seconds - callback_before
        in_place.candidates += len(case.ratios)

        rebuild_scores[layer] = {}
        for ratio in case.ratios:
            rank = candidate_evaluator.rank(layer, ratio)
            callback_before = evaluator.seconds
            started = time.perf_counter()
            rebuild_scores[layer][ratio] = score_by_rebuild(case.model, layer, rank, evaluator, workdir, rebuild)
            rebuild.wall_seconds += time.perf_counter() - started
            rebuild.callback_seconds += evaluator.seconds - callback_before
            rebuild.candidates += 1
        log(
            f"  {layer}: in place {in_place.wall_seconds:.1f} s, rebuild {rebuild.wall_seconds:.1f} s so far"
        )

    differences = []
    mismatches = []
    for layer, curve in in_place_scores.items():
        for ratio, score in curve.items():
            difference = abs(score - rebuild_scores[layer][ratio])
            differences.append(difference)
            if difference > TOLERANCE:
                mismatches.append(
                    f"{layer} at {format_ratio(ratio)}: in place {score:.6f}, rebuild {rebuild_scores[layer][ratio]:.6f}"
                )

    result = CaseResult(
        name=case.name,
        description=case.description,
        eval_images=len(case.images),
        labels_source=case.labels_source,
        layers=case.layers,
        ratios=[format_ratio(ratio) for ratio in case.ratios],
        in_place=in_place,
        rebuild=rebuild,
        max_score_difference=max(differences),
        mismatches=mismatches,
    )
    if case.full_search:
        result.full_search, result.full_search_layers, result.full_search_ratios = full_search(case, evaluator, log)
    return result


def full_search(case: Case, evaluator: TopOneAccuracy, log, num_candidates: int = 10):
    """Time the in-place way on every eligible layer at every candidate of N=`num_candidates`."""
    timing = WayTiming()
    ratios = candidate_ratios(num_candidates)
    callback_before = evaluator.seconds
    started = time.perf_counter()
    candidate_evaluator = CandidateEvaluator(case.model, evaluator, None, "mac", use_cuda=False)
    layers = [record.name for record in candidate_evaluator.analysis.eligible]
    for layer in layers:
        score_in_place(candidate_evaluator, layer, ratios, timing)
        timing.candidates += len(ratios)
    timing.wall_seconds = time.perf_counter() - started
    timing.callback_seconds = evaluator.seconds - callback_before
    log(f"  full search in place: {len(layers)} layers x {len(ratios)} candidates in {timing.wall_seconds:.1f} s")
    return timing, len(layers), len(ratios)


def machine_info() -> dict:
    cpu_model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpus": usable,
        "cpu_model": cpu_model,
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        # NumPy's OpenBLAS computes the SVDs, and its thread count changes their cost a lot.
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def format_results(results: list[CaseResult], machine: dict) -> str:
    lines = [
        f"machine: {machine['cpus']} CPUs ({machine['cpu_model']}), {machine['gpus']} GPUs, "
        f"TensorFlow {machine['tensorflow']}, Keras {machine['keras']}, NumPy {machine['numpy']}, "
        f"OPENBLAS_NUM_THREADS={machine['OPENBLAS_NUM_THREADS'] or 'unset'}",
        "load average at start / end: "
        + " / ".join(", ".join(f"{value:.2f}" for value in machine[key]) for key in ("load_average_at_start", "load_average_at_end")
                     if machine.get(key)),
        "",
        "| model | way | candidates | wall s | callback s | overhead | outside the callback, s |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for result in results:
        rows = [("in place", result.in_place), ("rebuild", result.rebuild)]
        if result.full_search:
            rows.append((f"in place, full search ({result.full_search_layers} layers)", result.full_search))
        for way, timing in rows:
            phases = ", ".join(f"{phase} {seconds:.2f}" for phase, seconds in timing.phases.items())
            lines.append(
                f"| {result.name} | {way} | {timing.candidates} | {timing.wall_seconds:.2f} | "
                f"{timing.callback_seconds:.2f} | {timing.overhead:.1%} | {phases} |"
            )
    lines.append("")
    for result in results:
        lines.append(
            f"{result.name}: rebuild / in place = {result.speedup:.1f}x on {len(result.layers)} layers x "
            f"{len(result.ratios)} candidates ({', '.join(result.ratios)}); {result.eval_images} images, labels: "
            f"{result.labels_source}; max score difference {result.max_score_difference:.2e}"
        )
        for mismatch in result.mismatches:
            lines.append(f"  MISMATCH {mismatch}")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=["fashion", "resnet50"], default=["fashion", "resnet50"],
                        help="models to benchmark (default: both)")
    parser.add_argument("--fashion-candidates", type=int, default=10,
                        help="N for the Fashion CNN: every eligible layer at 1/N .. (N-1)/N (default: 10)")
    parser.add_argument("--fashion-images", type=int, default=None,
                        help="evaluate the Fashion CNN on the first N images only (default: all 2,000)")
    parser.add_argument("--resnet-size", type=int, default=64, help="ResNet50 input height and width in pixels (default: 64)")
    parser.add_argument("--resnet-images", type=int, default=250, help="number of ResNet50 evaluation images (default: 250)")
    parser.add_argument("--resnet-layers", type=int, default=3,
                        help="number of ResNet50 layers that both ways score (default: 3)")
    parser.add_argument("--resnet-ratios", nargs="+", default=["0.3", "0.6", "0.9"],
                        help="ResNet50 candidate ratios that both ways score (default: 0.3 0.6 0.9)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    machine = machine_info()
    cases = []
    if "fashion" in args.models:
        cases.append(fashion_case(args.fashion_candidates, args.fashion_images))
    if "resnet50" in args.models:
        ratios = [Decimal(value) for value in args.resnet_ratios]
        cases.append(resnet50_case(args.resnet_size, args.resnet_images, args.resnet_layers, ratios))

    results = []
    with tempfile.TemporaryDirectory(prefix="search-speed-") as workdir:
        for case in cases:
            results.append(run_case(case, Path(workdir), log))
    machine["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None

    print(format_results(results, machine))
    if args.json:
        payload = {
            "machine": machine,
            "results": [
                {
                    **{key: value for key, value in asdict(result).items() if key not in ("in_place", "rebuild", "full_search")},
                    "speedup": result.speedup,
                    "in_place": result.in_place.to_dict(),
                    "rebuild": result.rebuild.to_dict(),
                    "full_search": result.full_search.to_dict() if result.full_search else None,
                }
                for result in results
            ],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if any(result.mismatches for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
