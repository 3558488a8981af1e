"""Parts of the search job: GPU assignment, chunking, options, progress, model file checks, worker tasks."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
import zipfile
from decimal import Decimal

import pytest

from store import open_store
from test_jobs_support import FAILING_EVALUATOR, save_tiny_model, write_evaluator
from workbench.jobs.analyse import ModelFileError, check_model_file
from workbench.jobs.progress import Progress, format_duration, format_rate, progress_line
from workbench.jobs.search import MAX_CHUNK_TASKS, SearchOptions, make_chunks
from workbench.jobs.status import format_job_report, job_report
from workbench.jobs.worker import (
    WorkerSpec,
    assign_gpu,
    evaluate_chunk,
    parse_visible_devices,
    visible_gpus,
    worker_index,
)

D = Decimal


@pytest.mark.parametrize(
    ("index", "gpus", "expected"),
    [
        (0, ("0", "1"), "0"),
        (1, ("0", "1"), "1"),
        (2, ("0", "1"), "0"),
        (5, ("0", "1", "2"), "2"),
        (3, ("3", "5"), "5"),
        (7, ("GPU-8c1d",), "GPU-8c1d"),
        (4, (), None),
    ],
)
def test_assign_gpu(index, gpus, expected):
    assert assign_gpu(index, gpus) == expected


def test_assign_gpu_rejects_negative_index():
    with pytest.raises(ValueError, match="worker_index=-1"):
        assign_gpu(-1, ("0",))


def test_parse_visible_devices():
    assert parse_visible_devices("0,1, 2") == ("0", "1", "2")
    assert parse_visible_devices("") == ()
    assert parse_visible_devices("-1") == ()
    assert parse_visible_devices("2,-1,3") == ("2",)


def test_visible_gpus_reads_environment(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert visible_gpus() == ("4", "6")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == ()


def test_worker_index_from_process_name():
    assert worker_index("LokyProcess-1") == 0
    assert worker_index("LokyProcess-12") == 11
    assert worker_index("MainProcess") == 0


def test_worker_pins_gpu_before_tensorflow():
    code = (
        "import multiprocessing, os, sys\n"
        "multiprocessing.current_process().name = 'LokyProcess-5'\n"
        "from workbench.jobs.worker import configure_worker_gpu\n"
        "print(configure_worker_gpu(('0', '1')), os.environ['CUDA_VISIBLE_DEVICES'],"
        " os.environ['TF_FORCE_GPU_ALLOW_GROWTH'], 'tensorflow' in sys.modules)\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["0", "0", "true", "False"]


def test_make_chunks_groups_by_layer():
    tasks = [("a", D(i) / 10) for i in range(1, 10)] + [("b", D(1) / 3), ("b", D(2) / 3)]
    chunks = make_chunks(tasks, workers=1)
    assert [len(chunk) for chunk in chunks] == [3, 3, 3, 2]
    assert all(len({layer for layer, _ in chunk}) == 1 for chunk in chunks)
    assert [task for chunk in chunks for task in chunk][0] == ("a", "0.1")
    assert chunks[-1] == [("b", "0.3333333333333333333333333333"), ("b", "0.6666666666666666666666666667")]

    many = [(f"layer{i}", D(j) / 10) for i in range(20) for j in range(1, 10)]
    assert max(len(chunk) for chunk in make_chunks(many, workers=1)) == MAX_CHUNK_TASKS
    assert max(len(chunk) for chunk in make_chunks(many, workers=8)) == 6
    assert make_chunks([], workers=2) == []


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, SearchOptions(1, "loky", None)),
        ({"jobs": 3}, SearchOptions(3, "loky", None)),
        ({"backend": "dask", "scheduler": "tcp://127.0.0.1:8786"}, SearchOptions(None, "dask", "tcp://127.0.0.1:8786")),
    ],
)
def test_search_options(options, expected):
    assert SearchOptions.from_dict(options) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "ray"}, "backend='ray'"),
        ({"jobs": 0}, "jobs=0"),
        ({"jobs": "2"}, "jobs='2'"),
        ({"backend": "dask"}, "needs the address of a Dask scheduler"),
        ({"scheduler": "tcp://127.0.0.1:8786"}, "dask backend only"),
    ],
)
def test_search_options_reject(options, message):
    with pytest.raises(ValueError, match=message):
        SearchOptions.from_dict(options)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class TtyBuffer(io.StringIO):
    def isatty(self):
        return True


def test_progress_throttles_store_writes():
    clock = FakeClock()
    writes = []
    progress = Progress(10, write=lambda done, total: writes.append((done, total)), clock=clock)
    progress.tick()
    assert writes == [(0, 10)]
    for _ in range(5):
        clock.now += 0.0625
        progress.advance()
        progress.tick()
    assert writes == [(0, 10), (4, 10)]  # the fourth result is the first 0.25 s after the last write
    clock.now += 1.0
    progress.tick()
    assert writes[-1] == (5, 10)
    clock.now += 1.0
    progress.tick()
    assert len(writes) == 3  # no new result: the next write is the heartbeat
    clock.now += 5.0
    progress.tick()
    assert writes[-1] == (5, 10)
    assert len(writes) == 4


def test_progress_rate_and_eta():
    clock = FakeClock()
    progress = Progress(10, clock=clock)
    assert progress.rate() is None
    assert progress.eta() is None
    for _ in range(4):
        clock.now += 0.5
        progress.advance()
    assert progress.rate() == pytest.approx(2.0)
    assert progress.eta() == pytest.approx(3.0)
    clock.now += 100.0
    progress.advance()
    # Results older than the rate window no longer count.
    assert progress.rate() < 0.1


def test_progress_output_on_pipe_and_terminal():
    clock = FakeClock()
    pipe = io.StringIO()
    progress = Progress(4, stream=pipe, clock=clock)
    progress.tick()
    clock.now += 1.0
    progress.advance()
    progress.tick()
    assert pipe.getvalue().count("\n") == 1  # a pipe gets a line every 10 s at most
    clock.now += 10.0
    progress.tick()
    progress.close()
    lines = pipe.getvalue().splitlines()
    assert len(lines) == 3
    assert "\r" not in pipe.getvalue()
    assert lines[-1] == "[######------------------] 1/4   25%  ? eval/s  ETA ?"

    terminal = TtyBuffer()
    progress = Progress(4, stream=terminal, clock=clock)
    progress.tick()
    clock.now += 0.6
    progress.advance()
    progress.tick()
    progress.message("note")
    progress.close()
    text = terminal.getvalue()
    assert text.count("\r\x1b[2K") == 3
    assert "\nnote\n" in text
    assert text.endswith("\n")


def test_format_helpers():
    assert format_duration(None) == "?"
    assert format_duration(75) == "1:15"
    assert format_duration(3725) == "1:02:05"
    assert format_rate(None) == "? eval/s"
    assert format_rate(0.5) == "30.0 eval/min"
    assert format_rate(2.5) == "2.50 eval/s"
    assert progress_line(3, None, None, None) == "3 done  ? eval/s"


def test_check_model_file(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        check_model_file(tmp_path / "absent.keras")
    with pytest.raises(ModelFileError, match="is a folder"):
        check_model_file(tmp_path)
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="not a Keras model file"):
        check_model_file(garbage)
    archive = tmp_path / "archive.keras"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("weights.bin", b"")
    with pytest.raises(ModelFileError, match="without config.json"):
        check_model_file(archive)
    hdf5 = tmp_path / "model.h5"
    hdf5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 8)
    assert check_model_file(hdf5) == hdf5


@pytest.fixture(scope="module")
def worker_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("worker")
    model = save_tiny_model(folder / "tiny.keras")
    evaluator = write_evaluator(folder / "failing.py", FAILING_EVALUATOR)
    return model, evaluator


def worker_spec_for(model, evaluator) -> WorkerSpec:
    from store import hash_file
    from workbench.evaluators import check_evaluator

    spec_text = f"{evaluator}:evaluate"
    return WorkerSpec(str(model), hash_file(model), spec_text, None, check_evaluator(spec_text, None, isolated=False).key, "mac", 1)


def test_evaluate_chunk_caches_model_and_keeps_partial_results(worker_files, monkeypatch):
    from workbench.jobs import worker

    model, evaluator = worker_files
    spec = worker_spec_for(model, evaluator)
    monkeypatch.setenv("SVDW_TEST_FAILURE", "raise")
    first = evaluate_chunk(spec, [("conv1", "0.25"), ("conv1", "0.5")], baseline=True)
    assert first["error"] is None
    assert first["baseline"][0] > 0
    assert [(layer, ratio, rank) for layer, ratio, rank, _, _ in first["scores"]] == [("conv1", "0.25", 1), ("conv1", "0.5", 3)]
    cached = worker._EVALUATORS[spec.cache_key]

    second = evaluate_chunk(spec, [("conv1", "0.75"), ("conv2", "0.25"), ("conv2", "0.5")])
    assert worker._EVALUATORS[spec.cache_key] is cached
    assert [ratio for _, ratio, _, _, _ in second["scores"]] == ["0.75"]
    assert second["error"]["layer"] == "conv2"
    assert second["error"]["ratio"] == "0.25"
    assert "ValueError: the test evaluator rejects layer conv2" in second["error"]["details"]
    # The kernel is restored after the failure, so the baseline is unchanged.
    assert evaluate_chunk(spec, [], baseline=True)["baseline"][0] == first["baseline"][0]


def test_worker_rejects_changed_model(worker_files, tmp_path):
    model, evaluator = worker_files
    copy = tmp_path / "copy.keras"
    copy.write_bytes(model.read_bytes())
    spec = worker_spec_for(copy, evaluator)
    copy.write_bytes(model.read_bytes() + b"\x00")
    with pytest.raises(RuntimeError, match="changed after the search started"):
        evaluate_chunk(spec, [("conv1", "0.5")])


def test_job_report_formats_states(tmp_path):
    with open_store(tmp_path / "s.db") as store:
        from store.testing import create_synthetic_project

        create_synthetic_project(store, "demo", 2)
        job = store.create_job("demo", "search", options={"jobs": 2})
        store.start_job(job.id, total=8)
        store.update_job_progress(job.id, done=2)
        report = job_report(store, store.job(job.id))
        assert (report["state"], report["done"], report["total"], report["pid"]) == ("running", 2, 8, store.job(job.id).pid)
        assert report["heartbeat_age_s"] >= 0
        text = format_job_report(report)
        assert f"Job {job.id} (search): running" in text
        assert " 2/8 " in text

        store.fail_job(job.id, "Evaluation failed.\nFailed task: layer conv2, ratio 0.5.")
        text = format_job_report(job_report(store, store.job(job.id)))
        assert "failed" in text
        assert "Failed task: layer conv2, ratio 0.5." in text


class FinishedRunner:
    """A stand-in for ChunkRunner whose queue already contains the baseline result and the end."""

    def __init__(self):
        import queue

        self.events = queue.Queue()
        self.events.put(("result", {"baseline": (0.5, 0.1), "scores": [], "error": None}))
        self.events.put(("end", None))
        self.stopping = False

    def stop(self):
        self.stopping = True


def start_synthetic_search(store, total: int, done: int = 0):
    """Create project 'demo' with two layers and a running search job; return the job."""
    from store.testing import create_synthetic_project

    create_synthetic_project(store, "demo", 2)
    job = store.create_job("demo", "search", options={"jobs": 2})
    store.start_job(job.id, total=total)
    if done:
        store.update_job_progress(job.id, done=done)
    return store.job(job.id)


def test_cancel_after_last_result_is_done(tmp_path):
    import threading

    from workbench.jobs.search import drive

    with open_store(tmp_path / "s.db") as store:
        job = start_synthetic_search(store, total=1)
        project = store.get_project("demo")
        stop_signal = threading.Event()
        stop_signal.set()  # the cancel arrives with the last result

        outcome = drive(store, job, "demo", project.score_key, FinishedRunner(), Progress(1), stop_signal)
        assert (outcome.computed, outcome.total) == (1, 1)
        assert store.baseline("demo") == 0.5


def test_dead_job_report_has_no_eta(tmp_path):
    with open_store(tmp_path / "s.db") as store:
        job = start_synthetic_search(store, total=8, done=2)
        # A pid that no process has: the job row says running, its process is gone.
        dead = dataclasses.replace(store.job(job.id), pid=2**22 + 1)
        report = job_report(store, dead)
        assert report["state"] == "dead"
        assert report["eta_s"] is None
        text = format_job_report(report)
        assert "ETA" not in text
        assert "2 of 8 done" in text
