"""The first screen: the table of projects, with new, open and delete."""

from __future__ import annotations

import time

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

from workbench.tui.data.backend import NewProject
from workbench.tui.dialogs.confirm import ConfirmDialog
from workbench.tui.dialogs.new_project import NewProjectDialog
from workbench.tui.messages import JobStarted, ProjectsLoaded, StoreUnavailable
from workbench.tui.screens.base import PollingScreen
from workbench.tui.widgets.project_table import ProjectTable
from workbench.tui.widgets.title_bar import TitleBar


class ProjectsScreen(PollingScreen):
    """Every project of the store with its search status, achieved ratio and predicted score."""

    BINDINGS = [
        Binding("enter,o", "open_project", "Open", id="projects.open", tooltip="Open the highlighted project"),
        Binding("n", "new_project", "New", id="projects.new", tooltip="New project: create a project and analyse its model"),
        Binding(
            "d,delete", "delete_project", "Delete", id="projects.delete", tooltip="Delete project: delete the highlighted project and its records"
        ),
        Binding("q", "app.quit", "Quit", id="projects.quit", tooltip="Quit; running jobs keep running"),
    ]
    HELP = (
        "Projects of the store. A project is a model, an evaluator and selection settings. "
        "Search: the state of its jobs and score cache. Ratio: achieved cost ratio of the "
        "current selection. Score: predicted score of that selection (an estimate)."
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._had_entries: bool | None = None
        self._polling = False

    def compose(self) -> ComposeResult:
        yield TitleBar(f"svd-workbench · projects · store {self.app.store_label}", id="title")
        yield ProjectTable(id="projects")
        yield Static("Opening the store…", id="empty", classes="empty-hint")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        # The first frame paints before the store package is even imported;
        # the first read runs in a worker and starts the polling.
        self.query_one(ProjectTable).focus()
        self.open_store()

    @work(thread=True, exclusive=True, group="open", exit_on_error=False, name="Open the store")
    def open_store(self) -> None:
        from store.errors import StoreError

        try:
            self.backend.open()
            self._version = self.backend.data_version()
            entries = self.backend.list_projects()
        except StoreError as error:
            self.post_message(StoreUnavailable(error))
            return
        self._loaded_at = time.monotonic()
        self.post_message(ProjectsLoaded(entries))

    def on_screen_resume(self) -> None:
        if self._polling:
            self.force_reload()

    @property
    def loaded(self) -> bool:
        """True once the store is open and the first read has been shown."""
        return self._polling

    def read_data(self) -> None:
        self.post_message(ProjectsLoaded(self.backend.list_projects()))

    def on_projects_loaded(self, message: ProjectsLoaded) -> None:
        if not self._polling:
            self._polling = True
            self.query_one("#empty", Static).update("No projects yet. Press n to create one.")
            self.start_polling()
        self.show_entries(message.entries)

    def show_entries(self, entries) -> None:
        self.query_one(ProjectTable).show_entries(entries)
        self.query_one("#empty").display = not entries
        has_entries = bool(entries)
        if has_entries != self._had_entries:
            self._had_entries = has_entries
            self.refresh_bindings()

    @property
    def highlighted(self) -> str | None:
        return self.query_one(ProjectTable).highlighted_project

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("open_project", "delete_project") and self.highlighted is None:
            return None
        if action == "new_project" and not self._polling:
            return None  # the store is not open yet
        return True

    @on(DataTable.RowSelected, "#projects")
    def row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_project()

    def action_open_project(self) -> None:
        name = self.highlighted
        if name is not None:
            self.app.open_project(name)

    def action_new_project(self) -> None:
        existing = set(self.backend.project_names())
        self.app.push_screen(NewProjectDialog(existing), self._create_project)

    def _create_project(self, request: NewProject | None) -> None:
        if request is not None:
            self.notify(f"Creating project {request.name}: checking the evaluator and hashing the model…")
            self.create_in_thread(request)

    @work(thread=True, exclusive=True, group="create", exit_on_error=False, name="Create project")
    def create_in_thread(self, request: NewProject) -> None:
        job_id = self.backend.create_project(request)
        self.post_message(JobStarted(request.name, "analyse", job_id))

    def on_job_started(self, message: JobStarted) -> None:
        self.notify(f"Project {message.project} created; layer analysis runs as job {message.job_id}.")
        self.force_reload()

    def action_delete_project(self) -> None:
        name = self.highlighted
        if name is None:
            return

        def answered(delete: bool | None) -> None:
            if not delete:
                return
            from store.errors import JobConflict, ProjectNotFound

            try:
                self.backend.delete_project(name)
            except (JobConflict, ProjectNotFound) as error:
                self.notify(str(error), severity="error", timeout=10)
                return
            self.notify(f"Project {name} deleted. Its cached scores stay in the store for reuse.")
            self.force_reload()

        self.app.push_screen(
            ConfirmDialog(
                f"Delete project {name}?",
                "Its layers, selection history, job records and export records are deleted. "
                "Cached scores stay, and exported model files are not touched.",
                "Delete",
                "Keep",
            ),
            answered,
        )
