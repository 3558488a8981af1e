"""Export: write a project's model, compressed with its current selection, as a .keras file.

`export_project` rebuilds the project's model with each selected layer split at
the rank of its ratio and saves it to a temporary file in the output folder. It
loads that file back with plain `keras.models.load_model` and checks that its
outputs match the in-memory rebuilt model on one batch. Only then does it move
the file into place with `os.replace`. So the output path either keeps its old content or
holds a complete, verified model; a failed export leaves no partial file. An
existing output file is replaced only with `force=True`.

The exported file is then scored with the project's evaluator (at the
project's eval iterations, like the baseline), and the export is recorded in
the store with its sha256, per-layer ratios and ranks, scores, and MACs and
parameters before and after.

`run_export_job` runs the same work as the job kind 'export', with progress,
heartbeat and cancellation through the store. Importing this module does not
import TensorFlow; `export_project` loads it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Callable

from workbench.report import format_score, format_table, human_count
from workbench.selection import format_ratio

log = logging.getLogger(__name__)

KERAS_SUFFIX = ".keras"

# Inputs of the check that the written file computes what the in-memory model does.
CHECK_BATCH_SIZE = 16
# Largest output difference accepted between the reloaded file and the in-memory
# model, relative to the largest output magnitude (at least 1). Both run the
# same weights through the same graph, so any real difference is far larger.
CHECK_TOLERANCE = 1e-5

# The export's steps, reported as job progress.
STEPS = (
    "load the model and the evaluator",
    "rebuild the model with the selection",
    "write the .keras file",
    "reload the file and check its outputs",
    "evaluate the baseline and the exported model",
    "record the export in the store",
)

DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}

ProgressCallback = Callable[[int, int, str], None]


class ExportError(Exception):
    """An export that cannot go on; the message gives the reason and the next step."""


@dataclass(frozen=True)
class ExportedLayer:
    """One eligible layer of an export.

    Attributes:
        ratio: The selected ratio; None when the layer was kept as it is.
        rank: The rank of the split pair; None when the layer was kept.
        max_rank: Rank of the layer's reshaped kernel matrix.
        score: Cached score of the model with only this layer compressed to
            `ratio`; interpolated between candidates when `score_exact` is False.
    """

    name: str
    ratio: Decimal | None
    rank: int | None
    max_rank: int | None
    score: float | None
    score_exact: bool


@dataclass
class ExportResult:
    """The file that `export_project` wrote and the numbers it measured.

    MACs and parameters are counted on the models themselves: `macs_before` and
    `macs_after` by analysing the original and the reloaded file,
    `params_before` and `params_after` with `count_params()`.
    `predicted_macs_after` is the store's cost-model figure for the selection;
    it equals `macs_after` unless the cost model and the rebuild disagree.
    """

    project: str
    path: Path
    content_hash: str
    layers: list[ExportedLayer]
    baseline_score: float
    compressed_score: float
    macs_before: int
    macs_after: int
    predicted_macs_after: int
    params_before: int
    params_after: int
    metric: str
    seconds: float
    max_output_difference: float
    replaced_existing: bool
    export_id: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def mac_ratio(self) -> float:
        return self.macs_after / self.macs_before if self.macs_before else 1.0


def export_project(
    store,
    project_name: str,
    output: str | os.PathLike,
    *,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> ExportResult:
    """Rebuild a project's model with its current selection and write it to `output`.

    Args:
        store: An open, writable `store.Store`.
        project_name: The project to export.
        output: The .keras file to write; a relative path is taken from the
            working directory.
        force: Replace `output` if it exists.
        progress: Called as `progress(done, total, step)` before each step and
            once at the end with done == total; it may raise to stop the export.

    Returns:
        An `ExportResult`; the export is recorded in the store.

    Raises:
        ExportError: for an existing output without `force`, or an output
            that cannot be written, with the reason (permission, missing
            folder, disk full, file size limit). Also for a project with no
            selection, a model file that changed since the project was
            analysed, and a written file whose outputs differ from the
            in-memory model.
        workbench.evaluation.EvaluationError: if the evaluator fails.
        store.ProjectNotFound: if there is no such project.
    """
    started = time.perf_counter()
    report = progress or (lambda done, total, step: None)
    project = store.get_project(project_name)
    target = check_output_path(output, force, project.model_path)
    layer_rows = {row.name: row for row in store.layer_table(project.name) if row.eligible}
    selection = check_selection(project.name, layer_rows)
    check_model_file(project)

    with reserved_temporary(target) as temporary:
        report(0, len(STEPS), STEPS[0])
        from workbench.engine import analyze_model, rebuild_model, split_layers_for_ratios

        model = load_model(project.model_path)
        evaluator = load_project_evaluator(project.evaluator_spec)

        report(1, len(STEPS), STEPS[1])
        try:
            ranks = split_layers_for_ratios(model, selection, project.metric, project.multiplicity)
            rebuilt = rebuild_model(model, ranks)
        except (KeyError, ValueError) as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
            raise ExportError(
                f"The selection of project {project.name!r} does not fit its model file: {message} "
                "Analyse the model again and redo the selection."
            ) from None

        report(2, len(STEPS), STEPS[2])
        save_model(rebuilt, temporary)
        content_hash = sha256_file(temporary)

        report(3, len(STEPS), STEPS[3])
        reloaded, difference = reload_and_compare(rebuilt, temporary, project.evaluator_spec)

        report(4, len(STEPS), STEPS[4])
        baseline, compressed_score = evaluate_both(store, project, evaluator, model, reloaded)
        macs_before = analyze_model(model).total_macs
        macs_after = analyze_model(reloaded).total_macs
        params_before = int(model.count_params())
        params_after = int(reloaded.count_params())
        replaced = move_into_place(temporary, target, force)

    report(5, len(STEPS), STEPS[5])
    predicted = store.summary(project.name, selection)
    notes = []
    if predicted.macs_after != macs_after:
        notes.append(
            f"The cost model predicted {predicted.macs_after:,} MACs after compression; "
            f"the written model has {macs_after:,}."
        )
    record = store.record_export(
        project.name,
        target,
        ratios={name: row.ratio for name, row in layer_rows.items()},
        ranks={name: ranks.get(name) for name in layer_rows},
        baseline_score=baseline,
        compressed_score=compressed_score,
        macs_before=macs_before,
        macs_after=macs_after,
        params_before=params_before,
        params_after=params_after,
        content_hash=content_hash,
    )
    report(len(STEPS), len(STEPS), "done")
    result = ExportResult(
        project=project.name,
        path=target,
        content_hash=content_hash,
        layers=[exported_layer(row, ranks.get(name)) for name, row in layer_rows.items()],
        baseline_score=baseline,
        compressed_score=compressed_score,
        macs_before=macs_before,
        macs_after=macs_after,
        predicted_macs_after=predicted.macs_after,
        params_before=params_before,
        params_after=params_after,
        metric=project.metric,
        seconds=time.perf_counter() - started,
        max_output_difference=difference,
        replaced_existing=replaced,
        export_id=record.id,
        notes=notes,
    )
    log.info("exported project %r to %s in %.1f s", project.name, target, result.seconds)
    return result


def exported_layer(row, rank: int | None) -> ExportedLayer:
    """Return the `ExportedLayer` of one row of `Store.layer_table`."""
    return ExportedLayer(
        name=row.name,
        ratio=row.ratio,
        rank=rank,
        max_rank=row.max_rank,
        score=row.score if row.ratio is not None else None,
        score_exact=row.score_exact,
    )


def load_project_evaluator(spec: str):
    from workbench.evaluators import EvaluatorSpecError, load_evaluator

    try:
        return load_evaluator(spec)
    except EvaluatorSpecError as error:
        raise ExportError(f"{error} Fix the evaluator, then export again.") from None


def reload_and_compare(rebuilt, path: Path, evaluator_spec: str):
    """Load the written file with plain Keras and compare its outputs with `rebuilt`.

    Returns:
        (reloaded model, largest output difference).

    Raises:
        ExportError: if the outputs differ; see `max_output_difference`.
    """
    import keras

    reloaded = keras.models.load_model(path)
    batch = check_batch(rebuilt, evaluator_spec)
    return reloaded, max_output_difference(rebuilt, reloaded, batch)


def evaluate_both(store, project, evaluator, original, exported) -> tuple[float, float]:
    """Return (baseline score, exported model's score) at the project's eval iterations.

    The baseline comes from the store's cache; when it is missing, the
    original model is evaluated and the score is cached.
    """
    from workbench.evaluation import call_evaluator, gpu_available

    use_cuda = gpu_available()
    baseline = store.baseline(project.name)
    if baseline is None:
        started = time.perf_counter()
        baseline = call_evaluator(evaluator, original, project.eval_iterations, use_cuda)
        store.put_baseline(project.score_key, baseline, seconds=time.perf_counter() - started)
    compressed_score = call_evaluator(evaluator, exported, project.eval_iterations, use_cuda)
    return baseline, compressed_score


def check_output_path(output: str | os.PathLike, force: bool, model_path: str | None = None) -> Path:
    """Return the absolute output path, or raise ExportError if it cannot be the output.

    Raises:
        ExportError: for a name not ending in .keras, a folder, the project's
            own model file, or an existing file without `force`.
    """
    path = Path(output).expanduser().absolute()
    if path.suffix != KERAS_SUFFIX:
        raise ExportError(f"Expected an output file name ending in {KERAS_SUFFIX}. Received: '{output}'.")
    if path.is_dir():
        raise ExportError(f"The output '{path}' is a folder; give a file name such as '{path / 'model.keras'}'.")
    if model_path is not None and path.exists() and os.path.samefile(path, model_path):
        raise ExportError(
            f"The output '{path}' is the project's own model file; write the compressed model to another path."
        )
    if path.exists() and not force:
        raise ExportError(f"The output file '{path}' already exists. Pass --force to replace it, or choose another path.")
    return path


def check_selection(project_name: str, layer_rows: dict) -> dict[str, Decimal | None]:
    """Return the selection of the eligible layers, or raise ExportError if it compresses nothing."""
    if not layer_rows:
        raise ExportError(
            f"Project {project_name!r} has no compressible layers recorded yet, so there is nothing to export. "
            "Wait for its analysis to finish (svd-workbench status NAME) and check that the model has Conv2D "
            "layers with kernels larger than 1x1."
        )
    selection = {name: row.ratio for name, row in layer_rows.items()}
    if all(row.source is None for row in layer_rows.values()):
        raise ExportError(
            f"Project {project_name!r} has no selection yet. Run 'svd-workbench select {project_name}' to choose "
            f"ratios from the search scores, or 'svd-workbench set {project_name} LAYER RATIO' to set one by hand."
        )
    if all(ratio is None for ratio in selection.values()):
        raise ExportError(
            f"The selection of project {project_name!r} leaves every layer uncompressed, so the export would "
            f"equal the original model. Run 'svd-workbench select {project_name} --target R' with a lower "
            f"target, or 'svd-workbench set {project_name} LAYER RATIO'."
        )
    return selection


def check_model_file(project) -> None:
    """Raise ExportError if the model file is missing or differs from the one analysed."""
    path = Path(project.model_path)
    if not path.is_file():
        raise ExportError(f"The model file of project {project.name!r} is missing: '{path}'.")
    if sha256_file(path) != project.model_hash:
        raise ExportError(
            f"The model file '{path}' changed since project {project.name!r} was analysed (its sha256 differs), "
            "so the layers, scores and selection may not fit it. Analyse the model again before exporting."
        )


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_error(error: OSError, path: Path) -> ExportError:
    """Turn an OSError raised while writing `path` into an ExportError with the cause and the fix."""
    reason = error.strerror or str(error)
    if error.errno == errno.EFBIG:
        return ExportError(
            f"Cannot write '{path}': file too large ({reason}); a file size limit (ulimit -f) or the file "
            "system's maximum file size stopped the write. No partial file was left. Raise the limit or "
            "write to another disk."
        )
    if error.errno in DISK_FULL_ERRNOS:
        return ExportError(
            f"Cannot write '{path}': the disk is full ({reason}). No partial file was left. "
            "Free some space or write to another disk."
        )
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ExportError(
            f"Cannot write to '{path.parent}': {reason}. Choose a folder you can write to with --output."
        )
    if error.errno in (errno.ENOENT, errno.ENOTDIR):
        return ExportError(
            f"Cannot write '{path}': the folder '{path.parent}' does not exist or is not a folder. "
            "Create it or choose another path."
        )
    return ExportError(f"Cannot write '{path}': {reason}.")


@contextlib.contextmanager
def reserved_temporary(target: Path):
    """Create an empty temporary file beside `target` and yield its path; remove it on exit.

    Creating it first checks that the folder is writable before any slow work.
    The name ends in .keras because Keras saves and loads only such names; it
    starts with a dot so that file managers hide it. The file gets the mode
    that the umask gives a new file, as if Keras had written `target` itself.
    """
    for _ in range(100):
        temporary = target.with_name(f".{target.stem}.{secrets.token_hex(4)}.partial{KERAS_SUFFIX}")
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as error:
            raise write_error(error, target) from None
        os.close(descriptor)
        break
    else:
        raise ExportError(f"Cannot create a temporary file beside '{target}': every name tried exists.")
    try:
        yield temporary
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def load_model(path: str | os.PathLike):
    from workbench.jobs.analyse import ModelFileError, load_model_file

    try:
        return load_model_file(path)
    except ModelFileError as error:
        raise ExportError(str(error)) from None


def save_model(model, path: Path) -> None:
    """Save `model` to `path` (an existing temporary file) and flush it to the disk."""
    try:
        model.save(path)
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as error:
        raise write_error(error, path) from None


def move_into_place(temporary: Path, target: Path, force: bool) -> bool:
    """Move the verified temporary file to `target`; return True if a file was replaced.

    Without `force`, a hard link claims `target` only if nothing is there, so a
    file created by someone else during the export is never replaced. On file
    systems without hard links, the existence check done before is the guard.
    """
    existed = target.exists()
    if existed and not force:
        raise ExportError(f"The output file '{target}' already exists. Pass --force to replace it, or choose another path.")
    try:
        if force:
            if existed:
                shutil.copymode(target, temporary)
            os.replace(temporary, target)
        else:
            try:
                os.link(temporary, target)
            except FileExistsError:
                raise ExportError(
                    f"The output file '{target}' was created by another program during the export. "
                    "Pass --force to replace it, or choose another path."
                ) from None
            except OSError as error:
                if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                    raise
                os.replace(temporary, target)
            else:
                temporary.unlink()
    except OSError as error:
        raise write_error(error, target) from None
    sync_folder(target.parent)
    return existed


def sync_folder(folder: Path) -> None:
    """Flush a folder entry to the disk so the rename survives a power cut; best effort."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def check_batch(model, evaluator_spec: str):
    """Return the inputs of the output check: evaluation images, or random inputs.

    An `accuracy:FILE.npz` evaluator gives the first images of its file. Other
    evaluators give standard normal values in the shape of each model input,
    with unknown dimensions taken as 1.
    """
    import numpy as np

    from workbench.evaluators import ACCURACY_PREFIX

    if evaluator_spec.startswith(ACCURACY_PREFIX):
        with np.load(evaluator_spec[len(ACCURACY_PREFIX) :], allow_pickle=False) as data:
            return data["x"][:CHECK_BATCH_SIZE]
    generator = np.random.default_rng(0)
    arrays = []
    for tensor in model.inputs:
        shape = (CHECK_BATCH_SIZE,) + tuple(1 if dim is None else int(dim) for dim in tensor.shape[1:])
        arrays.append(generator.standard_normal(shape).astype(tensor.dtype))
    return arrays[0] if len(arrays) == 1 else arrays


def max_output_difference(expected_model, written_model, batch) -> float:
    """Return the largest output difference of the two models on `batch`.

    Raises:
        ExportError: if it exceeds CHECK_TOLERANCE relative to the output size.
    """
    import keras
    import numpy as np

    expected = [np.asarray(value) for value in keras.tree.flatten(expected_model.predict_on_batch(batch))]
    written = [np.asarray(value) for value in keras.tree.flatten(written_model.predict_on_batch(batch))]
    if [value.shape for value in expected] != [value.shape for value in written]:
        raise ExportError(
            f"The written model's output shapes {[value.shape for value in written]} differ from the "
            f"rebuilt model's {[value.shape for value in expected]}; the file was not kept."
        )
    difference = max((float(np.max(np.abs(a - b))) if a.size else 0.0) for a, b in zip(expected, written))
    scale = max([1.0] + [float(np.max(np.abs(a))) for a in expected if a.size])
    if not difference <= CHECK_TOLERANCE * scale:
        raise ExportError(
            f"The written model computes different outputs from the rebuilt model (max difference {difference:.3g} "
            f"on {CHECK_BATCH_SIZE} inputs), so the file was not kept. Please report this with the model."
        )
    return difference


def format_export(
    result: ExportResult,
    score_label: str = "score",
    timings: list[tuple[str, float]] | None = None,
) -> str:
    """Render an `ExportResult` as a per-layer table and a summary, for the terminal.

    Args:
        score_label: Name of the evaluator's score in the summary, e.g. 'accuracy'.
        timings: `(label, seconds)` lines to print at the end; by default the
            export's own time.
    """
    rows = []
    interpolated = False
    for layer in result.layers:
        score = format_score(layer.score)
        if layer.score is not None and not layer.score_exact:
            score += "*"
            interpolated = True
        rank = "-" if layer.rank is None else f"{layer.rank}/{layer.max_rank}"
        rows.append([layer.name, format_ratio(layer.ratio), rank, score])
    lines = [
        format_table(["layer", "ratio", "rank", "score"], rows, "lrrr"),
        "score: the evaluator's result with only that layer compressed, from the search."
        + (" *: interpolated between candidate ratios." if interpolated else ""),
        "",
        format_table(
            ["", "before", "after"],
            [
                [score_label, format_score(result.baseline_score), format_score(result.compressed_score)],
                ["MACs", f"{result.macs_before:,}", f"{result.macs_after:,}"],
                ["parameters", f"{result.params_before:,}", f"{result.params_after:,}"],
            ],
            "lrr",
        ),
        "",
        f"MACs after / before: {result.mac_ratio:.4f} ({human_count(result.macs_before)} -> "
        f"{human_count(result.macs_after)})",
        f"written: {result.path}" + (" (replaced the existing file)" if result.replaced_existing else ""),
        f"sha256: {result.content_hash}",
    ]
    for label, seconds in timings or [("time taken", result.seconds)]:
        lines.append(f"{label}: {seconds:.1f} s")
    lines.extend(f"note: {note}" for note in result.notes)
    return "\n".join(lines)


class Heartbeat:
    """Refresh a job's heartbeat from a thread while one long step runs.

    The export's steps can each take longer than the heartbeat interval (a
    large model's evaluation), and a job without heartbeats looks stale.
    """

    def __init__(self, store, job_id: int, interval: float):
        self.store = store
        self.job_id = job_id
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"export-job-{job_id}-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.store.update_job_progress(self.job_id)
            except Exception as error:  # a failed heartbeat must not end the export
                log.warning("heartbeat of job %d failed: %s", self.job_id, error)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def run_export_job(store, job, options: dict) -> ExportResult:
    """Run an export as the job kind 'export'.

    Reports each step as job progress (done/total steps), keeps the heartbeat
    fresh, and stops between steps when the job's cancellation is requested.

    Args:
        store: The open store of the job.
        job: The running `store.Job`.
        options: `output`, the .keras path, and `force`, True to replace an
            existing file. Make `output` absolute: the job process resolves a
            relative path against its own working folder.

    Raises:
        workbench.jobs.errors.JobFailed: with the export's message for every
            expected failure, so the job's error shows no traceback.
        workbench.jobs.errors.JobCancelled: after a cancellation request.
    """
    from store import HEARTBEAT_INTERVAL_SECONDS

    from workbench.jobs.errors import JobCancelled, JobFailed

    output = options.get("output")
    if not output:
        raise JobFailed("The export job has no 'output' option; start it with the path of the .keras file to write.")
    force = bool(options.get("force", False))

    def progress(done: int, total: int, step: str) -> None:
        if done < total and store.cancel_requested(job.id):
            raise JobCancelled()
        store.update_job_progress(job.id, done=done, total=total)
        log.info("export step %d/%d: %s", min(done + 1, total), total, step)

    try:
        with Heartbeat(store, job.id, HEARTBEAT_INTERVAL_SECONDS):
            result = export_project(store, job.project, output, force=force, progress=progress)
    except ExportError as error:
        raise JobFailed(str(error)) from None
    log.info("export summary\n%s", format_export(result))
    return result
