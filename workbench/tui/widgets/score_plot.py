"""Score against ratio for the highlighted layer, drawn with plotext."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual_plotext import PlotextPlot

from workbench.selection import format_ratio

if TYPE_CHECKING:
    from store.rows import LayerRow


class ScorePlot(PlotextPlot):
    """Cached scores of one layer by candidate ratio, the baseline, and the chosen ratio."""

    DEFAULT_CSS = """
    ScorePlot { height: 12; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._shown: tuple | None = None

    def show_layer(self, row: LayerRow | None, baseline: float | None) -> None:
        """Draw `row`'s curve; a call with the same row and baseline as the last one does nothing."""
        if self._shown == (row, baseline):
            return
        self._shown = (row, baseline)
        plt = self.plt
        # clear_data also drops the lines and limits. clear_figure would be
        # slower: plotext builds a new figure, which parses a date format.
        plt.clear_data()
        plt.xlim(0, 1)
        plt.xlabel("ratio")
        if row is None:
            plt.title("No layer")
        elif not row.eligible:
            plt.title(f"{row.name}: not eligible ({row.reason or 'not splittable'})")
        elif not row.scores:
            plt.title(f"{row.name}: no cached scores yet")
        else:
            ratios = [float(ratio) for ratio in row.scores]
            scores = list(row.scores.values())
            plt.plot(ratios, scores, marker="braille", color="cyan")
            plt.scatter(ratios, scores, marker="dot", color="cyan")
            if baseline is not None:
                plt.hline(baseline, "green")
            if row.ratio is not None:
                plt.vline(float(row.ratio), "yellow")
            chosen = "none" if row.ratio is None else format_ratio(row.ratio)
            plt.title(f"{row.name}: score by ratio (chosen {chosen})")
        self.refresh()
