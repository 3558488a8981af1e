"""Reports on a job row for people and scripts: state, progress, rate, ETA, heartbeat age.

Reads the store only and does not import TensorFlow.
"""

from __future__ import annotations

import datetime

from workbench.jobs.progress import format_duration, format_rate, progress_line

STATE_HELP = {
    "dead": "its process is gone without finishing the job; run the search again to resume it",
    "stale": "no heartbeat for over two minutes; its process may hang or run on another host",
}


def job_report(store, job, now: datetime.datetime | None = None) -> dict:
    """Describe a job as a JSON-ready dict.

    Keys: id, kind, status (as stored), state (status, or 'dead'/'stale' for an
    active job whose process is gone or silent), pid, host, created, started,
    finished, heartbeat, heartbeat_age_s, done, total, rate (evaluations per
    second since the job started), eta_s, cancel_requested, error, log_path and
    options.
    """
    from store.rows import parse_time

    now = now or datetime.datetime.now(datetime.timezone.utc)
    state = store.job_liveness(job, now)
    heartbeat = parse_time(job.heartbeat)
    started = parse_time(job.started)
    age = (now - heartbeat).total_seconds() if heartbeat else None
    rate = eta = None
    if started and heartbeat and job.done:
        elapsed = (heartbeat - started).total_seconds()
        if elapsed > 0:
            rate = job.done / elapsed
            # No ETA for a dead or stale job: its process is gone or silent.
            if job.total is not None and state in ("queued", "running"):
                eta = max(0, job.total - job.done) / rate
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "state": state,
        "pid": job.pid,
        "host": job.host,
        "created": job.created,
        "started": job.started,
        "finished": job.finished,
        "heartbeat": job.heartbeat,
        "heartbeat_age_s": None if age is None else round(age, 1),
        "done": job.done,
        "total": job.total,
        "rate": rate,
        "eta_s": None if eta is None else round(eta, 1),
        "cancel_requested": job.cancel_requested,
        "error": job.error,
        "log_path": job.log_path,
        "options": job.options,
    }


def format_job_report(report: dict) -> str:
    """Format a `job_report` as a few lines of text."""
    state = report["state"]
    lines = [f"Job {report['id']} ({report['kind']}): {state}" + (f" ({STATE_HELP[state]})" if state in STATE_HELP else "")]
    if report["pid"] is not None:
        age = report["heartbeat_age_s"]
        heartbeat = f", last heartbeat {format_duration(age)} ago" if age is not None and report["status"] == "running" else ""
        lines.append(f"  process {report['pid']} on {report['host']}{heartbeat}")
    if report["total"] is not None:
        if state in ("queued", "running"):
            lines.append("  " + progress_line(report["done"], report["total"], report["rate"], report["eta_s"]))
        elif state in ("dead", "stale"):
            lines.append(f"  {report['done']} of {report['total']} done")
        else:
            lines.append(f"  {report['done']} of {report['total']} done, {format_rate(report['rate'])}")
    if report["cancel_requested"] and report["status"] == "running":
        lines.append("  cancel requested; the job stops after the evaluations in progress")
    if report["error"]:
        lines.append("  error: " + report["error"].rstrip().replace("\n", "\n  "))
    if report["log_path"]:
        lines.append(f"  log: {report['log_path']}")
    return "\n".join(lines)
