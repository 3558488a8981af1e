"""Cell and line formats shared by the screens; plain strings, no Textual."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.report import human_count
from workbench.selection import format_ratio

if TYPE_CHECKING:
    from store.rows import LayerRow
    from workbench.records import LayerRecord

# Maximum length of a layer name in the table. Longer names keep their end,
# the most specific part of a nested path.
NAME_WIDTH = 22


def shorten(text: str, width: int) -> str:
    """Keep the end of `text`, prefixed by '…', when it is longer than `width`."""
    if len(text) <= width:
        return text
    return "…" + text[-(width - 1) :]


def score_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def ratio_cell(row: LayerRow) -> str:
    """Ratio column: '0.5', '0.5*' for a manual edit, 'none', 'ign' or '-' for an ineligible layer."""
    if not row.eligible:
        return "-"
    if row.ignored:
        return "ign"
    if row.ratio is None:
        return "none"
    return format_ratio(row.ratio) + ("*" if row.source == "manual" else "")


def rank_cell(row: LayerRow) -> str:
    if row.rank is None:
        return "-"
    return f"{row.rank}/{row.max_rank}"


def layer_score_cell(row: LayerRow) -> str:
    """Score at the chosen ratio; '~' marks a score interpolated between candidates."""
    if row.ratio is None or row.score is None:
        return "-"
    return score_text(row.score) + ("" if row.score_exact else "~")


def drop_cell(row: LayerRow) -> str:
    return "-" if row.drop is None else f"{row.drop:.4f}"


def scores_cell(row: LayerRow, candidates: int) -> str:
    """Return how many of the layer's candidate ratios have a cached score, e.g. '7/9'."""
    if not row.eligible or row.ignored:
        return "-"
    return f"{candidates - row.missing}/{candidates}"


def kernel_cell(record: LayerRecord | None) -> str:
    if record is None or not record.kernel_size:
        return "-"
    return "x".join(str(size) for size in record.kernel_size)


def eligible_cell(row: LayerRow) -> str:
    """Eligible column: 'yes', 'ignored', or the reason up to its first ':' (the plot title has all of it)."""
    if not row.eligible:
        return (row.reason or "not eligible").split(":", 1)[0].strip()
    if row.ignored:
        return "ignored"
    return "yes"


def layer_cells(row: LayerRow, record: LayerRecord | None, candidates: int) -> tuple[str, ...]:
    """Return the cells of one layer-table row, in the column order of the table."""
    return (
        shorten(row.name, NAME_WIDTH),
        ratio_cell(row),
        rank_cell(row),
        layer_score_cell(row),
        drop_cell(row),
        f"{row.cost_share * 100:.1f}",
        human_count(row.macs),
        scores_cell(row, candidates),
        human_count(row.params),
        row.class_name,
        kernel_cell(record),
        eligible_cell(row),
    )


def ratio_or_dash(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
