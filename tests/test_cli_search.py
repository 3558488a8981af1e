"""The project and search commands, run in this process on tiny models and real stores."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from store import open_store
from test_jobs_support import (
    FAILING_EVALUATOR,
    PYTHON,
    job_environment,
    make_project,
    run_cli,
    save_npz,
    save_tiny_model,
    write_evaluator,
)
from workbench.cli import build_parser


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.keras")


@pytest.fixture
def npz_file(tmp_path):
    return save_npz(tmp_path / "eval.npz")


def init_args(store_path, model, evaluator, *extra):
    return ("--store", store_path, "init", "p", "--model", model, "--evaluator", evaluator, *extra)


def test_init_fills_layers_and_settings(tmp_path, capsys, model_file, npz_file):
    code, out, err = run_cli(
        capsys,
        *init_args(tmp_path / "s.db", model_file, f"accuracy:{npz_file}"),
        "--metric", "memory", "--target", "0.4", "--candidates", "5", "--multiplicity", "2",
        "--ignore", "conv1", "--eval-iterations", "3",
    )
    assert code == 0, err
    assert "Created project 'p'" in out
    assert "2 compressible" in out
    with open_store(tmp_path / "s.db", readonly=True) as store:
        project = store.get_project("p")
        layers = store.layers("p")
        missing = store.missing_tasks("p")
    assert [layer.name for layer in layers] == ["conv1", "conv2", "head"]
    assert (project.metric, str(project.target), project.candidates, project.multiplicity) == ("memory", "0.4", 5, 2)
    assert project.ignored == ("conv1",)
    assert project.eval_iterations == 3
    assert project.evaluator_spec == f"accuracy:{npz_file}"
    assert "iterations=3" in project.evaluator_key
    assert len(missing) == 4  # conv2 at 1/5 .. 4/5; conv1 is ignored


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--target", "1.5", "argument --target: expected a cost ratio in (0, 1]"),
        ("--target", "zero", "argument --target: expected a cost ratio in (0, 1]"),
        ("--candidates", "1", "argument --candidates: expected an integer of at least 2"),
        ("--candidates", "0", "argument --candidates: expected an integer of at least 2"),
        ("--multiplicity", "0", "argument --multiplicity: expected a positive integer"),
        ("--eval-iterations", "-3", "argument --eval-iterations: expected a positive integer"),
        ("--metric", "flops", "argument --metric: invalid choice: 'flops'"),
    ],
)
def test_init_rejects_bad_option(tmp_path, capsys, model_file, npz_file, option, value, expected):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(
            ["init", "p", "--model", str(model_file), "--evaluator", f"accuracy:{npz_file}", option, value]
        )
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


def test_init_names_unknown_ignored_layers(tmp_path, capsys, model_file, npz_file):
    code, out, err = run_cli(
        capsys, *init_args(tmp_path / "s.db", model_file, f"accuracy:{npz_file}"), "--ignore", "conv1", "conv9", "head2"
    )
    assert code == 2
    assert "['conv9', 'head2']" in err
    assert "conv1" not in err.split("Compressible layers")[0]
    with open_store(tmp_path / "s.db", readonly=True) as store:
        assert store.list_projects() == []


def test_init_model_file_errors(tmp_path, capsys, npz_file):
    evaluator = f"accuracy:{npz_file}"
    code, out, err = run_cli(capsys, *init_args(tmp_path / "s.db", tmp_path / "absent.keras", evaluator))
    assert code == 1
    assert "Model file not found" in err

    text_file = tmp_path / "notes.keras"
    text_file.write_text("not a model")
    code, out, err = run_cli(capsys, *init_args(tmp_path / "s.db", text_file, evaluator))
    assert code == 1
    assert "is not a Keras model file" in err

    archive = tmp_path / "archive.keras"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("readme.txt", "hello")
    code, out, err = run_cli(capsys, *init_args(tmp_path / "s.db", archive, evaluator))
    assert code == 1
    assert "without config.json" in err

    code, out, err = run_cli(capsys, *init_args(tmp_path / "s.db", tmp_path, evaluator))
    assert code == 1
    assert "is a folder" in err


def test_init_evaluator_errors(tmp_path, capsys, model_file):
    store_path = tmp_path / "s.db"
    code, out, err = run_cli(capsys, *init_args(store_path, model_file, f"accuracy:{tmp_path / 'none.npz'}"))
    assert code == 1
    assert "npz file not found" in err

    code, out, err = run_cli(capsys, *init_args(store_path, model_file, "no_such_package.metrics:score"))
    assert code == 1
    assert "module 'no_such_package' not found" in err

    source = write_evaluator(tmp_path / "wrong.py", "def score(model):\n    return 1.0\n")
    code, out, err = run_cli(capsys, *init_args(store_path, model_file, f"{source}:score"))
    assert code == 1
    assert f"{source}:score" in err
    assert "expected f(model, iterations)" in err


def test_init_rejects_taken_name(tmp_path, capsys, model_file, npz_file):
    store_path = tmp_path / "s.db"
    assert run_cli(capsys, *init_args(store_path, model_file, f"accuracy:{npz_file}"))[0] == 0
    code, out, err = run_cli(capsys, *init_args(store_path, model_file, f"accuracy:{npz_file}"))
    assert code == 1
    assert "already exists" in err


def test_search_list_show_select_set(tmp_path, capsys):
    store_path = make_project(tmp_path, capsys)
    code, out, err = run_cli(capsys, "--store", store_path, "list")
    assert code == 0
    assert "tiny" in out

    code, out, err = run_cli(capsys, "search", "tiny", "--store", store_path)
    assert code == 0, err
    assert "Every score of project 'tiny' is cached" in out
    assert "7/7" in err

    code, out, err = run_cli(capsys, "search", "tiny", "--store", store_path)
    assert code == 0, err
    assert "nothing to compute" in err

    code, out, err = run_cli(capsys, "--store", store_path, "status", "tiny", "--json")
    report = json.loads(out)
    assert report["missing_scores"] == 0
    assert (report["job"]["status"], report["job"]["done"], report["job"]["total"]) == ("done", 0, 0)

    code, out, err = run_cli(capsys, "--store", store_path, "select", "tiny", "--target", "0.6")
    assert code == 0, err
    assert "Target 0.6, achieved mac ratio" in out
    achieved = float(out.split("achieved mac ratio ")[1].split()[0])
    assert achieved <= 0.6

    code, out, err = run_cli(capsys, "--store", store_path, "select", "tiny", "--target", "0.01")
    assert code == 0
    assert "warning: target not reached" in err

    code, out, err = run_cli(capsys, "--store", store_path, "set", "tiny", "conv2", "0.5")
    assert code == 0, err
    assert "conv2: ratio 0.5, rank 6/24" in out
    code, out, err = run_cli(capsys, "--store", store_path, "set", "tiny", "conv2", "none")
    assert code == 0
    assert "uncompressed" in out
    code, out, err = run_cli(capsys, "--store", store_path, "set", "tiny", "head", "0.5")
    assert code == 2
    assert "cannot be compressed" in err
    code, out, err = run_cli(capsys, "--store", store_path, "set", "tiny", "conv2", "2")
    assert code == 2

    code, out, err = run_cli(capsys, "--store", store_path, "show", "tiny", "--json")
    shown = json.loads(out)
    assert [layer["name"] for layer in shown["layers"]] == ["conv1", "conv2", "head"]
    assert shown["summary"]["missing_scores"] == 0
    code, out, err = run_cli(capsys, "--store", store_path, "show", "tiny")
    assert "not compressible" in out


def test_scores_export_import_round_trip(tmp_path, capsys):
    store_path = make_project(tmp_path, capsys)
    assert run_cli(capsys, "--store", store_path, "search", "tiny")[0] == 0
    exported = tmp_path / "scores.json"
    code, out, err = run_cli(capsys, "--store", store_path, "scores", "export", "tiny", exported)
    assert code == 0, err
    code, out, err = run_cli(capsys, "--store", store_path, "scores", "export", "tiny", exported)
    assert code == 1
    assert "already exists" in err

    other_store = tmp_path / "other.db"
    code, out, err = run_cli(
        capsys, "--store", other_store, "init", "copy", "--model", tmp_path / "tiny.keras",
        "--evaluator", f"accuracy:{save_npz(tmp_path / 'eval.npz')}", "--candidates", "4",
    )
    assert code == 0, err
    code, out, err = run_cli(capsys, "scores", "import", "copy", exported, "--store", other_store)
    assert code == 0, err
    assert "6 added" in out
    with open_store(store_path, readonly=True) as first, open_store(other_store, readonly=True) as second:
        assert second.scores("copy") == first.scores("tiny")
        assert second.missing_tasks("copy") == []


@pytest.mark.parametrize("failure", ["raise", "nan"])
def test_failing_evaluator_stops_search(tmp_path, capsys, monkeypatch, failure):
    evaluator = write_evaluator(tmp_path / "failing.py", FAILING_EVALUATOR)
    store_path = make_project(tmp_path, capsys, evaluator=f"{evaluator}:evaluate")
    monkeypatch.setenv("SVDW_TEST_FAILURE", failure)
    code, out, err = run_cli(capsys, "--store", store_path, "search", "tiny")
    assert code == 1
    assert err.count("layer 'conv2' at ratio 0.25") == 1
    assert err.count("svd-workbench search tiny") == 1
    assert "Details:" not in err
    # conv2's three candidates, counted as `status` counts them.
    assert "evaluate the 3 missing candidate score(s)." in err
    with open_store(store_path, readonly=True) as store:
        job = store.jobs("tiny")[0]
        scores = store.scores("tiny")
        baseline = store.baseline("tiny")
    assert job.status == "failed"
    assert "Failed task: layer conv2, ratio 0.25." in job.error
    if failure == "raise":
        assert "Traceback" in job.error
        assert "ValueError: the test evaluator rejects layer conv2" in job.error
    else:
        assert "finite" in job.error
    # The baseline and conv1's three candidates ran before conv2 and are kept.
    assert baseline is not None
    assert sorted(scores) == ["conv1"]
    assert len(scores["conv1"]) == 3
    assert job.done == 4

    code, out, err = run_cli(capsys, "--store", store_path, "status", "tiny")
    assert "failed" in out
    assert "conv2" in out
    assert "3 candidate score(s) missing" in out


def test_search_option_errors(tmp_path, capsys):
    store_path = make_project(tmp_path, capsys)
    code, out, err = run_cli(capsys, "--store", store_path, "search", "tiny", "--backend", "dask")
    assert code == 2
    assert "--scheduler" in err
    code, out, err = run_cli(capsys, "--store", store_path, "search", "tiny", "--scheduler", "tcp://127.0.0.1:1")
    assert code == 2
    code, out, err = run_cli(capsys, "--store", store_path, "search", "nothere")
    assert code == 1
    assert "Project 'nothere' not found" in err
    code, out, err = run_cli(capsys, "--store", store_path, "cancel", "tiny")
    assert code == 0
    assert "no queued or running job" in out


def test_help_names_units(capsys):
    expectations = {
        "init": ["compressed cost over original cost", "100 images per iteration", "multiple of M", "i/N"],
        "search": ["worker processes", "tcp://", "background job"],
        "select": ["compressed cost over original cost"],
        "set": ["'none'"],
        "status": ["--json"],
        "cancel": ["seconds"],
    }
    for command, phrases in expectations.items():
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args([command, "--help"])
        assert exited.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        for phrase in phrases:
            assert phrase in text, (command, phrase)


def test_cli_modules_do_not_import_tensorflow(tmp_path):
    code = (
        "import sys\n"
        "from workbench.cli import main\n"
        "import workbench.jobs, workbench.jobs.search, workbench.jobs.status, workbench.evaluators\n"
        f"assert main(['--store', {str(tmp_path / 's.db')!r}, 'list']) == 0\n"
        "loaded = [name for name in ('tensorflow', 'keras', 'joblib') if name in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr


@pytest.mark.parametrize("command", [["list"], ["show", "tiny"], ["status", "tiny"]])
def test_closed_stdout_pipe_exits_quietly(tmp_path, capsys, command):
    store_path = make_project(tmp_path, capsys)
    process = subprocess.Popen(
        [PYTHON, "-m", "workbench.cli", "--store", str(store_path), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=job_environment(),
    )
    # As `| head -0` would: the reader goes away before the command writes.
    process.stdout.close()
    err = process.stderr.read()
    process.wait(timeout=60)
    process.stderr.close()
    assert process.returncode == 141, err
    assert "BrokenPipeError" not in err
    assert "Traceback" not in err


def test_read_only_commands_create_no_store(tmp_path, capsys):
    store_path = tmp_path / "new" / "store.db"
    code, out, err = run_cli(capsys, "--store", store_path, "list")
    assert code == 0, err
    assert "No projects yet" in out
    assert str(store_path) in out
    for command in ("show", "status"):
        code, out, err = run_cli(capsys, "--store", store_path, command, "tiny")
        assert code == 1
        assert "Project 'tiny' not found" in err
    assert not store_path.parent.exists()


def test_scores_export_rejects_missing_folder(tmp_path, capsys):
    store_path = make_project(tmp_path, capsys)
    code, out, err = run_cli(capsys, "--store", store_path, "search", "tiny")
    assert code == 0, err
    target = tmp_path / "nofolder" / "scores.json"
    code, out, err = run_cli(capsys, "--store", store_path, "scores", "export", "tiny", target)
    assert code == 1
    assert f"the folder '{target.parent}' does not exist or is not a folder" in err
    assert not target.parent.exists()


def test_init_notes_and_next_step(tmp_path, capsys):
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 1, name="pw")(x)
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    model_path = tmp_path / "pointwise.keras"
    keras.Model(inputs, outputs).save(model_path)
    evaluator = f"{write_evaluator(tmp_path / 'fingerprint.py')}:evaluate"
    store_path = tmp_path / "store.db"
    init = ["--store", store_path, "init", "--model", model_path, "--evaluator", evaluator, "--candidates", 2]

    code, out, err = run_cli(capsys, *init[:3], "first", *init[3:], "--ignore", "pw")
    assert code == 0, err
    assert "--ignore pw: the layer is not compressible" in err
    assert "Next: svd-workbench search first" in out
    code, out, err = run_cli(capsys, "--store", store_path, "search", "first")
    assert code == 0, err

    # The same model and evaluator: every score is cached for a second project.
    code, out, err = run_cli(capsys, *init[:3], "second", *init[3:])
    assert code == 0, err
    assert "Next: svd-workbench select second" in out
    assert "svd-workbench search" not in out


def test_set_unknown_names_fail_alike(tmp_path, capsys):
    store_path = make_project(tmp_path, capsys)
    code, out, err = run_cli(capsys, "--store", store_path, "set", "tiny", "nolayer", "0.5")
    assert code == 1
    assert "Layer 'nolayer' not found in project 'tiny'. Compressible layers: conv1, conv2." in err
    code, out, err = run_cli(capsys, "--store", store_path, "set", "nosuchproj", "conv1", "0.5")
    assert code == 1
    assert "Project 'nosuchproj' not found" in err


def test_scores_export_existing_file_names_force(tmp_path, capsys):
    store_path = make_project(tmp_path, capsys)
    code, out, err = run_cli(capsys, "--store", store_path, "search", "tiny")
    assert code == 0, err
    target = tmp_path / "scores.json"
    target.write_text("{}")
    code, out, err = run_cli(capsys, "--store", store_path, "scores", "export", "tiny", target)
    assert code == 1
    assert "pass --force" in err


def test_scores_import_corrupt_pickle_message(tmp_path, capsys):
    store_path = make_project(tmp_path, capsys)
    corrupt = tmp_path / "scores.pkl"
    corrupt.write_bytes(b"not a pickle")
    code, out, err = run_cli(capsys, "--store", store_path, "scores", "import", "tiny", corrupt)
    assert code == 1
    assert "invalid load key" in err
    assert ".." not in err.replace(str(tmp_path), "")


CUSTOM_MODELS_SCRIPT = """
import sys

import keras


@keras.saving.register_keras_serializable(package="test")
class Scale(keras.layers.Layer):
    def call(self, x):
        return x * 2.0


class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(4, 3)

    def call(self, x):
        return self.conv(x)


inputs = keras.Input((8, 8, 3))
keras.Model(inputs, Scale()(keras.layers.Conv2D(4, 3)(inputs))).save(sys.argv[1])
model = Subclassed()
model(keras.ops.zeros((1, 8, 8, 3)))
model.save(sys.argv[2])
"""


def test_init_rejects_custom_classes_in_one_line(tmp_path, capsys):
    # Saved in another process, so that this one has not registered the classes.
    custom, subclassed = tmp_path / "custom.keras", tmp_path / "subclassed.keras"
    subprocess.run(
        [PYTHON, "-c", CUSTOM_MODELS_SCRIPT, str(custom), str(subclassed)], check=True, env=job_environment(), timeout=300
    )
    evaluator = f"{write_evaluator(tmp_path / 'fingerprint.py')}:evaluate"
    store_path = tmp_path / "store.db"

    code, out, err = run_cli(capsys, "--store", store_path, "init", "c", "--model", custom, "--evaluator", evaluator)
    assert code == 1
    assert "uses the custom class 'Scale'" in err
    assert "Full object config" not in err
    assert len([line for line in err.splitlines() if line.startswith("svd-workbench: error:")]) == 1
    assert len(err.strip().splitlines()) == 2  # "Analysing ..." and the error

    code, out, err = run_cli(capsys, "--store", store_path, "init", "s", "--model", subclassed, "--evaluator", evaluator)
    assert code == 1
    assert "subclassed model (class 'Subclassed')" in err
    assert "functional API" in err
    assert len([line for line in err.splitlines() if line.startswith("svd-workbench: error:")]) == 1
    assert len(err.strip().splitlines()) == 2  # "Analysing ..." and the error
