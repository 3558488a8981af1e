"""Job process: `python -m workbench.jobs.runner --store PATH --job ID`.

`launch_job` starts this module detached; `svd-workbench search` without
--detach runs the same `run_job` in its own process. The runner marks the job
running with its pid and host, runs the work of the job's kind, and ends the
job as done, cancelled or failed. SIGTERM stops a job like a cancel request.
TensorFlow loads here, never in the processes that launch jobs.

Exit status: 0 when the job is done or cancelled, 1 when it failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path

from workbench.jobs import job_log_path
from workbench.jobs.errors import JobCancelled, JobFailed

log = logging.getLogger("workbench.jobs")

EXIT_DONE = 0
EXIT_FAILED = 1

__all__ = ["JobCancelled", "JobFailed", "JobOutcome", "describe_failure", "main", "run_job"]


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended.

    Attributes:
        status: 'done', 'cancelled' or 'failed', as written to the job row.
        message: One line for people; for a failure, what to fix.
        abandoned: Work was still running in worker processes or threads when
            the job ended; the caller should end its process (`os._exit`)
            rather than wait for that work.
    """

    status: str
    message: str = ""
    abandoned: bool = False


def run_job(store, job_id: int, progress_stream=None, stop_signal: threading.Event | None = None) -> JobOutcome:
    """Run a job that `create_job` queued, and record how it ended.

    Args:
        store: An open, writable `store.Store`.
        job_id: The queued job.
        progress_stream: Where a search prints its progress line (e.g.
            sys.stderr); None prints nothing.
        stop_signal: An event that a signal handler sets to stop the job like
            a cancel request.

    Returns:
        The outcome. The job's row records the same, and for 'failed' its error
        field holds the message, the layer and ratio of a failed evaluation, and
        the traceback.
    """
    from store import StoreError

    try:
        job = store.start_job(job_id, log_path=job_log_path(store.path, job_id))
    except StoreError:
        job = store.job(job_id)
        if job.status == "cancelled":
            log.info("job %d was cancelled before it started", job_id)
            return JobOutcome("cancelled", "Cancelled before it started.")
        raise
    log.info("job %d (%s) of project %r started, pid %d", job.id, job.kind, job.project, os.getpid())
    abandoned = False
    try:
        if job.kind == "analyse":
            from workbench.jobs.analyse import run_analyse_job

            run_analyse_job(store, job)
        elif job.kind == "search":
            from workbench.jobs.search import run_search_job, stop_loky_workers

            try:
                abandoned = run_search_job(store, job, progress_stream, stop_signal).abandoned
            finally:
                stop_loky_workers()
        elif job.kind == "export":
            from workbench.export import run_export_job

            run_export_job(store, job, job.options)
        else:
            raise JobFailed(f"Unknown job kind {job.kind!r}; expected analyse, search or export.")
    except JobCancelled as cancelled:
        log.info("job %d cancelled: %s", job.id, cancelled)
        store.finish_job(job.id, "cancelled")
        return JobOutcome("cancelled", str(cancelled), cancelled.abandoned)
    except Exception as error:
        text = describe_failure(error)
        # INFO, because the caller reports the outcome: `main` logs it as an error in
        # the job log, and `svd-workbench search` prints it once.
        log.info("job %d failed: %s", job.id, text)
        store.fail_job(job.id, text)
        return JobOutcome("failed", str(error), getattr(error, "abandoned", False))
    store.finish_job(job.id, "done")
    log.info("job %d done", job.id)
    return JobOutcome("done", "", abandoned)


def describe_failure(error: BaseException) -> str:
    """Return the error text of a failed job: the message, the task of a failed evaluation, and a traceback."""
    from workbench.evaluation import EvaluationError

    lines = [str(error) or type(error).__name__]
    if isinstance(error, EvaluationError):
        from workbench.selection import format_ratio

        where = "the baseline" if error.layer is None else f"layer {error.layer}, ratio {format_ratio(error.ratio)}"
        lines.append(f"Failed task: {where}.")
        if error.details:
            lines += ["", "Evaluator traceback:", error.details.rstrip()]
    elif isinstance(error, JobFailed):
        cause = error.__cause__
        if cause is not None:
            lines += ["", "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)).rstrip()]
    else:
        lines += ["", "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()]
    return "\n".join(lines)


def mark_failed(store, job_id: int, error: BaseException) -> None:
    """Record `error` as the failure of a job that has not finished, if the store allows it."""
    from store import StoreError

    try:
        if store.job(job_id).status in ("queued", "running"):
            store.fail_job(job_id, describe_failure(error))
    except StoreError:
        log.exception("could not mark job %d failed", job_id)


def install_stop_handler(stop_signal: threading.Event, signals=(signal.SIGTERM,)) -> dict:
    """Make the given signals set `stop_signal`, so the job stops like a cancel request.

    A second signal raises KeyboardInterrupt, for a user who does not want to
    wait. Must be called from the main thread.

    Returns:
        The previous handler of each signal, for `signal.signal` to restore.
    """

    def handle(signum, frame):
        if stop_signal.is_set():
            raise KeyboardInterrupt
        log.info("received %s; stopping the job", signal.Signals(signum).name)
        stop_signal.set()

    return {signum: signal.signal(signum, handle) for signum in signals}


def end_process(code: int) -> None:
    """Exit at once, without waiting for worker processes or threads still at work."""
    import multiprocessing.util

    # The exit-time finalizers that os._exit skips: they unlink the semaphores of
    # loky's queues, which its resource tracker would otherwise report as leaked.
    # A private function of multiprocessing.util (CPython 3.11).
    multiprocessing.util._run_finalizers(0)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    # A job outlives the terminal that started it.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    parser = argparse.ArgumentParser(prog="python -m workbench.jobs.runner", description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, type=Path, help="the store file")
    parser.add_argument("--job", required=True, type=int, help="id of a queued job in the store")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    stop_signal = threading.Event()
    install_stop_handler(stop_signal)

    from store import open_store

    with open_store(args.store) as store:
        try:
            outcome = run_job(store, args.job, progress_stream=sys.stderr, stop_signal=stop_signal)
        except Exception as error:
            # A job left queued would block the project's next search until cancelled.
            log.exception("job %d could not run", args.job)
            mark_failed(store, args.job, error)
            return EXIT_FAILED
    if outcome.status == "failed":
        log.error("job %d failed: %s", args.job, outcome.message)
    code = EXIT_FAILED if outcome.status == "failed" else EXIT_DONE
    if outcome.abandoned:
        end_process(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
