"""Helpers shared by the job and search CLI tests: tiny models, evaluators, a CLI runner.

Holds no tests itself.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from workbench.cli import main

# The score is the sum of |weights| of the model as evaluated, which differs for
# every (layer, rank) pair, so a stored score tells which task produced it. Each
# call is appended to $SVDW_TEST_CALL_LOG as "pid score", and takes
# $SVDW_TEST_DELAY seconds longer, so tests can stop a job mid-search.
FINGERPRINT_EVALUATOR = '''
import os
import time

import numpy as np


def evaluate(model, iterations):
    value = float(sum(np.abs(np.asarray(weight, dtype=np.float64)).sum() for weight in model.get_weights()))
    log = os.environ.get("SVDW_TEST_CALL_LOG")
    if log:
        with open(log, "a") as file:
            file.write(f"{os.getpid()} {value!r}\\n")
    time.sleep(float(os.environ.get("SVDW_TEST_DELAY", "0")))
    return value
'''

# Scores like FINGERPRINT_EVALUATOR, but fails when layer 'conv2' is the one
# substituted: it raises, or returns NaN when $SVDW_TEST_FAILURE is 'nan'. The
# first call of a process must be the baseline, whose kernels it remembers.
FAILING_EVALUATOR = '''
import os

import numpy as np

ORIGINAL = {}


def evaluate(model, iterations):
    kernel = model.get_layer("conv2").kernel.numpy()
    if not ORIGINAL:
        ORIGINAL["conv2"] = kernel.copy()
    elif not np.array_equal(kernel, ORIGINAL["conv2"]):
        if os.environ.get("SVDW_TEST_FAILURE") == "nan":
            return float("nan")
        raise ValueError("the test evaluator rejects layer conv2")
    return float(sum(np.abs(np.asarray(weight, dtype=np.float64)).sum() for weight in model.get_weights()))
'''


def save_tiny_model(path: Path) -> Path:
    """Save a two-conv Functional model whose candidate ratios 1/4, 2/4, 3/4 give distinct ranks."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    keras.Model(inputs, outputs).save(path)
    return path


def save_npz(path: Path, count: int = 30) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((count, 8, 8, 3), dtype=np.float32), y=rng.integers(0, 3, count))
    return path


def write_evaluator(path: Path, source: str = FINGERPRINT_EVALUATOR) -> Path:
    path.write_text(source)
    return path


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """Run the CLI in this process; return (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        code = main([str(arg) for arg in argv])
    except SystemExit as exited:  # argparse exits with 2 on a usage error
        code = exited.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def make_project(tmp_path: Path, capsys, name: str = "tiny", candidates: int = 4, evaluator: str | None = None) -> Path:
    """Create a store with one project on the tiny model and return the store path."""
    store_path = tmp_path / "store.db"
    model = tmp_path / "tiny.keras"
    if not model.exists():
        save_tiny_model(model)
    if evaluator is None:
        evaluator = f"{write_evaluator(tmp_path / 'fingerprint.py')}:evaluate"
    code, out, err = run_cli(
        capsys, "--store", store_path, "init", name, "--model", model, "--evaluator", evaluator, "--candidates", candidates
    )
    assert code == 0, err
    return store_path


def wait_for(predicate, timeout: float = 120.0, interval: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns a true value, and return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def read_calls(path: Path) -> list[tuple[int, float]]:
    if not path.exists():
        return []
    calls = []
    for line in path.read_text().splitlines():
        pid, score = line.split()
        calls.append((int(pid), float(score)))
    return calls


def job_environment(**extra) -> dict:
    environment = dict(os.environ)
    environment["TF_CPP_MIN_LOG_LEVEL"] = "2"
    environment.update({key: str(value) for key, value in extra.items()})
    return environment


PYTHON = sys.executable
