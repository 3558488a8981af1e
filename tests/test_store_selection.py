"""Selection revisions and undo, auto-select, and the layer table and summary queries."""

from decimal import Decimal

import pytest

from store import open_store
from store.testing import create_synthetic_project
from workbench.costs import costs_at_ranks, selection_ranks
from workbench.records import cost_items
from workbench.selection import interpolate_score, predict_score

D = Decimal
FIRST = "block0/conv0"
SECOND = "block1/conv1"


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "store.db") as opened:
        yield opened


def test_new_project_selects_nothing(store):
    create_synthetic_project(store, "demo", 3, ineligible_every=1)
    assert store.selection("demo") == {FIRST: None, SECOND: None, "block2/conv2": None}
    assert store.selection_history("demo") == []


@pytest.mark.parametrize(
    ("layer", "ratio", "message"),
    [
        ("nope", "0.5", "Layer 'nope' not found"),
        ("block0/project0", "0.5", "cannot be compressed: 1x1 kernel"),
        (FIRST, "0", "ratio for layer 'block0/conv0' in \\(0, 1\\]"),
        (FIRST, 1.5, "in \\(0, 1\\]"),
        (FIRST, "x", "to be a number"),
        ("block2/conv2", "0.5", "is ignored"),
    ],
)
def test_set_layer_ratio_validation(store, layer, ratio, message):
    create_synthetic_project(store, "demo", 3, ineligible_every=1, ignored=["block2/conv2"])
    with pytest.raises(ValueError, match=message):
        store.set_layer_ratio("demo", layer, ratio)
    assert store.selection_history("demo") == []


def test_set_selection_validation(store):
    create_synthetic_project(store, "demo", 2)
    with pytest.raises(ValueError, match="source 'auto' or 'manual'"):
        store.set_selection("demo", {FIRST: "0.5"}, source="import")
    with pytest.raises(ValueError, match="empty mapping"):
        store.set_selection("demo", {})
    with pytest.raises(ValueError, match="not found"):
        store.set_selection("demo", {FIRST: "0.5", "nope": None})
    assert store.selection_history("demo") == []


def test_undo_reverts_latest_revision(store):
    create_synthetic_project(store, "demo", 2)
    auto = store.set_selection("demo", {FIRST: D("0.3"), SECOND: D("0.6")}, source="auto", note="auto")
    manual = store.set_layer_ratio("demo", FIRST, "0.55")
    assert manual.changes == {FIRST: D("0.55")}
    assert store.selection("demo") == {FIRST: D("0.55"), SECOND: D("0.6")}
    assert store.selection_sources("demo")[FIRST] == (D("0.55"), "manual")

    assert store.undo("demo") is True
    assert store.selection("demo") == {FIRST: D("0.3"), SECOND: D("0.6")}
    assert store.selection_sources("demo")[FIRST] == (D("0.3"), "auto")

    assert store.undo("demo") is True
    assert store.selection("demo") == {FIRST: None, SECOND: None}
    assert store.undo("demo") is False

    history = store.selection_history("demo")
    assert [revision.id for revision in history] == [manual.id, auto.id]
    assert all(revision.undone for revision in history)
    assert all(revision.undone_at is not None for revision in history)
    assert history[1].changes == {FIRST: D("0.3"), SECOND: D("0.6")}


def test_edit_after_undo_keeps_history(store):
    create_synthetic_project(store, "demo", 2)
    store.set_layer_ratio("demo", FIRST, "0.5")
    store.set_layer_ratio("demo", FIRST, "0.7")
    store.undo("demo")
    store.set_layer_ratio("demo", SECOND, None)
    assert store.selection("demo") == {FIRST: D("0.5"), SECOND: None}
    history = store.selection_history("demo")
    assert [revision.undone for revision in history] == [False, True, False]
    assert [revision.note for revision in history] == [
        "set block1/conv1 to none",
        "set block0/conv0 to 0.7",
        "set block0/conv0 to 0.5",
    ]


def test_auto_select_stores_one_revision(store):
    create_synthetic_project(store, "demo", 12, ineligible_every=4, ignored=[FIRST], target="0.6")
    result = store.auto_select("demo")
    assert result.reachable
    assert result.achieved <= 0.6
    assert FIRST not in result.selection

    history = store.selection_history("demo")
    assert len(history) == 1
    assert history[0].source == "auto"
    eligible = [record.name for record in store.layers("demo") if record.eligible]
    assert list(history[0].changes) == eligible
    assert history[0].changes[FIRST] is None

    summary = store.summary("demo")
    assert summary.mac_ratio == pytest.approx(result.achieved)
    assert summary.compressed_layers == sum(1 for ratio in result.selection.values() if ratio is not None)


def test_auto_select_unreachable_target(store):
    create_synthetic_project(store, "demo", 4, ineligible_every=1)
    result = store.auto_select("demo", target="0.05")
    assert not result.reachable
    assert "cannot be reached" in result.message
    assert all(ratio == D("0.1") for ratio in store.selection("demo").values())


def test_layer_table_rows(store):
    create_synthetic_project(store, "demo", 4, ineligible_every=2, candidates=4, ignored=["block3/conv3"])
    store.set_layer_ratio("demo", FIRST, "0.5")
    store.set_layer_ratio("demo", SECOND, "0.6")
    records = store.layers("demo")
    scores = store.scores("demo")
    rows = store.layer_table("demo")

    assert [row.name for row in rows] == [record.name for record in records]
    assert [row.position for row in rows] == list(range(len(records)))
    assert sum(row.cost_share for row in rows) == pytest.approx(1.0)

    first = rows[0]
    geometry = records[0].geometry
    assert first.ratio == D("0.5")
    assert first.source == "manual"
    assert first.rank == geometry.rank_for_ratio(D("0.5"), "mac")
    assert first.rank_ratio == pytest.approx(geometry.ratio_of_rank(first.rank, "mac"))
    assert first.score == scores[FIRST][D("0.5")]
    assert first.score_exact is True
    assert first.drop == pytest.approx(0.9 - first.score)
    assert first.max_rank == geometry.max_rank
    assert first.scores == scores[FIRST]
    assert list(first.scores) == [D("0.25"), D("0.5"), D("0.75")]
    assert first.cost_share == pytest.approx(records[0].macs / sum(record.macs for record in records))

    interpolated = next(row for row in rows if row.name == SECOND)
    expected, _ = interpolate_score(scores[SECOND], D("0.6"), 0.9)
    assert interpolated.score == pytest.approx(expected)
    assert interpolated.score_exact is False

    ineligible = next(row for row in rows if not row.eligible)
    assert ineligible.reason.startswith("1x1")
    assert (ineligible.ratio, ineligible.rank, ineligible.score, ineligible.max_rank) == (None, None, None, None)

    ignored = next(row for row in rows if row.name == "block3/conv3")
    assert ignored.ignored is True
    assert ignored.missing == 0


def test_layer_table_counts_missing_scores(store):
    project = create_synthetic_project(store, "demo", 2, candidates=4, with_scores=False, baseline=None)
    store.put_score(project.score_key, FIRST, "0.25", 0.5)
    rows = store.layer_table("demo")
    assert [row.missing for row in rows] == [2, 3]
    store.set_layer_ratio("demo", FIRST, "0.25")
    row = store.layer_table("demo")[0]
    assert row.score == 0.5
    assert row.drop is None  # no baseline yet


def test_layer_table_memory_metric_and_multiplicity(store):
    create_synthetic_project(store, "demo", 2, metric="memory", multiplicity=4)
    store.set_layer_ratio("demo", SECOND, "0.3")
    record = store.layers("demo")[1]
    row = store.layer_table("demo")[1]
    assert row.rank == record.geometry.rank_for_ratio(D("0.3"), "memory", 4)
    assert row.rank % 4 == 0 or row.rank == record.geometry.full_ratio_rank("memory")
    assert row.cost_share == pytest.approx(record.memory / sum(r.memory for r in store.layers("demo")))


def test_summary_matches_cost_model(store):
    create_synthetic_project(store, "demo", 6, ineligible_every=3, metric="memory", multiplicity=2)
    store.set_selection("demo", {FIRST: D("0.3"), SECOND: D("0.5")})
    records = store.layers("demo")
    items = cost_items(records)
    selection = {FIRST: D("0.3"), SECOND: D("0.5")}
    ranks = selection_ranks(items, selection, "memory", 2)
    costs = costs_at_ranks(items, ranks)

    summary = store.summary("demo")
    assert summary.metric == "memory"
    assert summary.baseline == 0.9
    assert summary.predicted == pytest.approx(predict_score(0.9, store.scores("demo"), selection))
    assert summary.predicted < 0.9
    assert summary.memory_ratio == pytest.approx(costs["memory"].ratio)
    assert summary.mac_ratio == pytest.approx(costs["mac"].ratio)
    assert (summary.macs_before, summary.macs_after) == (costs["mac"].original, costs["mac"].compressed)
    assert (summary.memory_before, summary.memory_after) == (costs["memory"].original, costs["memory"].compressed)
    memory_saved = costs["memory"].original - costs["memory"].compressed
    assert summary.params_before == sum(record.params for record in records)
    assert summary.params_after == summary.params_before - memory_saved
    assert summary.compressed_layers == 2
    assert summary.missing_scores == 0
    assert summary.baseline_missing is False


def test_summary_previews_without_storing(store):
    create_synthetic_project(store, "demo", 3, with_scores=False, baseline=None)
    preview = store.summary("demo", {FIRST: "0.2"})
    assert preview.compressed_layers == 1
    assert preview.mac_ratio < 1.0
    assert preview.predicted is None
    assert preview.baseline_missing is True
    assert preview.missing_scores == 3 * 9
    current = store.summary("demo")
    assert current.compressed_layers == 0
    assert current.mac_ratio == 1.0
    assert store.selection_history("demo") == []


def test_queries_see_other_connection_writes(tmp_path):
    path = tmp_path / "store.db"
    with open_store(path) as writer, open_store(path, readonly=True) as reader:
        project = create_synthetic_project(writer, "demo", 2, with_scores=False, baseline=None)
        assert reader.layer_table("demo")[0].scores == {}
        assert reader.summary("demo").baseline is None

        writer.put_score(project.score_key, FIRST, "0.5", 0.7)
        assert reader.layer_table("demo")[0].scores == {D("0.5"): 0.7}
        writer.put_baseline(project.score_key, 0.8)
        assert reader.summary("demo").baseline == 0.8
        writer.set_layer_ratio("demo", FIRST, "0.5")
        assert reader.layer_table("demo")[0].ratio == D("0.5")
        assert reader.summary("demo").compressed_layers == 1
        writer.undo("demo")
        assert reader.summary("demo").compressed_layers == 0
        writer.update_project("demo", target="0.3")
        assert reader.summary("demo").target == D("0.3")


def test_queries_see_own_writes(store):
    create_synthetic_project(store, "demo", 2)
    assert store.summary("demo").compressed_layers == 0
    store.set_layer_ratio("demo", FIRST, "0.5")
    assert store.summary("demo").compressed_layers == 1
    assert store.layer_table("demo")[0].ratio == D("0.5")
