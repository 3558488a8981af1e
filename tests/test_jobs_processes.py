"""Search jobs in real processes: detach, SIGKILL and resume, cancel, conflicts, loky and Dask."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter

import pytest

from store import JobConflict, open_store, pid_alive
from test_jobs_support import (
    PYTHON,
    job_environment,
    make_project,
    read_calls,
    run_cli,
    wait_for,
)
from workbench.jobs import launch_job


def job_row(store_path, job_id):
    with open_store(store_path, readonly=True) as store:
        return store.job(job_id)


def stored_scores(store_path, name="tiny"):
    with open_store(store_path, readonly=True) as store:
        return store.scores(name), store.baseline(name), len(store.missing_tasks(name))


def flat_scores(scores) -> set[float]:
    return {score for curve in scores.values() for score in curve.values()}


def wait_until_finished(store_path, job_id, timeout=120.0):
    return wait_for(
        lambda: (job := job_row(store_path, job_id)).status in ("done", "failed", "cancelled") and job,
        timeout,
        what=f"job {job_id} to finish",
    )


def test_detached_job_survives_launcher(tmp_path, capsys):
    store_path = make_project(tmp_path, capsys)
    launcher_code = (
        "import sys, time\n"
        "from workbench.jobs import launch_job\n"
        f"print(launch_job({str(store_path)!r}, 'tiny', 'search', {{'jobs': 1}}), flush=True)\n"
        "time.sleep(120)\n"
    )
    # The launcher gets a session of its own, as a shell in a terminal would.
    launcher = subprocess.Popen(
        [PYTHON, "-c", launcher_code],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=job_environment(SVDW_TEST_DELAY=0.3),
    )
    try:
        job_id = int(launcher.stdout.readline())
        running = wait_for(lambda: (job := job_row(store_path, job_id)).pid and job, what="the job to start")
        assert running.pid != launcher.pid
        os.killpg(launcher.pid, signal.SIGHUP)
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait(timeout=10)
    finally:
        if launcher.poll() is None:
            launcher.kill()
        launcher.stdout.close()

    finished = wait_until_finished(store_path, job_id)
    assert finished.status == "done", finished.error
    assert finished.done == finished.total == 7
    scores, baseline, missing = stored_scores(store_path)
    assert missing == 0
    assert baseline is not None
    log_text = (tmp_path / "logs" / f"job-{job_id}.log").read_text()
    assert "7/7" in log_text  # the progress line, written without a terminal


def test_sigkill_then_resume_loses_and_repeats_nothing(tmp_path, capsys, monkeypatch):
    store_path = make_project(tmp_path, capsys, candidates=6)
    calls_log = tmp_path / "calls.log"
    monkeypatch.setenv("SVDW_TEST_CALL_LOG", str(calls_log))
    monkeypatch.setenv("SVDW_TEST_DELAY", "0.4")
    job_id = launch_job(store_path, "tiny", "search", {"jobs": 1})
    # The baseline and the first chunk of three candidates are stored; kill mid-chunk.
    running = wait_for(lambda: (job := job_row(store_path, job_id)).done >= 4 and job, what="four stored scores")
    os.kill(running.pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(running.pid), what="the job process to end")

    code, out, err = run_cli(capsys, "--store", store_path, "status", "tiny")
    assert code == 0
    assert "dead" in out
    before, baseline_before, missing_before = stored_scores(store_path)
    assert baseline_before is not None
    assert 0 < missing_before < 10
    killed_calls = read_calls(calls_log)

    monkeypatch.setenv("SVDW_TEST_DELAY", "0")
    code, out, err = run_cli(capsys, "--store", store_path, "search", "tiny")
    assert code == 0, err
    after, baseline_after, missing_after = stored_scores(store_path)
    assert missing_after == 0
    assert baseline_after == baseline_before
    for layer, curve in before.items():
        for ratio, score in curve.items():
            assert after[layer][ratio] == score

    resumed_calls = [score for _, score in read_calls(calls_log)[len(killed_calls) :]]
    assert len(resumed_calls) == missing_before
    assert not set(resumed_calls) & flat_scores(before)
    assert baseline_before not in resumed_calls
    assert set(resumed_calls) == flat_scores(after) - flat_scores(before)
    # Only evaluations of the chunk in flight at the kill ran twice.
    repeated = [score for score, count in Counter(score for _, score in read_calls(calls_log)).items() if count > 1]
    assert len(repeated) <= 3
    assert not set(repeated) & flat_scores(before)


def test_cancel_keeps_scores_and_rerun_computes_rest(tmp_path, capsys, monkeypatch):
    store_path = make_project(tmp_path, capsys, candidates=6)
    calls_log = tmp_path / "calls.log"
    monkeypatch.setenv("SVDW_TEST_CALL_LOG", str(calls_log))
    monkeypatch.setenv("SVDW_TEST_DELAY", "0.5")
    job_id = launch_job(store_path, "tiny", "search", {"jobs": 1})
    running = wait_for(lambda: (job := job_row(store_path, job_id)).done >= 1 and job, what="the baseline")

    code, out, err = run_cli(capsys, "--store", store_path, "status", "tiny", "--json")
    assert code == 0
    assert '"state": "running"' in out
    assert f'"pid": {running.pid}' in out

    code, out, err = run_cli(capsys, "--store", store_path, "search", "tiny")
    assert code == 1
    assert f"job {job_id}" in err
    assert f"pid {running.pid}" in err
    with pytest.raises(JobConflict, match=f"job {job_id}"):
        launch_job(store_path, "tiny", "search")

    code, out, err = run_cli(capsys, "--store", store_path, "cancel", "tiny")
    assert code == 0, err
    assert f"Waiting for job {job_id} to stop..." in err
    cancelled = job_row(store_path, job_id)
    assert cancelled.status == "cancelled"
    assert "cancelled" in out
    wait_for(lambda: not pid_alive(running.pid), what="the job process to exit")
    scores, baseline, missing = stored_scores(store_path)
    assert baseline is not None
    assert sum(len(curve) for curve in scores.values()) == cancelled.done - 1
    assert missing == 10 - (cancelled.done - 1)
    assert missing > 0

    first_run_calls = len(read_calls(calls_log))
    monkeypatch.setenv("SVDW_TEST_DELAY", "0")
    code, out, err = run_cli(capsys, "--store", store_path, "search", "tiny")
    assert code == 0, err
    resumed = [score for _, score in read_calls(calls_log)[first_run_calls:]]
    assert len(resumed) == missing
    assert not set(resumed) & flat_scores(scores)


def test_loky_and_dask_give_same_scores(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    (tmp_path / "loky").mkdir()
    (tmp_path / "dask").mkdir()
    loky_store = make_project(tmp_path / "loky", capsys)
    code, out, err = run_cli(capsys, "--store", loky_store, "search", "tiny", "--jobs", "2")
    assert code == 0, err
    assert "2 loky worker(s)" in err

    dask_store = make_project(tmp_path / "dask", capsys)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=None
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        code, out, err = run_cli(
            capsys, "--store", dask_store, "search", "tiny", "--backend", "dask", "--scheduler", cluster.scheduler_address
        )
    assert code == 0, err
    assert "Dask at" in err

    loky_scores, loky_baseline, loky_missing = stored_scores(loky_store)
    dask_scores, dask_baseline, dask_missing = stored_scores(dask_store)
    assert loky_missing == dask_missing == 0
    assert dask_scores == loky_scores
    assert dask_baseline == loky_baseline


def test_dask_scheduler_unreachable_fails_job(tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr("workbench.jobs.search.DASK_CONNECT_TIMEOUT_S", 2)
    store_path = make_project(tmp_path, capsys)
    # Port 9 (discard) on loopback: nothing listens there in the test environment.
    code, out, err = run_cli(
        capsys, "--store", store_path, "search", "tiny", "--backend", "dask", "--scheduler", "tcp://127.0.0.1:9"
    )
    assert code == 1
    assert "Cannot connect to the Dask scheduler at 'tcp://127.0.0.1:9' within 2 s" in err
    with open_store(store_path, readonly=True) as store:
        job = store.jobs("tiny")[0]
    assert job.status == "failed"
    assert "tcp://127.0.0.1:9" in job.error


def child_pids(pid: int) -> set[int]:
    """Return the ids of the live processes whose parent is `pid`, read from /proc."""
    children = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            children.add(int(entry))
    return children


def test_cancel_stops_loky_workers(tmp_path, capsys, monkeypatch):
    store_path = make_project(tmp_path, capsys, candidates=6)
    # Chunks of two 4 s evaluations outlast the 5 s grace of a cancel, so the job
    # abandons them and ends with os._exit, which skips loky's own shutdown.
    monkeypatch.setenv("SVDW_TEST_DELAY", "4")
    job_id = launch_job(store_path, "tiny", "search", {"jobs": 2})
    running = wait_for(lambda: (job := job_row(store_path, job_id)).done >= 1 and job, what="the baseline")
    workers = child_pids(running.pid)
    assert len(workers) >= 2

    code, out, err = run_cli(capsys, "--store", store_path, "cancel", "tiny")
    assert code == 0, err
    assert job_row(store_path, job_id).status == "cancelled"
    wait_for(lambda: not pid_alive(running.pid), timeout=30, what="the job process to exit")
    # Without a shutdown, idle loky workers would live on for 300 s.
    wait_for(lambda: not any(pid_alive(pid) for pid in workers), timeout=30, what="the loky workers to exit")
    log_text = (tmp_path / "logs" / f"job-{job_id}.log").read_text()
    assert "leaked" not in log_text
    # Workers import TensorFlow through the start-up line filter.
    assert "cuInit" not in log_text
    assert "absl::InitializeLog" not in log_text


def test_ctrl_c_on_foreground_loky_search_cancels(tmp_path, capsys):
    store_path = make_project(tmp_path, capsys, candidates=6)
    # A session of its own, so that the SIGINT below reaches the search and its
    # loky workers as Ctrl-C in a terminal would, and nothing else.
    search = subprocess.Popen(
        [PYTHON, "-m", "workbench.cli", "--store", str(store_path), "search", "tiny", "--jobs", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=job_environment(SVDW_TEST_DELAY=0.5),
    )
    try:
        with open_store(store_path, readonly=True) as store:
            job_id = wait_for(lambda: (jobs := store.jobs("tiny", limit=1)) and jobs[0].id, what="the job row")
        wait_for(lambda: job_row(store_path, job_id).done >= 2, what="two stored scores")
        os.killpg(search.pid, signal.SIGINT)
        out, err = search.communicate(timeout=60)
    finally:
        if search.poll() is None:
            os.killpg(search.pid, signal.SIGKILL)
            search.communicate()

    assert search.returncode == 130, err
    assert "search cancelled:" in err
    assert "Traceback" not in err
    job = job_row(store_path, job_id)
    assert job.status == "cancelled"
    scores, baseline, missing = stored_scores(store_path)
    assert baseline is not None
    assert sum(len(curve) for curve in scores.values()) == job.done - 1
