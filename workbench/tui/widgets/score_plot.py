"""Score against ratio for the highlighted layer, drawn with plotext."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from store.rows import LayerRow
from workbench.selection import format_ratio


class ScorePlot(PlotextPlot):
    """Cached scores of one layer by candidate ratio, the baseline, and the chosen ratio."""

    DEFAULT_CSS = """
    ScorePlot { height: 12; }
    """

    def show_layer(self, row: LayerRow | None, baseline: float | None) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
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
            plt.plot(ratios, scores, marker="braille")
            plt.scatter(ratios, scores, marker="dot")
            if baseline is not None:
                plt.hline(baseline, "green")
            if row.ratio is not None:
                plt.vline(float(row.ratio), "yellow")
            chosen = "none" if row.ratio is None else format_ratio(row.ratio)
            plt.title(f"{row.name}: score by ratio (chosen {chosen})")
        self.refresh()
