"""`svd-workbench demo` and `svd-workbench export` end to end, through the installed entry point."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hashlib
import resource
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import keras
import pytest

from store import open_store
from workbench.engine import analyze_model

ENTRY_POINT = Path(sys.executable).with_name("svd-workbench")
CANDIDATES = 3
DEMO_LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5", "conv6"]


def run_cli(arguments: list[str], folder: Path, store_path: Path, limit_bytes: int | None = None, timeout: int = 600):
    """Run the installed `svd-workbench` in `folder` with the store at `store_path`."""
    environment = dict(os.environ, SVD_WORKBENCH_STORE=str(store_path), TF_CPP_MIN_LOG_LEVEL="2")

    def limit_file_size():
        # An ignored signal stays ignored across exec, so writes past the limit fail with EFBIG.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [str(ENTRY_POINT), *arguments],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        preexec_fn=limit_file_size if limit_bytes else None,
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One fresh demo run with few candidates; the tests below share its store and folder."""
    assert ENTRY_POINT.is_file(), f"the svd-workbench entry point is not installed next to {sys.executable}"
    folder = tmp_path_factory.mktemp("demo")
    store_path = folder / "state" / "store.db"
    completed = run_cli(["demo", "--candidates", str(CANDIDATES)], folder, store_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return folder, store_path, completed


def test_demo_prints_layer_table(demo):
    _, _, completed = demo
    lines = completed.stdout.splitlines()
    assert lines[0].split() == ["layer", "ratio", "rank", "score"]
    for layer in DEMO_LAYERS:
        assert any(line.startswith(layer + " ") for line in lines), layer
    assert any(line.split()[:1] == ["accuracy"] for line in lines)
    assert any(line.split()[:1] == ["MACs"] for line in lines)
    assert any(line.split()[:1] == ["parameters"] for line in lines)
    assert "time taken:" in completed.stdout
    assert "Creating project 'demo'" in completed.stderr
    assert f"{len(DEMO_LAYERS) * (CANDIDATES - 1)} candidate score(s) to compute, 0 reused" in completed.stderr


def test_demo_export_matches_store(demo):
    folder, store_path, _ = demo
    output = folder / "svd-workbench-demo.keras"
    written = keras.models.load_model(output)

    with open_store(store_path, readonly=True) as store:
        project = store.get_project("demo")
        [record] = store.exports("demo")
        rows = {row.name: row for row in store.layer_table("demo")}
        predicted = store.summary("demo")
        selection = store.selection("demo")

    assert project.candidates == CANDIDATES
    assert project.target == Decimal("0.5")
    assert project.evaluator_spec.startswith("accuracy:")
    assert record.path == str(output)
    assert record.content_hash == sha256(output)

    names = [layer.name for layer in written.layers]
    compressed = [name for name, ratio in selection.items() if ratio is not None]
    assert compressed, "the demo compressed no layer"
    for name in DEMO_LAYERS:
        if name in compressed:
            assert f"{name}_v" in names
            assert f"{name}_h" in names
            assert name not in names
            vertical = written.get_layer(f"{name}_v")
            assert vertical.filters == rows[name].rank == record.ranks[name]
        else:
            assert name in names
            assert record.ranks[name] is None

    analysis = analyze_model(written)
    assert analysis.total_macs == predicted.macs_after == record.macs_after
    assert record.macs_after <= record.macs_before * 0.5
    assert record.params_after == written.count_params()
    assert 0.5 < record.compressed_score <= 1.0
    assert record.baseline_score == pytest.approx(0.917)


def test_demo_rerun_reuses_scores(demo):
    folder, store_path, _ = demo
    first = folder / "svd-workbench-demo.keras"
    first_hash = sha256(first)
    completed = run_cli(["demo", "--candidates", str(CANDIDATES)], folder, store_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr

    total = len(DEMO_LAYERS) * (CANDIDATES - 1)
    assert f"0 of {total} candidate score(s) to compute, {total} reused" in completed.stderr
    assert "Reusing project 'demo'" in completed.stderr
    second = folder / "svd-workbench-demo-2.keras"
    assert f"written: {second}" in completed.stdout
    assert keras.models.load_model(second) is not None
    assert sha256(first) == first_hash


def test_export_existing_file_needs_force(demo):
    folder, store_path, _ = demo
    output = folder / "svd-workbench-demo.keras"
    before = sha256(output)
    completed = run_cli(["export", "demo", "--output", str(output)], folder, store_path)
    assert completed.returncode == 1
    assert "already exists" in completed.stderr
    assert "--force" in completed.stderr
    assert sha256(output) == before


def test_export_force_replaces_file(demo):
    folder, store_path, _ = demo
    output = folder / "replaced.keras"
    output.write_bytes(b"older content")
    completed = run_cli(["export", "demo", "--output", "replaced.keras", "--force"], folder, store_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "replaced the existing file" in completed.stdout
    assert any(layer.name.endswith("_v") for layer in keras.models.load_model(output).layers)


def test_export_unwritable_path_fails(demo):
    folder, store_path, _ = demo
    (folder / "a-file").write_text("not a folder")
    completed = run_cli(["export", "demo", "--output", "a-file/out.keras"], folder, store_path)
    assert completed.returncode == 1
    assert "does not exist or is not a folder" in completed.stderr
    assert completed.stderr.startswith("svd-workbench: error:"), "the error must come before TensorFlow loads"


def test_export_over_size_limit_fails(demo):
    folder, store_path, _ = demo
    output = folder / "limited" / "out.keras"
    output.parent.mkdir()
    # The demo's export is about 0.9 MB; the store stays under 0.5 MB.
    completed = run_cli(["export", "demo", "--output", str(output)], folder, store_path, limit_bytes=512 * 1024)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "file too large" in completed.stderr
    assert list(output.parent.iterdir()) == []


def test_export_without_selection_fails(demo, tmp_path):
    folder, store_path, _ = demo
    with open_store(store_path) as store:
        project = store.get_project("demo")
        store.create_project("unselected", project.model_path, project.evaluator_spec, project.evaluator_key)
        store.set_layers("unselected", store.layers("demo"))
    completed = run_cli(["export", "unselected", "--output", str(tmp_path / "out.keras")], folder, store_path)
    assert completed.returncode == 1
    assert "no selection yet" in completed.stderr
    assert "svd-workbench select unselected" in completed.stderr
    assert not (tmp_path / "out.keras").exists()


def test_export_unknown_project_fails(demo, tmp_path):
    folder, store_path, _ = demo
    completed = run_cli(["export", "missing", "--output", str(tmp_path / "out.keras")], folder, store_path)
    assert completed.returncode == 1
    assert "'missing' not found" in completed.stderr


@pytest.mark.parametrize(
    "arguments",
    [
        ["export", "demo"],
        ["export", "--output", "out.keras"],
        ["demo", "--candidates", "1"],
        ["demo", "--jobs", "0"],
    ],
)
def test_usage_errors_exit_2(tmp_path, arguments):
    completed = run_cli(arguments, tmp_path, tmp_path / "store.db")
    assert completed.returncode == 2, completed.stderr
    assert "usage: svd-workbench" in completed.stderr


def test_help_names_units(tmp_path):
    export_help = run_cli(["export", "--help"], tmp_path, tmp_path / "store.db")
    assert export_help.returncode == 0
    assert "--force" in export_help.stdout
    assert ".keras" in export_help.stdout
    demo_help = run_cli(["demo", "--help"], tmp_path, tmp_path / "store.db")
    assert demo_help.returncode == 0
    text = " ".join(demo_help.stdout.split())  # argparse wraps lines anywhere
    assert "i/N for i = 1 .. N-1" in text
    assert "worker processes" in text
    assert "svd-workbench-demo-2.keras" in text


def test_demo_unwritable_output_fails_first(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    completed = run_cli(["demo", "--output", "a-file/demo.keras"], tmp_path, tmp_path / "store.db")
    assert completed.returncode == 1
    assert "does not exist or is not a folder" in completed.stderr
    assert "Creating project" not in completed.stderr, "the output must be checked before any work"
