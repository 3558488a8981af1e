"""Evaluator specs: parsing, checking without TensorFlow, keys, and the accuracy evaluator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from workbench.evaluators import (
    ACCURACY_BATCH_SIZE,
    AccuracyEvaluator,
    EvaluatorSpecError,
    check_evaluator,
    load_evaluator,
    parse_spec,
)


@pytest.fixture
def npz_file(tmp_path):
    path = tmp_path / "eval.npz"
    np.savez(path, x=np.zeros((250, 4, 4, 1), dtype=np.float32), y=np.arange(250) % 3)
    return path


def test_parse_spec_forms(tmp_path):
    accuracy = parse_spec("accuracy:data/eval.npz", base_dir=tmp_path)
    assert (accuracy.form, accuracy.target, accuracy.function) == ("accuracy", str(tmp_path / "data/eval.npz"), None)
    assert accuracy.text == f"accuracy:{tmp_path / 'data/eval.npz'}"

    file_spec = parse_spec("evals/score.py:top1", base_dir=tmp_path)
    assert (file_spec.form, file_spec.target, file_spec.function) == ("file", str(tmp_path / "evals/score.py"), "top1")
    assert file_spec.text == f"{tmp_path / 'evals/score.py'}:top1"

    module = parse_spec("my_package.metrics:top1")
    assert (module.form, module.target, module.function, module.text) == (
        "module",
        "my_package.metrics",
        "top1",
        "my_package.metrics:top1",
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", "Expected an evaluator spec"),
        ("accuracy:", "needs an npz file"),
        ("just_a_name", "Invalid evaluator spec 'just_a_name'"),
        ("package.module:", "Invalid evaluator spec 'package.module:'"),
        ("package.module:not-a-name", "is not a Python function name"),
        ("bad module:score", "neither a module name nor a .py file"),
    ],
)
def test_parse_spec_rejects(spec, expected):
    with pytest.raises(EvaluatorSpecError, match=expected):
        parse_spec(spec)


def test_check_npz_errors(tmp_path):
    with pytest.raises(EvaluatorSpecError, match="npz file not found"):
        check_evaluator(f"accuracy:{tmp_path / 'absent.npz'}")

    only_x = tmp_path / "only_x.npz"
    np.savez(only_x, x=np.zeros((3, 2)))
    with pytest.raises(EvaluatorSpecError, match=r"has no array 'y'"):
        check_evaluator(f"accuracy:{only_x}")

    uneven = tmp_path / "uneven.npz"
    np.savez(uneven, x=np.zeros((3, 2)), y=np.zeros(4))
    with pytest.raises(EvaluatorSpecError, match="same number of rows"):
        check_evaluator(f"accuracy:{uneven}")

    text = tmp_path / "text.npz"
    text.write_text("not an archive")
    with pytest.raises(EvaluatorSpecError, match="cannot read"):
        check_evaluator(f"accuracy:{text}")


def test_accuracy_check_describes_and_keys(npz_file):
    checked = check_evaluator(f"accuracy:{npz_file}", iterations=2)
    assert checked.description == "top-1 accuracy on 200 of 250 images in eval.npz"
    assert checked.source_file == npz_file
    assert checked.key.startswith(f"accuracy:{npz_file}|iterations=2|sha256=")

    all_images = check_evaluator(f"accuracy:{npz_file}")
    assert all_images.key != checked.key
    assert "iterations=all" in all_images.key

    np.savez(npz_file, x=np.ones((250, 4, 4, 1), dtype=np.float32), y=np.arange(250) % 3)
    assert check_evaluator(f"accuracy:{npz_file}", iterations=2).key != checked.key


def test_python_file_key_follows_content(tmp_path):
    source = tmp_path / "edited.py"
    source.write_text("def evaluate(model, iterations):\n    return 1.0\n")
    first = check_evaluator(f"{source}:evaluate", isolated=False)
    assert first.source_file == source
    source.write_text("def evaluate(model, iterations, use_cuda):\n    return 2.0\n")
    second = check_evaluator(f"{source}:evaluate", isolated=False)
    assert second.key != first.key
    assert load_evaluator(second.spec)(None, None, False) == 2.0


def test_python_spec_errors_name_spec(tmp_path):
    missing = tmp_path / "missing.py"
    with pytest.raises(EvaluatorSpecError, match="file not found"):
        check_evaluator(f"{missing}:evaluate", isolated=False)

    source = tmp_path / "score.py"
    source.write_text("def evaluate(model):\n    return 1.0\n\ndef helper(model, iterations):\n    return 0.0\n")
    with pytest.raises(EvaluatorSpecError, match="no function 'score'.*'evaluate', 'helper'"):
        check_evaluator(f"{source}:score", isolated=False)
    with pytest.raises(EvaluatorSpecError, match=r"score\.py:evaluate.*expected f\(model, iterations\)"):
        check_evaluator(f"{source}:evaluate", isolated=False)

    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('import failed on purpose')\n")
    with pytest.raises(EvaluatorSpecError, match="import failed on purpose"):
        check_evaluator(f"{broken}:evaluate", isolated=False)

    with pytest.raises(EvaluatorSpecError, match="module 'no_such_module_here' not found"):
        check_evaluator("no_such_module_here:evaluate", isolated=False)


def test_module_spec_hashes_module_file(tmp_path, monkeypatch):
    package = tmp_path / "spec_test_package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    module = package / "metrics.py"
    module.write_text("def top1(model, iterations):\n    return 1.0\n")
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # for the child process of the isolated check
    checked = check_evaluator("spec_test_package.metrics:top1", isolated=False)
    assert checked.source_file == module
    assert checked.spec.text == "spec_test_package.metrics:top1"
    assert checked.key.startswith("spec_test_package.metrics:top1|iterations=all|sha256=")
    isolated = check_evaluator("spec_test_package.metrics:top1", isolated=True)
    assert isolated.key == checked.key


def test_isolated_check_runs_in_child(tmp_path):
    source = tmp_path / "isolated_check.py"
    source.write_text("def evaluate(model):\n    return 1.0\n")
    with pytest.raises(EvaluatorSpecError, match=r"expected f\(model, iterations\)"):
        check_evaluator(f"{source}:evaluate", isolated=True)
    imported_here = [name for name in sys.modules if name.startswith("svd_workbench_evaluator_isolated_check_")]
    assert imported_here == []


def test_accuracy_check_runs_without_tensorflow(npz_file):
    code = (
        "import sys\n"
        "from workbench.evaluators import check_evaluator\n"
        f"check_evaluator('accuracy:{npz_file}')\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr


class FixedModel:
    """Stands in for a Keras model: predicts the class stored for each input row."""

    name = "fixed"

    def predict_on_batch(self, batch):
        classes = batch[:, 0].astype(int)
        return np.eye(3)[classes]


def test_accuracy_evaluator_counts_batches(tmp_path):
    count = 250
    predictions = np.arange(count) % 3
    labels = predictions.copy()
    labels[150:] = (labels[150:] + 1) % 3  # the last 100 images are predicted wrong
    path = tmp_path / "eval.npz"
    np.savez(path, x=predictions[:, None].astype(np.float32), y=labels)
    evaluator = AccuracyEvaluator(path)
    assert ACCURACY_BATCH_SIZE == 100
    assert evaluator(FixedModel(), 1) == 1.0
    assert evaluator(FixedModel(), 2) == 150 / 200
    assert evaluator(FixedModel(), None) == 150 / 250
    assert evaluator(FixedModel(), 10) == 150 / 250

    one_hot = tmp_path / "one_hot.npz"
    np.savez(one_hot, x=predictions[:, None].astype(np.float32), y=np.eye(3)[labels])
    assert AccuracyEvaluator(one_hot)(FixedModel(), None) == 150 / 250


def test_load_evaluator_builds_callables(tmp_path, npz_file):
    assert isinstance(load_evaluator(f"accuracy:{npz_file}"), AccuracyEvaluator)
    source = tmp_path / "score.py"
    source.write_text("def evaluate(model, iterations, use_cuda):\n    return 0.5\n")
    function = load_evaluator(f"{source}:evaluate")
    assert function(None, None, False) == 0.5
