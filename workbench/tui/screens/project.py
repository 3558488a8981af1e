"""The project screen: layer table, summary, score plot, search and export, manual edits."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from rich.table import Table
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer

from store.errors import ProjectNotFound, StoreError
from store.rows import Export, LayerRow
from workbench.report import human_count
from workbench.selection import SelectionResult, format_ratio
from workbench.tui.data.format import score_text
from workbench.tui.data.ratios import parse_ratio, ratio_error, step_ratio
from workbench.tui.data.views import JobView, ProjectView
from workbench.tui.dialogs.export import ExportDialog, ExportRequest
from workbench.tui.dialogs.message import MessageDialog
from workbench.tui.dialogs.value import ValueDialog
from workbench.tui.messages import JobStarted, ProjectGone, ProjectLoaded
from workbench.tui.screens.base import PollingScreen
from workbench.tui.widgets.job_panel import JobPanel
from workbench.tui.widgets.layer_table import LayerTable
from workbench.tui.widgets.score_plot import ScorePlot
from workbench.tui.widgets.summary import SummaryPanel
from workbench.tui.widgets.title_bar import TitleBar

# The plot shows by default from this terminal height; below it the layer
# table needs the rows, and 'p' shows the plot on demand.
PLOT_MIN_HEIGHT = 34

# The footer shows the two step keys as one entry: "[ ] ratio".
RATIO_KEYS = Binding.Group("Ratio")

# Actions that change the highlighted layer's ratio.
RATIO_ACTIONS = {"step", "exact_ratio", "uncompress"}


class ProjectScreen(PollingScreen):
    """One project: its layers, the selection and its numbers, and its jobs."""

    BINDINGS = [
        Binding("left_square_bracket,minus", "step(-1)", "Ratio-", key_display="[", id="project.ratio-down",
                tooltip="Ratio down: compress the highlighted layer more (next smaller candidate)", group=RATIO_KEYS),
        Binding("right_square_bracket,plus", "step(1)", "Ratio+", key_display="]", id="project.ratio-up",
                tooltip="Ratio up: compress the highlighted layer less (next larger candidate, then none)", group=RATIO_KEYS),
        Binding("e", "exact_ratio", "Exact", id="project.exact-ratio", show=False,
                tooltip="Exact ratio: type a ratio in (0, 1] for the highlighted layer"),
        Binding("n", "uncompress", "None", id="project.uncompress",
                tooltip="Leave uncompressed: keep the highlighted layer as it is"),
        Binding("i", "ignore", "Ignore", id="project.ignore", show=False,
                tooltip="Ignore layer: leave the highlighted layer out of auto-select, or take it back"),
        Binding("u,ctrl+z", "undo", "Undo", id="project.undo", tooltip="Undo the last edit"),
        Binding("a", "auto_select", "Auto", id="project.auto-select",
                tooltip="Auto-select: rerun greedy selection for the target on the cached scores"),
        Binding("t", "target", "Target", id="project.target", show=False,
                tooltip="Set target: change the target ratio and rerun auto-select"),
        Binding("s", "search", "Search", id="project.search",
                tooltip="Search: start or resume the score search as a background job"),
        Binding("c", "cancel_search", "Cancel", id="project.cancel-search",
                tooltip="Cancel search: stop the running search; cached scores are kept"),
        Binding("x", "export", "Export", id="project.export",
                tooltip="Export: write the compressed model as a background job"),
        Binding("l", "job_log", "Log", id="project.job-log",
                tooltip="Job log: the last job's full error, traceback and log path, and auto-select notes"),
        Binding("r", "analyse", "Analyse", id="project.analyse", show=False,
                tooltip="Analyse: run the layer analysis of the model file again"),
        Binding("p", "toggle_plot", "Plot", id="project.toggle-plot", show=False,
                tooltip="Plot: show or hide the score plot of the highlighted layer"),
        Binding("escape,q", "back", "Back", id="project.back", tooltip="Back to the projects"),
    ]
    # Enter on the layer table (its own select binding) also opens the exact
    # ratio dialog; the F1 help lists it beside the binding's keys.
    EXTRA_HELP_KEYS = {"project.exact-ratio": ("enter",)}
    HELP = (
        "Ratio: chosen cost ratio of a layer (* manual edit, none: uncompressed, ign: ignored). "
        "Rank: rank at that ratio / max rank. Score: cached score with only this layer compressed "
        "(~ interpolated between candidates). Drop: baseline minus score. Cost%: share of the "
        "model's original cost. Done: candidates with a cached score. Eligible: why a layer "
        "cannot be split, in short; the plot title (p) has the full reason. Edits recompute from "
        "cached scores at once; the predicted score is an estimate that adds up per-layer drops. "
        "Search, analysis and export run as separate processes and keep running when the app quits."
    )

    def __init__(self, project_name: str):
        super().__init__()
        self.project_name = project_name
        self.view: ProjectView | None = None
        self.generation = 0
        self.plot_choice: bool | None = None  # None: by terminal height
        self._watched_exports: set[int] = set()
        self._binding_state: tuple | None = None
        self._gone = False
        # Notes of the last auto-select of this session (flat curves, a missed
        # target); the summary shows the first, the job log dialog all of them.
        self.selection_notes: list[str] = []

    def compose(self) -> ComposeResult:
        yield TitleBar(self.project_name, id="title")
        yield SummaryPanel(id="summary")
        yield JobPanel(id="job")
        yield LayerTable(id="layers")
        yield ScorePlot(id="plot")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        try:
            view = self.backend.load_project(self.project_name)
        except ProjectNotFound:
            self.post_message(ProjectGone(self.project_name))
            return
        self._version = self.backend.data_version()
        self.render_view(view)
        self.update_plot_visibility()
        self.start_polling()
        self.query_one(LayerTable).focus()

    # Data -------------------------------------------------------------------

    def read_data(self) -> None:
        generation = self.generation
        try:
            view = self.backend.load_project(self.project_name)
        except ProjectNotFound:
            self.post_message(ProjectGone(self.project_name))
            return
        self.post_message(ProjectLoaded(view, generation))

    def on_project_loaded(self, message: ProjectLoaded) -> None:
        if message.generation != self.generation:
            # Read before the latest edit: drop it and read again.
            self.force_reload()
            return
        self.render_view(message.view)

    def on_project_gone(self, message: ProjectGone) -> None:
        if self._gone:
            return
        self._gone = True
        self.notify(f"Project {message.name} was deleted.", severity="warning")
        if self.is_current:
            self.app.pop_screen()

    def on_screen_resume(self) -> None:
        # A dialog was open when the project disappeared: leave once it closes.
        if self._gone:
            self.app.pop_screen()

    def render_view(self, view: ProjectView) -> None:
        """Draw every panel from `view`; cheap enough to run after each edit."""
        self.view = view
        project = view.project
        self.query_one("#title", TitleBar).update(
            f"{project.name} · {Path(project.model_path).name} · {project.metric} · "
            f"{project.candidates} candidates · multiplicity {project.multiplicity}"
        )
        summary_panel = self.query_one(SummaryPanel)
        if view.rows:
            summary_panel.show(project, view.summary, len(view.rows), self.selection_notes)
        elif view.latest is not None and view.latest.job.kind == "analyse" and view.latest.live:
            summary_panel.show_message("No layers yet: the layer analysis is running.")
        else:
            summary_panel.show_message("No layers yet: press r to run the layer analysis of the model file.")
        self.query_one(JobPanel).show(view.active, view.latest, self.idle_hint(view))
        self.query_one(LayerTable).show_rows(view.rows, view.records, len(view.candidates))
        self.update_plot()
        self.watch_exports(view)
        self.update_bindings()

    def idle_hint(self, view: ProjectView) -> str:
        if not view.rows:
            return ""
        summary = view.summary
        if summary.missing_scores or summary.baseline_missing:
            return "press s to search"
        return ""

    def watch_exports(self, view: ProjectView) -> None:
        """Show the result of an export job this screen started or saw running, once it ends."""
        if view.active is not None and view.active.job.kind == "export":
            self._watched_exports.add(view.active.job.id)
        for job_id in sorted(self._watched_exports):
            if view.active is not None and view.active.job.id == job_id:
                continue
            if view.latest is not None and view.latest.job.id == job_id:
                ended = view.latest
            else:
                try:
                    ended = self.backend.job(job_id)
                except LookupError:  # JobNotFound: deleted with its project
                    self._watched_exports.discard(job_id)
                    continue
            if ended.live:
                continue
            self._watched_exports.discard(job_id)
            if ended.liveness == "done" and view.last_export is not None:
                self.app.push_screen(MessageDialog("Export finished", export_summary(view.last_export)))
            else:
                detail = ended.job.error or f"The export job ended as {ended.liveness}."
                self.app.push_screen(MessageDialog("Export failed", detail, error=True))

    # Highlighted layer and plot -----------------------------------------------

    @property
    def highlighted_row(self) -> LayerRow | None:
        if self.view is None:
            return None
        name = self.query_one(LayerTable).highlighted_layer
        return None if name is None else self.view.row(name)

    @on(DataTable.RowHighlighted, "#layers")
    def row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.update_plot()
        self.update_bindings()

    @on(DataTable.RowSelected, "#layers")
    def row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if self.check_action("exact_ratio", ()):
            self.action_exact_ratio()

    def update_plot(self) -> None:
        plot = self.query_one(ScorePlot)
        if plot.display and self.view is not None:
            plot.show_layer(self.highlighted_row, self.view.summary.baseline)

    def on_resize(self, event: events.Resize) -> None:
        self.update_plot_visibility()

    def update_plot_visibility(self) -> None:
        visible = self.plot_choice if self.plot_choice is not None else self.app.size.height >= PLOT_MIN_HEIGHT
        plot = self.query_one(ScorePlot)
        if plot.display != visible:
            plot.display = visible
            self.update_plot()

    def action_toggle_plot(self) -> None:
        self.plot_choice = not self.query_one(ScorePlot).display
        self.update_plot_visibility()

    # Action availability ------------------------------------------------------

    def update_bindings(self) -> None:
        """Refresh the footer only when an action became available or unavailable.

        Each refresh recomposes the footer, which costs a layout pass, so a
        cursor move between two ordinary layers must not trigger one.
        """
        state = tuple(self.check_action(binding.action.split("(")[0], ()) for binding in self.BINDINGS)
        if state != self._binding_state:
            self._binding_state = state
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        view = self.view
        if view is None:
            return None
        has_layers = bool(view.rows)
        search_live = view.search_running
        if action in RATIO_ACTIONS:
            row = self.highlighted_row
            return True if row is not None and row.eligible and not row.ignored else None
        if action == "ignore":
            row = self.highlighted_row
            return True if row is not None and row.eligible else None
        if action in ("auto_select", "target"):
            return True if has_layers else None
        if action == "search":
            return True if has_layers and not search_live else None
        if action == "cancel_search":
            return search_live
        if action == "export":
            export_live = view.active is not None and view.active.job.kind == "export"
            return True if has_layers and not export_live else None
        if action == "job_log":
            return True if view.latest is not None or self.selection_notes else None
        if action == "analyse":
            return None if view.active is not None else True
        return True

    # Edits --------------------------------------------------------------------

    def apply_edit(self, write: Callable[[], object]):
        """Run one store write, then redraw from the store's layer table and summary.

        Runs on the UI thread: a write is one short transaction, and the layer
        table and summary come from cached numbers (no TensorFlow, no job), so
        the edit shows in the next frame.

        Returns:
            What `write` returned, or None when it raised (the error is shown).
        """
        try:
            result = write()
        except (ValueError, StoreError) as error:
            self.notify(str(error), severity="error", timeout=8)
            return None
        self.generation += 1
        try:
            self.render_view(self.backend.reload_selection(self.view))
        except ProjectNotFound:
            self.post_message(ProjectGone(self.project_name))
        return result

    def action_step(self, direction: int) -> None:
        row = self.highlighted_row
        if row is None or not row.eligible or row.ignored:
            return
        new = step_ratio(row.ratio, self.view.candidates, direction)
        if new == row.ratio:
            end = "most compressed candidate" if direction < 0 else "uncompressed"
            self.notify(f"{row.name} is already {'at its ' if direction < 0 else ''}{end}.")
            return
        self.apply_edit(lambda: self.backend.set_ratio(self.project_name, row.name, new))

    def action_uncompress(self) -> None:
        row = self.highlighted_row
        if row is None or row.ratio is None:
            return
        self.apply_edit(lambda: self.backend.set_ratio(self.project_name, row.name, None))

    def action_exact_ratio(self) -> None:
        row = self.highlighted_row
        if row is None or not row.eligible or row.ignored:
            return
        layer = row.name

        def chosen(text: str | None) -> None:
            if text is not None:
                self.apply_edit(lambda: self.backend.set_ratio(self.project_name, layer, parse_ratio(text)))

        self.app.push_screen(
            ValueDialog(
                f"Ratio for {layer}",
                "Cost ratio in (0, 1]: 1 keeps the full affordable rank, smaller compresses more. "
                "Ratios between candidates get an interpolated score.",
                "" if row.ratio is None else format_ratio(row.ratio),
                ratio_error,
                input_id="ratio",
            ),
            chosen,
        )

    def action_ignore(self) -> None:
        row = self.highlighted_row
        if row is None or not row.eligible:
            return
        now_ignored = self.apply_edit(lambda: self.backend.toggle_ignored(self.project_name, row.name))
        if now_ignored is not None:
            self.notify(f"{row.name} {'is ignored' if now_ignored else 'is no longer ignored'}.")

    def action_undo(self) -> None:
        undone = self.apply_edit(lambda: self.backend.undo(self.project_name))
        if undone is False:
            self.notify("Nothing to undo.")
        elif undone is True:
            self.notify("Undone the newest selection revision.")
        elif undone:
            self.notify(f"Undone: {undone}.")

    def action_auto_select(self) -> None:
        result = self.apply_edit(lambda: self.backend.auto_select(self.project_name))
        if result is not None:
            self.report_selection(result)

    def report_selection(self, result: SelectionResult) -> None:
        metric = self.view.project.metric if self.view else ""
        message = f"Auto-select for target {format_ratio(result.target)}: achieved {result.achieved:.4f} ({metric})."
        # The notes can fill ten lines of a notification at 80 columns: the
        # summary shows the first one and the job log dialog (l) all of them.
        self.selection_notes = list(result.notes)
        if result.notes:
            message += " Notes: see the summary; l shows them in full."
        self.notify(message, severity="information" if result.reachable else "warning")
        if self.view is not None:
            self.render_view(self.view)

    def action_target(self) -> None:
        if self.view is None:
            return
        current = format_ratio(self.view.project.target)

        def chosen(text: str | None) -> None:
            if text is None:
                return
            target = parse_ratio(text, "target ratio")
            result = self.apply_edit(lambda: self.backend.set_target(self.project_name, target))
            if isinstance(result, SelectionResult):
                self.report_selection(result)
            elif result is not None:
                self.notify(f"Target set to {format_ratio(target)}. Search for scores, then auto-select.")

        self.app.push_screen(
            ValueDialog(
                "Target ratio",
                f"Model cost ratio in (0, 1] to select for, in {self.view.project.metric}. "
                "Auto-select reruns at once on the cached scores.",
                current,
                lambda text: ratio_error(text, "target ratio"),
                input_id="target",
            ),
            chosen,
        )

    # Jobs ---------------------------------------------------------------------

    def action_search(self) -> None:
        view = self.view
        if view is None:
            return
        summary = view.summary
        if summary.missing_scores == 0 and not summary.baseline_missing:
            self.notify("Every candidate score is cached; nothing to search.")
            return
        self.launch("search")

    def action_analyse(self) -> None:
        self.launch("analyse")

    @work(thread=True, group="launch", exit_on_error=False, name="Start job")
    def launch(self, kind: str, options: dict | None = None) -> None:
        job_id = self.backend.launch(self.project_name, kind, options)
        self.post_message(JobStarted(self.project_name, kind, job_id))

    def on_job_started(self, message: JobStarted) -> None:
        if message.kind == "export":
            self._watched_exports.add(message.job_id)
        self.notify(f"Started the {message.kind} job {message.job_id}; it keeps running if you quit.")
        self.force_reload()

    def action_cancel_search(self) -> None:
        job_id = self.backend.cancel_search(self.project_name)
        if job_id is None:
            self.notify("No search is running.")
        else:
            self.notify(f"Cancelling search job {job_id}: it stops after the result in flight.")
        self.force_reload()

    def action_export(self) -> None:
        view = self.view
        if view is None:
            return
        if view.summary.compressed_layers == 0:
            self.notify("No layer is compressed: choose ratios first (a: auto-select).", severity="warning")
            return
        model_path = Path(view.project.model_path)
        default = str(model_path.with_name(f"{model_path.stem}_{view.project.name}_compressed.keras"))

        def chosen(request: ExportRequest | None) -> None:
            if request is not None:
                self.launch("export", {"output": str(Path(request.output).expanduser().absolute()), "force": request.force})

        self.app.push_screen(ExportDialog(view.project.name, default), chosen)

    def action_job_log(self) -> None:
        view = self.view
        if view is None:
            return
        latest = view.latest
        error = latest is not None and latest.liveness in ("failed", "dead", "stale")
        self.app.push_screen(
            MessageDialog(job_log_title(latest), job_log_text(latest, self.selection_notes), error=error)
        )

    def action_back(self) -> None:
        self.app.pop_screen()


def export_summary(export: Export) -> Table:
    """Tabulate an export record for the result dialog."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("File", export.path)
    table.add_row("MACs", f"{human_count(export.macs_before)} → {human_count(export.macs_after)}")
    table.add_row("Params", f"{human_count(export.params_before)} → {human_count(export.params_after)}")
    table.add_row("Baseline score", score_text(export.baseline_score))
    table.add_row("Compressed score", score_text(export.compressed_score) + " (measured)")
    compressed = sum(1 for ratio in export.ratios.values() if ratio is not None)
    table.add_row("Layers split", f"{compressed} of {len(export.ratios)}")
    return table



def job_log_title(latest: JobView | None) -> str:
    if latest is None:
        return "Auto-select notes"
    return f"Job {latest.job.id}: {latest.describe()}"


def job_log_text(latest: JobView | None, notes: list[str]) -> Text:
    """Return the full text of the job log dialog: the job's error with its traceback, the log path, the notes."""
    text = Text()
    if latest is not None:
        job = latest.job
        text.append(f"{latest.noun.capitalize()} job {job.id}, {latest.liveness}", "bold")
        text.append(f" · started {job.started or '-'} · finished {job.finished or '-'}\n")
        text.append("Log file: ", "bold")
        text.append(f"{job.log_path or 'none recorded'}\n")
        if job.error:
            text.append("\nError\n", "bold")
            text.append(job.error.rstrip() + "\n")
    if notes:
        text.append("\nAuto-select notes\n", "bold")
        for note in notes:
            text.append(note + "\n")
    return text
