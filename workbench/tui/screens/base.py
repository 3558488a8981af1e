"""Base class of the full screens: polling of the store in a worker thread."""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import TYPE_CHECKING, ClassVar

from textual.screen import Screen
from textual.worker import Worker

if TYPE_CHECKING:
    from workbench.tui.data.backend import Backend

log = logging.getLogger("workbench.tui")

# A store that did not change is still read this often, because job liveness
# (a heartbeat growing old, a process gone) changes with the clock alone.
REFRESH_SECONDS = 5.0


class PollingScreen(Screen):
    """A screen that reloads its data from the store while it is shown.

    Every `App.poll_interval` seconds a thread worker compares SQLite's
    data_version with the last one seen and reads the store only when another
    connection committed, or REFRESH_SECONDS passed. The read posts a message
    (see `workbench.tui.messages`); the screen renders it on the UI thread.
    Subclasses implement `read_data` (runs in the worker thread) and post its
    result.
    """

    HELP: ClassVar[str] = ""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._version: int | None = None
        self._loaded_at = 0.0
        self._poll_worker: Worker | None = None
        self._poll_failures = 0

    @property
    def backend(self) -> "Backend":
        return self.app.backend

    def start_polling(self) -> None:
        self.set_interval(self.app.poll_interval, self.poll, name="store poll")

    def poll(self) -> None:
        if self._poll_worker is not None and self._poll_worker.is_running:
            return
        self._poll_worker = self.run_worker(
            self._poll_in_thread, name="poll the store", group="poll", thread=True, exit_on_error=False
        )

    def force_reload(self) -> None:
        """Read the store at the next poll even if data_version did not change."""
        self._loaded_at = 0.0
        self.poll()

    def _poll_in_thread(self) -> None:
        try:
            version = self.backend.data_version()
            if version == self._version and time.monotonic() - self._loaded_at < REFRESH_SECONDS:
                return
            self.read_data()
            self._version = version
            self._loaded_at = time.monotonic()
            self._poll_failures = 0
        except Exception as error:
            from store.errors import StoreError

            if not isinstance(error, (StoreError, sqlite3.Error)):
                raise
            if self.backend.closed:
                return  # the app is exiting
            # A locked or briefly unreadable store is retried at the next poll;
            # tell the user once, not every half second.
            self._poll_failures += 1
            log.warning("reading the store failed (%d in a row): %s", self._poll_failures, error)
            if self._poll_failures == 1:
                self.app.call_from_thread(self.notify, f"Reading the store failed: {error}", severity="warning")

    def read_data(self) -> None:
        """Read the store and post the result; runs in a worker thread."""
        raise NotImplementedError
