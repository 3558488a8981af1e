"""SVG snapshots of the app at 80x24 and 120x40 (pytest-textual-snapshot).

The store comes from a fixture with fixed names and scores, opened by a
relative path so that the title is the same on every machine. Inputs do not
blink and no job runs, so nothing depends on timing. Update the SVGs with
`pytest tests/test_tui_snapshots.py --snapshot-update` and review them.
"""

from __future__ import annotations

import pytest
from test_tui_support import make_store, wait_loaded

from workbench.tui.app import WorkbenchApp

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


@pytest.fixture
def app(tmp_path, monkeypatch):
    make_store(tmp_path)
    monkeypatch.chdir(tmp_path)
    return WorkbenchApp("store.db", keymap={}, cursor_blink=False)


@pytest.mark.parametrize("size", SIZES)
def test_projects_screen(snap_compare, app, size):
    assert snap_compare(app, terminal_size=size, run_before=wait_loaded)


@pytest.mark.parametrize("size", SIZES)
def test_project_screen(snap_compare, app, size):
    assert snap_compare(app, press=["enter", "down"], terminal_size=size, run_before=wait_loaded)


@pytest.mark.parametrize("size", SIZES)
def test_help_screen(snap_compare, app, size):
    assert snap_compare(app, press=["enter", "f1"], terminal_size=size, run_before=wait_loaded)


@pytest.mark.parametrize("size", SIZES)
def test_ratio_dialog(snap_compare, app, size):
    assert snap_compare(app, press=["enter", "down", "e"], terminal_size=size, run_before=wait_loaded)


@pytest.mark.parametrize("size", SIZES)
def test_new_project_form(snap_compare, app, size):
    assert snap_compare(app, press=["n"], terminal_size=size, run_before=wait_loaded)


def test_too_small_message(snap_compare, app):
    assert snap_compare(app, terminal_size=(70, 20), run_before=wait_loaded)
