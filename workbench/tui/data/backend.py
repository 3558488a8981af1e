"""The terminal app's access to the store and the job launcher.

Reads go through a read-only connection, the one the screens poll; edits go
through a second, read-write connection. Both are `store.Store` objects, which
serialise their use across threads, so the polling workers and the UI thread
can share them. Each read method runs short store transactions and leaves
none open when it returns.

Jobs (layer analysis, search, export) run in processes of their own, started
with `workbench.jobs.launch_job`; this module only starts and cancels them.

The `store` package (with sqlite-utils and, through it, numpy) is imported
when the backend opens, not with this module, so that the app can paint its
first screen while the store loads in a worker thread.
"""

from __future__ import annotations

import sqlite3
import threading
import urllib.parse
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.selection import SelectionResult, candidate_ratios, format_ratio
from workbench.tui.data.views import JobView, ProjectEntry, ProjectView, project_entry

if TYPE_CHECKING:
    from store import Project, Store

MODEL_SUFFIXES = (".keras", ".h5")


@dataclass(frozen=True)
class NewProject:
    """The fields of the new-project form, already validated."""

    name: str
    model_path: str
    evaluator_spec: str
    metric: str = "mac"
    target: Decimal = Decimal("0.5")
    candidates: int = 10
    multiplicity: int = 1
    eval_iterations: int | None = None


@dataclass(frozen=True)
class UndoStep:
    """How to revert one edit of this session.

    Attributes:
        description: What the edit did, for the notification after undo.
        revision: The edit recorded a selection revision, which undo marks undone.
        ignored: The ignored layers before the edit, when it changed them.
        target: The target before the edit, when it changed it.
    """

    description: str
    revision: bool = False
    ignored: tuple[str, ...] | None = None
    target: Decimal | None = None


def model_path_error(text: str) -> str | None:
    """Return why a model path is unusable (missing, a folder, wrong suffix), or None."""
    path = Path(text.strip()).expanduser()
    if not text.strip():
        return "Enter the path of a Keras model file (.keras or .h5)."
    if path.suffix.lower() not in MODEL_SUFFIXES:
        return f"Expected a .keras or .h5 file. Received: '{text.strip()}'"
    if not path.exists():
        return f"File not found: '{path}'"
    if not path.is_file():
        return f"Not a file: '{path}'"
    return None


class Backend:
    """Store reads, edits and job control for one store file.

    Args:
        store_path: The store file. `open` creates it when missing.
    """

    def __init__(self, store_path: str | Path):
        self.store_path = Path(store_path).expanduser()
        self._reader: Store | None = None
        self._writer: Store | None = None
        self._version_conn: sqlite3.Connection | None = None
        self._version_lock = threading.RLock()
        self._closed = False
        self._undo: dict[str, list[UndoStep]] = {}

    # Connections ------------------------------------------------------------

    def open(self) -> None:
        """Create or migrate the store, then open the read-only connections for polling.

        Raises:
            StoreError: (and its subclasses) if the store cannot be opened, or
                the backend was closed.
        """
        from store import open_store
        from store.errors import StoreError

        with self._version_lock:
            if self._closed:
                raise StoreError(f"The connections to the store '{self.store_path}' are closed.")
            if self._writer is None:
                self._writer = open_store(self.store_path)
            if self._reader is None:
                self._reader = open_store(self.store_path, readonly=True)
            if self._version_conn is None:
                uri = "file:" + urllib.parse.quote(str(self.store_path.absolute())) + "?mode=ro"
                self._version_conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)

    def close(self) -> None:
        """Close every connection; later calls raise StoreError instead of reopening.

        A polling thread may still be reading when the app exits: the store
        serialises close with its reads, and the data_version connection is
        closed under the lock that its reads take.
        """
        with self._version_lock:
            self._closed = True
            for store in (self._reader, self._writer):
                if store is not None:
                    store.close()
            if self._version_conn is not None:
                self._version_conn.close()
            self._reader = self._writer = self._version_conn = None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def reader(self) -> Store:
        if self._reader is None:
            self.open()
        return self._reader

    @property
    def writer(self) -> Store:
        if self._writer is None:
            self.open()
        return self._writer

    def data_version(self) -> int:
        """Return SQLite's data_version: it changes whenever another connection commits.

        The poller compares it between polls, so an unchanged store costs one
        pragma and no reads.

        Raises:
            StoreError: after `close`.
        """
        if self._version_conn is None:
            self.open()
        with self._version_lock:
            if self._version_conn is None:
                from store.errors import StoreError

                raise StoreError(f"The connections to the store '{self.store_path}' are closed.")
            return self._version_conn.execute("PRAGMA data_version").fetchone()[0]

    # Reads ------------------------------------------------------------------

    def project_names(self) -> list[str]:
        return [project.name for project in self.reader.list_projects()]

    def list_projects(self) -> list[ProjectEntry]:
        """Return one entry per project, in name order."""
        entries = []
        for project in self.reader.list_projects():
            try:
                entries.append(project_entry(self.load_project(project.name)))
            except LookupError:
                continue  # deleted between the two reads (ProjectNotFound)
        return entries

    def load_project(self, name: str) -> ProjectView:
        """Read everything the project screen shows.

        Raises:
            ProjectNotFound: if the project does not exist (any more).
        """
        reader = self.reader
        project = reader.get_project(name)
        jobs = reader.jobs(project, limit=10)
        latest = JobView(jobs[0], reader.job_liveness(jobs[0])) if jobs else None
        active = None
        for job in jobs:
            if job.active:
                active = JobView(job, reader.job_liveness(job))
                break
        exports = reader.exports(project)
        return ProjectView(
            project=project,
            rows=reader.layer_table(project),
            summary=reader.summary(project),
            records={record.name: record for record in reader.layers(project)},
            candidates=candidate_ratios(project.candidates),
            active=active,
            latest=latest,
            last_export=exports[0] if exports else None,
        )

    def reload_selection(self, view: ProjectView) -> ProjectView:
        """Return `view` with the project, layer rows and summary read again, after an edit.

        Jobs, exports and layer records are kept: an edit does not change them.
        """
        reader = self.reader
        project = reader.get_project(view.project.name)
        return replace(
            view,
            project=project,
            rows=reader.layer_table(project),
            summary=reader.summary(project),
            candidates=candidate_ratios(project.candidates),
        )

    # Edits ------------------------------------------------------------------
    #
    # Each edit pushes an UndoStep, so that undo also reverts what is not a
    # selection revision (the ignored layers, the target). Without steps, after
    # a restart, undo falls back to the store's newest selection revision.

    def set_ratio(self, name: str, layer: str, ratio: Decimal | None) -> None:
        """Set one layer's ratio (None: uncompressed) as a manual revision.

        Raises:
            ValueError: for an ineligible or ignored layer, or a ratio outside (0, 1].
        """
        self.writer.set_layer_ratio(name, layer, ratio)
        self._push(name, UndoStep(f"{layer} set to {format_ratio(ratio)}", revision=True))

    def toggle_ignored(self, name: str, layer: str) -> bool:
        """Add the layer to the project's ignored layers, or remove it; return True if now ignored.

        Ignoring a compressed layer also resets it to uncompressed, in a
        revision of its own.
        """
        writer = self.writer
        project = writer.get_project(name)
        ignored = list(project.ignored)
        now_ignored = layer not in ignored
        if now_ignored:
            ignored.append(layer)
            revision = writer.selection(name).get(layer) is not None
        else:
            ignored.remove(layer)
            revision = False
        writer.update_project(name, ignored=ignored)
        verb = "ignored" if now_ignored else "no longer ignored"
        self._push(name, UndoStep(f"{layer} {verb}", revision=revision, ignored=tuple(project.ignored)))
        return now_ignored

    def auto_select(self, name: str) -> SelectionResult:
        """Rerun greedy selection for the project's target on the cached scores."""
        result = self.writer.auto_select(name)
        self._push(name, UndoStep(f"auto-select for target {format_ratio(result.target)}", revision=True))
        return result

    def set_target(self, name: str, target: Decimal) -> SelectionResult | Project:
        """Change the target ratio; rerun auto-select when any score is cached.

        Returns:
            The auto-select result, or the updated project when there is no
            score to select from.
        """
        writer = self.writer
        old = writer.get_project(name).target
        project = writer.update_project(name, target=target)
        result: SelectionResult | Project = project
        if any(writer.scores(name).values()):
            result = writer.auto_select(name)
        self._push(
            name,
            UndoStep(
                f"target {format_ratio(old)} -> {format_ratio(target)}",
                revision=isinstance(result, SelectionResult),
                target=old,
            ),
        )
        return result

    def undo(self, name: str) -> str | bool:
        """Undo the newest edit of this session, else the newest selection revision.

        Returns:
            A description of what was undone, True for a store revision of an
            earlier session, or False when there is nothing to undo.
        """
        steps = self._undo.get(name)
        if not steps:
            return self.writer.undo(name)
        step = steps.pop()
        writer = self.writer
        # Restore the ignored list first: a revision that gave a ratio to a
        # layer that is ignored again would contradict it.
        if step.ignored is not None:
            writer.update_project(name, ignored=list(step.ignored))
        if step.target is not None:
            writer.update_project(name, target=step.target)
        if step.revision:
            writer.undo(name)
        return step.description

    def _push(self, name: str, step: "UndoStep") -> None:
        self._undo.setdefault(name, []).append(step)

    def delete_project(self, name: str) -> None:
        """Delete a project; raises JobConflict while one of its jobs runs."""
        self.writer.delete_project(name)

    def create_project(self, request: NewProject) -> int:
        """Check the evaluator, create the project and launch its layer analysis.

        Runs in a worker thread: a Python evaluator is checked in a child
        process, which can take seconds, and the model file is hashed.

        Returns:
            The id of the analysis job.

        Raises:
            EvaluatorSpecError: if the evaluator spec does not resolve.
            ProjectExists, ValueError, FileNotFoundError: from the store.
            OSError: if the job process cannot start.
        """
        from workbench.evaluators import check_evaluator

        error = model_path_error(request.model_path)
        if error:
            raise ValueError(error)
        checked = check_evaluator(request.evaluator_spec, request.eval_iterations)
        self.writer.create_project(
            request.name,
            Path(request.model_path).expanduser(),
            checked.spec.text,
            checked.key,
            eval_iterations=request.eval_iterations,
            metric=request.metric,
            target=request.target,
            candidates=request.candidates,
            multiplicity=request.multiplicity,
        )
        return self.launch(request.name, "analyse")

    # Jobs -------------------------------------------------------------------

    def launch(self, name: str, kind: str, options: dict | None = None) -> int:
        """Start a job process; return its id. See `workbench.jobs.launch_job`."""
        from workbench.jobs import launch_job

        return launch_job(self.store_path, name, kind, options)

    def cancel_search(self, name: str) -> int | None:
        """Ask the running search to stop; return its id, or None when none runs."""
        from workbench.jobs import cancel_job

        return cancel_job(self.store_path, name)

    def export_path_exists(self, output: str) -> bool:
        return Path(output).expanduser().exists()

    def job(self, job_id: int) -> JobView:
        job = self.reader.job(job_id)
        return JobView(job, self.reader.job_liveness(job))
