import json
import os
import pickle
from decimal import Decimal

import pytest

from workbench.scores import (
    ScoreFileError,
    check_layers,
    load_pickle,
    load_scores,
    load_selection,
    save_scores,
    save_selection,
)

D = Decimal
SCORES = {"conv1": {D("0.1"): 0.5, D("0.5"): 0.8}, "block/conv2": {D(1) / D(3): 0.7}}


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("name", ["scores.pkl", "scores.json"])
def test_round_trip(tmp_path, name):
    path = save_scores(tmp_path / name, SCORES, baseline=0.9 if name.endswith("json") else None)
    loaded, baseline = load_scores(path)
    assert loaded == SCORES
    assert baseline == (0.9 if name.endswith("json") else None)


def test_aimet_pickle_is_read(tmp_path):
    path = tmp_path / "greedy_selection_eval_scores_dict.pkl"
    path.write_bytes(pickle.dumps({"conv1": {D("0.3"): 0.25}}))
    assert load_scores(path)[0] == {"conv1": {D("0.3"): 0.25}}


def test_untrusted_pickle_rejected(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ScoreFileError, match="posix.system|os.system|refusing"):
        load_pickle(path)


def test_pickled_class_rejected(tmp_path):
    path = tmp_path / "set.pkl"
    path.write_bytes(pickle.dumps({"conv1": {D("0.5"): pytest.approx}}))
    with pytest.raises(ScoreFileError, match="refusing"):
        load_scores(path)


def test_corrupt_pickle_reported(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps(SCORES)[:20])
    with pytest.raises(ScoreFileError, match="Corrupt"):
        load_pickle(path)


def test_missing_file_named(tmp_path):
    with pytest.raises(ScoreFileError, match="not found"):
        load_scores(tmp_path / "absent.json")


def test_nan_score_rejected(tmp_path):
    path = tmp_path / "nan.pkl"
    path.write_bytes(pickle.dumps({"conv1": {D("0.5"): float("nan")}}))
    with pytest.raises(ScoreFileError, match="Non-finite.*conv1"):
        load_scores(path)


def test_ratio_out_of_range_rejected(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"conv1": {"1.5": 0.3}}))
    with pytest.raises(ScoreFileError, match="1.5"):
        load_scores(path)


def test_newer_json_version_rejected(tmp_path):
    path = tmp_path / "new.json"
    path.write_text(json.dumps({"format": "svd-workbench-scores", "version": 99, "scores": {}}))
    with pytest.raises(ScoreFileError, match="Upgrade"):
        load_scores(path)


def test_check_layers_names_unknown_and_missing():
    with pytest.raises(ScoreFileError) as info:
        check_layers(SCORES, ["conv1", "conv3"])
    assert "block/conv2" in str(info.value)
    assert "conv3" in str(info.value)


@pytest.mark.parametrize("name", ["sel.pkl", "sel.json"])
def test_selection_round_trip(tmp_path, name):
    selection = {"conv1": D("0.5"), "conv2": None}
    assert load_selection(save_selection(tmp_path / name, selection)) == selection
