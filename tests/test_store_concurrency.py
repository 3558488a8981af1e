"""Several real processes on one store file: concurrent writers and readers, and killed writers."""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from decimal import Decimal

from store import open_store
from store.schema import MIGRATION_NAMES
from store.testing import create_synthetic_project

LAYERS = 200
CANDIDATES = 11  # ten ratios per layer: 2,000 scores
PROCESS_TIMEOUT = 120

# Shared by the scripts below: the score of the n-th write, so that the reader
# can check every value it reads.
EXPECTED = """
from workbench.selection import candidate_ratios

def expected_entries(layers):
    entries = []
    for layer in layers:
        for ratio in candidate_ratios(%d):
            entries.append((layer, ratio, round(0.5 + len(entries) / 10000, 6)))
    return entries
""" % CANDIDATES

SCORE_WRITER = EXPECTED + """
import sys
from store import open_store

store = open_store(sys.argv[1])
key = store.score_key("demo")
entries = expected_entries([record.name for record in store.layers("demo") if record.eligible])
index = 0
size = 1
while index < len(entries):
    index += store.put_scores(key, entries[index : index + size])  # one transaction of 1 to 5 scores
    size = size % 5 + 1
print(index)
"""

HEARTBEAT_WRITER = """
import sys, time
from store import open_store

store = open_store(sys.argv[1])
job = store.start_job(store.create_job("demo", "search", total=300).id)
for done in range(1, 301):
    store.update_job_progress(job.id, done=done)
    time.sleep(0.001)
store.finish_job(job.id)
"""

POLLING_READER = EXPECTED + """
import json, sys, time
from store import open_store

store = open_store(sys.argv[1], readonly=True)
entries = expected_entries([record.name for record in store.layers("demo") if record.eligible])
expected = {(layer, ratio): score for layer, ratio, score in entries}
order = [(layer, ratio) for layer, ratio, _ in entries]
polls = 0
seen = 0
deadline = time.monotonic() + 100
while time.monotonic() < deadline:
    rows = store.layer_table("demo")
    store.summary("demo")
    present = {(row.name, ratio): score for row in rows for ratio, score in row.scores.items()}
    polls += 1
    if len(present) < seen:
        sys.exit(f"lost rows: saw {seen} scores, then {len(present)}")
    seen = len(present)
    # Scores are committed in order, so a reader sees exactly a prefix of them.
    if set(present) != set(order[:seen]):
        sys.exit(f"poll {polls}: the {seen} visible scores are not the first {seen} written")
    wrong = [key for key, score in present.items() if score != expected[key]]
    if wrong:
        sys.exit(f"poll {polls}: wrong scores for {wrong[:3]}")
    if seen == len(order):
        break
    time.sleep(0.01)
print(json.dumps({"polls": polls, "seen": seen}))
"""


def start(script: str, *args, **popen_args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen_args,
    )


@contextlib.contextmanager
def reaped(process: subprocess.Popen):
    """Kill the process on the way out if it still runs, and collect its exit status."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=PROCESS_TIMEOUT)


def kill_hard(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=PROCESS_TIMEOUT)


def finish(process: subprocess.Popen) -> str:
    stdout, stderr = process.communicate(timeout=PROCESS_TIMEOUT)
    assert "database is locked" not in stderr
    assert process.returncode == 0, stderr
    return stdout


def test_writers_and_polling_reader(tmp_path):
    path = tmp_path / "store.db"
    with open_store(path) as store:
        create_synthetic_project(store, "demo", LAYERS, candidates=CANDIDATES, with_scores=False)

    reader = start(POLLING_READER, path)
    writers = [start(SCORE_WRITER, path), start(HEARTBEAT_WRITER, path)]
    written = int(finish(writers[0]))
    finish(writers[1])
    report = json.loads(finish(reader))

    assert written == LAYERS * (CANDIDATES - 1)
    assert report["seen"] == written
    assert report["polls"] > 1
    with open_store(path) as store:
        scores = store.scores("demo")
        assert sum(len(curve) for curve in scores.values()) == written
        job = store.jobs("demo")[0]
        assert (job.status, job.done) == ("done", 300)


KILLED_IN_TRANSACTION = """
import sys, time
from store import open_store

store = open_store(sys.argv[1])
key = store.score_key("demo")
for index in range(100):
    store.put_score(key, f"layer{index}", "0.5", index / 100)
with store.transaction():
    for index in range(100, 600):
        store.put_score(key, f"layer{index}", "0.5", index / 100)
    print("inside transaction", flush=True)
    time.sleep(60)
"""


def test_writer_killed_mid_transaction(tmp_path):
    path = tmp_path / "store.db"
    with open_store(path) as store:
        create_synthetic_project(store, "demo", 2, with_scores=False)

    with reaped(start(KILLED_IN_TRANSACTION, path)) as writer:
        assert writer.stdout.readline() == "inside transaction\n"
        with open_store(path, readonly=True) as reader:
            assert len(reader.scores("demo")) == 100  # the open transaction is invisible
        kill_hard(writer)
    assert writer.returncode == -signal.SIGKILL

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    conn.close()
    with open_store(path) as store:
        scores = store.scores("demo")
        assert scores == {f"layer{index}": {Decimal("0.5"): index / 100} for index in range(100)}
        store.put_score("demo", "layer100", "0.5", 1.0)  # the write lock was released
        assert len(store.scores("demo")) == 101


KILLED_IN_LOOP = """
import sys
from store import open_store

store = open_store(sys.argv[1])
key = store.score_key("demo")
commits = 0
while True:
    store.put_scores(key, [(f"layer{commits}", f"0.{digit}", digit / 10) for digit in range(1, 10)])
    commits += 1
    print(commits, flush=True)
"""


def test_writer_killed_between_commits(tmp_path):
    path = tmp_path / "store.db"
    with open_store(path) as store:
        create_synthetic_project(store, "demo", 2, with_scores=False)

    with reaped(start(KILLED_IN_LOOP, path)) as writer:
        reported = 0
        while reported < 50:
            reported = int(writer.stdout.readline())
        kill_hard(writer)
    assert writer.returncode == -signal.SIGKILL

    with open_store(path) as store:
        scores = store.scores("demo")
    assert len(scores) >= reported
    assert all(len(curve) == 9 for curve in scores.values())  # no transaction half-applied
    assert set(scores) == {f"layer{index}" for index in range(len(scores))}


CONCURRENT_CREATOR = """
import os, sys, time
from store import open_store

path, name, go = sys.argv[1:4]
while not os.path.exists(go):
    time.sleep(0.001)
store = open_store(path)
store.create_project(name, "/model.keras", "spec", "key", model_hash="0" * 64)
"""


def test_new_store_opened_by_several_processes(tmp_path):
    path = tmp_path / "new" / "store.db"
    go = tmp_path / "go"
    creators = [start(CONCURRENT_CREATOR, path, f"project{index}", go) for index in range(4)]
    time.sleep(0.5)  # let every interpreter start and wait for the signal file
    go.touch()
    for creator in creators:
        finish(creator)
    with open_store(path) as store:
        assert [project.name for project in store.list_projects()] == [f"project{index}" for index in range(4)]
    conn = sqlite3.connect(path)
    applied = [row[0] for row in conn.execute("SELECT name FROM _sqlite_migrations")]
    conn.close()
    assert applied == MIGRATION_NAMES
