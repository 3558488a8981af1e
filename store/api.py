"""The `Store` class and `open_store`, the entry point of the store."""

from __future__ import annotations

import os
from pathlib import Path

from store.connection import default_store_path, open_connection
from store.exports import ExportsMixin
from store.jobs import JobsMixin
from store.projects import ProjectsMixin
from store.queries import QueriesMixin
from store.schema import SCHEMA_VERSION
from store.scores import ScoresMixin
from store.selections import SelectionsMixin


class Store(ProjectsMixin, ScoresMixin, SelectionsMixin, JobsMixin, ExportsMixin, QueriesMixin):
    """A connection to the project store; create it with `open_store`.

    Projects are named by their name (or given as a `Project`). Methods that
    change the store raise StoreReadOnlyError on a read-only store. A Store may
    be shared by the threads of one process; each process opens its own.
    """

    schema_version = SCHEMA_VERSION

    def __repr__(self) -> str:
        mode = "read-only" if self.readonly else "read-write"
        return f"<Store '{self.path}' {mode}>"


def open_store(path: str | os.PathLike | None = None, readonly: bool = False) -> Store:
    """Open the store, creating and migrating it unless `readonly`.

    Args:
        path: The store file; `default_store_path()` when None.
        readonly: Open through a `mode=ro` URI, for polling: no migration and
            no writes.

    Raises:
        StoreVersionError: if a newer svd-workbench wrote the store (the file
            is left unchanged), or a read-only open finds an older schema.
        StoreCorruptError: if the file is not SQLite or fails quick_check (the
            file is left unchanged).
        StoreError: if a read-only store does not exist.
    """
    path = Path(path).expanduser() if path is not None else default_store_path()
    conn = open_connection(path, readonly)
    return Store(conn, path, readonly)
