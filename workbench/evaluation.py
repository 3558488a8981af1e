"""Evaluating candidates: call the user's evaluator on a model with one kernel substituted.

A `CandidateEvaluator` keeps one loaded model, computes each layer's SVD once, and
scores a (layer, ratio) candidate by substituting the rank-r kernel in place, so
no candidate copies, rebuilds or saves the model. Used by `compress_model` in
process and by the search job's worker processes. Importing this module does not
import TensorFlow, so checking an evaluator's signature stays cheap.
"""

from __future__ import annotations

import inspect
import math
import time
import traceback
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable

from workbench.costs import metric_name
from workbench.selection import format_ratio


class EvaluationError(RuntimeError):
    """The evaluator raised or returned a value that is not a finite number.

    Attributes:
        layer: Layer being evaluated, or None for the baseline.
        ratio: Candidate ratio, or None for the baseline.
        details: Traceback text of the evaluator's exception, if any.
    """

    def __init__(self, message: str, layer: str | None = None, ratio: Decimal | None = None, details: str = ""):
        super().__init__(message)
        self.layer = layer
        self.ratio = ratio
        self.details = details


def accepts_use_cuda(function: Callable) -> bool:
    """True if the evaluator takes a third positional argument (AIMET's use_cuda)."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return False
    positional = 0
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            return True
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 3


def check_evaluator_signature(function: Callable, name: str = "eval_callback") -> None:
    """Raise TypeError unless `function` can be called as f(model, iterations[, use_cuda])."""
    if not callable(function):
        raise TypeError(f"Expected {name} to be callable as f(model, iterations). Received: {function!r}")
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(None, None)
    except TypeError:
        try:
            signature.bind(None, None, False)
        except TypeError:
            raise TypeError(
                f"{name} {getattr(function, '__qualname__', function)!r} has signature {signature}; expected "
                "f(model, iterations) or f(model, iterations, use_cuda)."
            ) from None


def gpu_available() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def describe(layer: str | None, ratio) -> str:
    if layer is None:
        return "the baseline (uncompressed model)"
    return f"layer '{layer}' at ratio {format_ratio(ratio)}"


def call_evaluator(function: Callable, model, iterations, use_cuda: bool, layer=None, ratio=None) -> float:
    """Call the evaluator and return its score as a finite float.

    Raises:
        EvaluationError: if the evaluator raises or returns NaN, inf or a non-number.
    """
    try:
        if accepts_use_cuda(function):
            result = function(model, iterations, use_cuda)
        else:
            result = function(model, iterations)
    except Exception as error:
        raise EvaluationError(
            f"The evaluator raised {type(error).__name__}: {error} while scoring {describe(layer, ratio)}. "
            "Fix the evaluator and run again; scores computed so far are kept.",
            layer,
            ratio,
            traceback.format_exc(),
        ) from error
    try:
        score = float(result)
    except (TypeError, ValueError):
        raise EvaluationError(
            f"The evaluator returned {result!r} for {describe(layer, ratio)}; expected a number (higher is better).",
            layer,
            ratio,
        ) from None
    if not math.isfinite(score):
        raise EvaluationError(
            f"The evaluator returned {score} for {describe(layer, ratio)}. A score must be a finite number; "
            "check the evaluator for a division by zero or an empty dataset. Scores computed so far are kept.",
            layer,
            ratio,
        )
    return score


@dataclass
class Timing:
    evaluations: int = 0
    evaluator_seconds: float = 0.0
    total_seconds: float = 0.0


class CandidateEvaluator:
    """Score candidates of one model by in-place kernel substitution.

    Args:
        model: A built Functional or Sequential model. Its kernels are changed only
            inside `score()` and always restored.
        evaluator: f(model, iterations) or f(model, iterations, use_cuda) -> score.
        iterations: Passed to the evaluator; None means the whole evaluation set.
        metric: 'mac' or 'memory': which cost a ratio refers to.
        multiplicity: Ranks are rounded up to a multiple of this.
    """

    def __init__(self, model, evaluator: Callable, iterations=None, metric="mac", multiplicity: int = 1, use_cuda=None):
        check_evaluator_signature(evaluator)
        self.model = model
        self.evaluator = evaluator
        self.iterations = iterations
        self.metric = metric_name(metric)
        self.multiplicity = multiplicity
        from workbench.engine.layers import analyze_model, iter_layers

        self.analysis = analyze_model(model)
        self.records = {record.name: record for record in self.analysis.layers}
        self.layers = dict(iter_layers(model))
        self.use_cuda = gpu_available() if use_cuda is None else use_cuda
        self.timing = Timing()
        self._svds: dict = {}

    def svd(self, layer: str):
        """Return the layer's `LayerSVD`, computed on first use."""
        from workbench.engine.svd import LayerSVD

        if layer not in self._svds:
            self._svds[layer] = LayerSVD(self.layers[layer].kernel.numpy())
        return self._svds[layer]

    @property
    def svds(self) -> dict:
        return dict(self._svds)

    def rank(self, layer: str, ratio) -> int:
        record = self.records[layer]
        if not record.eligible:
            raise ValueError(f"Layer '{layer}' ({record.class_name}) cannot be split: {record.reason}.")
        return record.geometry.rank_for_ratio(ratio, self.metric, self.multiplicity)

    def _call(self, layer, ratio) -> float:
        started = time.perf_counter()
        try:
            return call_evaluator(self.evaluator, self.model, self.iterations, self.use_cuda, layer, ratio)
        finally:
            self.timing.evaluations += 1
            self.timing.evaluator_seconds += time.perf_counter() - started

    def baseline(self) -> float:
        started = time.perf_counter()
        try:
            return self._call(None, None)
        finally:
            self.timing.total_seconds += time.perf_counter() - started

    def score(self, layer: str, ratio) -> tuple[int, float]:
        """Return (rank, score) of the model with only `layer` compressed to `ratio`."""
        started = time.perf_counter()
        try:
            rank = self.rank(layer, ratio)
            kernel = self.svd(layer).kernel(rank)
            from workbench.engine.svd import substituted_kernel

            with substituted_kernel(self.layers[layer], kernel):
                return rank, self._call(layer, ratio)
        finally:
            self.timing.total_seconds += time.perf_counter() - started
