"""F1 help: the keys of the screen the user was on, and what its columns mean."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static


def key_rows(screen: Screen) -> list[tuple[str, str, str, str]]:
    """Return (keys, action, description, binding id) for the enabled bindings of `screen`.

    Covers the bindings of the focused widget, the screen and the app, as
    Textual resolves them, with every key of a binding listed together.
    Bindings without an id (the built-in cursor keys of tables and inputs)
    are left out; keys a screen lists in `EXTRA_HELP_KEYS` are added.
    """
    app = screen.app
    rows: dict[str, list] = {}
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if not binding.id or binding.system:
            continue
        entry = rows.get(binding.id)
        display = app.get_key_display(Binding(key, binding.action))
        if entry is None:
            rows[binding.id] = [[display], binding.description, binding.tooltip, binding.id, active.enabled]
        elif display not in entry[0]:
            entry[0].append(display)
    # Keys handled outside the screen's bindings (Enter on a table) that
    # trigger the same action; a screen names them in EXTRA_HELP_KEYS.
    for binding_id, keys in getattr(screen, "EXTRA_HELP_KEYS", {}).items():
        if binding_id in rows:
            rows[binding_id][0].extend(app.get_key_display(Binding(key, "")) for key in keys)
    return [(" ".join(keys), description, tooltip, binding_id) for keys, description, tooltip, binding_id, _ in rows.values()]


class HelpScreen(ModalScreen[None]):
    """List the keys of the screen below, with the ids that a keymap file can rebind."""

    BINDINGS = [Binding("escape,f1,q", "close", "Close help", id="help.close")]
    HELP = "Escape, F1 or q closes this help."

    def __init__(self, screen: Screen):
        super().__init__()
        self.rows = key_rows(screen)
        self.screen_title = type(screen).__name__.removesuffix("Screen") or "App"
        self.screen_help = getattr(screen, "HELP", "")

    def compose(self) -> ComposeResult:
        table = Table(box=None, padding=(0, 1), expand=True, show_header=True, header_style="bold")
        table.add_column("Keys", no_wrap=True)
        table.add_column("Action", ratio=1)
        table.add_column("Binding id", style="dim", no_wrap=True)
        for keys, description, tooltip, binding_id in self.rows:
            table.add_row(keys, tooltip or description, binding_id)
        with Vertical(classes="dialog -wide", id="help"):
            yield Label(f"Help: {self.screen_title}", classes="dialog-title")
            with VerticalScroll(classes="dialog-scroll"):
                yield Static(table)
                if self.screen_help:
                    yield Static(Text(self.screen_help), classes="help-text")
                yield Static(
                    Text(
                        "Ctrl+P opens the command palette with every action available here. "
                        "Rebind keys by binding id in the keymap file (see docs/terminal-app.md).",
                        style="dim",
                    ),
                    classes="help-text",
                )
            yield Static("Escape, F1 or q: close", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
