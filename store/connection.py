"""Locating, checking, opening and migrating the store file."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Iterable

from sqlite_utils import Database

from store.errors import StoreCorruptError, StoreError, StoreVersionError
from store.schema import MIGRATIONS, SCHEMA_VERSION, found_version

STORE_ENV = "SVD_WORKBENCH_STORE"
STORE_FILENAME = "store.db"

# How long a statement waits for another connection's lock before failing with
# "database is locked". Store write transactions take milliseconds, so 10 s
# leaves a wide margin.
BUSY_TIMEOUT_MS = 10_000

# Primary result codes (the low byte of an extended code) that mean the file is damaged.
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26

UPGRADE_HINT = (
    "Upgrade svd-workbench (pip install --upgrade svd-workbench, or pull and reinstall your checkout) to open it."
)


def default_store_path() -> Path:
    """Return the store's path: $SVD_WORKBENCH_STORE, else the XDG data folder.

    Falls back to `$XDG_DATA_HOME/svd-workbench/store.db`, then to
    `~/.local/share/svd-workbench/store.db`. The XDG base directory
    specification ignores an empty or relative XDG_DATA_HOME, and so does this.
    """
    explicit = os.environ.get(STORE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME")
    if data_home and os.path.isabs(data_home):
        return Path(data_home) / "svd-workbench" / STORE_FILENAME
    return Path.home() / ".local" / "share" / "svd-workbench" / STORE_FILENAME


def hash_file(path: str | os.PathLike) -> str:
    """Return the sha256 hex digest of a file's content.

    Raises:
        FileNotFoundError: naming the path.
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
    except FileNotFoundError:
        raise FileNotFoundError(f"File not found: '{path}'.") from None
    return digest.hexdigest()


def make_evaluator_key(spec: str, eval_iterations: int | None, files: Iterable[str | os.PathLike] = ()) -> str:
    """Build the evaluator part of a score key from what an evaluator's result depends on.

    Args:
        spec: The evaluator spec, e.g. 'accuracy:data.npz' or 'pkg.module:function'.
        eval_iterations: Iterations per evaluation; None means the whole set.
        files: Files whose content the scores depend on: the evaluator's source
            file and its data file. A change to any of them gives a new key, so
            the cached scores of the old files are not reused.

    Returns:
        A string such as 'accuracy:data.npz|iterations=all|sha256=ab12...'.
    """
    iterations = "all" if eval_iterations is None else str(eval_iterations)
    hashes = ",".join(hash_file(path) for path in files)
    return f"{spec}|iterations={iterations}|sha256={hashes}"


def is_corruption(error: sqlite3.DatabaseError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)
    message = str(error)
    return "malformed" in message or "not a database" in message


def corrupt_error(path: Path, detail: str) -> StoreCorruptError:
    return StoreCorruptError(
        f"The store '{path}' is corrupt: {detail}. svd-workbench leaves it as it is. "
        "Restore it from a backup, or move it aside to start with an empty store.",
        path,
    )


def connect(path: Path, readonly: bool) -> sqlite3.Connection:
    """Open a connection with the store's settings.

    The connection is in autocommit mode (isolation_level=None): the store opens
    every transaction itself with an explicit BEGIN. check_same_thread is off
    because `Store` serialises its use of the connection with a lock, so worker
    threads of the terminal app can share one store.
    """
    if readonly:
        target = "file:" + urllib.parse.quote(str(path.absolute())) + "?mode=ro"
    else:
        target = str(path)
    conn = sqlite3.connect(
        target,
        uri=readonly,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    """Run `PRAGMA quick_check` and raise StoreCorruptError on any problem it finds."""
    try:
        rows = [row[0] for row in conn.execute("PRAGMA quick_check(5)").fetchall()]
    except sqlite3.DatabaseError as error:
        if is_corruption(error):
            raise corrupt_error(path, f"SQLite reports '{error}'") from None
        raise
    if rows != ["ok"]:
        raise corrupt_error(path, "PRAGMA quick_check reports " + "; ".join(rows))


def newer_version_error(path: Path, version: int) -> StoreVersionError:
    return StoreVersionError(
        f"The store '{path}' has schema version {version}, written by a newer svd-workbench; "
        f"this svd-workbench reads schema version {SCHEMA_VERSION} or older. {UPGRADE_HINT} "
        "The file was not changed.",
        found=version,
        supported=SCHEMA_VERSION,
    )


def probe(path: Path) -> tuple[sqlite3.Connection, int]:
    """Check an existing store through a read-only connection, writing nothing.

    Returns:
        The read-only connection and the store's schema version.

    Raises:
        StoreCorruptError: if the file is not SQLite or fails quick_check.
        StoreVersionError: if a newer svd-workbench wrote it.
    """
    # The file is checked through SQLite only: opening and closing it with
    # open() would drop every POSIX lock that this process's other connections
    # hold on it, and another process could then checkpoint and delete the WAL
    # under them. SQLite rejects a file that is not a database in quick_check.
    conn = connect(path, readonly=True)
    try:
        check_integrity(conn, path)
        try:
            version = found_version(conn)
        except sqlite3.DatabaseError as error:
            if is_corruption(error):
                raise corrupt_error(path, f"SQLite reports '{error}'") from None
            raise
        if version > SCHEMA_VERSION:
            raise newer_version_error(path, version)
        if version == 0:
            check_no_foreign_tables(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn, version


def check_no_foreign_tables(conn: sqlite3.Connection, path: Path) -> None:
    """Raise StoreError for an SQLite file that has tables but no store schema, e.g. another program's database."""
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name LIMIT 5")]
    if tables:
        raise StoreError(
            f"'{path}' is an SQLite database of another program (tables {', '.join(tables)}), not an "
            "svd-workbench store; it was not changed. Choose another store path."
        )


def open_connection(path: Path, readonly: bool) -> sqlite3.Connection:
    """Open the store at `path`, creating and migrating it unless `readonly`.

    An existing file is checked read-only first (header, quick_check, schema
    version), so a corrupt store or one written by a newer program is never
    written to. A missing or empty file becomes a new store; a missing folder is
    created for it.

    Raises:
        StoreError: if a read-only store is missing, or the path is a folder.
        StoreCorruptError, StoreVersionError: see `probe`.
    """
    if path.is_dir():
        raise StoreError(f"The store path '{path}' is a folder; expected a file such as '{path / STORE_FILENAME}'.")
    exists = path.exists()
    if readonly and not exists:
        raise StoreError(f"Store not found: '{path}'. Open it once without read-only mode to create it.")
    version = 0
    if exists and path.stat().st_size > 0:
        conn, version = probe(path)
        if readonly:
            if version < SCHEMA_VERSION:
                conn.close()
                raise StoreVersionError(
                    f"The store '{path}' has schema version {version}; this svd-workbench needs version "
                    f"{SCHEMA_VERSION}. A read-only open cannot migrate it: open it once read-write "
                    "(any svd-workbench command, e.g. 'svd-workbench list') to migrate it.",
                    found=version,
                    supported=SCHEMA_VERSION,
                )
            return conn
        conn.close()
    elif readonly:
        # An empty file has no schema yet.
        raise StoreVersionError(
            f"The store '{path}' is empty. Open it once read-write to create its tables.",
            found=0,
            supported=SCHEMA_VERSION,
        )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)

    conn = connect(path, readonly=False)
    try:
        enable_wal(conn, path)
        # In WAL mode, synchronous=NORMAL loses no committed transaction when a
        # process crashes; only an operating system crash or power cut can roll back
        # the latest commits (SQLite documentation of PRAGMA synchronous).
        conn.execute("PRAGMA synchronous = NORMAL")
        if version < SCHEMA_VERSION:
            migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def enable_wal(conn: sqlite3.Connection, path: Path) -> None:
    """Switch the file to WAL mode once; the mode is stored in the file and persists."""
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if mode.lower() == "wal":
        return
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode.lower() != "wal":
        raise StoreError(
            f"Cannot switch the store '{path}' to WAL mode (SQLite kept journal mode '{mode}'). "
            "Keep the store on a local disk."
        )


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Apply pending migrations inside one BEGIN IMMEDIATE transaction.

    The write lock is taken before the version is read again, so two programs
    opening a new store at once apply each migration only once.
    """
    db = Database(conn, execute_plugins=False)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = found_version(conn)
        if version > SCHEMA_VERSION:
            raise newer_version_error(path, version)
        # Inside an open transaction, sqlite-utils runs each migration in a savepoint.
        MIGRATIONS.apply(db)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
