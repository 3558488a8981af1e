"""Task function of the search job, run in joblib workers (loky processes or Dask workers).

Each worker process loads the model and the evaluator once and keeps them in
`_EVALUATORS`, keyed by model path and hash, evaluator key, metric and
multiplicity. Every later chunk of the same search reuses them. A chunk is a
short list of (layer, ratio) tasks, scored by kernel substitution. The worker
returns scores to the job's driver and never writes the store.

GPUs: on a machine with several GPUs, the driver passes the visible GPU ids
(`visible_gpus()`) with every chunk. Before a worker process first imports
TensorFlow, `configure_worker_gpu` sets CUDA_VISIBLE_DEVICES to the GPU at
`worker index mod number of GPUs` (`assign_gpu`), so worker 0 uses the first
GPU, worker 1 the second, and so on, and TensorFlow in that process sees only
that GPU. The worker index is the number at the end of loky's process name
('LokyProcess-3' is index 2). TF_FORCE_GPU_ALLOW_GROWTH is set too, so that
workers sharing a GPU do not each reserve all of its memory. A process that has
already imported TensorFlow (the driver itself with --jobs 1, or a Dask worker
thread) keeps the devices it has; Dask clusters place workers on GPUs
themselves, e.g. with dask-cuda.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from decimal import Decimal
from typing import Sequence

_EVALUATORS: dict[tuple, "CachedEvaluator"] = {}
_EVALUATORS_LOCK = threading.Lock()


@dataclass(frozen=True)
class WorkerSpec:
    """The settings a worker needs to score a project's candidates, sent with every chunk.

    Attributes:
        model_path: The Keras model file, at the same path on every worker.
        model_hash: Its sha256. A worker rejects a file with other content.
        evaluator_spec: The project's evaluator spec.
        eval_iterations: Passed to the evaluator; None means the whole set.
        evaluator_key: The project's evaluator key. A worker whose evaluator
            files give another key raises instead of scoring.
        metric: 'mac' or 'memory'.
        multiplicity: Ranks are rounded up to a multiple of this.
        gpus: Visible GPU ids to spread local worker processes over; empty to
            leave device placement to TensorFlow.
    """

    model_path: str
    model_hash: str
    evaluator_spec: str
    eval_iterations: int | None
    evaluator_key: str
    metric: str
    multiplicity: int
    gpus: tuple[str, ...] = ()

    @property
    def cache_key(self) -> tuple:
        return (self.model_path, self.model_hash, self.evaluator_key, self.metric, self.multiplicity)


@dataclass
class CachedEvaluator:
    candidates: object  # workbench.evaluation.CandidateEvaluator
    lock: threading.Lock


def assign_gpu(worker_index: int, gpus: Sequence[str]) -> str | None:
    """Return the GPU id for a worker: `gpus[worker_index mod len(gpus)]`, or None without GPUs.

    Raises:
        ValueError: for a negative worker index.
    """
    if worker_index < 0:
        raise ValueError(f"Expected worker_index >= 0. Received: worker_index={worker_index}")
    if not gpus:
        return None
    return str(gpus[worker_index % len(gpus)])


def parse_visible_devices(value: str) -> tuple[str, ...]:
    """Split a CUDA_VISIBLE_DEVICES value into device ids; '' and '-1' hide every GPU."""
    devices = []
    for item in value.split(","):
        item = item.strip()
        if not item or item == "-1":
            # CUDA ignores the ids after the first invalid one.
            break
        devices.append(item)
    return tuple(devices)


def visible_gpus() -> tuple[str, ...]:
    """List the GPU ids this process may use, without importing TensorFlow.

    CUDA_VISIBLE_DEVICES is used when set; otherwise `nvidia-smi` lists the
    GPUs. No nvidia-smi, or a failing one, means no GPU.
    """
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        return parse_visible_devices(value)
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return ()
    try:
        completed = subprocess.run(
            [executable, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if completed.returncode != 0:
        return ()
    return tuple(line.strip() for line in completed.stdout.splitlines() if line.strip())


def worker_index(process_name: str | None = None) -> int:
    """Return this worker's index from its process name ('LokyProcess-3' gives 2), else 0."""
    name = multiprocessing.current_process().name if process_name is None else process_name
    match = re.search(r"-(\d+)$", name)
    return max(0, int(match.group(1)) - 1) if match else 0


def configure_worker_gpu(gpus: Sequence[str]) -> str | None:
    """Pin this worker process to one GPU before TensorFlow loads; return the GPU id, or None.

    Does nothing in a process that has already imported TensorFlow, or when
    `gpus` is empty.
    """
    if not gpus or "tensorflow" in sys.modules:
        return None
    gpu = assign_gpu(worker_index(), gpus)
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    return gpu


def load_candidate_evaluator(spec: WorkerSpec):
    """Load the model and the evaluator of `spec` and check that neither file changed.

    Raises:
        RuntimeError: if the model file's hash or the evaluator key differs from
            the ones the search started with.
        EvaluatorSpecError: if the evaluator does not resolve.
    """
    from workbench.tfquiet import quiet_tensorflow

    # After configure_worker_gpu, so that TensorFlow sees only this worker's GPU.
    quiet_tensorflow()
    import keras

    from store.connection import hash_file
    from workbench.evaluation import CandidateEvaluator
    from workbench.evaluators import check_evaluator, load_evaluator

    model_hash = hash_file(spec.model_path)
    if model_hash != spec.model_hash:
        raise RuntimeError(
            f"The model file '{spec.model_path}' changed after the search started (sha256 {model_hash[:12]}, "
            f"expected {spec.model_hash[:12]}). Run the search again to analyse the new model."
        )
    checked = check_evaluator(spec.evaluator_spec, spec.eval_iterations, isolated=False)
    if checked.key != spec.evaluator_key:
        raise RuntimeError(
            f"The evaluator {spec.evaluator_spec!r} changed after the search started. "
            "Run the search again; scores of the changed evaluator are computed anew."
        )
    model = keras.models.load_model(spec.model_path)
    function = load_evaluator(checked.spec)
    return CandidateEvaluator(model, function, spec.eval_iterations, spec.metric, spec.multiplicity)


def cached_evaluator(spec: WorkerSpec) -> CachedEvaluator:
    """Return this process's evaluator for `spec`, loading the model on first use."""
    with _EVALUATORS_LOCK:
        entry = _EVALUATORS.get(spec.cache_key)
        if entry is None:
            entry = CachedEvaluator(load_candidate_evaluator(spec), threading.Lock())
            _EVALUATORS[spec.cache_key] = entry
        return entry


def evaluate_chunk(spec: WorkerSpec, tasks: Sequence[tuple[str, str]], baseline: bool = False) -> dict:
    """Score the baseline (if asked) and each (layer, ratio text) task, in order.

    An evaluator error stops the chunk: the result then contains the scores
    computed before it and the error, so none of them is lost.

    Returns:
        A dict of plain values, so that any joblib backend can send it back:
        `baseline` ((score, seconds) or None), `scores` (list of (layer, ratio
        text, rank, score, seconds)), `error` (None, or a dict with `message`,
        `layer`, `ratio` and `details`), `pid` and `gpu`.
    """
    gpu = configure_worker_gpu(spec.gpus)
    from workbench.evaluation import EvaluationError

    result = {"baseline": None, "scores": [], "error": None, "pid": os.getpid(), "gpu": gpu}
    entry = cached_evaluator(spec)
    # Threads of one Dask worker share the process cache; substitution changes the
    # model in place, so one thread at a time may use it.
    with entry.lock:
        candidates = entry.candidates
        current: tuple[str | None, str | None] = (None, None)  # None, None: the baseline
        try:
            if baseline:
                started = time.perf_counter()
                score = candidates.baseline()
                result["baseline"] = (score, time.perf_counter() - started)
            for layer, ratio in tasks:
                current = (layer, ratio)
                started = time.perf_counter()
                rank, score = candidates.score(layer, Decimal(ratio))
                result["scores"].append((layer, ratio, rank, score, time.perf_counter() - started))
        except EvaluationError as error:
            result["error"] = {
                "message": str(error),
                "layer": error.layer,
                "ratio": None if error.ratio is None else str(error.ratio),
                "details": error.details,
            }
        except Exception as error:
            result["error"] = {
                "message": f"Scoring failed with {type(error).__name__}: {error}",
                "layer": current[0],
                "ratio": current[1],
                "details": traceback.format_exc(),
            }
    return result
