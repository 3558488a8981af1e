"""AIMET-compatible entry point: `ModelCompressor.compress_model`.

A script written for AIMET's Keras compression API ports by importing
`ModelCompressor` from here and the parameter classes from `workbench.defs`.
Differences visible to a user: candidates are evaluated by substituting kernels in
place (no model copies), the selection lands closest to the target from below and
warns when the target cannot be reached, fused activations and dilation survive
the split, and the statistics carry absolute MACs and parameter counts.
"""

from __future__ import annotations

import logging
import time
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Callable

from workbench.costs import check_multiplicity, check_ratio, costs_at_ranks, metric_name
from workbench.defs import (
    CompressionScheme,
    CompressionStats,
    CostMetric,
    GreedyCompressionRatioSelectionStats,
    GreedySelectionParameters,
    LayerStats,
    ModuleCompRatioPair,
    SpatialSvdParameters,
)
from workbench.engine.layers import iter_layers
from workbench.engine.rebuild import rebuild_model
from workbench.evaluation import CandidateEvaluator, EvaluationError, call_evaluator
from workbench.records import cost_items
from workbench.scores import (
    AIMET_SCORES_PICKLE,
    AIMET_SELECTION_PICKLE,
    check_layers,
    load_scores,
    save_scores,
    save_selection,
)
from workbench.selection import candidate_ratios, format_ratio, greedy_select

logger = logging.getLogger(__name__)

__all__ = ["ModelCompressor", "CompressionTargetWarning", "EvaluationError"]


class CompressionTargetWarning(UserWarning):
    """The target ratio cannot be met, or the selection needs the user's attention."""


def _layer_path(model, module) -> str:
    """Return the layer path of a layer object or name given by the user."""
    if isinstance(module, str):
        return module
    for path, layer in iter_layers(model):
        if layer is module:
            return path
    raise ValueError(
        f"Layer object {getattr(module, 'name', module)!r} is not part of model '{model.name}'. "
        "Pass a layer of the model being compressed, or its name."
    )


def _check_layers_exist(names, records: dict, what: str) -> None:
    unknown = [name for name in names if name not in records]
    if unknown:
        eligible = sorted(name for name, record in records.items() if record.eligible)
        raise ValueError(
            f"{what} names layers that are not in the model: {unknown}. Compressible layers are: {eligible}"
        )
    ineligible = [f"'{name}' ({records[name].reason})" for name in names if not records[name].eligible]
    if ineligible and what.startswith("Manual"):
        raise ValueError(f"{what} names layers that spatial SVD cannot split: " + "; ".join(ineligible))


def _backup_existing(path: Path) -> None:
    """Move an earlier run's file aside so that nothing is silently overwritten."""
    if path.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = path.with_name(f"{path.stem}.{stamp}{path.suffix}")
        counter = 1
        while backup.exists():
            counter += 1
            backup = path.with_name(f"{path.stem}.{stamp}-{counter}{path.suffix}")
        path.rename(backup)
        logger.info("Moved the earlier %s to %s", path, backup)


class ModelCompressor:
    """Compress a Keras model with spatial SVD (AIMET-compatible API)."""

    @staticmethod
    def compress_model(
        model,
        eval_callback: Callable,
        eval_iterations,
        compress_scheme: CompressionScheme,
        cost_metric: CostMetric,
        parameters: SpatialSvdParameters,
        trainer=None,
        visualization_url: str | None = None,
    ):
        """Compress `model` and return `(compressed_model, CompressionStats)`.

        Args:
            model: A built Functional or Sequential Keras model. It is not modified.
            eval_callback: f(model, iterations) or f(model, iterations, use_cuda)
                returning a score, higher is better.
            eval_iterations: Passed to `eval_callback`; None means the whole set.
            compress_scheme: `CompressionScheme.spatial_svd`.
            cost_metric: `CostMetric.mac` or `CostMetric.memory`.
            parameters: `SpatialSvdParameters` in auto or manual mode.
            trainer: None, an object with `train_model(model, layer)`, or a callable
                `(model, layer)`; called after each layer is split with the model
                so far and the original layer that was split.
            visualization_url: Accepted and ignored; plots live in the workbench.

        Raises:
            NotImplementedError: for schemes other than spatial SVD.
            ValueError / TypeError: for invalid parameters, naming the value.
            EvaluationError: if the evaluator raises or returns a non-finite score.
        """
        if compress_scheme != CompressionScheme.spatial_svd:
            name = getattr(compress_scheme, "name", compress_scheme)
            raise NotImplementedError(
                f"Compression scheme {name!r} is not implemented; svd-workbench supports CompressionScheme.spatial_svd only."
            )
        metric = metric_name(cost_metric)
        if not isinstance(parameters, SpatialSvdParameters):
            raise TypeError(f"Expected parameters to be SpatialSvdParameters. Received: {type(parameters).__name__}")
        check_multiplicity(parameters.multiplicity)
        if visualization_url is not None:
            logger.info("visualization_url=%r is ignored: open the project in svd-workbench for plots.", visualization_url)
        if trainer is not None and not (callable(trainer) or callable(getattr(trainer, "train_model", None))):
            raise TypeError(f"Expected trainer to have train_model(model, layer) or be callable. Received: {trainer!r}")

        started = time.perf_counter()
        evaluator = CandidateEvaluator(model, eval_callback, eval_iterations, metric, parameters.multiplicity)
        records = evaluator.records
        target = None
        scores: dict[str, dict[Decimal, float]] = {}
        note = ""

        if parameters.mode == SpatialSvdParameters.Mode.auto:
            if not isinstance(parameters.params, SpatialSvdParameters.AutoModeParams):
                raise TypeError("Auto mode expects parameters.params to be SpatialSvdParameters.AutoModeParams.")
            greedy: GreedySelectionParameters = parameters.params.greedy_params
            target = check_ratio(greedy.target_comp_ratio, "target_comp_ratio")
            candidates = candidate_ratios(greedy.num_comp_ratio_candidates)
            ignored = [_layer_path(model, module) for module in parameters.params.modules_to_ignore]
            _check_layers_exist(ignored, records, "modules_to_ignore")
            selectable = [name for name, record in records.items() if record.eligible and name not in ignored]
            logger.info("Evaluating the baseline")
            baseline = evaluator.baseline()
            logger.info("Baseline score: %.6f", baseline)
            scores = ModelCompressor._eval_scores(evaluator, selectable, candidates, greedy, baseline)
            result = greedy_select(scores, cost_items(records.values()), target, metric, parameters.multiplicity, greedy.use_monotonic_fit)
            note = result.message
            if not result.reachable:
                warnings.warn(result.message, CompressionTargetWarning, stacklevel=2)
                logger.warning(result.message)
            elif note:
                logger.info(note)
            selection = {name: ratio for name, ratio in result.selection.items() if ratio is not None}
            AIMET_SELECTION_PICKLE.parent.mkdir(parents=True, exist_ok=True)
            save_selection(AIMET_SELECTION_PICKLE, {name: result.selection.get(name) for name in selectable})
        elif parameters.mode == SpatialSvdParameters.Mode.manual:
            if not isinstance(parameters.params, SpatialSvdParameters.ManualModeParams):
                raise TypeError("Manual mode expects parameters.params to be SpatialSvdParameters.ManualModeParams.")
            selection = {}
            for pair in parameters.params.list_of_module_comp_ratio_pairs:
                if not isinstance(pair, ModuleCompRatioPair):
                    raise TypeError(f"Expected ModuleCompRatioPair items. Received: {pair!r}")
                name = _layer_path(model, pair.module)
                _check_layers_exist([name], records, "Manual mode")
                if pair.comp_ratio is None:
                    continue
                try:
                    check_ratio(pair.comp_ratio)
                except ValueError as error:
                    raise ValueError(f"{error} for layer '{name}'") from None
                selection[name] = Decimal(str(pair.comp_ratio))
            baseline = evaluator.baseline()
        else:
            raise ValueError(
                f"Expected parameters.mode to be SpatialSvdParameters.Mode.auto or .manual. Received: {parameters.mode!r}"
            )

        ranks = {name: evaluator.rank(name, ratio) for name, ratio in selection.items()}
        compressed = ModelCompressor._split(model, ranks, evaluator, trainer)
        compressed_score = call_evaluator(eval_callback, compressed, eval_iterations, evaluator.use_cuda)
        stats = ModelCompressor._stats(
            model, compressed, records, selection, ranks, scores, baseline, compressed_score, metric, target, note
        )
        logger.info("Compression finished in %.1f s\n%s", time.perf_counter() - started, stats)
        return compressed, stats

    @staticmethod
    def _eval_scores(evaluator, selectable, candidates, greedy, baseline):
        if greedy.saved_eval_scores_dict:
            scores, _ = load_scores(greedy.saved_eval_scores_dict)
            check_layers(scores, selectable, f"saved eval-score dict '{greedy.saved_eval_scores_dict}'")
            logger.info("Loaded eval scores from %s", greedy.saved_eval_scores_dict)
            return scores

        json_path = AIMET_SCORES_PICKLE.with_suffix(".json")
        # Like AIMET, write the caches under ./data, creating it when missing.
        AIMET_SCORES_PICKLE.parent.mkdir(parents=True, exist_ok=True)
        _backup_existing(AIMET_SCORES_PICKLE)
        _backup_existing(json_path)
        scores: dict[str, dict[Decimal, float]] = {name: {} for name in selectable}
        total = len(selectable) * len(candidates)
        done = 0
        started = time.perf_counter()
        for name in selectable:
            for ratio in candidates:
                rank, score = evaluator.score(name, ratio)
                scores[name][ratio] = score
                done += 1
                # Saved after every score so that an interrupted run keeps its work.
                save_scores(AIMET_SCORES_PICKLE, scores)
                save_scores(json_path, scores, baseline)
                elapsed = time.perf_counter() - started
                logger.info(
                    "[%d/%d] %s ratio %s rank %d: score %.6f (ETA %.0f s)",
                    done, total, name, format_ratio(ratio), rank, score, elapsed / done * (total - done),
                )
        return scores

    @staticmethod
    def _split(model, ranks, evaluator, trainer):
        if not ranks:
            return rebuild_model(model, {})
        if trainer is None:
            return rebuild_model(model, ranks, evaluator.svds)
        train = trainer.train_model if hasattr(trainer, "train_model") else trainer
        originals = dict(iter_layers(model))
        current = model
        for name, rank in ranks.items():
            # The trainer may have changed the kernels, so each split uses the current weights.
            current = rebuild_model(current, {name: rank})
            train(current, originals[name])
        return current

    @staticmethod
    def _stats(model, compressed, records, selection, ranks, scores, baseline, compressed_score, metric, target, note):
        items = cost_items(records.values())
        all_ranks = {name: ranks.get(name) for name in records}
        totals = costs_at_ranks(items, all_ranks)
        layers = []
        for name, record in records.items():
            if not record.eligible:
                continue
            rank = ranks.get(name)
            ratio = selection.get(name)
            geometry = record.geometry
            macs_after = geometry.rank_cost(rank, "mac") if rank else record.macs
            memory_after = geometry.rank_cost(rank, "memory") if rank else record.memory
            bias = record.out_channels if record.use_bias else 0
            layers.append(
                LayerStats(
                    name=name,
                    ratio=ratio,
                    rank=rank,
                    max_rank=geometry.max_rank,
                    macs_before=record.macs,
                    macs_after=macs_after,
                    params_before=record.params,
                    params_after=(memory_after + bias) if rank else record.params,
                    score=scores.get(name, {}).get(ratio) if ratio is not None else None,
                )
            )
        return CompressionStats(
            baseline_model_accuracy=float(baseline),
            compressed_model_accuracy=float(compressed_score),
            mac_compression_ratio=totals["mac"].ratio,
            memory_compression_ratio=totals["memory"].ratio,
            compression_scheme=CompressionScheme.spatial_svd,
            cost_metric=CostMetric[metric],
            target_comp_ratio=None if target is None else float(target),
            macs_before=totals["mac"].original,
            macs_after=totals["mac"].compressed,
            params_before=int(model.count_params()),
            params_after=int(compressed.count_params()),
            memory_before=totals["memory"].original,
            memory_after=totals["memory"].compressed,
            layers=layers,
            selection_note=note,
            compression_ratio_selection_stats=GreedyCompressionRatioSelectionStats(scores) if scores else None,
        )
