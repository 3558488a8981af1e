"""Projects and the layer database in the store."""

import hashlib
from decimal import Decimal

import pytest

from store import ProjectExists, ProjectNotFound, open_store
from store.testing import conv_record, create_synthetic_project, synthetic_layers
from workbench.costs import CostMetric


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "store.db") as opened:
        yield opened


def test_create_and_get_project(store, tmp_path):
    model = tmp_path / "model.keras"
    model.write_bytes(b"model bytes")
    created = store.create_project(
        "cnn",
        model,
        "accuracy:data.npz",
        "accuracy:data.npz|iterations=all|sha256=1",
        eval_iterations=20,
        metric=CostMetric.memory,
        target=0.35,
        candidates=8,
        multiplicity=4,
        ignored=["conv1"],
    )
    project = store.get_project("cnn")
    assert project == created
    assert project.model_path == str(model)
    assert project.model_hash == hashlib.sha256(b"model bytes").hexdigest()
    assert project.eval_iterations == 20
    assert project.metric == "memory"
    assert project.target == Decimal("0.35")
    assert project.candidates == 8
    assert project.multiplicity == 4
    assert project.ignored == ("conv1",)
    assert project.baseline_macs is None


def test_duplicate_project_name_rejected(store):
    create_synthetic_project(store, "demo", 2)
    with pytest.raises(ProjectExists, match="'demo' already exists"):
        create_synthetic_project(store, "demo", 2)


def test_missing_project_lists_existing(store):
    create_synthetic_project(store, "beta", 2)
    create_synthetic_project(store, "alpha", 2)
    with pytest.raises(ProjectNotFound) as caught:
        store.get_project("gamma")
    assert "'gamma' not found" in str(caught.value)
    assert "'alpha', 'beta'" in str(caught.value)
    assert caught.value.existing == ["alpha", "beta"]


def test_missing_model_file_without_hash(store, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        store.create_project("demo", tmp_path / "missing.keras", "spec", "key")


def test_list_projects_sorted(store):
    for name in ("b", "c", "a"):
        create_synthetic_project(store, name, 2)
    assert [project.name for project in store.list_projects()] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("target", 0, "target in \\(0, 1\\]"),
        ("target", 1.5, "target in \\(0, 1\\]"),
        ("target", "half", "target to be a number"),
        ("candidates", 1, "candidates to be an integer of at least 2"),
        ("candidates", 2.5, "candidates to be an integer"),
        ("multiplicity", 0, "multiplicity"),
        ("metric", "flops", "cost metric"),
        ("eval_iterations", 0, "eval_iterations"),
        ("monotonic_fit", "yes", "monotonic_fit"),
        ("ignored", "conv1", "list of layer names"),
        ("evaluator_key", "", "evaluator_key"),
        ("colour", "blue", "Unknown project field"),
    ],
)
def test_update_project_validation(store, field, value, message):
    create_synthetic_project(store, "demo", 2)
    before = store.get_project("demo")
    with pytest.raises(ValueError, match=message):
        store.update_project("demo", **{field: value})
    assert store.get_project("demo") == before


def test_update_project_fields(store):
    create_synthetic_project(store, "demo", 2)
    updated = store.update_project(
        "demo", target="0.250", candidates=4, multiplicity=2, metric="memory", eval_iterations=None, monotonic_fit=True
    )
    assert updated.target == Decimal("0.25")
    assert updated.candidates == 4
    assert updated.multiplicity == 2
    assert updated.metric == "memory"
    assert updated.eval_iterations is None
    assert updated.monotonic_fit is True
    assert store.get_project("demo") == updated


def test_update_model_path_rehashes(store, tmp_path):
    create_synthetic_project(store, "demo", 2)
    model = tmp_path / "new.keras"
    model.write_bytes(b"new model")
    updated = store.update_project("demo", model_path=model)
    assert updated.model_hash == hashlib.sha256(b"new model").hexdigest()


def test_rename_project(store):
    create_synthetic_project(store, "demo", 2)
    create_synthetic_project(store, "other", 2)
    with pytest.raises(ProjectExists, match="taken"):
        store.update_project("demo", name="other")
    renamed = store.update_project("demo", name="renamed")
    assert renamed.name == "renamed"
    assert len(store.layers("renamed")) == 2
    with pytest.raises(ProjectNotFound):
        store.get_project("demo")


def test_ignore_unknown_layer_rejected(store):
    create_synthetic_project(store, "demo", 2)
    with pytest.raises(ValueError, match="nope"):
        store.update_project("demo", ignored=["nope"])


def test_ignoring_selected_layer_unselects_it(store):
    create_synthetic_project(store, "demo", 3)
    layer = "block0/conv0"
    store.set_layer_ratio("demo", layer, "0.5")
    store.update_project("demo", ignored=[layer])
    assert store.selection("demo")[layer] is None
    newest = store.selection_history("demo")[0]
    assert newest.changes == {layer: None}
    assert newest.source == "manual"


def test_delete_project_keeps_scores(store):
    project = create_synthetic_project(store, "demo", 3)
    twin = create_synthetic_project(store, "twin", 3, with_scores=False)
    assert twin.score_key == project.score_key
    store.auto_select("demo")
    store.delete_project("demo")
    with pytest.raises(ProjectNotFound):
        store.get_project("demo")
    assert len(store.scores("twin")) == 3
    assert store.baseline("twin") == 0.9
    rows = store._query("SELECT count(*) FROM layers WHERE project_id = ?", [project.id])
    assert rows[0][0] == 0
    rows = store._query("SELECT count(*) FROM selection_revisions WHERE project_id = ?", [project.id])
    assert rows[0][0] == 0


def test_layers_round_trip(store):
    records = synthetic_layers(6, ineligible_every=2)
    records[0].extra = {"nested_in": ["backbone"]}
    create_synthetic_project(store, "demo", 0, with_scores=False)
    store.set_layers("demo", records)
    loaded = store.layers("demo")
    assert loaded == records
    assert [record.geometry for record in loaded] == [record.geometry for record in records]
    assert loaded[1].cost_item() == records[1].cost_item()
    project = store.get_project("demo")
    assert project.baseline_params == sum(record.params for record in records)
    assert project.baseline_macs == sum(record.macs for record in records)
    assert project.baseline_memory == sum(record.memory for record in records)


def test_layers_copies_are_independent(store):
    create_synthetic_project(store, "demo", 2)
    first = store.layers("demo")
    first[0].name = "changed"
    assert store.layers("demo")[0].name == "block0/conv0"


def test_set_layers_replaces_and_validates(store):
    create_synthetic_project(store, "demo", 4)
    replacement = [conv_record("a", 3, 8, 16), conv_record("b", 8, 8, 16, kernel=1)]
    store.set_layers("demo", replacement)
    assert [record.name for record in store.layers("demo")] == ["a", "b"]
    with pytest.raises(ValueError, match="Repeated: \\['a'\\]"):
        store.set_layers("demo", [conv_record("a", 3, 8, 16), conv_record("a", 8, 8, 16)])
    with pytest.raises(ValueError, match="LayerRecord"):
        store.set_layers("demo", [{"name": "a"}])
    assert [record.name for record in store.layers("demo")] == ["a", "b"]


def test_layer_cache_sees_other_connection(tmp_path):
    path = tmp_path / "store.db"
    with open_store(path) as writer, open_store(path, readonly=True) as reader:
        create_synthetic_project(writer, "demo", 3)
        assert len(reader.layers("demo")) == 3
        writer.set_layers("demo", synthetic_layers(5))
        assert len(reader.layers("demo")) == 5
        assert len(reader.layer_table("demo")) == 5


def test_rolled_back_layers_not_cached(tmp_path):
    path = tmp_path / "store.db"
    with open_store(path) as first, open_store(path) as second:
        create_synthetic_project(first, "demo", 2)
        with pytest.raises(RuntimeError, match="abandon"):
            with first.transaction():
                first.set_layers("demo", synthetic_layers(3))
                assert len(first.layers("demo")) == 3
                raise RuntimeError("abandon the change")
        assert len(second.layers("demo")) == 2
        second.set_layers("demo", synthetic_layers(5))  # commits the revision that was rolled back
        assert len(first.layers("demo")) == 5
