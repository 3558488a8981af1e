"""Job rows: lifecycle, conflicts, cancellation and liveness; export records."""

import datetime
import hashlib
import os
import socket
import subprocess
import sys
from decimal import Decimal

import pytest

from store import HEARTBEAT_STALE_SECONDS, JobConflict, JobNotFound, StoreError, open_store
from store.testing import create_synthetic_project


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "store.db") as opened:
        create_synthetic_project(opened, "demo", 3)
        yield opened


@pytest.fixture
def sleeper():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_job_lifecycle(store, tmp_path):
    job = store.create_job("demo", "search", options={"backend": "loky", "jobs": 2}, total=27)
    assert (job.status, job.kind, job.project, job.done, job.total) == ("queued", "search", "demo", 0, 27)
    assert job.options == {"backend": "loky", "jobs": 2}
    assert store.job_liveness(job) == "queued"
    assert store.active_job("demo") == job

    started = store.start_job(job.id, log_path=tmp_path / "search.log")
    assert started.status == "running"
    assert started.pid == os.getpid()
    assert started.host == socket.gethostname()
    assert started.log_path == str(tmp_path / "search.log")
    assert store.job_liveness(started) == "running"

    store.update_job_progress(job.id, done=5)
    store.update_job_progress(job.id)
    progressed = store.job(job.id)
    assert progressed.done == 5
    assert progressed.heartbeat >= started.heartbeat

    store.finish_job(job.id)
    finished = store.job(job.id)
    assert finished.status == "done"
    assert finished.finished is not None
    assert store.job_liveness(finished) == "done"
    assert store.active_job("demo") is None
    assert [listed.id for listed in store.jobs("demo")] == [job.id]

    with pytest.raises(StoreError, match="not running"):
        store.update_job_progress(job.id, done=6)
    with pytest.raises(StoreError, match="already finished"):
        store.finish_job(job.id)


def test_second_search_job_conflicts(store, sleeper):
    first = store.create_job("demo", "search")
    store.start_job(first.id, pid=sleeper.pid)
    with pytest.raises(JobConflict) as caught:
        store.create_job("demo", "search")
    assert f"job {first.id}" in str(caught.value)
    assert f"pid {sleeper.pid}" in str(caught.value)
    assert caught.value.job_id == first.id
    assert caught.value.pid == sleeper.pid
    analyse = store.create_job("demo", "analyse")
    assert analyse.status == "queued"


def test_job_liveness_with_dead_pid(store, sleeper):
    job = store.start_job(store.create_job("demo", "search").id, pid=sleeper.pid)
    assert store.job_liveness(job) == "running"

    sleeper.kill()
    sleeper.wait()
    assert store.job_liveness(job) == "dead"
    assert store.job_liveness(job.id) == "dead"

    replacement = store.create_job("demo", "search")
    old = store.job(job.id)
    assert old.status == "failed"
    assert f"Process {sleeper.pid}" in old.error
    assert store.active_job("demo").id == replacement.id


def test_zombie_process_counts_as_dead(store, sleeper):
    job = store.start_job(store.create_job("demo", "search").id, pid=sleeper.pid)
    sleeper.kill()
    os.waitid(os.P_PID, sleeper.pid, os.WEXITED | os.WNOWAIT)  # exited but not reaped: a zombie
    assert store.job_liveness(job) == "dead"


def test_pid_of_other_host_not_checked(store, sleeper):
    sleeper.kill()
    sleeper.wait()
    job = store.start_job(store.create_job("demo", "search").id, pid=sleeper.pid, host="elsewhere.example")
    assert store.job_liveness(job) == "running"
    with pytest.raises(JobConflict):
        store.create_job("demo", "search")


def test_stale_heartbeat(store):
    job = store.start_job(store.create_job("demo", "search").id, host="elsewhere.example")
    heartbeat = datetime.datetime.fromisoformat(job.heartbeat)
    just_fresh = heartbeat + datetime.timedelta(seconds=HEARTBEAT_STALE_SECONDS - 1)
    stale = heartbeat + datetime.timedelta(seconds=HEARTBEAT_STALE_SECONDS + 1)
    assert store.job_liveness(job, now=just_fresh) == "running"
    assert store.job_liveness(job, now=stale) == "stale"


def test_cancel_running_job(store):
    job = store.start_job(store.create_job("demo", "search").id)
    assert store.cancel_requested(job.id) is False
    assert store.request_cancel(job.id) is True
    assert store.cancel_requested(job.id) is True
    assert store.job(job.id).status == "running"
    store.finish_job(job.id, status="cancelled")
    assert store.job(job.id).status == "cancelled"
    assert store.request_cancel(job.id) is False


def test_cancel_queued_job_stops_start(store):
    job = store.create_job("demo", "export")
    assert store.request_cancel(job.id) is True
    assert store.job(job.id).status == "cancelled"
    with pytest.raises(StoreError, match="cannot start"):
        store.start_job(job.id)


def test_fail_job_stores_traceback(store):
    job = store.start_job(store.create_job("demo", "search").id)
    try:
        raise RuntimeError("evaluator crashed on batch 3")
    except RuntimeError as error:
        store.fail_job(job.id, error)
    failed = store.job(job.id)
    assert failed.status == "failed"
    assert "Traceback" in failed.error
    assert "RuntimeError: evaluator crashed on batch 3" in failed.error
    assert store.active_job("demo") is None


def test_job_validation(store):
    with pytest.raises(ValueError, match="kind"):
        store.create_job("demo", "train")
    with pytest.raises(JobNotFound, match="Job 999 not found"):
        store.job(999)
    job = store.start_job(store.create_job("demo", "search").id)
    with pytest.raises(ValueError, match="done"):
        store.update_job_progress(job.id, done=-1)
    with pytest.raises(ValueError, match="status"):
        store.finish_job(job.id, status="failed")


def test_delete_project_with_live_job_rejected(store):
    job = store.start_job(store.create_job("demo", "search").id)
    with pytest.raises(JobConflict, match="Cannot delete project 'demo'"):
        store.delete_project("demo")
    store.finish_job(job.id)
    store.delete_project("demo")
    with pytest.raises(JobNotFound):
        store.job(job.id)


def test_record_export(store, tmp_path):
    model = tmp_path / "compressed.keras"
    model.write_bytes(b"compressed model")
    export = store.record_export(
        "demo",
        model,
        ratios={"block0/conv0": Decimal("0.5"), "block1/conv1": None},
        ranks={"block0/conv0": 4, "block1/conv1": None},
        baseline_score=0.9,
        compressed_score=0.85,
        macs_before=1000,
        macs_after=600,
        params_before=100,
        params_after=70,
    )
    assert export.content_hash == hashlib.sha256(b"compressed model").hexdigest()
    assert export.ratios == {"block0/conv0": Decimal("0.5"), "block1/conv1": None}
    assert export.ranks == {"block0/conv0": 4, "block1/conv1": None}
    assert (export.macs_before, export.macs_after, export.params_before, export.params_after) == (1000, 600, 100, 70)
    assert store.exports("demo") == [export]
