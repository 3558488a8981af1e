"""The summary panel of the project screen: scores, ratios and costs of the selection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from rich.text import Text
from textual.widgets import Static

from workbench.report import human_count
from workbench.selection import format_ratio
from workbench.tui.data.format import score_text

if TYPE_CHECKING:
    from store.rows import Project, Summary


def summary_text(project: Project, summary: Summary, layer_count: int, notes: Sequence[str] = ()) -> Text:
    """Render the summary as four lines of at most 78 columns, plus the first of `notes` when given.

    A long note is cut with an ellipsis; the job log dialog shows it in full.
    """
    achieved = summary.memory_ratio if project.metric == "memory" else summary.mac_ratio
    met = achieved <= float(project.target)
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("Score   ", "bold")
    text.append("baseline ")
    text.append(score_text(summary.baseline) if not summary.baseline_missing else "not measured")
    text.append(" · predicted ")
    text.append(score_text(summary.predicted))
    if summary.predicted is not None:
        text.append(" (estimate)", "dim")
    text.append("\n")

    text.append("Ratio   ", "bold")
    text.append(f"target {format_ratio(project.target)} {project.metric} · achieved ")
    text.append(f"{achieved:.3f}", "bold green" if met else "bold yellow")
    text.append(" (met)" if met else " (missed)", "green" if met else "yellow")
    text.append(f" · MAC {summary.mac_ratio:.3f} · mem {summary.memory_ratio:.3f}")
    text.append("\n")

    text.append("Cost    ", "bold")
    text.append(f"MACs {human_count(summary.macs_before)} → {human_count(summary.macs_after)}")
    text.append(f" · params {human_count(summary.params_before)} → {human_count(summary.params_after)}")
    text.append(f" · memory {human_count(summary.memory_before)} → {human_count(summary.memory_after)}")
    text.append("\n")

    parts = [f"{summary.compressed_layers} of {layer_count} layers compressed"]
    if project.ignored:
        parts.append(f"{len(project.ignored)} ignored")
    parts.append("all scores cached" if summary.missing_scores == 0 else f"{summary.missing_scores} scores missing")
    text.append("Layers  ", "bold")
    text.append(" · ".join(parts))
    if notes:
        text.append("\n")
        text.append("Note    ", "bold yellow")
        text.append(notes[0] + (f" (+{len(notes) - 1} more)" if len(notes) > 1 else ""))
    return text


class SummaryPanel(Static):
    """Four lines of model-level numbers and an optional note, redrawn after every edit and poll."""

    DEFAULT_CSS = """
    SummaryPanel { height: 4; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def show(self, project: Project, summary: Summary, layer_count: int, notes: Sequence[str] = ()) -> None:
        self.styles.height = 5 if notes else 4
        self.update(summary_text(project, summary, layer_count, notes))

    def show_message(self, message: str) -> None:
        self.styles.height = 4
        self.update(Text(message, "dim"))
