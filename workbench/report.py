"""Plain-text tables of compression results. Does not import TensorFlow."""

from __future__ import annotations

from workbench.selection import format_ratio


def human_count(value: int | float | None) -> str:
    """Format a count as 1.23G / 45.6M / 789K / 12."""
    if value is None:
        return "-"
    value = float(value)
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.0f}"


def format_score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def format_table(headers: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """Format rows as a fixed-width table; `align` has one 'l' or 'r' per column."""
    align = align or "l" + "r" * (len(headers) - 1)
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row)]

    def line(cells):
        parts = [cell.ljust(width) if side == "l" else cell.rjust(width) for cell, width, side in zip(cells, widths, align)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), line(["-" * width for width in widths])] + [line(row) for row in rows])


def format_compression_stats(stats) -> str:
    """Render a `CompressionStats` as a per-layer table and a summary."""
    headers = ["layer", "ratio", "rank", "MACs before", "MACs after", "params before", "params after", "score"]
    rows = [
        [
            layer.name,
            format_ratio(layer.ratio),
            "-" if layer.rank is None else f"{layer.rank}/{layer.max_rank}",
            human_count(layer.macs_before),
            human_count(layer.macs_after),
            human_count(layer.params_before),
            human_count(layer.params_after),
            format_score(layer.score),
        ]
        for layer in stats.layers
    ]
    summary = [
        f"scheme: {stats.compression_scheme.name}, cost metric: {stats.cost_metric.name}"
        + ("" if stats.target_comp_ratio is None else f", target ratio: {format_ratio(stats.target_comp_ratio)}"),
        f"baseline score: {format_score(stats.baseline_model_accuracy)}",
        f"compressed score: {format_score(stats.compressed_model_accuracy)}",
        f"MACs: {human_count(stats.macs_before)} -> {human_count(stats.macs_after)} (ratio {stats.mac_compression_ratio:.4f})",
        f"memory (weights): {human_count(stats.memory_before)} -> {human_count(stats.memory_after)} "
        f"(ratio {stats.memory_compression_ratio:.4f})",
        f"parameters: {human_count(stats.params_before)} -> {human_count(stats.params_after)} "
        f"({stats.params_before:,} -> {stats.params_after:,})",
    ]
    if stats.selection_note:
        summary.append(f"note: {stats.selection_note}")
    return format_table(headers, rows, "lrrrrrrr") + "\n\n" + "\n".join(summary)
