"""The layer table of the project screen."""

from __future__ import annotations

from typing import TYPE_CHECKING

from typing import Sequence

from rich.text import Text
from textual.widgets import DataTable

from workbench.tui.data.format import layer_cells

if TYPE_CHECKING:
    from store.rows import LayerRow
    from workbench.records import LayerRecord

# (key, header, tooltip for the help screen). The first seven columns fit in
# 80 terminal columns; the table scrolls sideways for the rest.
COLUMNS = (
    ("name", "Layer", "layer path in the model"),
    ("ratio", "Ratio", "chosen ratio; * manual edit, none uncompressed, ign ignored"),
    ("rank", "Rank", "rank at the ratio / max rank"),
    ("score", "Score", "cached score at the ratio; ~ interpolated"),
    ("drop", "Drop", "baseline score minus the score"),
    ("share", "Cost%", "share of the model's original cost, in the project's metric"),
    ("macs", "MACs", "multiply-accumulates of the original layer"),
    ("scores", "Done", "candidate ratios with a cached score"),
    ("params", "Params", "parameters of the original layer, bias included"),
    ("type", "Type", "Keras layer class"),
    ("kernel", "Kernel", "kernel size"),
    ("eligible", "Eligible", "yes, ignored, or why spatial SVD cannot split it"),
)
RIGHT_ALIGNED = {"rank", "score", "drop", "share", "macs", "scores", "params"}


class LayerTable(DataTable):
    """One row per layer, keyed by layer name; updates only the cells that changed."""

    DEFAULT_CSS = """
    LayerTable { height: 1fr; }
    """

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=False, fixed_columns=1, **kwargs)
        self._cells: dict[str, tuple[str, ...]] = {}
        self._order: list[str] = []
        self._styles: dict[str, str] = {}
        self._rows: dict[str, LayerRow] = {}

    def on_mount(self) -> None:
        for key, header, _ in COLUMNS:
            self.add_column(Text(header, justify="right" if key in RIGHT_ALIGNED else "left"), key=key)

    @property
    def highlighted_layer(self) -> str | None:
        """Name of the layer under the cursor, or None for an empty table."""
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        return self._order[self.cursor_row]

    def show_rows(self, rows: Sequence[LayerRow], records: dict[str, LayerRecord], candidates: int) -> None:
        """Show `rows`: rebuild when the layers changed, else update the changed cells in place."""
        order = [row.name for row in rows]
        new_cells: dict[str, tuple[str, ...]] = {}
        new_styles: dict[str, str] = {}
        for row in rows:
            # An edit changes one or a few rows: reuse the cells of equal rows.
            if self._rows.get(row.name) == row and row.name in self._cells:
                new_cells[row.name] = self._cells[row.name]
                new_styles[row.name] = self._styles[row.name]
            else:
                new_cells[row.name] = layer_cells(row, records.get(row.name), candidates)
                new_styles[row.name] = row_style(row)
        self._rows = {row.name: row for row in rows}
        if order != self._order:
            self._rebuild(order, new_cells, new_styles)
            return
        for name in order:
            old, cells = self._cells[name], new_cells[name]
            restyle = self._styles[name] != new_styles[name]
            if old == cells and not restyle:
                continue
            for (key, _, _), before, after in zip(COLUMNS, old, cells):
                if restyle or before != after:
                    self.update_cell(name, key, self._cell(key, after, new_styles[name]), update_width=True)
        self._cells = new_cells
        self._styles = new_styles

    def _rebuild(self, order: list[str], cells: dict[str, tuple[str, ...]], styles: dict[str, str]) -> None:
        highlighted = self.highlighted_layer
        self.clear()
        for name in order:
            style = styles[name]
            self.add_row(*(self._cell(key, text, style) for (key, _, _), text in zip(COLUMNS, cells[name])), key=name)
        self._order = order
        self._cells = cells
        self._styles = styles
        if highlighted in order:
            self.move_cursor(row=order.index(highlighted), animate=False)

    @staticmethod
    def _cell(key: str, text: str, style: str) -> Text:
        return Text(text, style=style, justify="right" if key in RIGHT_ALIGNED else "left", no_wrap=True)


def row_style(row: LayerRow) -> str:
    """Dim the layers that spatial SVD will leave as they are."""
    if not row.eligible:
        return "dim"
    if row.ignored:
        return "dim italic"
    return ""
