"""A one-field input dialog that validates as the user types."""

from __future__ import annotations

from typing import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

Validate = Callable[[str], "str | None"]


class ValueDialog(ModalScreen["str | None"]):
    """Ask for one value; dismiss with the text, or None on Escape.

    Args:
        title: The dialog's first line.
        prompt: What to enter, with the allowed range.
        value: The initial text.
        validate: Returns the error message for a text, or None when it is valid.
            Enter submits only a valid text.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]
    HELP = "Type the value and press Enter. Escape closes the dialog without a change."

    def __init__(self, title: str, prompt: str, value: str = "", validate: Validate | None = None, input_id: str = "value"):
        super().__init__()
        self.title_text = title
        self.prompt = prompt
        self.initial = value
        self.validate_text = validate or (lambda text: None)
        self.input_id = input_id

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.prompt, classes="dialog-body")
            yield Input(value=self.initial, id=self.input_id)
            yield Label("", classes="dialog-error", id="error")
            yield Static("Enter: apply · Escape: cancel", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = getattr(self.app, "cursor_blink", True)
        self.query_one(Input).focus()

    def show_error(self, message: str | None) -> None:
        error = self.query_one("#error", Label)
        error.update(message or "")
        error.set_class(bool(message), "-visible")

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.show_error(self.validate_text(event.value) if event.value.strip() else None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        message = self.validate_text(event.value)
        if message:
            self.show_error(message)
            return
        self.submit(event.value.strip())

    def submit(self, text: str) -> None:
        """Dismiss with a valid text; subclasses may ask a further question first."""
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)
