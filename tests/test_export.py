"""Export of a project's selection to a .keras file, in process and as a job."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hashlib
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import keras
import numpy as np
import pytest

from store import make_evaluator_key, open_store
from workbench.engine import analyze_model, rebuild_model
from workbench.export import ExportError, export_project, format_export, run_export_job

IMAGE_SIZE = 12
CLASSES = 4


def build_model() -> keras.Model:
    """A small Functional CNN with a nested Sequential block and a large Dense layer.

    The Dense layer makes the file about 0.7 MB, larger than the file size limit
    of the full-disk test, while the store stays far below it.
    """
    block = keras.Sequential(
        [
            keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 8)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="inner"),
        ],
        name="block",
    )
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = block(x)
    x = keras.layers.Conv2D(16, (3, 5), strides=2, padding="valid", name="conv2")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(2048, activation="relu", name="wide")(x)
    outputs = keras.layers.Dense(CLASSES, name="logits")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The model file and the npz of the accuracy evaluator, written once."""
    folder = tmp_path_factory.mktemp("export_files")
    keras.utils.set_random_seed(7)
    model = build_model()
    model_path = folder / "small.keras"
    model.save(model_path)
    generator = np.random.default_rng(3)
    images = generator.normal(size=(64, IMAGE_SIZE, IMAGE_SIZE, 1)).astype("float32")
    labels = generator.integers(0, CLASSES, size=64)
    data_path = folder / "eval.npz"
    np.savez(data_path, x=images, y=labels)
    return model_path, data_path


def create_project(store, files, name: str = "small", selection: dict | None = None):
    model_path, data_path = files
    spec = f"accuracy:{data_path}"
    store.create_project(name, model_path, spec, make_evaluator_key(spec, None, [data_path]))
    store.set_layers(name, analyze_model(keras.models.load_model(model_path)).layers)
    if selection:
        store.set_selection(name, selection, "manual")


SELECTION = {"conv1": Decimal("0.5"), "block/inner": Decimal("0.3"), "conv2": Decimal("0.7")}


@pytest.fixture
def store(tmp_path, files):
    with open_store(tmp_path / "store.db") as opened:
        create_project(opened, files, selection=SELECTION)
        yield opened


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if ".partial" in path.name)


def test_export_writes_verified_model(store, tmp_path, files):
    output = tmp_path / "out" / "small-compressed.keras"
    output.parent.mkdir()
    steps = []
    result = export_project(store, "small", output, progress=lambda done, total, step: steps.append((done, total)))

    assert output.is_file()
    assert leftovers(output.parent) == []
    assert steps[0] == (0, 6)
    assert steps[-1] == (6, 6)

    written = keras.models.load_model(output)
    names = [layer.name for layer in written.layers]
    assert "conv1_v" in names
    assert "conv1_h" in names
    assert "conv1" not in names
    assert "conv2_v" in names
    assert "conv2_h" in names
    # 'inner' is the output of the nested Sequential, so its horizontal conv keeps the name.
    inner_names = [layer.name for layer in written.get_layer("block").layers]
    assert inner_names == ["inner_v", "inner"]

    summary = store.summary("small")
    analysis = analyze_model(written)
    assert analysis.total_macs == summary.macs_after
    assert result.macs_after == summary.macs_after
    assert result.predicted_macs_after == summary.macs_after
    assert result.macs_before == summary.macs_before
    assert result.params_after == written.count_params()
    assert result.notes == []

    original = keras.models.load_model(files[0])
    ranks = {row.name: row.rank for row in store.layer_table("small") if row.rank is not None}
    assert ranks == {layer.name: layer.rank for layer in result.layers if layer.rank is not None}
    expected = rebuild_model(original, ranks)
    batch = np.load(files[1])["x"][:8]
    np.testing.assert_allclose(written.predict_on_batch(batch), expected.predict_on_batch(batch), atol=1e-5)

    [record] = store.exports("small")
    assert record.path == str(output)
    assert record.content_hash == hashlib.sha256(output.read_bytes()).hexdigest()
    assert record.ratios == {"conv1": Decimal("0.5"), "block/inner": Decimal("0.3"), "conv2": Decimal("0.7")}
    assert record.ranks == ranks
    assert record.macs_after == summary.macs_after
    assert record.params_before == original.count_params()
    assert record.compressed_score == result.compressed_score
    assert 0.0 <= record.compressed_score <= 1.0
    assert store.baseline("small") == record.baseline_score


def test_export_summary_lists_layers(store, tmp_path):
    result = export_project(store, "small", tmp_path / "out.keras")
    text = format_export(result, score_label="accuracy")
    assert "block/inner" in text
    assert "0.3" in text
    assert "accuracy" in text
    assert f"{result.macs_before:,}" in text
    assert f"{result.params_after:,}" in text
    assert "time taken:" in text


def test_export_keeps_existing_without_force(store, tmp_path):
    output = tmp_path / "taken.keras"
    output.write_bytes(b"an earlier file")
    with pytest.raises(ExportError, match="--force"):
        export_project(store, "small", output)
    assert output.read_bytes() == b"an earlier file"
    assert store.exports("small") == []


def test_export_force_replaces_file(store, tmp_path):
    output = tmp_path / "taken.keras"
    output.write_bytes(b"an earlier file")
    output.chmod(0o640)
    result = export_project(store, "small", output, force=True)
    assert result.replaced_existing
    assert keras.models.load_model(output).name == "small_cnn"
    assert output.stat().st_mode & 0o777 == 0o640
    assert leftovers(tmp_path) == []


def test_export_without_selection_fails(tmp_path, files):
    with open_store(tmp_path / "store.db") as store:
        create_project(store, files, "fresh")
        with pytest.raises(ExportError, match="no selection yet") as caught:
            export_project(store, "fresh", tmp_path / "out.keras")
    assert "svd-workbench select fresh" in str(caught.value)
    assert "svd-workbench set fresh" in str(caught.value)
    assert not (tmp_path / "out.keras").exists()


def test_export_uncompressed_selection_fails(tmp_path, files):
    with open_store(tmp_path / "store.db") as store:
        create_project(store, files, "plain", {"conv1": None, "conv2": None})
        with pytest.raises(ExportError, match="every layer uncompressed"):
            export_project(store, "plain", tmp_path / "out.keras")


def test_export_rejects_bad_outputs(store, tmp_path, files):
    with pytest.raises(ExportError, match="ending in .keras"):
        export_project(store, "small", tmp_path / "out.h5")
    (tmp_path / "folder.keras").mkdir()
    with pytest.raises(ExportError, match="is a folder"):
        export_project(store, "small", tmp_path / "folder.keras")
    with pytest.raises(ExportError, match="own model file"):
        export_project(store, "small", files[0], force=True)
    assert store.exports("small") == []


def test_export_into_missing_folder_fails(store, tmp_path):
    with pytest.raises(ExportError, match="does not exist or is not a folder"):
        export_project(store, "small", tmp_path / "missing" / "out.keras")
    (tmp_path / "plain-file").write_text("not a folder")
    with pytest.raises(ExportError, match="does not exist or is not a folder"):
        export_project(store, "small", tmp_path / "plain-file" / "out.keras")


def test_export_into_read_only_folder_fails(store, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    mounted = False
    if os.geteuid() == 0:
        # Root ignores file permissions, so only a read-only file system stops it.
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True)
        if result.returncode != 0:
            pytest.skip(f"running as root and cannot mount a read-only tmpfs: {result.stderr.decode().strip()}")
        mounted = True
    else:
        folder.chmod(0o555)
    try:
        with pytest.raises(ExportError, match="Choose a folder you can write to") as caught:
            export_project(store, "small", folder / "out.keras")
        assert "Read-only file system" in str(caught.value) or "Permission denied" in str(caught.value)
        assert list(folder.iterdir()) == []
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)
        else:
            folder.chmod(0o755)


FULL_DISK_SCRIPT = """
import os, resource, signal, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from store import open_store
from workbench.export import ExportError, export_project

limit = int(sys.argv[3])
# Ignored signals stay ignored, so the write fails with EFBIG instead of killing the process.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
with open_store(sys.argv[1]) as store:
    try:
        export_project(store, "small", sys.argv[2])
    except ExportError as error:
        print(error)
        sys.exit(3)
print("exported")
"""


def test_export_over_file_size_limit_fails(store, tmp_path, files):
    output = tmp_path / "big.keras"
    limit = 256 * 1024
    assert files[0].stat().st_size > 2 * limit  # the export is as large as the model
    completed = subprocess.run(
        [sys.executable, "-c", FULL_DISK_SCRIPT, str(store.path), str(output), str(limit)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 3, completed.stdout + completed.stderr
    assert "file too large" in completed.stdout
    assert "No partial file was left" in completed.stdout
    assert not output.exists()
    assert leftovers(tmp_path) == []
    assert store.exports("small") == []


def test_export_onto_full_disk_fails(store, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder = tmp_path / "tiny"
    folder.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(folder)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.decode().strip()}")
    try:
        with pytest.raises(ExportError, match="the disk is full"):
            export_project(store, "small", folder / "out.keras")
        assert list(folder.iterdir()) == []
    finally:
        subprocess.run(["umount", str(folder)], check=True)
    assert store.exports("small") == []


def test_export_job_records_progress(store, tmp_path):
    from workbench.jobs.runner import run_job

    output = tmp_path / "job.keras"
    job = store.create_job("small", "export", options={"output": str(output), "force": False})
    outcome = run_job(store, job.id)

    assert outcome.status == "done", outcome.message
    finished = store.job(job.id)
    assert (finished.status, finished.done, finished.total) == ("done", 6, 6)
    assert keras.models.load_model(output).get_layer("conv1_v").kernel.shape == (3, 1, 1, store.layer_table("small")[0].rank)
    assert [record.path for record in store.exports("small")] == [str(output)]


def test_export_job_failure_has_no_traceback(store, tmp_path):
    from workbench.jobs.runner import run_job

    output = tmp_path / "taken.keras"
    output.write_bytes(b"keep me")
    job = store.create_job("small", "export", options={"output": str(output)})
    outcome = run_job(store, job.id)

    assert outcome.status == "failed"
    failed = store.job(job.id)
    assert "--force" in failed.error
    assert "Traceback" not in failed.error
    assert output.read_bytes() == b"keep me"


def test_export_job_cancelled_between_steps(store, tmp_path):
    output = tmp_path / "cancelled.keras"
    job = store.create_job("small", "export", options={"output": str(output)})
    job = store.start_job(job.id)
    store.request_cancel(job.id)
    from workbench.jobs.errors import JobCancelled

    with pytest.raises(JobCancelled):
        run_export_job(store, job, job.options)
    assert not output.exists()
    assert leftovers(tmp_path) == []


def test_detached_export_job_finishes(store, tmp_path):
    from workbench.jobs import job_log_path, launch_job

    output = tmp_path / "detached.keras"
    store_path = store.path
    store.close()
    job_id = launch_job(store_path, "small", "export", {"output": str(output)})
    deadline = time.monotonic() + 240
    with open_store(store_path, readonly=True) as reader:
        job = reader.job(job_id)
        while job.active and time.monotonic() < deadline:
            time.sleep(0.5)
            job = reader.job(job_id)
    log = job_log_path(store_path, job_id).read_text()
    assert job.status == "done", f"{job.error}\n{log}"
    assert (job.done, job.total) == (6, 6)
    assert keras.models.load_model(output).get_layer("conv2_h") is not None


def test_output_check_catches_different_model(files):
    from workbench.export import max_output_difference

    original = keras.models.load_model(files[0])
    changed = keras.models.load_model(files[0])
    kernel = changed.get_layer("conv1").kernel
    kernel.assign(kernel.numpy() * 2.0)
    batch = np.load(files[1])["x"][:4]
    assert max_output_difference(original, keras.models.load_model(files[0]), batch) == 0.0
    with pytest.raises(ExportError, match="file was not kept"):
        max_output_difference(original, changed, batch)


def test_export_after_model_file_changed_fails(tmp_path, files):
    model_path = tmp_path / "copy.keras"
    model_path.write_bytes(files[0].read_bytes())
    with open_store(tmp_path / "store.db") as store:
        create_project(store, (model_path, files[1]), "copied", SELECTION)
        model = keras.models.load_model(model_path)
        model.get_layer("logits").bias.assign(np.ones(CLASSES, dtype="float32"))
        model.save(model_path)
        with pytest.raises(ExportError, match="changed since project 'copied' was analysed"):
            export_project(store, "copied", tmp_path / "out.keras")
    assert not (tmp_path / "out.keras").exists()
