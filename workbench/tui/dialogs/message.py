"""A dialog that shows a result or an error until the user closes it."""

from __future__ import annotations

from rich.console import RenderableType
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class MessageDialog(ModalScreen[None]):
    """Show a title and a body (text or a Rich renderable); Enter or Escape closes it."""

    BINDINGS = [Binding("escape,enter,q", "close", "Close", id="message.close")]
    HELP = "Read the message; Enter, Escape or q closes it."

    def __init__(self, title: str, body: RenderableType, error: bool = False):
        super().__init__()
        self.title_text = title
        self.body = body
        self.error = error

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -error" if self.error else "dialog"):
            yield Label(self.title_text, classes="dialog-title")
            with VerticalScroll(classes="dialog-scroll"):
                yield Static(self.body, classes="dialog-body")
            yield Button("Close", id="close", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#close", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
