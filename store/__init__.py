"""SQLite project store of svd-workbench, through sqlite-utils.

The terminal app reads the store while job processes (analysis, search,
export) write to it. The store never imports TensorFlow, Textual or the
engine: it costs ranks and reruns selection with `workbench.costs` and
`workbench.selection`.

The live store must be on a local disk. It runs in SQLite's WAL mode, whose
readers and writers share memory through the `-shm` file beside the database.
Shared memory does not work over NFS or other network file systems, so there
locking can fail and the file can be corrupted. Copy a store elsewhere only while no
program has it open.

Concurrency rules: WAL mode is set once, when a store is created; every
connection waits up to 10 s for a lock (`BUSY_TIMEOUT_MS`); writes are short
`BEGIN IMMEDIATE` transactions; reads never keep a transaction open between
calls.

Example:
    from store import open_store

    store = open_store()  # $SVD_WORKBENCH_STORE or ~/.local/share/svd-workbench/store.db
    for row in store.layer_table("resnet"):
        print(row.name, row.ratio, row.score)
"""

from store.api import Store, open_store
from store.connection import BUSY_TIMEOUT_MS, default_store_path, hash_file, make_evaluator_key
from store.errors import (
    JobConflict,
    JobNotFound,
    LayerNotFound,
    ProjectExists,
    ProjectNotFound,
    ScoreConflictError,
    StoreCorruptError,
    StoreError,
    StoreReadOnlyError,
    StoreVersionError,
)
from store.jobs import HEARTBEAT_INTERVAL_SECONDS, HEARTBEAT_STALE_SECONDS, pid_alive
from store.rows import (
    Export,
    ImportReport,
    Job,
    LayerRow,
    Project,
    Revision,
    ScoreKey,
    Summary,
    ratio_text,
)
from store.schema import SCHEMA_VERSION

__all__ = [
    "BUSY_TIMEOUT_MS",
    "Export",
    "HEARTBEAT_INTERVAL_SECONDS",
    "HEARTBEAT_STALE_SECONDS",
    "ImportReport",
    "Job",
    "JobConflict",
    "JobNotFound",
    "LayerNotFound",
    "LayerRow",
    "Project",
    "ProjectExists",
    "ProjectNotFound",
    "Revision",
    "SCHEMA_VERSION",
    "ScoreConflictError",
    "ScoreKey",
    "Store",
    "StoreCorruptError",
    "StoreError",
    "StoreReadOnlyError",
    "StoreVersionError",
    "Summary",
    "default_store_path",
    "hash_file",
    "make_evaluator_key",
    "open_store",
    "pid_alive",
    "ratio_text",
]
