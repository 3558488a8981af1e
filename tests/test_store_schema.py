"""Opening the store: location, migrations, version and corruption checks, settings."""

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from store import (
    SCHEMA_VERSION,
    StoreCorruptError,
    StoreError,
    StoreReadOnlyError,
    StoreVersionError,
    default_store_path,
    open_store,
)
from store.schema import MIGRATION_NAMES, MIGRATION_SET
from store.testing import create_synthetic_project


def make_store(path: Path) -> None:
    with open_store(path) as store:
        create_synthetic_project(store, "demo", 4)


def test_new_store_creates_missing_folder(tmp_path):
    path = tmp_path / "a" / "b" / "store.db"
    with open_store(path) as store:
        assert store.list_projects() == []
    assert path.is_file()


def test_migration_from_empty_file(tmp_path):
    path = tmp_path / "store.db"
    path.write_bytes(b"")
    with open_store(path) as store:
        create_synthetic_project(store, "demo", 2)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    applied = [row[0] for row in conn.execute("SELECT name FROM _sqlite_migrations WHERE migration_set = ?", [MIGRATION_SET])]
    assert applied == MIGRATION_NAMES
    conn.close()


def test_reopen_applies_no_migration_twice(tmp_path):
    path = tmp_path / "store.db"
    make_store(path)
    with open_store(path) as store:
        assert [project.name for project in store.list_projects()] == ["demo"]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0] == len(MIGRATION_NAMES)
    conn.close()


@pytest.mark.parametrize("readonly", [False, True])
def test_connection_settings(tmp_path, readonly):
    path = tmp_path / "store.db"
    make_store(path)
    with open_store(path, readonly=readonly) as store:
        conn = store._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert not conn.in_transaction
        store.layer_table("demo")
        assert not conn.in_transaction


def set_user_version(path: Path, version: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("readonly", [False, True])
def test_newer_version_rejected_unchanged(tmp_path, readonly):
    path = tmp_path / "store.db"
    make_store(path)
    newer = SCHEMA_VERSION + 1
    set_user_version(path, newer)
    before = path.read_bytes()

    with pytest.raises(StoreVersionError) as caught:
        open_store(path, readonly=readonly)

    message = str(caught.value)
    assert f"schema version {newer}" in message
    assert f"schema version {SCHEMA_VERSION} or older" in message
    assert "Upgrade svd-workbench" in message
    assert caught.value.found == newer
    assert path.read_bytes() == before


def test_unknown_migration_name_rejected(tmp_path):
    path = tmp_path / "store.db"
    make_store(path)
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, '9999_future', 'now')",
        [MIGRATION_SET],
    )
    conn.commit()
    conn.close()
    before = path.read_bytes()

    with pytest.raises(StoreVersionError, match="newer svd-workbench"):
        open_store(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("readonly", [False, True])
def test_non_sqlite_file_rejected_unchanged(tmp_path, readonly):
    path = tmp_path / "store.db"
    path.write_bytes(b"project: demo\nthis is a YAML file, not a database\n" * 50)
    before = path.read_bytes()

    with pytest.raises(StoreCorruptError) as caught:
        open_store(path, readonly=readonly)

    assert str(path) in str(caught.value)
    assert "backup" in str(caught.value)
    assert caught.value.path == path
    assert path.read_bytes() == before


def test_damaged_pages_rejected_unchanged(tmp_path):
    path = tmp_path / "store.db"
    make_store(path)
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    page_count = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    assert page_count > 3
    data = bytearray(path.read_bytes())
    # Overwrite the b-tree headers of every page but the first (which contains the
    # file header and the schema), so quick_check finds invalid pages.
    for page in range(1, page_count):
        offset = page * page_size
        data[offset : offset + 12] = b"\xff" * 12
    path.write_bytes(bytes(data))
    before = path.read_bytes()

    with pytest.raises(StoreCorruptError, match="backup"):
        open_store(path)
    assert path.read_bytes() == before


def test_foreign_database_rejected_unchanged(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="another program \\(tables invoices\\)"):
        open_store(path)
    assert path.read_bytes() == before


def test_readonly_missing_store_raises(tmp_path):
    path = tmp_path / "missing" / "store.db"
    with pytest.raises(StoreError, match="Store not found"):
        open_store(path, readonly=True)
    assert not path.parent.exists()


def test_readonly_never_migrates(tmp_path):
    path = tmp_path / "store.db"
    path.write_bytes(b"")
    with pytest.raises(StoreVersionError, match="read-write"):
        open_store(path, readonly=True)
    assert path.read_bytes() == b""


def test_readonly_rejects_writes(tmp_path):
    path = tmp_path / "store.db"
    make_store(path)
    with open_store(path, readonly=True) as store:
        with pytest.raises(StoreReadOnlyError, match="read-only"):
            store.set_layer_ratio("demo", "block0/conv0", "0.5")
        assert store.get_project("demo").name == "demo"


def test_store_path_that_is_folder(tmp_path):
    with pytest.raises(StoreError, match="is a folder"):
        open_store(tmp_path)


def test_default_store_path(monkeypatch, tmp_path):
    monkeypatch.setenv("SVD_WORKBENCH_STORE", str(tmp_path / "explicit.db"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_store_path() == tmp_path / "explicit.db"

    monkeypatch.delenv("SVD_WORKBENCH_STORE")
    assert default_store_path() == tmp_path / "xdg" / "svd-workbench" / "store.db"

    monkeypatch.setenv("XDG_DATA_HOME", "relative/path")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_store_path() == tmp_path / "home" / ".local" / "share" / "svd-workbench" / "store.db"

    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_store_path() == tmp_path / "home" / ".local" / "share" / "svd-workbench" / "store.db"


def test_open_store_uses_environment(monkeypatch, tmp_path):
    path = tmp_path / "env" / "store.db"
    monkeypatch.setenv("SVD_WORKBENCH_STORE", str(path))
    with open_store() as store:
        assert store.path == path
    assert path.is_file()


def test_store_imports_no_tensorflow_or_textual(tmp_path):
    """Exercise the whole API in a fresh interpreter, then check what it imported."""
    script = textwrap.dedent(
        """
        import sys
        from store import open_store
        from store.testing import create_synthetic_project

        store = open_store(sys.argv[1])
        create_synthetic_project(store, "demo", 6, ineligible_every=3)
        store.auto_select("demo")
        store.set_layer_ratio("demo", "block0/conv0", "0.55")
        store.layer_table("demo")
        store.summary("demo")
        store.undo("demo")
        store.export_scores("demo", sys.argv[2])
        store.import_scores("demo", sys.argv[2])
        job = store.create_job("demo", "search")
        store.start_job(job.id)
        store.job_liveness(store.job(job.id))
        forbidden = ("tensorflow", "keras", "textual", "workbench.engine")
        loaded = sorted(name for name in sys.modules if name.startswith(forbidden))
        print(",".join(loaded))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "store.db"), str(tmp_path / "scores.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
