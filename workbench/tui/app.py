"""The svd-workbench terminal app: screens, global keys, worker errors, resize and SIGHUP."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from textual.app import App
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.worker import Worker, WorkerState

from workbench.tui.commands import ActionsProvider
from workbench.tui.data.backend import Backend
from workbench.tui.data.keymap import KeymapError, load_keymap
from workbench.tui.dialogs.message import MessageDialog
from workbench.tui.messages import StoreUnavailable
from workbench.tui.screens.help import HelpScreen
from workbench.tui.screens.projects import ProjectsScreen
from workbench.tui.screens.too_small import MIN_HEIGHT, MIN_WIDTH, TooSmallScreen

log = logging.getLogger("workbench.tui")

# Store polling period in seconds; redraws follow the polls, so also their throttle.
POLL_INTERVAL = 0.5


class WorkbenchApp(App[int]):
    """Browse projects, edit selections and run jobs against one store file.

    Args:
        store_path: The store file; created when missing.
        project: Open this project's screen at start.
        keymap: Binding id to keys; None reads the user's keymap file.
        poll_interval: Seconds between store polls.
        cursor_blink: Blink the cursor of text inputs; tests turn it off so
            screenshots do not depend on timing.
    """

    CSS_PATH = "workbench.tcss"
    TITLE = "svd-workbench"
    COMMANDS = App.COMMANDS | {ActionsProvider}
    BINDINGS = [
        Binding("f1,question_mark", "help", "Help", id="app.help", tooltip="Help: keys and columns of this screen"),
        Binding("ctrl+p", "command_palette", "Commands", id="app.command-palette", show=False, priority=True,
                tooltip="Commands: search every action available here"),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", show=False, priority=True,
                tooltip="Quit; running jobs keep running"),
        Binding("ctrl+c", "help_quit", show=False, system=True, id="app.help-quit"),
    ]

    def __init__(
        self,
        store_path: str | Path,
        project: str | None = None,
        keymap: dict[str, str] | None = None,
        poll_interval: float = POLL_INTERVAL,
        cursor_blink: bool = True,
    ):
        super().__init__()
        self.store_path = Path(store_path)
        self.store_label = str(store_path)
        self.backend = Backend(self.store_path)
        self.initial_project = project
        self.poll_interval = poll_interval
        self.cursor_blink = cursor_blink
        self._keymap = keymap
        self._hangup_installed = False
        self.startup_error: Exception | None = None

    def on_mount(self) -> None:
        self.install_keymap()
        self.install_hangup_handler()
        self.push_screen(ProjectsScreen())
        if self.initial_project:
            self.open_project(self.initial_project)
        self.check_size(*self.size)

    def on_unmount(self) -> None:
        if self._hangup_installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        self.backend.close()

    def install_keymap(self) -> None:
        keymap = self._keymap
        if keymap is None:
            try:
                keymap = load_keymap()
            except KeymapError as error:
                self.notify(f"{error} Using the default keys.", severity="warning", timeout=10)
                keymap = {}
        if keymap:
            self.set_keymap(keymap)

    def install_hangup_handler(self) -> None:
        """Exit cleanly when the terminal goes away (SSH dropped, window closed).

        Jobs are processes of their own in their own sessions, so they keep
        running; the app only closes its store connections.
        """
        if not hasattr(signal, "SIGHUP"):
            return
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.on_hangup)
        except (NotImplementedError, RuntimeError, ValueError):
            return  # not the main thread, or no signal support on this loop
        self._hangup_installed = True

    def on_hangup(self) -> None:
        log.info("terminal hung up (SIGHUP); exiting, jobs keep running")
        self.exit(return_code=0)

    # Screens ------------------------------------------------------------------

    def open_project(self, name: str) -> None:
        from workbench.tui.screens.project import ProjectScreen

        self.push_screen(ProjectScreen(name))

    def push_screen(self, screen, *args, **kwargs):
        """Push `screen`; a dialog first clears the notifications.

        Notifications are drawn above every screen, so at 80x24 a few of them
        would hide the fields of a dialog opened next.
        """
        if isinstance(screen, ModalScreen):
            self.clear_notifications()
        return super().push_screen(screen, *args, **kwargs)

    def action_help(self) -> None:
        if isinstance(self.screen, (HelpScreen, TooSmallScreen)):
            return
        self.push_screen(HelpScreen(self.screen))

    # Terminal size ------------------------------------------------------------

    def on_resize(self, event) -> None:
        self.check_size(event.size.width, event.size.height)

    def check_size(self, width: int, height: int) -> None:
        """Cover the app with a message while the terminal is below MIN_WIDTH x MIN_HEIGHT."""
        small = width < MIN_WIDTH or height < MIN_HEIGHT
        on_top = isinstance(self.screen, TooSmallScreen)
        if small and not on_top:
            self.push_screen(TooSmallScreen())
        elif small:
            self.screen.update_size(width, height)
        elif on_top:
            self.pop_screen()

    # Errors -------------------------------------------------------------------

    def on_store_unavailable(self, message: StoreUnavailable) -> None:
        """Show why the store cannot be opened; closing the dialog quits with status 1."""
        self.startup_error = message.error
        log.error("cannot open the store %s: %s", self.store_path, message.error)
        self.push_screen(
            MessageDialog("Cannot open the store", f"{message.error}\n\nClose this message to quit.", error=True),
            lambda _: self.exit(return_code=1),
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Show a worker's error in a dialog: the one place worker failures surface."""
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        log.error("worker %r failed: %s", event.worker.name, error)
        self.push_screen(MessageDialog(f"{event.worker.name} failed", str(error) or type(error).__name__, error=True))
