"""The table of projects on the projects screen."""

from __future__ import annotations

from typing import Sequence

from rich.text import Text
from textual.widgets import DataTable

from workbench.tui.data.format import ratio_or_dash, score_text, shorten
from workbench.tui.data.views import ProjectEntry

COLUMNS = (
    ("name", "Project"),
    ("model", "Model"),
    ("metric", "Metric"),
    ("target", "Target"),
    ("status", "Search"),
    ("achieved", "Ratio"),
    ("score", "Score"),
)
RIGHT_ALIGNED = {"target", "achieved", "score"}


class ProjectTable(DataTable):
    """One row per project, keyed by project name."""

    DEFAULT_CSS = """
    ProjectTable { height: 1fr; }
    """

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", **kwargs)
        self._entries: list[ProjectEntry] = []

    def on_mount(self) -> None:
        for key, header in COLUMNS:
            self.add_column(Text(header, justify="right" if key in RIGHT_ALIGNED else "left"), key=key)

    @property
    def highlighted_project(self) -> str | None:
        if not self._entries or not 0 <= self.cursor_row < len(self._entries):
            return None
        return self._entries[self.cursor_row].name

    def show_entries(self, entries: Sequence[ProjectEntry]) -> None:
        """Show `entries`, keeping the cursor on the same project when it still exists."""
        entries = list(entries)
        if entries == self._entries:
            return
        highlighted = self.highlighted_project
        self.clear()
        for entry in entries:
            cells = (
                shorten(entry.name, 20),
                shorten(entry.model_file, 18),
                entry.metric,
                entry.target,
                entry.status,
                ratio_or_dash(entry.achieved),
                score_text(entry.predicted),
            )
            self.add_row(
                *(Text(cell, justify="right" if key in RIGHT_ALIGNED else "left") for (key, _), cell in zip(COLUMNS, cells)),
                key=entry.name,
            )
        self._entries = entries
        names = [entry.name for entry in entries]
        if highlighted in names:
            self.move_cursor(row=names.index(highlighted), animate=False)
