"""One line under the summary: the running job's progress, or the last job's outcome."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from workbench.tui.data.progress import ProgressRate, format_duration, format_rate, seconds_since
from workbench.tui.data.views import JobView


class JobPanel(Horizontal):
    """Progress bar with rate and ETA for a live job; a status line otherwise."""

    DEFAULT_CSS = """
    JobPanel { height: 1; padding: 0 1; }
    JobPanel > Label { width: 1fr; }
    JobPanel > ProgressBar { width: auto; display: none; }
    JobPanel.-running > ProgressBar { display: block; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rate = ProgressRate()

    def compose(self) -> ComposeResult:
        yield Label(id="job-status")
        yield ProgressBar(show_eta=False, id="job-bar")

    def show(self, active: JobView | None, latest: JobView | None, idle_hint: str) -> None:
        """Show a live job's progress, else the latest job's outcome, else `idle_hint`."""
        label = self.query_one("#job-status", Label)
        bar = self.query_one("#job-bar", ProgressBar)
        if active is not None and active.liveness in ("queued", "running"):
            job = active.job
            estimate = self.rate.update(job.id, time.monotonic(), job.done, job.total, seconds_since(job.started))
            self.add_class("-running")
            bar.update(total=job.total or None, progress=job.done)
            if active.liveness == "queued":
                label.update(f"{active.noun.capitalize()} queued, waiting for its process…")
            elif job.total:
                label.update(
                    f"{active.describe().capitalize()} · {format_rate(estimate.rate)} · "
                    f"ETA {format_duration(estimate.remaining)}"
                )
            else:
                label.update(f"{active.describe().capitalize()}…")
            return
        self.remove_class("-running")
        if active is not None:  # stale or dead
            job = active.job
            label.update(
                f"{active.describe().capitalize()}: no heartbeat from pid {job.pid} on {job.host}"
                if active.liveness == "stale"
                else f"{active.describe().capitalize()}: process {job.pid} ended without finishing; press s to resume"
            )
            return
        if latest is not None:
            label.update(latest_outcome(latest) + (f" · {idle_hint}" if idle_hint else ""))
            return
        label.update(idle_hint or "No job has run yet.")


def latest_outcome(view: JobView) -> str:
    """Return one line on a finished job, e.g. 'Search done: 90/90' or 'Export failed: <first line>'."""
    job = view.job
    text = f"{view.noun.capitalize()} {view.liveness}"
    if view.liveness == "failed" and job.error:
        return f"{text}: {job.error.strip().splitlines()[0]}"
    if job.total:
        text += f": {job.done}/{job.total}"
    return text
