"""The terminal app's data side: ratio steps, parsing, progress, keymaps, status, undo."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from test_tui_support import PROJECT, make_store

from store import open_store
from store.rows import Job
from workbench.selection import candidate_ratios
from workbench.tui.data.backend import Backend, model_path_error
from workbench.tui.data.keymap import KeymapError, load_keymap, parse_keymap, parse_simple_toml
from workbench.tui.data.progress import ProgressRate, format_duration, format_rate, seconds_since
from workbench.tui.data.ratios import parse_ratio, ratio_error, step_ratio
from workbench.tui.data.views import JobView
from workbench.tui.dialogs.export import export_path_error

D = Decimal
TENTHS = candidate_ratios(10)


@pytest.mark.parametrize(
    "current, direction, expected",
    [
        (None, -1, D("0.9")),
        (None, 1, None),
        (D("0.9"), 1, None),
        (D("0.5"), -1, D("0.4")),
        (D("0.5"), 1, D("0.6")),
        (D("0.1"), -1, D("0.1")),
        (D("0.55"), -1, D("0.5")),
        (D("0.55"), 1, D("0.6")),
        (D("1"), -1, D("0.9")),
        (D("1"), 1, None),
    ],
)
def test_step_ratio_ladder(current, direction, expected):
    assert step_ratio(current, TENTHS, direction) == expected


def test_step_ratio_thirds_keep_exact_decimals():
    thirds = candidate_ratios(3)
    assert step_ratio(None, thirds, -1) == D(2) / D(3)
    assert step_ratio(D(2) / D(3), thirds, -1) == D(1) / D(3)


def test_step_ratio_rejects_bad_direction():
    with pytest.raises(ValueError, match="direction"):
        step_ratio(None, TENTHS, 0)


@pytest.mark.parametrize("text, expected", [("0.5", D("0.5")), (" 1 ", D("1")), ("0.001", D("0.001")), ("1e-1", D("0.1"))])
def test_parse_ratio_accepts(text, expected):
    assert parse_ratio(text) == expected


@pytest.mark.parametrize("text", ["0", "1.5", "-0.2", "abc", "", "nan", "inf"])
def test_parse_ratio_rejects_with_message(text):
    message = ratio_error(text)
    assert message is not None
    assert "(0, 1]" in message


def test_progress_rate_from_samples():
    rate = ProgressRate()
    first = rate.update(7, now=100.0, done=10, total=110)
    assert first.rate is None
    estimate = rate.update(7, now=110.0, done=30, total=110)
    assert estimate.rate == pytest.approx(2.0)
    assert estimate.remaining == pytest.approx(40.0)
    assert estimate.fraction == pytest.approx(30 / 110)


def test_progress_rate_falls_back_to_average_since_start():
    rate = ProgressRate()
    estimate = rate.update(3, now=5.0, done=20, total=40, started_seconds_ago=10.0)
    assert estimate.rate == pytest.approx(2.0)
    assert estimate.remaining == pytest.approx(10.0)


def test_progress_rate_resets_for_new_job():
    rate = ProgressRate()
    rate.update(1, now=0.0, done=0, total=10)
    rate.update(1, now=10.0, done=5, total=10)
    estimate = rate.update(2, now=11.0, done=1, total=10)
    assert estimate.rate is None


def test_progress_rate_window_drops_old_samples():
    rate = ProgressRate(window=10.0)
    rate.update(1, now=0.0, done=0, total=1000)
    rate.update(1, now=5.0, done=100, total=1000)  # fast start
    rate.update(1, now=20.0, done=110, total=1000)
    estimate = rate.update(1, now=30.0, done=120, total=1000)
    assert estimate.rate == pytest.approx(1.0)


def test_duration_and_rate_formats():
    assert format_duration(None) == "--:--"
    assert format_duration(65) == "1:05"
    assert format_duration(3725) == "1:02:05"
    assert format_rate(None) == "rate --"
    assert format_rate(2.345) == "2.3/s"
    assert format_rate(0.5) == "30.0/min"


def test_seconds_since_store_timestamp():
    now = datetime.datetime(2026, 1, 1, 12, 0, 10, tzinfo=datetime.timezone.utc)
    assert seconds_since("2026-01-01T12:00:00+00:00", now) == pytest.approx(10.0)
    assert seconds_since(None, now) is None


def test_keymap_parse_top_level_and_table():
    assert parse_keymap('"project.undo" = "u,backspace"') == {"project.undo": "u,backspace"}
    assert parse_keymap('[keymap]\n"app.help" = "f2"\n') == {"app.help": "f2"}


def test_keymap_rejects_non_string():
    with pytest.raises(KeymapError, match="project.undo"):
        parse_keymap('"project.undo" = 3')


def test_keymap_fallback_parser_matches_tomllib():
    text = '# keys\n[keymap]\n"project.undo" = "u"\n\'app.help\' = "f2"\n'
    assert parse_simple_toml(text, "x") == {"keymap": {"project.undo": "u", "app.help": "f2"}}
    with pytest.raises(KeymapError, match="line 2"):
        parse_simple_toml("[keymap]\nbroken line\n", "x")


def test_keymap_file_missing_is_empty(tmp_path):
    assert load_keymap(tmp_path / "absent.toml") == {}
    path = tmp_path / "keymap.toml"
    path.write_text('"project.auto-select" = "A"\n')
    assert load_keymap(path) == {"project.auto-select": "A"}


def test_model_path_checks(tmp_path):
    model = tmp_path / "net.keras"
    model.write_bytes(b"zip")
    assert model_path_error(str(model)) is None
    assert "not found" in model_path_error(str(tmp_path / "missing.keras"))
    assert ".keras or .h5" in model_path_error(str(tmp_path / "net.onnx"))
    assert "Enter the path" in model_path_error("  ")
    folder = tmp_path / "folder.h5"
    folder.mkdir()
    assert "Not a file" in model_path_error(str(folder))


def test_export_path_checks(tmp_path):
    assert export_path_error(str(tmp_path / "out.keras")) is None
    assert ".keras" in export_path_error(str(tmp_path / "out.h5"))
    assert "Folder not found" in export_path_error(str(tmp_path / "nowhere" / "out.keras"))
    assert "Enter the path" in export_path_error("")


def make_job(status: str, kind: str = "search", done: int = 3, total: int | None = 9, error: str | None = None) -> Job:
    return Job(
        id=1, project_id=1, project=PROJECT, kind=kind, status=status, pid=123, host="h",
        created="2026-01-01T00:00:00+00:00", started=None, heartbeat=None, finished=None,
        done=done, total=total, error=error, log_path=None, cancel_requested=False, options={},
    )


@pytest.mark.parametrize(
    "liveness, kind, expected",
    [
        ("running", "search", "searching 3/9"),
        ("queued", "analyse", "analysis queued"),
        ("stale", "search", "search stale 3/9"),
        ("dead", "search", "search died 3/9"),
        ("failed", "export", "export failed"),
        ("done", "search", "search done"),
    ],
)
def test_job_view_describe(liveness, kind, expected):
    status = liveness if liveness in ("done", "failed") else "running"
    assert JobView(make_job(status, kind), liveness).describe() == expected


def test_backend_lists_projects_with_status(tmp_path):
    backend = Backend(make_store(tmp_path))
    try:
        entries = {entry.name: entry for entry in backend.list_projects()}
    finally:
        backend.close()
    assert entries[PROJECT].status == "complete"
    assert entries[PROJECT].achieved <= 0.5
    assert entries[PROJECT].model_file == "cnn.keras"
    assert entries["empty"].status == "not analysed"
    assert entries["empty"].achieved is None


def test_backend_status_of_unsearched_project(tmp_path):
    backend = Backend(make_store(tmp_path, scored=False, extra_projects=False))
    try:
        (entry,) = backend.list_projects()
    finally:
        backend.close()
    assert entry.status == "not searched"


def test_backend_undo_of_ignore_restores_ratio_and_list(tmp_path):
    path = make_store(tmp_path)
    backend = Backend(path)
    try:
        view = backend.load_project(PROJECT)
        layer = next(row for row in view.rows if row.ratio is not None)
        assert backend.toggle_ignored(PROJECT, layer.name) is True
        after = backend.reload_selection(view).row(layer.name)
        assert after.ignored
        assert after.ratio is None
        assert "ignored" in backend.undo(PROJECT)
        restored = backend.reload_selection(view).row(layer.name)
    finally:
        backend.close()
    assert not restored.ignored
    assert restored.ratio == layer.ratio


def test_backend_undo_of_target_restores_target_and_selection(tmp_path):
    backend = Backend(make_store(tmp_path))
    try:
        before = backend.load_project(PROJECT)
        result = backend.set_target(PROJECT, D("0.3"))
        assert result.achieved <= 0.3
        changed = backend.reload_selection(before)
        assert changed.project.target == D("0.3")
        assert changed.summary.mac_ratio <= 0.3
        backend.undo(PROJECT)
        after = backend.reload_selection(before)
    finally:
        backend.close()
    assert after.project.target == D("0.5")
    assert [row.ratio for row in after.rows] == [row.ratio for row in before.rows]


def test_backend_undo_without_session_steps_uses_store_history(tmp_path):
    path = make_store(tmp_path)
    with open_store(path) as store:
        layer = next(name for name, ratio in store.selection(PROJECT).items() if ratio is not None)
        store.set_layer_ratio(PROJECT, layer, None)
    backend = Backend(path)
    try:
        assert backend.undo(PROJECT) is True
        ratio = backend.load_project(PROJECT).row(layer).ratio
    finally:
        backend.close()
    assert ratio is not None


def test_backend_survives_job_process_writes(tmp_path):
    # launch_job opens and closes the store in the app's process, then a job
    # process writes and exits. If the open dropped the app's file locks, the
    # exiting job would delete the WAL under the app's connections, and their
    # reads would return rows of the wrong table.
    import subprocess
    import sys

    path = make_store(tmp_path)
    backend = Backend(path)
    try:
        backend.open()
        assert backend.load_project(PROJECT).latest is None
        open_store(path).close()
        code = f"from store import open_store\nwith open_store({str(path)!r}) as s:\n    s.create_job({PROJECT!r}, 'analyse')\n"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        assert path.with_name("store.db-wal").exists()
        latest = backend.load_project(PROJECT).latest
    finally:
        backend.close()
    assert latest is not None
    assert latest.job.kind == "analyse"
