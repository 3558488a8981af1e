"""Job process: `python -m workbench.jobs.runner --store PATH --job ID`.

`launch_job` starts this module detached; `svd-workbench search` without
--detach runs the same code in its own process (`run_job`). The runner marks the
job running with its pid and host, runs the work of the job's kind, and ends the
job as done, cancelled or failed. TensorFlow loads here, never in the processes
that launch jobs.

Exit status: 0 when the job is done or cancelled, 1 when it failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from pathlib import Path

from workbench.jobs import job_log_path

log = logging.getLogger("workbench.jobs")

EXIT_DONE = 0
EXIT_FAILED = 1


class JobCancelled(Exception):
    """The job's cancel flag was set; the work stopped between two results."""


class JobFailed(Exception):
    """The job cannot go on; the message says what to fix."""


def run_job(store, job_id: int, progress_stream=None) -> str:
    """Run a job that `create_job` queued and return its final status.

    Args:
        store: An open, writable `store.Store`.
        job_id: The queued job.
        progress_stream: Where a search prints its progress line (e.g.
            sys.stderr); None prints nothing.

    Returns:
        'done', 'cancelled' or 'failed'. The job's row is updated to match, and
        for 'failed' its error field says what went wrong and what to fix.
    """
    from store import StoreError

    try:
        job = store.start_job(job_id, log_path=job_log_path(store.path, job_id))
    except StoreError:
        job = store.job(job_id)
        if job.status == "cancelled":
            log.info("job %d was cancelled before it started", job_id)
            return "cancelled"
        raise
    log.info("job %d (%s) of project %r started, pid %d", job.id, job.kind, job.project, os.getpid())
    try:
        if job.kind == "analyse":
            from workbench.jobs.analyse import run_analyse_job

            run_analyse_job(store, job)
        elif job.kind == "search":
            from workbench.jobs.search import run_search_job

            run_search_job(store, job, progress_stream)
        elif job.kind == "export":
            from workbench.export import run_export_job

            run_export_job(store, job, job.options)
        else:
            raise JobFailed(f"Unknown job kind {job.kind!r}; expected analyse, search or export.")
    except JobCancelled:
        log.info("job %d cancelled", job.id)
        store.finish_job(job.id, "cancelled")
        return "cancelled"
    except Exception as error:
        text = describe_failure(error)
        log.error("job %d failed: %s", job.id, text)
        store.fail_job(job.id, text)
        return "failed"
    store.finish_job(job.id, "done")
    log.info("job %d done", job.id)
    return "done"


def describe_failure(error: BaseException) -> str:
    """Return the error text stored in a failed job: message, layer and ratio when known, and traceback."""
    from workbench.evaluation import EvaluationError

    lines = [str(error) or type(error).__name__]
    if isinstance(error, EvaluationError):
        from workbench.selection import format_ratio

        where = "baseline" if error.layer is None else f"layer {error.layer}, ratio {format_ratio(error.ratio)}"
        lines.append(f"Task: {where}.")
        if error.details:
            lines.append("")
            lines.append("Evaluator traceback:")
            lines.append(error.details.rstrip())
    elif not isinstance(error, (JobFailed,)):
        lines.append("")
        lines.append("".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    # A job outlives the terminal that started it.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    parser = argparse.ArgumentParser(prog="python -m workbench.jobs.runner", description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, type=Path, help="the store file")
    parser.add_argument("--job", required=True, type=int, help="id of a queued job in the store")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    from store import open_store

    with open_store(args.store) as store:
        status = run_job(store, args.job, progress_stream=sys.stderr)
    return EXIT_DONE if status in ("done", "cancelled") else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
