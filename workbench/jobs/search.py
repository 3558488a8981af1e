"""The search job's driver: compute every missing score of a project, in parallel.

One task per (layer, candidate ratio) without a cached score, plus the baseline
when it is missing. Tasks are grouped into chunks of one layer each (a layer's
SVD is computed once per worker) and at most MAX_CHUNK_TASKS tasks, small
enough that results stream back steadily. `joblib.Parallel(return_as=
"generator_unordered")` runs the chunks under `joblib.parallel_config`: loky
worker processes locally (`--jobs N`), or a Dask cluster (`--backend dask
--scheduler ADDRESS`). Only this driver writes the store: each chunk's scores
are written as soon as the chunk returns, so killing the job loses at most the
chunks in flight, and a rerun computes only what is missing.

The driver waits for results in a thread of its own, so the main thread keeps
the heartbeat fresh and checks the cancel flag every POLL_INTERVAL_S seconds
even while one evaluation runs for minutes. After a cancel request or an
evaluator error, no new chunk is started. Chunks in flight get a grace period
(CANCEL_GRACE_S, FAILURE_GRACE_S) to finish, and their scores are kept. Work
still running after that is abandoned, so the caller should end the process
(`SearchOutcome.abandoned`).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Iterator, Sequence, TextIO

from workbench.jobs.progress import Progress, format_duration
from workbench.jobs.errors import JobCancelled, JobFailed
from workbench.jobs.worker import WorkerSpec, evaluate_chunk, visible_gpus

log = logging.getLogger("workbench.jobs.search")

BACKENDS = ("loky", "dask")
# Largest number of tasks in one chunk; smaller chunks when there are few tasks
# per worker, so that every worker gets several.
MAX_CHUNK_TASKS = 8
CHUNKS_PER_WORKER = 4
POLL_INTERVAL_S = 0.25
CANCEL_CHECK_INTERVAL_S = 0.5
# Seconds that chunks in flight may take to finish after a cancel request or an
# evaluator error before the job stops without them.
CANCEL_GRACE_S = 5.0
FAILURE_GRACE_S = 30.0
# Seconds to wait for a Dask scheduler to respond.
DASK_CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class SearchOptions:
    """Options of a search job, as stored in the job row.

    Attributes:
        jobs: Worker processes (loky), or the most chunks at once on Dask
            (None there: as many as the cluster has threads).
        backend: 'loky' or 'dask'.
        scheduler: Address of the Dask scheduler, e.g. 'tcp://10.0.0.5:8786'.
    """

    jobs: int | None = 1
    backend: str = "loky"
    scheduler: str | None = None

    @classmethod
    def from_dict(cls, options: dict) -> "SearchOptions":
        """Validate job options.

        Raises:
            ValueError: naming the invalid option and its value.
        """
        backend = options.get("backend") or "loky"
        if backend not in BACKENDS:
            raise ValueError(f"Expected backend 'loky' or 'dask'. Received: backend={backend!r}")
        jobs = options.get("jobs")
        if jobs is None and backend == "loky":
            jobs = 1
        if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
            raise ValueError(f"Expected jobs to be a positive integer. Received: jobs={jobs!r}")
        scheduler = options.get("scheduler")
        if backend == "dask" and not scheduler:
            raise ValueError("The dask backend needs the address of a Dask scheduler (--scheduler tcp://HOST:8786).")
        if backend == "loky" and scheduler:
            raise ValueError(f"--scheduler applies to the dask backend only. Received: scheduler={scheduler!r} with backend 'loky'.")
        return cls(jobs, backend, scheduler)

    @property
    def evaluates_in_driver(self) -> bool:
        """True when joblib runs the tasks in this process (loky with one job)."""
        return self.backend == "loky" and self.jobs == 1


@dataclass(frozen=True)
class SearchOutcome:
    """The end state of a search: the evaluations computed, and whether work was left running."""

    computed: int
    total: int
    abandoned: bool = False


def make_chunks(tasks: Sequence[tuple[str, Decimal]], workers: int, max_size: int = MAX_CHUNK_TASKS) -> list[list[tuple[str, str]]]:
    """Group tasks into chunks of one layer each, in the order given.

    The chunk size aims at CHUNKS_PER_WORKER chunks per worker and is between 1
    and `max_size`. Ratios become their canonical decimal strings.
    """
    if not tasks:
        return []
    from store.rows import ratio_text

    size = max(1, min(max_size, math.ceil(len(tasks) / (CHUNKS_PER_WORKER * max(1, workers)))))
    by_layer: dict[str, list[str]] = {}
    for layer, ratio in tasks:
        by_layer.setdefault(layer, []).append(ratio_text(ratio))
    chunks = []
    for layer, ratios in by_layer.items():
        for start in range(0, len(ratios), size):
            chunks.append([(layer, ratio) for ratio in ratios[start : start + size]])
    return chunks


class ChunkRunner:
    """Run chunks through joblib in a thread and hand each result to a queue.

    Events in the queue are ('result', dict), ('error', exception) and
    ('end', None). After `stop()` no new chunk is started; the joblib generator
    then ends once the chunks in flight return.
    """

    def __init__(self, spec: WorkerSpec, chunks: list, baseline: bool, options: SearchOptions):
        self.spec = spec
        self.chunks = chunks
        self.baseline = baseline
        self.options = options
        self.events: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="search-results", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _calls(self) -> Iterator:
        from joblib import delayed

        calls = [(chunk, False) for chunk in self.chunks]
        if self.baseline:
            calls.insert(0, ([], True))
        for chunk, baseline in calls:
            if self._stop.is_set():
                return
            yield delayed(evaluate_chunk)(self.spec, chunk, baseline)

    def _run(self) -> None:
        client = None
        try:
            from joblib import Parallel, parallel_config

            if self.options.backend == "dask":
                client = connect_dask(self.options.scheduler)
                config = parallel_config(backend="dask", client=client)
                n_jobs = self.options.jobs or -1
            else:
                config = parallel_config(backend="loky")
                n_jobs = self.options.jobs
            with config:
                # batch_size=1: the chunks are the batches. pre_dispatch=n_jobs keeps
                # one chunk per worker in flight, so a stop waits for few chunks.
                parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1, pre_dispatch="n_jobs")
                for result in parallel(self._calls()):
                    self.events.put(("result", result))
        except BaseException as error:  # reported to the driver, which fails the job
            self.events.put(("error", error))
        finally:
            if client is not None:
                client.close()
            self.events.put(("end", None))


def connect_dask(address: str):
    """Connect a Dask client to `address`.

    Raises:
        JobFailed: if dask.distributed is not installed or the scheduler does not respond.
    """
    try:
        from dask.distributed import Client
    except ImportError:
        raise JobFailed(
            "The dask backend needs dask.distributed, which is not installed. "
            "Install it with: pip install 'svd-workbench[dask]'"
        ) from None
    try:
        return Client(address, timeout=DASK_CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise JobFailed(
            f"Cannot connect to the Dask scheduler at {address!r} within {DASK_CONNECT_TIMEOUT_S} s: {error}. "
            "Check the address and that the scheduler is running."
        ) from None


def worker_spec(project, gpus: tuple[str, ...]) -> WorkerSpec:
    return WorkerSpec(
        model_path=project.model_path,
        model_hash=project.model_hash,
        evaluator_spec=project.evaluator_spec,
        eval_iterations=project.eval_iterations,
        evaluator_key=project.evaluator_key,
        metric=project.metric,
        multiplicity=project.multiplicity,
        gpus=gpus,
    )


def refresh_project(store, project, evaluates_in_driver: bool):
    """Bring the project's model hash, layers and evaluator key up to date with the files.

    A changed model file is analysed again; a changed evaluator file gives a
    new evaluator key. Either way, scores cached for the old files stay in the
    store but are not used.

    Raises:
        JobFailed: if the model or the evaluator file is missing or invalid.
    """
    from store.connection import hash_file
    from workbench.evaluators import EvaluatorSpecError, check_evaluator
    from workbench.jobs.analyse import ModelFileError, analyse_project

    try:
        model_hash = hash_file(project.model_path)
    except OSError as error:
        raise JobFailed(f"Cannot read the model file of project {project.name!r}: {error}") from None
    if model_hash != project.model_hash or not store.layers(project):
        log.info("model file %s changed or was never analysed; analysing it", project.model_path)
        try:
            project = analyse_project(store, project, hide_gpus=not evaluates_in_driver)
        except ModelFileError as error:
            raise JobFailed(str(error)) from None
    try:
        checked = check_evaluator(project.evaluator_spec, project.eval_iterations, isolated=not evaluates_in_driver)
    except EvaluatorSpecError as error:
        raise JobFailed(f"{error} Fix the evaluator, then run the search again.") from None
    if checked.key != project.evaluator_key:
        log.info("evaluator %s changed; its scores are computed anew", project.evaluator_spec)
        project = store.update_project(project.name, evaluator_key=checked.key)
    return project


def run_search_job(store, job, progress_stream: TextIO | None = None, stop_signal: threading.Event | None = None) -> SearchOutcome:
    """Compute the project's missing scores and write each one to the store as it arrives.

    Args:
        store: The writable store.
        job: The job row, already marked running.
        progress_stream: Where the progress line goes; None for nowhere.
        stop_signal: Set by a signal handler (SIGTERM, Ctrl-C) to stop like a cancel.

    Returns:
        The outcome; `abandoned` is True when chunks were still running at the
        end of the grace period, so the caller should end the process.

    Raises:
        JobCancelled: after a cancel request (`abandoned` set on the exception).
        workbench.evaluation.EvaluationError: when the evaluator raised or
            returned a non-finite score; the scores computed before are stored.
        JobFailed: for invalid options, files or a failed worker.
    """
    try:
        options = SearchOptions.from_dict(job.options)
    except ValueError as error:
        raise JobFailed(str(error)) from None
    project = refresh_project(store, store.get_project(job.project), options.evaluates_in_driver)
    key = project.score_key
    tasks = store.missing_tasks(project)
    need_baseline = store.baseline(project) is None
    total = len(tasks) + (1 if need_baseline else 0)
    progress = Progress(total, progress_stream, write=lambda done, count: store.update_job_progress(job.id, done, count))
    if total == 0:
        progress.message(f"Every score of project {project.name!r} is cached; nothing to compute.")
        progress.close()
        return SearchOutcome(0, 0)

    workers = options.jobs or 1
    gpus = visible_gpus() if options.backend == "loky" and not options.evaluates_in_driver else ()
    chunks = make_chunks(tasks, workers)
    where = f"{options.jobs} loky worker(s)" if options.backend == "loky" else f"Dask at {options.scheduler}"
    progress.message(
        f"Searching project {project.name!r}: {len(tasks)} candidate(s) in {len(chunks)} chunk(s)"
        f"{' and the baseline' if need_baseline else ''} on {where}"
        f"{', GPUs ' + ','.join(gpus) if gpus else ''}."
    )
    progress.tick(force=True)
    runner = ChunkRunner(worker_spec(project, gpus), chunks, need_baseline, options)
    runner.start()
    return drive(store, job, project.name, key, runner, progress, stop_signal)


def drive(store, job, project_name: str, key, runner: ChunkRunner, progress: Progress, stop_signal) -> SearchOutcome:
    """Store results as they arrive, keep the job row fresh, and stop on cancel or error."""
    from workbench.evaluation import EvaluationError

    cancelled = False
    evaluation_error: EvaluationError | None = None
    worker_error: BaseException | None = None
    deadline: float | None = None
    next_cancel_check = 0.0
    abandoned = False

    while True:
        try:
            kind, payload = runner.events.get(timeout=POLL_INTERVAL_S)
        except queue.Empty:
            kind, payload = None, None
        if kind == "end":
            break
        if kind == "result":
            store_result(store, key, payload, progress)
            if payload["error"] is not None and evaluation_error is None:
                evaluation_error = to_evaluation_error(payload["error"])
                # Logged, not printed: the job's error reports it once, with the next step.
                log.info("evaluation failed: %s", payload["error"]["message"])
                if not runner.stopping:
                    runner.stop()
                    deadline = time.monotonic() + FAILURE_GRACE_S
        elif kind == "error":
            runner.stop()
            interrupted = stop_signal is not None and stop_signal.is_set()
            if isinstance(payload, KeyboardInterrupt) or interrupted:
                # Ctrl-C reaches the loky workers too, since they share the terminal's
                # process group: joblib re-raises their KeyboardInterrupt here, or a
                # TerminatedWorkerError when one died outside a task.
                log.info("search worker interrupted (%s); stopping the job like a cancel", type(payload).__name__)
                cancelled = True
                if stop_signal is not None:
                    stop_signal.set()
                break
            worker_error = payload
            break
        progress.tick()

        now = time.monotonic()
        if not runner.stopping and now >= next_cancel_check:
            next_cancel_check = now + CANCEL_CHECK_INTERVAL_S
            if store.cancel_requested(job.id) or (stop_signal is not None and stop_signal.is_set()):
                cancelled = True
                runner.stop()
                deadline = now + CANCEL_GRACE_S
                progress.message(
                    f"Stopping: waiting up to {CANCEL_GRACE_S:.0f} s for the evaluations in progress; "
                    "finished scores are kept."
                )
        if deadline is not None and now >= deadline:
            abandoned = True
            break
    progress.close()

    if worker_error is not None:
        if isinstance(worker_error, JobFailed):
            raise worker_error
        raise JobFailed(
            f"A search worker failed: {type(worker_error).__name__}: {worker_error}. "
            f"{progress.done} of {progress.total} scores were computed and kept; rerun the search for the rest."
        ) from worker_error
    if evaluation_error is not None:
        evaluation_error.args = (
            f"{evaluation_error.args[0]} {progress.done} score(s) of this run are stored. "
            f"Fix the evaluator (its traceback: svd-workbench status {project_name}), then run "
            f"'svd-workbench search {project_name}' again to evaluate the {describe_missing(store, project_name)}.",
        )
        evaluation_error.abandoned = abandoned
        raise evaluation_error
    if cancelled and progress.done < progress.total:
        raise JobCancelled(
            f"Cancelled after {progress.done} of {progress.total} evaluations; they are stored.", abandoned=abandoned
        )
    elapsed = time.monotonic() - progress.started
    progress.message(f"Done: {progress.done} evaluation(s) in {format_duration(elapsed)}.")
    return SearchOutcome(progress.done, progress.total, abandoned)


def describe_missing(store, project_name: str) -> str:
    """Describe the scores still missing, counted as `svd-workbench status` counts them."""
    candidates = len(store.missing_tasks(project_name))
    text = f"{candidates} missing candidate score(s)"
    if store.baseline(project_name) is None:
        text += " and the baseline"
    return text


def stop_loky_workers() -> None:
    """Kill the worker processes of joblib's reusable loky executor, if this process started one.

    Idle loky workers otherwise live on for 300 s (loky's default idle timeout,
    joblib 1.6), and a job that ends with `os._exit` leaves them and loky's
    resource tracker behind with leaked semaphores and memmapping folders.
    """
    from joblib.externals.loky import reusable_executor

    # The private global, because get_reusable_executor() would start an executor.
    executor = reusable_executor._executor
    if executor is None:
        return
    if hasattr(executor, "terminate"):
        # joblib's MemmappingExecutor: also deletes its temporary memmapping folder.
        executor.terminate(kill_workers=True)
    else:
        executor.shutdown(wait=True, kill_workers=True)
    reusable_executor._executor = None


def store_result(store, key, result: dict, progress: Progress) -> None:
    """Write one chunk's baseline and scores in one transaction and count them."""
    with store.transaction():
        if result["baseline"] is not None:
            score, seconds = result["baseline"]
            store.put_baseline(key, score, seconds=seconds)
        entries = [(layer, ratio, score, rank, seconds) for layer, ratio, rank, score, seconds in result["scores"]]
        store.put_scores(key, entries)
    progress.advance(len(result["scores"]) + (1 if result["baseline"] is not None else 0))


def to_evaluation_error(error: dict):
    from workbench.evaluation import EvaluationError

    ratio = None if error["ratio"] is None else Decimal(error["ratio"])
    return EvaluationError(error["message"], error["layer"], ratio, error["details"] or "")
