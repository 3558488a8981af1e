"""Background jobs of svd-workbench: analyse a model, search scores, export.

A job is a row in the store and a process of its own. `launch_job` writes the
row (status 'queued') and starts `python -m workbench.jobs.runner --store PATH
--job ID` detached from the caller: a new session, stdin from /dev/null, SIGHUP
ignored, and stdout and stderr appended to `<store folder>/logs/job-<id>.log`.
The job process writes its status, pid, host, heartbeat and progress to the
store, so the terminal app and `svd-workbench status` only read. Closing the
terminal or killing the launching process leaves the job running.

Importing this package imports neither TensorFlow nor joblib: the terminal app
launches jobs with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

JOB_KINDS = ("analyse", "search", "export")
LOG_FOLDER = "logs"

__all__ = ["JOB_KINDS", "cancel_job", "job_log_path", "launch_job", "runner_command"]


def job_log_path(store_path: str | os.PathLike, job_id: int) -> Path:
    """Return the log file of a job: `<store folder>/logs/job-<id>.log`."""
    return Path(store_path).expanduser().absolute().parent / LOG_FOLDER / f"job-{job_id}.log"


def runner_command(store_path: str | os.PathLike, job_id: int) -> list[str]:
    """Return the command line that runs job `job_id` of the store in a process of its own."""
    return [sys.executable, "-m", "workbench.jobs.runner", "--store", str(store_path), "--job", str(job_id)]


def check_kind(kind: str) -> str:
    if kind not in JOB_KINDS:
        raise ValueError(f"Expected job kind one of {', '.join(JOB_KINDS)}. Received: kind={kind!r}")
    return kind


def launch_job(store_path: str | os.PathLike, project_name: str, kind: str, options: dict | None = None) -> int:
    """Create a job of a project and start its process detached from the caller.

    Args:
        store_path: The store file.
        project_name: The project the job works on.
        kind: 'analyse' (load the model file and fill the project's layer rows
            and model hash), 'search' (compute every missing score; options
            `jobs`, `backend`, `scheduler`) or 'export' (options `output`,
            `force`).
        options: JSON-serialisable options of the job, stored in its row.

    Returns:
        The job id. Follow the job through the store (`Store.job`), or read its
        log at `job_log_path(store_path, job_id)`.

    Raises:
        store.JobConflict: if a search of the project is queued or running; the
            message names that job and its pid.
        store.ProjectNotFound: if the project does not exist.
        ValueError: for an unknown kind.
        OSError: if the job process cannot be started; the job row is then
            marked failed with the reason.
    """
    from store import open_store

    check_kind(kind)
    store_path = Path(store_path).expanduser().absolute()
    with open_store(store_path) as store:
        job = store.create_job(project_name, kind, options=dict(options or {}))
        job_id = job.id
        log_path = job_log_path(store_path, job_id)
        try:
            start_detached(runner_command(store_path, job_id), log_path)
        except OSError as error:
            store.fail_job(job_id, f"Could not start the job process: {error}")
            raise
    return job_id


def start_detached(command: list[str], log_path: Path) -> subprocess.Popen:
    """Start `command` in a new session with its output appended to `log_path`.

    The new session has no controlling terminal, so a closing terminal sends the
    process no SIGHUP; the runner also ignores SIGHUP from its first line. No
    preexec_fn is used because it is unsafe in a process with threads, such as
    the terminal app.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ)
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    environment["PYTHONUNBUFFERED"] = "1"
    with open(os.devnull, "rb") as stdin, open(log_path, "ab") as log:
        return subprocess.Popen(
            command,
            stdin=stdin,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=environment,
        )


def cancel_job(store_path: str | os.PathLike, project_name: str) -> int | None:
    """Ask the project's active job to stop; return its id, or None if no job is active.

    A running job stops within seconds, after the evaluations in progress, and
    keeps every score it has written. A queued job is cancelled at once. A job
    whose process is gone from this host is marked failed instead.

    Raises:
        store.ProjectNotFound: if the project does not exist.
    """
    from store import open_store

    with open_store(Path(store_path).expanduser()) as store:
        job = store.active_job(project_name)
        if job is None:
            return None
        if store.job_liveness(job) == "dead":
            store.fail_job(job.id, f"Process {job.pid} on host {job.host} ended without finishing the job.")
        else:
            store.request_cancel(job.id)
        return job.id
