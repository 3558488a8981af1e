"""Values that the screens render: project list entries, project views, job states."""

from __future__ import annotations

import os
from dataclasses import dataclass

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from decimal import Decimal

    from store.rows import Export, Job, LayerRow, Project, Summary
    from workbench.records import LayerRecord

JOB_VERBS = {"analyse": "analysing", "search": "searching", "export": "exporting"}
JOB_NOUNS = {"analyse": "analysis", "search": "search", "export": "export"}


@dataclass(frozen=True)
class JobView:
    """A job as last written, with the liveness the reader judged.

    `liveness` is `Store.job_liveness`: 'queued' or 'running' for a live job,
    'stale' when its heartbeat is old, 'dead' when its process is gone, else
    the finished status ('done', 'failed', 'cancelled').
    """

    job: Job
    liveness: str

    @property
    def live(self) -> bool:
        return self.liveness in ("queued", "running", "stale")

    @property
    def noun(self) -> str:
        return JOB_NOUNS.get(self.job.kind, self.job.kind)

    def describe(self) -> str:
        """Return a short status such as 'searching 12/90' or 'search failed'."""
        job = self.job
        counts = f" {job.done}/{job.total}" if job.total else ""
        if self.liveness == "running":
            return f"{JOB_VERBS.get(job.kind, job.kind)}{counts}"
        if self.liveness == "queued":
            return f"{self.noun} queued"
        if self.liveness == "stale":
            return f"{self.noun} stale{counts}"
        if self.liveness == "dead":
            return f"{self.noun} died{counts}"
        return f"{self.noun} {self.liveness}"


@dataclass(frozen=True)
class ProjectEntry:
    """One row of the projects table."""

    name: str
    model_file: str
    metric: str
    target: str
    status: str
    achieved: float | None
    predicted: float | None


@dataclass
class ProjectView:
    """Everything the project screen shows, read from the store at one poll.

    Attributes:
        project: The project's settings.
        rows: `Store.layer_table`: one row per layer, in model order.
        summary: `Store.summary` of the current selection.
        records: The layer records by name, for the columns a row lacks (kernel size).
        candidates: The project's candidate ratios, increasing.
        active: The newest queued or running job of any kind, or None.
        latest: The newest job of any kind, finished or not, or None.
        last_export: The newest export record, or None.
    """

    project: Project
    rows: list[LayerRow]
    summary: Summary
    records: dict[str, LayerRecord]
    candidates: list[Decimal]
    active: JobView | None
    latest: JobView | None
    last_export: Export | None

    def row(self, name: str) -> LayerRow | None:
        for row in self.rows:
            if row.name == name:
                return row
        return None

    @property
    def search_running(self) -> bool:
        return self.active is not None and self.active.job.kind == "search" and self.active.live


def search_status(view: ProjectView) -> str:
    """Return the search status of a project for the projects table.

    A live job comes first ('searching 12/90', 'analysis queued'). Next comes
    a project without layers ('not analysed', 'analysis failed'), and then the
    state of the score cache ('complete', 'not searched', '40 missing'), with
    the outcome of a failed, dead or cancelled last search ('search failed').
    """
    latest = view.latest
    if latest is not None and latest.live:
        return latest.describe()
    if not view.rows:
        if latest is not None and latest.job.kind == "analyse":
            return latest.describe()
        return "not analysed"
    summary = view.summary
    if summary.missing_scores == 0 and not summary.baseline_missing:
        return "complete"
    search_ended = latest is not None and latest.job.kind == "search" and latest.liveness in ("failed", "dead", "cancelled")
    if summary.baseline_missing and not any(row.scores for row in view.rows):
        # A search that failed before its first score (an evaluator that
        # raises or returns NaN) still shows as failed, as `svd-workbench list` does.
        return latest.describe() if search_ended else "not searched"
    missing = f"{summary.missing_scores} missing"
    if search_ended:
        return f"{latest.describe()}, {missing}"
    return missing


def project_entry(view: ProjectView) -> ProjectEntry:
    project = view.project
    summary = view.summary
    achieved = None
    if view.rows:
        achieved = summary.memory_ratio if project.metric == "memory" else summary.mac_ratio
    return ProjectEntry(
        name=project.name,
        model_file=os.path.basename(project.model_path),
        metric=project.metric,
        target=str(project.target),
        status=search_status(view),
        achieved=achieved,
        predicted=summary.predicted,
    )
