"""Schema of the store, as an ordered set of sqlite-utils migrations.

Each migration is a function of the `MIGRATIONS` set, applied once in the order
it is defined and recorded in sqlite-utils' `_sqlite_migrations` table. Every
migration also sets `PRAGMA user_version` to its number, so a program can read
the schema version from the file header without knowing the table layout. A
store whose `user_version` is above `SCHEMA_VERSION`, or whose migration table
names a migration of this set that this program does not have, was written by
a newer svd-workbench.

To change the schema, append a migration that ends by setting user_version to
its number; never edit a migration that has been released.

Needs sqlite-utils 4.0 or later, the first release with `Migrations` and with
nested transactions (`Database.atomic()`), which let its writes join the
store's own BEGIN IMMEDIATE transaction.
"""

from __future__ import annotations

import sqlite3

from sqlite_utils import Database, Migrations

MIGRATION_SET = "svd_workbench_store"
MIGRATIONS = Migrations(MIGRATION_SET)
MIGRATION_NAMES: list[str] = []

STATEMENTS_V1 = [
    # AUTOINCREMENT keeps project ids from being reused after a delete, so a cache
    # keyed by (project id, layers_revision) never mixes up two projects.
    """
    CREATE TABLE projects (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        model_path TEXT NOT NULL,
        model_hash TEXT NOT NULL,
        evaluator_spec TEXT NOT NULL,
        evaluator_key TEXT NOT NULL,
        eval_iterations INTEGER CHECK (eval_iterations IS NULL OR eval_iterations >= 1),
        metric TEXT NOT NULL CHECK (metric IN ('mac', 'memory')),
        target TEXT NOT NULL,
        candidates INTEGER NOT NULL CHECK (candidates >= 2),
        multiplicity INTEGER NOT NULL CHECK (multiplicity >= 1),
        ignored TEXT NOT NULL DEFAULT '[]',
        monotonic_fit INTEGER NOT NULL DEFAULT 0,
        baseline_params INTEGER,
        baseline_macs INTEGER,
        baseline_memory INTEGER,
        layers_revision INTEGER NOT NULL DEFAULT 0,
        created TEXT NOT NULL,
        updated TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE layers (
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        class_name TEXT NOT NULL,
        eligible INTEGER NOT NULL,
        reason TEXT,
        macs INTEGER NOT NULL,
        memory INTEGER NOT NULL,
        params INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (project_id, name),
        UNIQUE (project_id, position)
    )
    """,
    """
    CREATE TABLE baselines (
        model_hash TEXT NOT NULL,
        evaluator_key TEXT NOT NULL,
        score REAL NOT NULL,
        seconds REAL,
        created TEXT NOT NULL,
        PRIMARY KEY (model_hash, evaluator_key)
    )
    """,
    """
    CREATE TABLE scores (
        model_hash TEXT NOT NULL,
        evaluator_key TEXT NOT NULL,
        metric TEXT NOT NULL CHECK (metric IN ('mac', 'memory')),
        multiplicity INTEGER NOT NULL,
        layer TEXT NOT NULL,
        ratio TEXT NOT NULL,
        rank INTEGER,
        score REAL NOT NULL,
        seconds REAL,
        created TEXT NOT NULL,
        PRIMARY KEY (model_hash, evaluator_key, metric, multiplicity, layer, ratio)
    )
    """,
    """
    CREATE TABLE selection_revisions (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        source TEXT NOT NULL CHECK (source IN ('auto', 'manual')),
        note TEXT,
        created TEXT NOT NULL,
        undone INTEGER NOT NULL DEFAULT 0,
        undone_at TEXT
    )
    """,
    "CREATE INDEX selection_revisions_project ON selection_revisions (project_id, undone, id)",
    """
    CREATE TABLE selection_entries (
        revision_id INTEGER NOT NULL REFERENCES selection_revisions(id) ON DELETE CASCADE,
        layer TEXT NOT NULL,
        ratio TEXT,
        PRIMARY KEY (revision_id, layer)
    )
    """,
    """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('analyse', 'search', 'export')),
        status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
        pid INTEGER,
        host TEXT,
        created TEXT NOT NULL,
        started TEXT,
        heartbeat TEXT,
        finished TEXT,
        done INTEGER NOT NULL DEFAULT 0,
        total INTEGER,
        error TEXT,
        log_path TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        options TEXT NOT NULL DEFAULT '{}'
    )
    """,
    "CREATE INDEX jobs_project ON jobs (project_id, id)",
    # The database itself rejects a second queued or running search of a project,
    # even from a program that skips the check in Store.create_job.
    """
    CREATE UNIQUE INDEX jobs_one_active_search ON jobs (project_id)
    WHERE kind = 'search' AND status IN ('queued', 'running')
    """,
    """
    CREATE TABLE exports (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        content_hash TEXT,
        ratios TEXT NOT NULL,
        ranks TEXT NOT NULL,
        baseline_score REAL,
        compressed_score REAL,
        macs_before INTEGER,
        macs_after INTEGER,
        params_before INTEGER,
        params_after INTEGER,
        created TEXT NOT NULL
    )
    """,
    "CREATE INDEX exports_project ON exports (project_id, id)",
]


def migration(name: str):
    """Register a function as the next migration of MIGRATIONS under `name`."""

    def register(function):
        MIGRATION_NAMES.append(name)
        return MIGRATIONS(name=name)(function)

    return register


@migration("0001_create_tables")
def create_tables(db: Database) -> None:
    for statement in STATEMENTS_V1:
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")


# Number of migrations; the PRAGMA user_version of a store that has them all.
SCHEMA_VERSION = len(MIGRATION_NAMES)


def user_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def applied_migration_names(conn: sqlite3.Connection) -> list[str]:
    """Return the names of the applied migrations of our set, oldest first."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [Migrations.migrations_table]
    ).fetchone()
    if not exists:
        return []
    rows = conn.execute(
        f"SELECT name FROM {Migrations.migrations_table} WHERE migration_set = ? ORDER BY rowid", [MIGRATION_SET]
    ).fetchall()
    return [row[0] for row in rows]


def found_version(conn: sqlite3.Connection) -> int:
    """Return the schema version of a store: the larger of user_version and the applied count.

    Counting applied migrations as well catches a newer program that recorded a
    migration but left user_version alone. A migration name that this program
    does not know makes the store newer than SCHEMA_VERSION.
    """
    applied = applied_migration_names(conn)
    version = max(user_version(conn), len(applied))
    if any(name not in MIGRATION_NAMES for name in applied):
        version = max(version, SCHEMA_VERSION + 1)
    return version
