"""Pure helpers for manual ratio edits: stepping through candidates, parsing typed ratios."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Sequence

from workbench.selection import format_ratio


def step_ratio(current: Decimal | None, candidates: Sequence[Decimal], direction: int) -> Decimal | None:
    """Return the neighbour of `current` in the ladder of candidates, then uncompressed.

    The ladder runs from the most compressed candidate up to None (the layer
    kept as it is). A ratio between two candidates, typed by hand, steps to the
    candidate below or above it.

    Args:
        current: The layer's ratio; None when it is uncompressed.
        candidates: The project's candidate ratios, any order.
        direction: -1 compresses more (a smaller ratio), +1 compresses less.

    Returns:
        The new ratio, or `current` itself at either end of the ladder.

    Raises:
        ValueError: if `direction` is not -1 or +1, or there are no candidates.
    """
    if direction not in (-1, 1):
        raise ValueError(f"Expected direction -1 or +1. Received: direction={direction!r}")
    ladder = sorted(candidates)
    if not ladder:
        raise ValueError("Expected at least one candidate ratio. Received none.")
    if current is None:
        return ladder[-1] if direction < 0 else None
    if direction < 0:
        smaller = [ratio for ratio in ladder if ratio < current]
        return smaller[-1] if smaller else current
    larger = [ratio for ratio in ladder if ratio > current]
    return larger[0] if larger else None


def parse_ratio(text: str, what: str = "ratio") -> Decimal:
    """Parse a ratio typed by a person: a decimal number in (0, 1].

    Raises:
        ValueError: with a message fit to show under the input.
    """
    cleaned = text.strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"Enter a {what} as a number in (0, 1], e.g. 0.5. Received: {cleaned!r}") from None
    if not value.is_finite() or not 0 < value <= 1:
        raise ValueError(f"Expected a {what} in (0, 1]. Received: {cleaned}")
    return value


def ratio_error(text: str, what: str = "ratio") -> str | None:
    """Return the validation message for a typed ratio, or None when it is valid."""
    try:
        parse_ratio(text, what)
    except ValueError as error:
        return str(error)
    return None


def describe_ratio(ratio: Decimal | None) -> str:
    """Format a ratio for a table cell; 'none' for an uncompressed layer."""
    return format_ratio(ratio)
