"""Shown instead of the app while the terminal is smaller than the layouts need."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Static

MIN_WIDTH = 80
MIN_HEIGHT = 24


def too_small_message(width: int, height: int) -> str:
    return f"terminal too small: need {MIN_WIDTH}x{MIN_HEIGHT}, have {width}x{height}"


class TooSmallScreen(ModalScreen[None]):
    """A single message; the app removes this screen once the terminal is large enough."""

    BINDINGS = [Binding("ctrl+q", "app.quit", "Quit", id="too-small.quit", priority=True)]

    def compose(self) -> ComposeResult:
        yield Static(too_small_message(*self.app.size), id="too-small-message")

    def update_size(self, width: int, height: int) -> None:
        self.query_one("#too-small-message", Static).update(too_small_message(width, height))
