"""Background jobs: their status, progress, heartbeat, cancellation and liveness.

A job's own process writes its row (start, progress with heartbeat, finish or
failure); the terminal app only reads it and may request cancellation. Because
a killed process cannot mark its job finished, readers judge a queued or
running job with `job_liveness`: a job whose process no longer exists on this
host is 'dead', and one whose heartbeat is older than HEARTBEAT_STALE_SECONDS
is 'stale'.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import traceback

from store.base import StoreBase
from store.errors import JobConflict, JobNotFound, StoreError
from store.rows import (
    ACTIVE_JOB_STATUSES,
    FINISHED_JOB_STATUSES,
    JOB_KINDS,
    Job,
    Project,
    parse_time,
    utc_now,
)

# A job process should call update_job_progress at least this often, from a timer
# thread if one evaluation can take longer.
HEARTBEAT_INTERVAL_SECONDS = 15.0
# A queued or running job whose heartbeat is older than this is reported 'stale'.
HEARTBEAT_STALE_SECONDS = 120.0

JOB_SELECT = "SELECT jobs.*, projects.name AS project FROM jobs JOIN projects ON projects.id = jobs.project_id"


def pid_alive(pid: int) -> bool:
    """Return whether a process with this id exists on this host and is not a zombie.

    NOTE: a pid reused by an unrelated process after the job's process ended
    counts as alive; the heartbeat age then still marks the job 'stale'.
    """
    if os.name == "nt":
        return True  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists but belongs to another user
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            stat = file.read()
    except OSError:
        return True  # no procfs: trust os.kill
    state = stat.rpartition(")")[2].split()[0]  # the field after the process name
    return state not in ("Z", "X")


def check_count(value, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"Expected {what} to be an integer of at least 0. Received: {what}={value!r}")
    return value


def format_error(error: str | BaseException) -> str:
    if isinstance(error, BaseException):
        return "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return str(error)


class JobsMixin(StoreBase):
    def create_job(
        self,
        project: str | Project,
        kind: str,
        *,
        options: dict | None = None,
        total: int | None = None,
        log_path: str | os.PathLike | None = None,
    ) -> Job:
        """Record a new queued job; its process then calls `start_job`.

        A queued or running search job of the same project whose process is
        gone from this host is marked failed first.

        Args:
            kind: 'analyse', 'search' or 'export'.
            options: JSON-serialisable settings of the job, e.g. the backend.
            total: Number of work items, when known.
            log_path: File the job process writes its log to.

        Raises:
            ValueError: for an unknown kind or a non-JSON `options`.
            JobConflict: if the project already has a live queued or running
                search job (for kind 'search'), naming its id and pid.
        """
        if kind not in JOB_KINDS:
            raise ValueError(f"Expected kind 'analyse', 'search' or 'export'. Received: kind={kind!r}")
        options_text = json.dumps(options or {})
        total = check_count(total, "total")
        with self.transaction():
            project = self._project(project)
            if kind == "search":
                for job in self.jobs(project):
                    if job.kind == "search" and job.active:
                        self._check_no_conflict(job)
            now = utc_now()
            cursor = self._conn.execute(
                "INSERT INTO jobs (project_id, kind, status, created, heartbeat, total, log_path, options) "
                "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                [project.id, kind, now, now, total, None if log_path is None else os.fspath(log_path), options_text],
            )
            job_id = cursor.lastrowid
        return self.job(job_id)

    def _check_no_conflict(self, job: Job) -> None:
        """Mark a dead active job failed; raise JobConflict for one that may still run."""
        liveness = self.job_liveness(job)
        if liveness == "dead":
            self._conn.execute(
                "UPDATE jobs SET status = 'failed', finished = ?, error = ? WHERE id = ?",
                [utc_now(), f"Process {job.pid} on host {job.host} ended without finishing the job.", job.id],
            )
            return
        detail = f"job {job.id}, {job.status}, pid {job.pid} on host {job.host}, {job.done}/{job.total or '?'} done"
        if liveness == "stale":
            detail += f", no heartbeat for over {HEARTBEAT_STALE_SECONDS:.0f} s"
        raise JobConflict(
            f"Project {job.project!r} already has an active search job ({detail}). "
            "Cancel it or wait for it to finish; if its process is gone, mark the job failed.",
            job.id,
            job.pid,
        )

    def start_job(
        self,
        job_id: int,
        *,
        pid: int | None = None,
        host: str | None = None,
        total: int | None = None,
        log_path: str | os.PathLike | None = None,
    ) -> Job:
        """Mark a queued job running, from the job's own process.

        Args:
            pid: The job's process id; defaults to this process.
            host: The host it runs on; defaults to `socket.gethostname()`.

        Raises:
            StoreError: if the job is not queued, e.g. cancelled before it started.
        """
        total = check_count(total, "total")
        with self.transaction():
            job = self.job(job_id)
            if job.status != "queued":
                raise StoreError(f"Job {job_id} is {job.status}, so it cannot start; only a queued job can.")
            now = utc_now()
            self._conn.execute(
                "UPDATE jobs SET status = 'running', pid = ?, host = ?, started = ?, heartbeat = ?, "
                "total = coalesce(?, total), log_path = coalesce(?, log_path) WHERE id = ?",
                [
                    os.getpid() if pid is None else pid,
                    socket.gethostname() if host is None else host,
                    now,
                    now,
                    total,
                    None if log_path is None else os.fspath(log_path),
                    job_id,
                ],
            )
        return self.job(job_id)

    def update_job_progress(self, job_id: int, done: int | None = None, total: int | None = None) -> None:
        """Record progress of a running job and refresh its heartbeat; with no counts, only the heartbeat.

        Raises:
            StoreError: if the job is not running, so a process whose job was
                marked failed or cancelled learns it should stop.
        """
        done = check_count(done, "done")
        total = check_count(total, "total")
        with self.transaction():
            cursor = self._conn.execute(
                "UPDATE jobs SET done = coalesce(?, done), total = coalesce(?, total), heartbeat = ? "
                "WHERE id = ? AND status = 'running'",
                [done, total, utc_now(), job_id],
            )
            if cursor.rowcount == 0:
                job = self.job(job_id)
                raise StoreError(f"Job {job_id} is {job.status}, not running; its progress was not recorded.")

    def finish_job(self, job_id: int, status: str = "done") -> None:
        """Mark a job finished: 'done', or 'cancelled' after a cancellation request.

        Raises:
            ValueError: for another status.
            StoreError: if the job has already finished.
        """
        if status not in ("done", "cancelled"):
            raise ValueError(f"Expected status 'done' or 'cancelled'. Received: status={status!r}")
        with self.transaction():
            job = self.job(job_id)
            if job.status in FINISHED_JOB_STATUSES:
                raise StoreError(f"Job {job_id} has already finished as {job.status}.")
            now = utc_now()
            self._conn.execute(
                "UPDATE jobs SET status = ?, finished = ?, heartbeat = ? WHERE id = ?", [status, now, now, job_id]
            )

    def fail_job(self, job_id: int, error: str | BaseException) -> None:
        """Mark a job failed with an error text; an exception is stored with its traceback.

        A job that was already marked failed (e.g. as dead) gets the new error text.

        Raises:
            StoreError: if the job finished as 'done' or 'cancelled'.
        """
        text = format_error(error)
        with self.transaction():
            job = self.job(job_id)
            if job.status in ("done", "cancelled"):
                raise StoreError(f"Job {job_id} has already finished as {job.status}; it cannot fail now.")
            now = utc_now()
            self._conn.execute(
                "UPDATE jobs SET status = 'failed', error = ?, finished = ?, heartbeat = ? WHERE id = ?",
                [text, now, now, job_id],
            )

    def request_cancel(self, job_id: int) -> bool:
        """Ask a job to stop; a job still queued is cancelled at once.

        Returns:
            True if the job was queued or running, False if it had finished.
        """
        with self.transaction():
            job = self.job(job_id)
            if job.status == "queued":
                now = utc_now()
                self._conn.execute(
                    "UPDATE jobs SET status = 'cancelled', cancel_requested = 1, finished = ? WHERE id = ?",
                    [now, job_id],
                )
                return True
            if job.status == "running":
                self._conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", [job_id])
                return True
        return False

    def cancel_requested(self, job_id: int) -> bool:
        return self.job(job_id).cancel_requested

    def job(self, job_id: int) -> Job:
        """Return a job by id.

        Raises:
            JobNotFound: if no job has this id.
        """
        rows = self._query(JOB_SELECT + " WHERE jobs.id = ?", [job_id])
        if not rows:
            raise JobNotFound(f"Job {job_id} not found.")
        return Job.from_row(rows[0])

    def jobs(self, project: str | Project, limit: int | None = None) -> list[Job]:
        """Return the project's jobs, newest first."""
        with self._read():
            project = self._project(project)
            sql = JOB_SELECT + " WHERE jobs.project_id = ? ORDER BY jobs.id DESC"
            parameters: list = [project.id]
            if limit is not None:
                sql += " LIMIT ?"
                parameters.append(limit)
            return [Job.from_row(row) for row in self._query(sql, parameters)]

    def active_job(self, project: str | Project, kind: str | None = None) -> Job | None:
        """Return the newest queued or running job of the project (of `kind` if given), or None.

        The row may belong to a process that died: check `job_liveness`.
        """
        with self._read():
            project = self._project(project)
            sql = JOB_SELECT + " WHERE jobs.project_id = ? AND jobs.status IN (?, ?)"
            parameters: list = [project.id, *ACTIVE_JOB_STATUSES]
            if kind is not None:
                sql += " AND jobs.kind = ?"
                parameters.append(kind)
            rows = self._query(sql + " ORDER BY jobs.id DESC LIMIT 1", parameters)
        return Job.from_row(rows[0]) if rows else None

    def job_liveness(self, job: Job | int, now: datetime.datetime | None = None) -> str:
        """Judge whether a job's process is still at work.

        Returns:
            For a finished job its status ('done', 'failed', 'cancelled').
            Otherwise 'dead' when the job runs on this host and its pid is gone
            (the pid is checked only when `host` is `socket.gethostname()`),
            'stale' when its heartbeat is older than HEARTBEAT_STALE_SECONDS,
            else its status: 'running' or 'queued'.
        """
        if not isinstance(job, Job):
            job = self.job(job)
        if job.status in FINISHED_JOB_STATUSES:
            return job.status
        if job.pid is not None and job.host == socket.gethostname() and not pid_alive(job.pid):
            return "dead"
        last = parse_time(job.heartbeat or job.started or job.created)
        now = now or datetime.datetime.now(datetime.timezone.utc)
        if (now - last).total_seconds() > HEARTBEAT_STALE_SECONDS:
            return "stale"
        return job.status
