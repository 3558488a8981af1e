"""Connection handling shared by every part of `Store`: transactions and project lookup."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Iterator

from sqlite_utils import Database

from store.errors import ProjectNotFound, StoreReadOnlyError
from store.rows import Project


class StoreBase:
    """One connection to the store file, with the transaction rules of the store.

    Writes run in `BEGIN IMMEDIATE` transactions, which take the write lock at
    the start and so wait for other writers through the busy timeout instead of
    failing mid-transaction. Reads that need several statements run in a short
    deferred transaction for a consistent snapshot, closed before the method
    returns, so no reader keeps a transaction open between calls. A lock
    serialises the threads that share this connection.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, readonly: bool):
        self._conn = conn
        self._db = Database(conn, execute_plugins=False)
        self.path = path
        self.readonly = readonly
        self._lock = threading.RLock()
        self._transaction_kind: str | None = None  # None, 'read' or 'write'
        self._savepoints = 0
        # Parsed layer records by (project id, layers_revision); see ProjectsMixin.
        self._layer_cache: dict[tuple[int, int], list] = {}
        # The last Snapshot read by QueriesMixin, by project name, with the data version it was read at.
        self._snapshot_cache: dict[str, tuple] = {}

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several writes into one `BEGIN IMMEDIATE` transaction.

        Nested use runs in a savepoint. Keep the block short: other writers wait
        for it, and fail with "database is locked" after the busy timeout.

        Raises:
            StoreReadOnlyError: on a store opened with readonly=True.
        """
        if self.readonly:
            raise StoreReadOnlyError(
                f"The store '{self.path}' is open read-only; open it without readonly=True to change it."
            )
        with self._lock:
            if self._transaction_kind == "read":
                raise RuntimeError("A write cannot start inside a read transaction of the same store.")
            if self._transaction_kind == "write":
                yield from self._savepoint()
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._transaction_kind = "write"
            try:
                yield
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                self._forget_cached_reads()
                raise
            finally:
                self._transaction_kind = None

    def _savepoint(self) -> Iterator[None]:
        self._savepoints += 1
        name = f"store_savepoint_{self._savepoints}"
        self._conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute(f"ROLLBACK TO {name}")
                self._conn.execute(f"RELEASE {name}")
            self._forget_cached_reads()
            raise
        else:
            self._conn.execute(f"RELEASE {name}")

    def _forget_cached_reads(self) -> None:
        """Drop what was cached from rows that a rollback has just removed.

        A layer cache entry read inside a rolled-back `set_layers` is keyed by a
        layers_revision that another process may later commit with other layers.
        """
        self._layer_cache = {}
        self._snapshot_cache = {}

    @contextlib.contextmanager
    def _read(self) -> Iterator[None]:
        """Run several reads on one snapshot; inside a write transaction, use that one."""
        with self._lock:
            if self._transaction_kind is not None:
                yield
                return
            self._conn.execute("BEGIN")
            self._transaction_kind = "read"
            try:
                yield
            finally:
                self._transaction_kind = None
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")

    def _query(self, sql: str, parameters=()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, parameters).fetchall()

    def _project(self, project: str | Project) -> Project:
        """Return the stored state of a project given by name or by a `Project`.

        Raises:
            ProjectNotFound: listing the existing project names.
        """
        name = project.name if isinstance(project, Project) else project
        rows = self._query("SELECT * FROM projects WHERE name = ?", [name])
        if not rows:
            existing = [row[0] for row in self._query("SELECT name FROM projects ORDER BY name")]
            raise ProjectNotFound(name, existing)
        return Project.from_row(rows[0])
