"""Time the analysis and rebuild of ResNet50 against one forward pass.

ResNet50 is built with weights=None at 224x224 and the top included. Times:
- forward: one call of the model on a batch of 8, after a first untimed call;
- analyze_model: the layer database of the whole model;
- split_layers_for_ratios: ranks for ratio 0.5 (MACs) for every eligible layer;
- rebuild_model: the split model at those ranks, SVDs included, as export runs it;
- and the two parts of a rebuild: the SVDs of all split kernels alone, and
  rebuild_model given those SVDs (config edit, deserialization, weight copy).

Each time is the median of --repeats runs, reported in seconds and as a ratio to
the forward pass.

Usage:
    python benchmarks/engine_speed.py [--repeats 3] [--batch 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from workbench.engine import LayerSVD, analyze_model, find_layer, rebuild_model, split_layers_for_ratios  # noqa: E402


def median_seconds(function, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def cpu_model() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_lines() -> list[str]:
    cores = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    return [
        f"nproc: {cores}",
        f"CPU model: {cpu_model()}",
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}, NumPy {np.__version__}",
        f"OPENBLAS_NUM_THREADS: {os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each step (median reported)")
    parser.add_argument("--batch", type=int, default=8, help="batch size of the forward pass")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    model = keras.applications.ResNet50(weights=None)
    batch = np.random.default_rng(0).uniform(-1, 1, size=(args.batch, 224, 224, 3)).astype("float32")

    model(batch)  # first call: traces and allocates, not timed
    forward = median_seconds(lambda: model(batch), args.repeats)

    analysis = analyze_model(model)
    ratios = {record.name: 0.5 for record in analysis.eligible}
    ranks = split_layers_for_ratios(model, ratios, "mac")
    times = {
        "analyze_model": median_seconds(lambda: analyze_model(model), args.repeats),
        "split_layers_for_ratios": median_seconds(lambda: split_layers_for_ratios(model, ratios, "mac"), args.repeats),
        "rebuild_model (SVDs included)": median_seconds(lambda: rebuild_model(model, ranks), args.repeats),
    }
    kernels = {path: find_layer(model, path).kernel.numpy() for path in ranks}
    times["part of the rebuild: SVDs of the split kernels"] = median_seconds(
        lambda: [LayerSVD(kernel) for kernel in kernels.values()], args.repeats
    )
    svds = {path: LayerSVD(kernel) for path, kernel in kernels.items()}
    times["the rest: rebuild_model given the SVDs"] = median_seconds(
        lambda: rebuild_model(model, ranks, svds), args.repeats
    )

    rebuilt = rebuild_model(model, ranks, svds)
    rebuilt_macs = analyze_model(rebuilt).total_macs
    load_after = os.getloadavg()[0]

    for line in machine_lines():
        print(line)
    print(f"load average (1 min): {load_before:.1f} before, {load_after:.1f} after")
    print(
        f"ResNet50 224x224: {len(analysis.eligible)} eligible layers split at ratio 0.5 (MACs); "
        f"model MACs {analysis.total_macs:,} -> {rebuilt_macs:,} ({rebuilt_macs / analysis.total_macs:.3f})"
    )
    print(f"median of {args.repeats} runs each")
    print()
    print("| step | seconds | ratio to forward pass |")
    print("| --- | --- | --- |")
    print(f"| forward pass, batch of {args.batch} (warm) | {forward:.3f} | 1 |")
    for step, seconds in times.items():
        print(f"| {step} | {seconds:.3f} | {seconds / forward:.3g} |")


if __name__ == "__main__":
    main()
