"""Evaluators given by a spec string, as projects and jobs store them.

A spec has one of three forms:

- `accuracy:FILE.npz`: the built-in top-1 accuracy on the arrays `x` (inputs)
  and `y` (integer labels, or one-hot rows) of an npz file. It evaluates
  `ACCURACY_BATCH_SIZE` images per iteration, so `iterations=5` scores the
  first 500 images and `iterations=None` all of them.
- `path/to/file.py:function`: a function defined in a Python file.
- `package.module:function`: a function of an importable module.

The prefix `accuracy:` always means the built-in, so a module named `accuracy`
cannot be used through the module form. A Python evaluator is called as
`function(model, iterations)` or `function(model, iterations, use_cuda)` and
returns a number, higher being better.

Paths in a spec are made absolute when it is parsed, because the job process
may start in another working directory. Cached scores are stored under an
evaluator key made of the spec, the iterations and the sha256 of the
evaluator's file: the npz file, the `.py` file, or the module's source file.
So editing the evaluator or its data never reuses stale scores. Files that the
evaluator itself imports or reads are not hashed, and a module spec must be
importable in the job process (installed, or on PYTHONPATH).

Checking a spec (`check_evaluator`) never imports TensorFlow in the calling
process: the npz check reads only the array headers, and Python evaluators are
imported in a child process unless `isolated=False`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ACCURACY_PREFIX = "accuracy:"

# Images per evaluation iteration of the built-in accuracy evaluator.
ACCURACY_BATCH_SIZE = 100

# Seconds that the child process checking a Python evaluator may take; importing
# a module that imports TensorFlow takes a few seconds.
CHECK_TIMEOUT_S = 120

SPEC_FORMS = "'package.module:function', 'path/to/file.py:function' or 'accuracy:FILE.npz'"


class EvaluatorSpecError(ValueError):
    """An evaluator spec is malformed, does not resolve, or names an unusable function."""


@dataclass(frozen=True)
class EvaluatorSpec:
    """A parsed evaluator spec.

    Attributes:
        text: The normalised spec, with absolute paths; projects store this.
        form: 'accuracy', 'file' or 'module'.
        target: The npz path, the `.py` path, or the module's dotted name.
        function: The function's name; None for the built-in accuracy.
    """

    text: str
    form: str
    target: str
    function: str | None


@dataclass(frozen=True)
class CheckedEvaluator:
    """A spec that resolved, with what cached scores of it are keyed by.

    Attributes:
        spec: The parsed spec.
        source_file: The file whose content the scores depend on.
        key: The evaluator key for score caching.
        description: One line for people, e.g. 'top-1 accuracy on 2000 images'.
    """

    spec: EvaluatorSpec
    source_file: Path
    key: str
    description: str


def parse_spec(spec: str, base_dir: str | os.PathLike | None = None) -> EvaluatorSpec:
    """Parse a spec and make its paths absolute (relative to `base_dir`, default the working directory).

    Only the form is checked here; `check_evaluator` checks that it resolves.

    Raises:
        EvaluatorSpecError: naming the spec when it has none of the three forms.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise EvaluatorSpecError(f"Expected an evaluator spec of the form {SPEC_FORMS}. Received: {spec!r}")
    spec = spec.strip()
    base = Path(base_dir) if base_dir is not None else Path.cwd()

    if spec.startswith(ACCURACY_PREFIX):
        data = spec[len(ACCURACY_PREFIX) :]
        if not data:
            raise EvaluatorSpecError(
                f"Invalid evaluator spec {spec!r}: 'accuracy:' needs an npz file, e.g. 'accuracy:eval.npz'."
            )
        path = absolute(base, data)
        return EvaluatorSpec(ACCURACY_PREFIX + str(path), "accuracy", str(path), None)

    target, separator, function = spec.rpartition(":")
    if not separator or not target or not function:
        raise EvaluatorSpecError(f"Invalid evaluator spec {spec!r}: expected {SPEC_FORMS}.")
    if not function.isidentifier():
        raise EvaluatorSpecError(
            f"Invalid evaluator spec {spec!r}: {function!r} is not a Python function name. Expected {SPEC_FORMS}."
        )
    if target.endswith(".py") or "/" in target or os.sep in target:
        path = absolute(base, target)
        return EvaluatorSpec(f"{path}:{function}", "file", str(path), function)
    if not all(part.isidentifier() for part in target.split(".")):
        raise EvaluatorSpecError(
            f"Invalid evaluator spec {spec!r}: {target!r} is neither a module name nor a .py file. Expected {SPEC_FORMS}."
        )
    return EvaluatorSpec(spec, "module", target, function)


def absolute(base: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (base / candidate).absolute()


def evaluator_key(spec: EvaluatorSpec, iterations: int | None, source_file: str | os.PathLike) -> str:
    """Return the key cached scores of this evaluator are stored under.

    It changes with the spec, the iterations and the content of `source_file`.
    """
    from store.connection import make_evaluator_key

    return make_evaluator_key(spec.text, iterations, [source_file])


def check_iterations(iterations) -> int | None:
    if iterations is None:
        return None
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise EvaluatorSpecError(
            f"Expected eval iterations to be a positive integer, or None for the whole evaluation set. "
            f"Received: iterations={iterations!r}"
        )
    return iterations


def check_evaluator(
    spec: str | EvaluatorSpec,
    iterations: int | None = None,
    isolated: bool = True,
    base_dir: str | os.PathLike | None = None,
) -> CheckedEvaluator:
    """Check that a spec resolves to a usable evaluator and compute its key.

    Args:
        spec: The spec text, or a parsed spec.
        iterations: Evaluation iterations the project will use; None for all.
        isolated: Import Python evaluators in a child process, so that a module
            importing TensorFlow does not load it here. The accuracy spec is
            checked in this process without TensorFlow either way.
        base_dir: Folder that relative paths in the spec refer to.

    Raises:
        EvaluatorSpecError: naming the spec and what is wrong: a missing file,
            module or function, an npz without `x` or `y`, or a function that
            cannot be called as f(model, iterations[, use_cuda]).
    """
    parsed = spec if isinstance(spec, EvaluatorSpec) else parse_spec(spec, base_dir)
    iterations = check_iterations(iterations)
    if parsed.form == "accuracy":
        count = check_npz(Path(parsed.target), parsed.text)
        used = count if iterations is None else min(count, iterations * ACCURACY_BATCH_SIZE)
        description = f"top-1 accuracy on {used} of {count} images in {Path(parsed.target).name}"
        source_file = Path(parsed.target)
    elif isolated:
        source_file = Path(check_in_child(parsed))
        description = f"{parsed.function}() from {source_file.name}"
    else:
        function = load_function(parsed)
        source_file = function_source(parsed, function)
        description = f"{parsed.function}() from {source_file.name}"
    try:
        key = evaluator_key(parsed, iterations, source_file)
    except OSError as error:
        raise EvaluatorSpecError(f"Cannot read the evaluator file of spec {parsed.text!r}: {error}") from None
    return CheckedEvaluator(parsed, source_file, key, description)


def check_npz(path: Path, spec_text: str) -> int:
    """Check an accuracy npz file without loading TensorFlow; return its number of images.

    Raises:
        EvaluatorSpecError: if the file is missing, not an npz, lacks `x` or `y`,
            or has arrays of different lengths.
    """
    import numpy as np

    if not path.is_file():
        raise EvaluatorSpecError(f"Evaluator spec {spec_text!r}: npz file not found: '{path}'.")
    try:
        with np.load(path, allow_pickle=False, mmap_mode="r") as data:
            names = set(data.files)
            missing = [name for name in ("x", "y") if name not in names]
            if missing:
                raise EvaluatorSpecError(
                    f"Evaluator spec {spec_text!r}: '{path}' has no array {' or '.join(repr(m) for m in missing)} "
                    f"(it has {sorted(names) or 'no arrays'}). The accuracy evaluator needs 'x' (inputs) and "
                    "'y' (integer labels or one-hot rows)."
                )
            x_shape, y_shape = array_shape(data, "x"), array_shape(data, "y")
    except EvaluatorSpecError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise EvaluatorSpecError(f"Evaluator spec {spec_text!r}: cannot read '{path}' as an npz file: {error}") from None
    if not x_shape or not y_shape or x_shape[0] != y_shape[0]:
        raise EvaluatorSpecError(
            f"Evaluator spec {spec_text!r}: 'x' and 'y' in '{path}' must have the same number of rows. "
            f"Received: x.shape={x_shape}, y.shape={y_shape}"
        )
    if x_shape[0] == 0:
        raise EvaluatorSpecError(f"Evaluator spec {spec_text!r}: '{path}' contains no images (x.shape={x_shape}).")
    if len(y_shape) > 2:
        raise EvaluatorSpecError(
            f"Evaluator spec {spec_text!r}: 'y' in '{path}' must be integer labels (N,) or one-hot rows (N, C). "
            f"Received: y.shape={y_shape}"
        )
    return int(x_shape[0])


def array_shape(data, name: str) -> tuple[int, ...]:
    """Read an npz member's shape from its header, without reading the array."""
    import numpy as np

    with data.zip.open(name + ".npy") as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, _ = np.lib.format.read_array_header_2_0(member)
        else:
            shape = data[name].shape  # format 3.0 has no public header reader; read the array
    return tuple(int(dim) for dim in shape)


def import_file(path: Path):
    """Import a Python file as a module named after its content's sha256, without touching sys.path.

    A long-lived process (a Dask worker, a reused loky worker) that meets an
    edited file imports it again instead of reusing the old module.
    """
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    module_name = f"svd_workbench_evaluator_{path.stem if path.stem.isidentifier() else 'file'}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import '{path}'")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def load_function(spec: EvaluatorSpec) -> Callable:
    """Import a Python evaluator and check its signature.

    Raises:
        EvaluatorSpecError: naming the spec when the file, module or function is
            missing, importing raises, or the signature does not fit.
    """
    from workbench.evaluation import check_evaluator_signature

    if spec.form == "file":
        path = Path(spec.target)
        if not path.is_file():
            raise EvaluatorSpecError(f"Evaluator spec {spec.text!r}: file not found: '{path}'.")
        try:
            module = import_file(path)
        except Exception as error:
            raise EvaluatorSpecError(
                f"Evaluator spec {spec.text!r}: importing '{path}' raised {type(error).__name__}: {error}"
            ) from error
    elif spec.form == "module":
        # NOTE: a process that imported the module earlier keeps the old code after
        # the file changes. Job processes start fresh, but Dask workers may live long.
        try:
            module = importlib.import_module(spec.target)
        except ModuleNotFoundError as error:
            raise EvaluatorSpecError(
                f"Evaluator spec {spec.text!r}: module {error.name!r} not found. Install the package or use the "
                "'path/to/file.py:function' form."
            ) from None
        except Exception as error:
            raise EvaluatorSpecError(
                f"Evaluator spec {spec.text!r}: importing module '{spec.target}' raised {type(error).__name__}: {error}"
            ) from error
    else:
        raise EvaluatorSpecError(f"Evaluator spec {spec.text!r} is the built-in accuracy, not a Python function.")

    function = getattr(module, spec.function, None)
    if function is None:
        public = sorted(name for name, value in vars(module).items() if callable(value) and not name.startswith("_"))
        raise EvaluatorSpecError(
            f"Evaluator spec {spec.text!r}: no function {spec.function!r} in {spec.target}. "
            f"Callables defined there: {public[:10] or 'none'}."
        )
    try:
        check_evaluator_signature(function, "evaluator")
    except TypeError as error:
        raise EvaluatorSpecError(f"Evaluator spec {spec.text!r}: {error}") from None
    return function


def function_source(spec: EvaluatorSpec, function: Callable) -> Path:
    """Return the file whose content identifies a Python evaluator: its `.py` file or its module's file."""
    if spec.form == "file":
        return Path(spec.target)
    module = sys.modules.get(spec.target)
    filename = getattr(module, "__file__", None)
    if not filename:
        raise EvaluatorSpecError(
            f"Evaluator spec {spec.text!r}: module '{spec.target}' has no source file to hash, so changes to it "
            "could not be detected. Use a module installed from files, or the 'path/to/file.py:function' form."
        )
    return Path(filename).absolute()


def check_in_child(spec: EvaluatorSpec) -> str:
    """Check a Python evaluator in a child process; return its source file.

    Raises:
        EvaluatorSpecError: with the child's message, or if it fails or times out.
    """
    command = [sys.executable, "-m", "workbench.evaluators", "check", spec.text]
    environment = dict(os.environ)
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            env=environment,
        )
    except subprocess.TimeoutExpired:
        raise EvaluatorSpecError(
            f"Evaluator spec {spec.text!r}: importing it took more than {CHECK_TIMEOUT_S} s; "
            "check that importing the module does no long work."
        ) from None
    lines = completed.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        detail = completed.stderr.strip().splitlines()[-1:] or [f"exit status {completed.returncode}"]
        raise EvaluatorSpecError(f"Evaluator spec {spec.text!r}: checking it failed: {detail[0]}") from None
    if not report.get("ok"):
        raise EvaluatorSpecError(report.get("error") or f"Evaluator spec {spec.text!r} failed its check.")
    return report["source_file"]


class AccuracyEvaluator:
    """Top-1 accuracy of a model on the arrays `x` and `y` of an npz file.

    Labels are integers, or one-hot rows whose argmax is the label. The model's
    output is read as class scores (logits or probabilities) and its argmax is
    the prediction. Each iteration evaluates `ACCURACY_BATCH_SIZE` images in
    file order; iterations=None evaluates all of them.
    """

    def __init__(self, path: str | os.PathLike, batch_size: int = ACCURACY_BATCH_SIZE):
        import numpy as np

        with np.load(path, allow_pickle=False) as data:
            self.x = data["x"]
            labels = data["y"]
        self.labels = labels.argmax(axis=-1) if labels.ndim == 2 else labels.astype(np.int64)
        self.batch_size = batch_size
        self.path = Path(path)

    def __call__(self, model, iterations=None) -> float:
        import numpy as np

        count = len(self.x) if iterations is None else min(len(self.x), int(iterations) * self.batch_size)
        correct = 0
        for start in range(0, count, self.batch_size):
            stop = min(start + self.batch_size, count)
            outputs = np.asarray(model.predict_on_batch(self.x[start:stop]))
            if outputs.ndim != 2:
                raise ValueError(
                    f"The accuracy evaluator expects model outputs of shape (batch, classes). "
                    f"Received: shape {outputs.shape} from model '{model.name}'."
                )
            correct += int(np.sum(outputs.argmax(axis=-1) == self.labels[start:stop]))
        return correct / count


def load_evaluator(spec: str | EvaluatorSpec) -> Callable:
    """Build the evaluator function of a spec; Python evaluators are imported here.

    Raises:
        EvaluatorSpecError: naming the spec, as in `check_evaluator`.
    """
    parsed = spec if isinstance(spec, EvaluatorSpec) else parse_spec(spec)
    if parsed.form == "accuracy":
        check_npz(Path(parsed.target), parsed.text)
        return AccuracyEvaluator(parsed.target)
    return load_function(parsed)


def main(argv: list[str] | None = None) -> int:
    """Check a Python evaluator spec in this process and print one JSON line (used by `check_in_child`)."""
    parser = argparse.ArgumentParser(prog="python -m workbench.evaluators")
    parser.add_argument("action", choices=["check"])
    parser.add_argument("spec")
    args = parser.parse_args(argv)
    try:
        parsed = parse_spec(args.spec)
        function = load_function(parsed)
        source_file = function_source(parsed, function)
    except EvaluatorSpecError as error:
        print(json.dumps({"ok": False, "error": str(error)}))
        return 1
    print(json.dumps({"ok": True, "source_file": str(source_file)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
