"""The score cache: keying, missing tasks, and score-file import and export."""

import json
import os
import pickle
from decimal import Decimal

import pytest

from store import ScoreConflictError, ScoreKey, StoreError, open_store
from store.testing import create_synthetic_project
from workbench.scores import ScoreFileError, load_scores
from workbench.selection import candidate_ratios

D = Decimal


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "store.db") as opened:
        yield opened


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo exploited > /dev/null",))


def test_put_and_read_scores(store):
    project = create_synthetic_project(store, "demo", 2, with_scores=False)
    key = project.score_key
    store.put_score(key, "block0/conv0", D("0.50"), 0.8, rank=3, seconds=1.5)
    store.put_score(key, "block0/conv0", 0.5, 0.7)  # the same key: replaces the score
    store.put_score(key, "block0/conv0", D(1) / D(3), 0.6)
    store.put_baseline(key, 0.95, seconds=2.0)
    assert store.scores("demo") == {"block0/conv0": {D("0.5"): 0.7, D(1) / D(3): 0.6}}
    assert store.baseline("demo") == 0.95
    rows = store._query("SELECT ratio FROM scores ORDER BY ratio")
    assert [row[0] for row in rows] == ["0.3333333333333333333333333333", "0.5"]


@pytest.mark.parametrize("score", [float("nan"), float("inf"), True, "0.5", None])
def test_invalid_score_rejected(store, score):
    project = create_synthetic_project(store, "demo", 1, with_scores=False)
    with pytest.raises(ValueError, match="score"):
        store.put_score(project.score_key, "block0/conv0", "0.5", score)
    assert store.scores("demo") == {}


@pytest.mark.parametrize("ratio", [0, "1.5", -0.1, "abc"])
def test_invalid_ratio_rejected(store, ratio):
    project = create_synthetic_project(store, "demo", 1, with_scores=False)
    with pytest.raises(ValueError, match="ratio"):
        store.put_score(project.score_key, "block0/conv0", ratio, 0.5)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model_hash", "f" * 64),
        ("evaluator_key", "accuracy:other.npz|iterations=all|sha256=2"),
        ("metric", "memory"),
        ("multiplicity", 8),
    ],
)
def test_changed_key_reuses_no_scores(store, field, value):
    project = create_synthetic_project(store, "demo", 3)
    assert len(store.scores("demo")) == 3
    old_value = getattr(project, field)

    store.update_project("demo", **{field: value})
    assert store.scores("demo") == {}
    if field in ("model_hash", "evaluator_key"):
        assert store.baseline("demo") is None
    else:
        assert store.baseline("demo") == 0.9  # the baseline does not depend on metric or multiplicity
    assert len(store.missing_tasks("demo")) == 3 * 9

    store.update_project("demo", **{field: old_value})
    assert len(store.scores("demo")) == 3
    assert store.missing_tasks("demo") == []


def test_job_key_survives_project_change(store):
    project = create_synthetic_project(store, "demo", 2, with_scores=False)
    started_with = project.score_key
    store.update_project("demo", evaluator_key="changed")
    store.put_score(started_with, "block0/conv0", "0.5", 0.7)
    assert store.scores("demo") == {}
    store.update_project("demo", evaluator_key=started_with.evaluator_key)
    assert store.scores("demo") == {"block0/conv0": {D("0.5"): 0.7}}


def test_missing_tasks(store):
    project = create_synthetic_project(
        store, "demo", 4, ineligible_every=2, candidates=4, with_scores=False, ignored=["block2/conv2"]
    )
    key = project.score_key
    store.put_score(key, "block0/conv0", "0.25", 0.5)
    store.put_score(key, "block0/conv0", "0.5", 0.6)
    store.put_score(key, "block0/conv0", "0.3", 0.6)  # not a candidate of N=4
    missing = store.missing_tasks("demo")
    assert missing == [
        ("block0/conv0", D("0.75")),
        ("block1/conv1", D("0.25")),
        ("block1/conv1", D("0.5")),
        ("block1/conv1", D("0.75")),
        ("block3/conv3", D("0.25")),
        ("block3/conv3", D("0.5")),
        ("block3/conv3", D("0.75")),
    ]
    assert store.baseline("demo") is None


def test_json_round_trip_between_projects(store, tmp_path):
    create_synthetic_project(store, "source", 4)
    create_synthetic_project(store, "target", 4, with_scores=False, baseline=None, model_hash="a" * 64)
    path = store.export_scores("source", tmp_path / "scores.json")
    report = store.import_scores("target", path)
    assert report.added == 4 * 9
    assert report.unchanged == 0
    assert report.baseline == "added"
    assert store.scores("target") == store.scores("source")
    assert store.baseline("target") == 0.9
    ranks = store._query("SELECT count(*) FROM scores WHERE model_hash = ? AND rank >= 1", ["a" * 64])
    assert ranks[0][0] == 4 * 9

    again = store.import_scores("target", path)
    assert again.added == 0
    assert again.unchanged == 4 * 9
    assert again.baseline == "unchanged"


def test_pickle_export_round_trip(store, tmp_path):
    create_synthetic_project(store, "demo", 3)
    path = store.export_scores("demo", tmp_path / "greedy_selection_eval_scores_dict.pkl")
    loaded, baseline = load_scores(path)
    assert loaded == store.scores("demo")
    assert baseline is None


def test_aimet_pickle_import(store, tmp_path):
    create_synthetic_project(store, "demo", 2, with_scores=False)
    aimet_scores = {
        "block0/conv0": {D("0.1"): 0.25, D("0.5"): 0.75, D("0.9"): 0.875},
        "block1/conv1": {D("0.5"): 0.5},
    }
    path = tmp_path / "greedy_selection_eval_scores_dict.pkl"
    path.write_bytes(pickle.dumps(aimet_scores))
    report = store.import_scores("demo", path)
    assert report.added == 4
    assert report.baseline == "absent"
    assert store.scores("demo") == aimet_scores
    assert store.baseline("demo") is None


def test_malicious_pickle_rejected(store, tmp_path):
    create_synthetic_project(store, "demo", 2, with_scores=False)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"block0/conv0": {D("0.5"): Exploit()}}))
    with pytest.raises(ScoreFileError, match="refusing to load global"):
        store.import_scores("demo", path)
    assert store.scores("demo") == {}


def test_import_unknown_layers_named(store, tmp_path):
    create_synthetic_project(store, "demo", 2, ineligible_every=1, with_scores=False)
    path = tmp_path / "scores.json"
    path.write_text(
        json.dumps(
            {"block0/conv0": {"0.5": 0.5}, "block0/project0": {"0.5": 0.5}, "head/dense": {"0.5": 0.1}}
        )
    )
    with pytest.raises(ScoreFileError) as caught:
        store.import_scores("demo", path)
    assert "['block0/project0', 'head/dense']" in str(caught.value)
    assert store.scores("demo") == {}


def test_import_conflict_needs_force(store, tmp_path):
    create_synthetic_project(store, "demo", 2)
    cached = store.scores("demo")
    changed = {layer: dict(curve) for layer, curve in cached.items()}
    changed["block0/conv0"][D("0.5")] = 0.123
    changed["block1/conv1"][D("0.2")] = 0.456
    path = tmp_path / "scores.json"
    path.write_text(json.dumps({"format": "svd-workbench-scores", "version": 1, "baseline": 0.5, "scores": {
        layer: {str(ratio): score for ratio, score in curve.items()} for layer, curve in changed.items()
    }}))

    with pytest.raises(ScoreConflictError) as caught:
        store.import_scores("demo", path)
    conflicts = caught.value.conflicts
    assert ("block0/conv0", D("0.5"), cached["block0/conv0"][D("0.5")], 0.123) in conflicts
    assert ("", None, 0.9, 0.5) in conflicts
    assert len(conflicts) == 3
    assert "force" in str(caught.value)
    assert store.scores("demo") == cached
    assert store.baseline("demo") == 0.9

    report = store.import_scores("demo", path, force=True)
    assert report.overwritten == 2
    assert report.unchanged == 2 * 9 - 2
    assert report.baseline == "overwritten"
    assert store.scores("demo") == changed
    assert store.baseline("demo") == 0.5


def test_import_without_layers_rejected(store, tmp_path):
    store.create_project("empty", "/m.keras", "spec", "key", model_hash="0" * 64)
    path = tmp_path / "scores.json"
    path.write_text(json.dumps({"conv": {"0.5": 0.5}}))
    with pytest.raises(StoreError, match="no layers"):
        store.import_scores("empty", path)


def test_export_refuses_existing_file(store, tmp_path):
    create_synthetic_project(store, "demo", 2)
    path = tmp_path / "scores.json"
    path.write_text("keep me")
    with pytest.raises(FileExistsError, match="force"):
        store.export_scores("demo", path)
    assert path.read_text() == "keep me"
    store.export_scores("demo", path, force=True)
    assert load_scores(path)[0] == store.scores("demo")


def test_export_rejects_other_suffix_and_empty_cache(store, tmp_path):
    create_synthetic_project(store, "demo", 2, with_scores=False)
    with pytest.raises(ValueError, match=".json, .pkl"):
        store.export_scores("demo", tmp_path / "scores.csv")
    with pytest.raises(StoreError, match="no cached scores"):
        store.export_scores("demo", tmp_path / "scores.json")
    assert not (tmp_path / "scores.json").exists()


def test_score_key_from_project_name(store):
    create_synthetic_project(store, "demo", 1, with_scores=False)
    store.put_score("demo", "block0/conv0", "0.5", 0.5)
    assert store.score_key("demo") == ScoreKey("0" * 64, "synthetic-evaluator", "mac", 1)
    assert store.scores("demo") == {"block0/conv0": {D("0.5"): 0.5}}
    assert len(store.missing_tasks("demo")) == len(candidate_ratios(10)) - 1
