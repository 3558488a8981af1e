"""Flows of the terminal app driven with App.run_test on real SQLite stores."""

from __future__ import annotations

from decimal import Decimal

import pytest
from test_tui_support import PROJECT, make_store, run, screen_text, wait_loaded, wait_until

from store import open_store
from workbench.tui.app import WorkbenchApp
from workbench.tui.commands import ActionsProvider
from workbench.tui.data.backend import Backend
from workbench.tui.dialogs.confirm import ConfirmDialog
from workbench.tui.dialogs.export import ExportDialog
from workbench.tui.dialogs.message import MessageDialog
from workbench.tui.dialogs.new_project import NewProjectDialog
from workbench.tui.dialogs.value import ValueDialog
from workbench.tui.screens.help import HelpScreen
from workbench.tui.screens.project import ProjectScreen
from workbench.tui.screens.projects import ProjectsScreen
from workbench.tui.widgets.job_panel import JobPanel
from workbench.tui.widgets.layer_table import LayerTable
from workbench.tui.widgets.project_table import ProjectTable
from workbench.tui.widgets.summary import SummaryPanel

SIZE = (100, 30)


def make_app(path, **kwargs) -> WorkbenchApp:
    kwargs.setdefault("keymap", {})
    kwargs.setdefault("poll_interval", 0.5)
    return WorkbenchApp(path, **kwargs)


def cell(table, row_key: str, column: str) -> str:
    return str(table.get_cell(row_key, column))


def selection(path, layer: str):
    with open_store(path, readonly=True) as store:
        return store.selection(PROJECT)[layer]


async def open_demo(pilot) -> ProjectScreen:
    await wait_loaded(pilot)
    await pilot.press("enter")
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, ProjectScreen)
    return screen


async def highlight(pilot, layer: str) -> None:
    table = pilot.app.screen.query_one(LayerTable)
    table.move_cursor(row=table._order.index(layer))
    await pilot.pause()
    assert table.highlighted_layer == layer


def first_compressed_layer(path) -> tuple[str, Decimal]:
    with open_store(path, readonly=True) as store:
        return next((name, ratio) for name, ratio in store.selection(PROJECT).items() if ratio not in (None, Decimal("0.1")))


def test_projects_screen_lists_projects(tmp_path):
    path = make_store(tmp_path)

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            await wait_loaded(pilot)
            table = pilot.app.screen.query_one(ProjectTable)
            assert isinstance(pilot.app.screen, ProjectsScreen)
            assert table.row_count == 2
            assert cell(table, PROJECT, "status") == "complete"
            assert cell(table, PROJECT, "model") == "cnn.keras"
            assert cell(table, "empty", "status") == "not analysed"
            assert float(cell(table, PROJECT, "achieved")) <= 0.5

    run(body())


def test_open_project_shows_layers_and_summary(tmp_path):
    path = make_store(tmp_path)

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            screen = await open_demo(pilot)
            table = screen.query_one(LayerTable)
            assert table.row_count == 15
            assert cell(table, "block1/project3", "eligible") == "1x1 kernel"
            assert cell(table, "block0/conv1", "scores") == "9/9"
            text = screen_text(pilot.app)
            assert "baseline 0.9000" in text
            assert "12 of 15 layers compressed" in text
            await pilot.press("escape")
            assert isinstance(pilot.app.screen, ProjectsScreen)

    run(body())


def test_step_keys_change_ratio(tmp_path):
    path = make_store(tmp_path)
    layer, ratio = first_compressed_layer(path)

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            screen = await open_demo(pilot)
            await highlight(pilot, layer)
            await pilot.press("right_square_bracket")
            assert selection(path, layer) == ratio + Decimal("0.1")
            table = screen.query_one(LayerTable)
            assert cell(table, layer, "ratio") == f"{ratio + Decimal('0.1')}*"
            await pilot.press("left_square_bracket", "left_square_bracket")
            assert selection(path, layer) == ratio - Decimal("0.1")
            await pilot.press("minus")
            assert selection(path, layer) == ratio - Decimal("0.2")

    run(body())


def test_step_updates_summary_at_once(tmp_path):
    path = make_store(tmp_path)
    layer, _ = first_compressed_layer(path)

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            screen = await open_demo(pilot)
            before = screen.view.summary
            await highlight(pilot, layer)
            await pilot.press("n")
            after = screen.view.summary
            assert after.compressed_layers == before.compressed_layers - 1
            assert after.mac_ratio > before.mac_ratio
            assert f"{after.compressed_layers} of 15 layers compressed" in screen_text(pilot.app)

    run(body())


def test_exact_ratio_dialog_validates(tmp_path):
    path = make_store(tmp_path)
    layer, _ = first_compressed_layer(path)

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            screen = await open_demo(pilot)
            await highlight(pilot, layer)
            await pilot.press("e")
            dialog = pilot.app.screen
            assert isinstance(dialog, ValueDialog)
            dialog.query_one("#ratio").value = ""
            await pilot.press(*"1.5", "enter")
            assert pilot.app.screen is dialog
            error = str(dialog.query_one("#error").render())
            assert "Expected a ratio in (0, 1]. Received: 1.5" in error
            dialog.query_one("#ratio").value = ""
            await pilot.press(*"0.35", "enter")
            assert pilot.app.screen is screen
            assert selection(path, layer) == Decimal("0.35")
            table = screen.query_one(LayerTable)
            assert cell(table, layer, "ratio") == "0.35*"
            assert cell(table, layer, "score").endswith("~")

    run(body())


def test_exact_ratio_dialog_escape_changes_nothing(tmp_path):
    path = make_store(tmp_path)
    layer, ratio = first_compressed_layer(path)

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            screen = await open_demo(pilot)
            await highlight(pilot, layer)
            await pilot.press("e", "0", "escape")
            assert pilot.app.screen is screen
            assert selection(path, layer) == ratio

    run(body())


def test_none_then_undo(tmp_path):
    path = make_store(tmp_path)
    layer, ratio = first_compressed_layer(path)

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            screen = await open_demo(pilot)
            await highlight(pilot, layer)
            await pilot.press("n")
            assert selection(path, layer) is None
            assert cell(screen.query_one(LayerTable), layer, "ratio") == "none"
            await pilot.press("ctrl+z")
            assert selection(path, layer) == ratio
            await pilot.press("u")
            await pilot.pause()
            assert selection(path, layer) is None  # undid the auto-select of the fixture
            await pilot.press("u")
            await pilot.pause()
            assert any("Nothing to undo" in str(note.message) for note in pilot.app._notifications)

    run(body())


def test_ignore_then_undo(tmp_path):
    path = make_store(tmp_path)
    layer, ratio = first_compressed_layer(path)

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            screen = await open_demo(pilot)
            await highlight(pilot, layer)
            await pilot.press("i")
            with open_store(path, readonly=True) as store:
                assert layer in store.get_project(PROJECT).ignored
            assert selection(path, layer) is None
            table = screen.query_one(LayerTable)
            assert cell(table, layer, "ratio") == "ign"
            assert cell(table, layer, "eligible") == "ignored"
            await pilot.press("right_square_bracket")  # disabled on an ignored layer
            assert selection(path, layer) is None
            await pilot.press("u")
            with open_store(path, readonly=True) as store:
                assert layer not in store.get_project(PROJECT).ignored
            assert selection(path, layer) == ratio

    run(body())


def test_auto_select_reruns_greedy_selection(tmp_path):
    path = make_store(tmp_path)
    with open_store(path, readonly=True) as store:
        expected = store.selection(PROJECT)
    layer, _ = first_compressed_layer(path)

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            await open_demo(pilot)
            await highlight(pilot, layer)
            await pilot.press("n", "down", "n")
            assert selection(path, layer) is None
            await pilot.press("a")
            with open_store(path, readonly=True) as store:
                assert store.selection(PROJECT) == expected
            assert any("Auto-select for target 0.5" in str(note.message) for note in pilot.app._notifications)

    run(body())


def test_target_change_reselects(tmp_path):
    path = make_store(tmp_path)

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            screen = await open_demo(pilot)
            await pilot.press("t")
            dialog = pilot.app.screen
            assert isinstance(dialog, ValueDialog)
            dialog.query_one("#target").value = ""
            await pilot.press(*"0.3", "enter")
            assert pilot.app.screen is screen
            with open_store(path, readonly=True) as store:
                assert store.get_project(PROJECT).target == Decimal("0.3")
                assert store.summary(PROJECT).mac_ratio <= 0.3
            assert screen.view.summary.mac_ratio <= 0.3
            assert "target 0.3 mac" in screen_text(pilot.app)

    run(body())


def test_target_dialog_rejects_zero(tmp_path):
    path = make_store(tmp_path)

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            await open_demo(pilot)
            await pilot.press("t")
            dialog = pilot.app.screen
            dialog.query_one("#target").value = ""
            await pilot.press("0", "enter")
            assert pilot.app.screen is dialog
            assert "target ratio in (0, 1]" in str(dialog.query_one("#error").render())

    run(body())


def test_delete_needs_confirmation(tmp_path):
    path = make_store(tmp_path)

    async def body():
        async with make_app(path, poll_interval=0.1).run_test(size=SIZE) as pilot:
            await wait_loaded(pilot)
            table = pilot.app.screen.query_one(ProjectTable)
            table.move_cursor(row=1)
            await pilot.pause()
            assert table.highlighted_project == "empty"
            await pilot.press("d")
            assert isinstance(pilot.app.screen, ConfirmDialog)
            await pilot.press("n")
            with open_store(path, readonly=True) as store:
                assert [project.name for project in store.list_projects()] == [PROJECT, "empty"]
            await pilot.press("d")
            await pilot.press("enter")  # the focus starts on "Keep"
            with open_store(path, readonly=True) as store:
                assert len(store.list_projects()) == 2
            await pilot.press("d", "y")
            with open_store(path, readonly=True) as store:
                assert [project.name for project in store.list_projects()] == [PROJECT]
            await wait_until(pilot, lambda: table.row_count == 1, "the deleted project to leave the table")

    run(body())


def test_delete_refused_while_job_runs(tmp_path):
    path = make_store(tmp_path)
    with open_store(path) as store:
        job = store.create_job(PROJECT, "search")
        store.start_job(job.id)  # this test process is the job's live pid

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            await wait_loaded(pilot)
            await pilot.press("d", "y")
            await pilot.pause()
            with open_store(path, readonly=True) as store:
                assert PROJECT in [project.name for project in store.list_projects()]
            assert any("Cancel it first" in str(note.message) for note in pilot.app._notifications)

    run(body())


def record_launches(monkeypatch) -> list:
    """Replace job launching with a recorder; returns the list of (project, kind, options)."""
    calls = []

    def launch(self, name, kind, options=None):
        calls.append((name, kind, options))
        return 4242

    monkeypatch.setattr(Backend, "launch", launch)
    return calls


def test_export_dialog_confirms_overwrite(tmp_path, monkeypatch):
    path = make_store(tmp_path)
    calls = record_launches(monkeypatch)
    existing = tmp_path / "cnn_demo_compressed.keras"
    existing.write_bytes(b"old model")

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            screen = await open_demo(pilot)
            await pilot.press("x")
            dialog = pilot.app.screen
            assert isinstance(dialog, ExportDialog)
            assert dialog.query_one("#export-path").value == str(existing)
            await pilot.press("enter")
            assert isinstance(pilot.app.screen, ConfirmDialog)
            await pilot.press("n")
            assert pilot.app.screen is dialog
            assert "was kept" in str(dialog.query_one("#error").render())
            assert calls == []
            await pilot.press("enter", "y")
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
            assert pilot.app.screen is screen
            assert calls == [(PROJECT, "export", {"output": str(existing), "force": True})]
            assert existing.read_bytes() == b"old model"

    run(body())


def test_export_to_new_path_needs_no_confirmation(tmp_path, monkeypatch):
    path = make_store(tmp_path)
    calls = record_launches(monkeypatch)
    target = tmp_path / "out.keras"

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            await open_demo(pilot)
            await pilot.press("x")
            pilot.app.screen.query_one("#export-path").value = str(target)
            await pilot.press("enter")
            await pilot.app.workers.wait_for_complete()
            assert calls == [(PROJECT, "export", {"output": str(target), "force": False})]

    run(body())


def test_export_result_dialog_after_job(tmp_path):
    path = make_store(tmp_path)
    output = tmp_path / "out.keras"
    output.write_bytes(b"model")

    async def body():
        async with make_app(path, poll_interval=0.1).run_test(size=SIZE) as pilot:
            screen = await open_demo(pilot)
            with open_store(path) as store:
                job = store.create_job(PROJECT, "export", options={"output": str(output)})
                store.start_job(job.id)
                await wait_until(
                    pilot, lambda: screen.view.active is not None and screen.view.active.job.id == job.id, "the export job to show"
                )
                assert "Exporting" in screen_text(pilot.app) or "Export" in screen_text(pilot.app)
                summary = store.summary(PROJECT)
                store.record_export(
                    PROJECT,
                    output,
                    ratios=store.selection(PROJECT),
                    ranks={},
                    baseline_score=0.9,
                    compressed_score=0.8765,
                    macs_before=summary.macs_before,
                    macs_after=summary.macs_after,
                    params_before=summary.params_before,
                    params_after=summary.params_after,
                )
                store.finish_job(job.id)
            await wait_until(pilot, lambda: isinstance(pilot.app.screen, MessageDialog), "the export result dialog")
            text = screen_text(pilot.app)
            assert "Export finished" in text
            assert "0.8765 (measured)" in text
            await pilot.press("enter")
            assert pilot.app.screen is screen

    run(body())


def test_scores_fill_in_while_search_runs(tmp_path):
    path = make_store(tmp_path, scored=False)

    async def body():
        async with make_app(path, poll_interval=0.1).run_test(size=SIZE) as pilot:
            screen = await open_demo(pilot)
            table = screen.query_one(LayerTable)
            assert cell(table, "block0/conv1", "scores") == "0/9"
            with open_store(path) as store:
                job = store.create_job(PROJECT, "search")
                store.start_job(job.id)
                store.update_job_progress(job.id, 0, 109)
                key = store.score_key(PROJECT)
                store.put_baseline(key, 0.9)
                store.put_scores(key, [("block0/conv1", Decimal("0.1"), 0.5), ("block0/conv1", Decimal("0.2"), 0.6)])
                store.update_job_progress(job.id, 3, 109)
                await wait_until(pilot, lambda: cell(table, "block0/conv1", "scores") == "2/9", "new scores in the table")
                await wait_until(pilot, lambda: "Searching 3/109" in screen_text(pilot.app), "the progress line")
                assert "ETA" in screen_text(pilot.app)
                await pilot.press("c")
                assert store.cancel_requested(job.id)
                store.finish_job(job.id, "cancelled")
            await wait_until(pilot, lambda: "Search cancelled" in screen_text(pilot.app), "the cancelled status")
            assert not screen.query_one(JobPanel).has_class("-running")

    run(body())


def test_search_key_launches_job(tmp_path, monkeypatch):
    path = make_store(tmp_path, scored=False)
    calls = record_launches(monkeypatch)

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            await open_demo(pilot)
            await pilot.press("s")
            await pilot.app.workers.wait_for_complete()
            assert calls == [(PROJECT, "search", None)]

    run(body())


def test_search_key_with_complete_cache_launches_nothing(tmp_path, monkeypatch):
    path = make_store(tmp_path)
    calls = record_launches(monkeypatch)

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            await open_demo(pilot)
            await pilot.press("s")
            await pilot.pause()
            assert calls == []
            assert any("nothing to search" in str(note.message) for note in pilot.app._notifications)

    run(body())


def test_project_deleted_elsewhere_returns_to_list(tmp_path):
    path = make_store(tmp_path)

    async def body():
        async with make_app(path, poll_interval=0.1).run_test(size=SIZE) as pilot:
            await open_demo(pilot)
            with open_store(path) as store:
                store.delete_project(PROJECT)
            await wait_until(pilot, lambda: isinstance(pilot.app.screen, ProjectsScreen), "the projects screen")

    run(body())


def test_too_small_terminal_shows_message(tmp_path):
    path = make_store(tmp_path)

    async def body():
        async with make_app(path).run_test(size=(60, 20)) as pilot:
            await wait_loaded(pilot)
            assert "terminal too small: need 80x24, have 60x20" in screen_text(pilot.app)
            await pilot.resize_terminal(79, 30)
            await pilot.pause()
            assert "terminal too small: need 80x24, have 79x30" in screen_text(pilot.app)
            await pilot.resize_terminal(80, 24)
            await pilot.pause()
            assert isinstance(pilot.app.screen, ProjectsScreen)
            assert "too small" not in screen_text(pilot.app)

    run(body())


def test_help_lists_keys_of_screen(tmp_path):
    path = make_store(tmp_path)

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            await open_demo(pilot)
            await pilot.press("f1")
            help_screen = pilot.app.screen
            assert isinstance(help_screen, HelpScreen)
            ids = [binding_id for _, _, _, binding_id in help_screen.rows]
            assert "project.undo" in ids
            assert "project.ratio-down" in ids
            assert "app.help" in ids
            keys = {binding_id: keys for keys, _, _, binding_id in help_screen.rows}
            assert keys["project.undo"] == "u ^z"
            assert keys["project.exact-ratio"] == "e ⏎"
            assert keys["project.ratio-down"] == "[ -"
            await pilot.press("escape")
            assert isinstance(pilot.app.screen, ProjectScreen)

    run(body())


def test_palette_offers_available_actions(tmp_path):
    path = make_store(tmp_path)

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            screen = await open_demo(pilot)
            provider = ActionsProvider(screen)
            titles = [hit.text async for hit in provider.discover()]
            assert "Undo the last edit" in titles
            assert "Auto-select: rerun greedy selection for the target on the cached scores" in titles
            assert not any(title.startswith("Cancel search") for title in titles)
            hits = [hit async for hit in provider.search("undo")]
            assert hits
            layer, _ = first_compressed_layer(path)
            await highlight(pilot, layer)
            await pilot.press("n")
            await hits[0].command()
            await pilot.pause()
            assert selection(path, layer) is not None

    run(body())


def test_keymap_rebinds_by_id(tmp_path):
    path = make_store(tmp_path)
    layer, ratio = first_compressed_layer(path)

    async def body():
        async with make_app(path, keymap={"project.uncompress": "z"}).run_test(size=SIZE) as pilot:
            await open_demo(pilot)
            await highlight(pilot, layer)
            await pilot.press("n")
            assert selection(path, layer) == ratio
            await pilot.press("z")
            assert selection(path, layer) is None

    run(body())


def test_new_project_form_validates(tmp_path, monkeypatch):
    path = make_store(tmp_path)
    model = tmp_path / "net.keras"
    model.write_bytes(b"zip")
    created = []
    monkeypatch.setattr(Backend, "create_project", lambda self, request: created.append(request) or 7)

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            await wait_loaded(pilot)
            await pilot.press("n")
            form = pilot.app.screen
            assert isinstance(form, NewProjectDialog)
            form.query_one("#name").value = PROJECT
            await pilot.press("ctrl+s")
            assert "A project named 'demo' exists" in str(form.query_one("#error").render())
            form.query_one("#name").value = "net"
            form.query_one("#model").value = str(tmp_path / "missing.keras")
            await pilot.press("ctrl+s")
            assert "File not found" in str(form.query_one("#error").render())
            form.query_one("#model").value = str(model)
            form.query_one("#evaluator").value = "not a spec"
            await pilot.press("ctrl+s")
            assert "Invalid evaluator spec" in str(form.query_one("#error").render())
            form.query_one("#evaluator").value = "accuracy:eval.npz"
            form.query_one("#target").value = "2"
            await pilot.press("ctrl+s")
            assert "(0, 1]" in str(form.query_one("#error").render())
            form.query_one("#target").value = "0.4"
            form.query_one("#candidates").value = "1"
            await pilot.press("ctrl+s")
            assert "candidates of at least 2" in str(form.query_one("#error").render())
            form.query_one("#candidates").value = "8"
            await pilot.press("ctrl+s")
            await pilot.app.workers.wait_for_complete()
            assert pilot.app.screen is not form
            (request,) = created
            assert request.name == "net"
            assert request.target == Decimal("0.4")
            assert request.candidates == 8
            assert request.eval_iterations is None

    run(body())


def test_every_binding_has_an_id():
    from workbench.tui.dialogs.confirm import ConfirmDialog as Confirm
    from workbench.tui.screens.too_small import TooSmallScreen

    classes = [WorkbenchApp, ProjectsScreen, ProjectScreen, HelpScreen, TooSmallScreen, Confirm, ValueDialog,
               ExportDialog, MessageDialog, NewProjectDialog]
    for cls in classes:
        for binding in cls.BINDINGS:
            assert binding.id, f"{cls.__name__} binding {binding.key!r} has no id"


def test_binding_ids_are_unique():
    from workbench.tui.dialogs.confirm import ConfirmDialog as Confirm

    ids = [binding.id for cls in (WorkbenchApp, ProjectsScreen, ProjectScreen, Confirm, NewProjectDialog)
           for binding in cls.BINDINGS]
    assert len(ids) == len(set(ids))


def test_bad_store_shows_error_and_quits(tmp_path):
    bad = tmp_path / "store.db"
    bad.write_bytes(b"not sqlite at all, just text" * 100)

    async def body():
        app = make_app(bad)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, MessageDialog), "the error dialog")
            assert "corrupt" in screen_text(app)
            await pilot.press("enter")
            await pilot.pause()
        return app

    app = run(body())
    assert app.return_code == 1
    assert "corrupt" in str(app.startup_error)
    assert bad.read_bytes() == b"not sqlite at all, just text" * 100


def test_palette_finds_export_by_name(tmp_path):
    path = make_store(tmp_path)

    async def body():
        async with make_app(path).run_test(size=SIZE) as pilot:
            screen = await open_demo(pilot)
            provider = ActionsProvider(screen)
            for query in ("export", "exp"):
                hits = [hit async for hit in provider.search(query)]
                assert hits, query
                best = max(hits, key=lambda hit: hit.score)
                assert "project.export" in best.help, (query, best.text)
            for query, binding_id in (("search", "project.search"), ("undo", "project.undo"),
                                      ("auto-select", "project.auto-select"), ("help", "app.help")):
                hits = [hit async for hit in provider.search(query)]
                assert any(binding_id in hit.help for hit in hits), query

    run(body())


def make_flat_curve(path, layer: str) -> None:
    """Give `layer` the same cached score at every candidate, so auto-select adds a flat-curve note."""
    from workbench.selection import candidate_ratios

    with open_store(path) as store:
        project = store.get_project(PROJECT)
        key = store.score_key(PROJECT)
        store.put_scores(key, [(layer, ratio, 0.85) for ratio in candidate_ratios(project.candidates)])


def test_auto_select_notes_stay_out_of_dialogs(tmp_path):
    path = make_store(tmp_path)
    layer, _ = first_compressed_layer(path)
    make_flat_curve(path, layer)

    async def body():
        async with make_app(path).run_test(size=(80, 24)) as pilot:
            screen = await open_demo(pilot)
            await pilot.press("a")
            await pilot.pause()
            messages = [str(note.message) for note in pilot.app._notifications]
            assert len(messages) == 1
            assert "score the same at every candidate" not in messages[0]
            assert len(messages[0]) <= 120
            assert screen.selection_notes
            text = screen_text(pilot.app)
            assert "Note" in text
            assert "Layers" in text
            await pilot.press("t")
            assert isinstance(pilot.app.screen, ValueDialog)
            assert not pilot.app._notifications
            await pilot.press("escape")
            await pilot.press("l")
            dialog = pilot.app.screen
            assert isinstance(dialog, MessageDialog)
            assert "score the same at every candidate ratio" in str(dialog.body)

    run(body())


def test_dialog_clears_notifications(tmp_path):
    path = make_store(tmp_path)

    async def body():
        async with make_app(path).run_test(size=(80, 24)) as pilot:
            await open_demo(pilot)
            pilot.app.notify("first line\n" * 10)
            await pilot.pause()
            assert pilot.app._notifications
            await pilot.press("x")
            assert isinstance(pilot.app.screen, ExportDialog)
            assert not pilot.app._notifications

    run(body())


def fail_search(path, error: str) -> None:
    with open_store(path) as store:
        job = store.create_job(PROJECT, "search")
        store.start_job(job.id, log_path=str(path.parent / "job-1.log"))
        store.fail_job(job.id, error)


def test_failed_search_shows_in_list_and_log(tmp_path):
    path = make_store(tmp_path, scored=False)
    error = "Evaluator returned NaN for the baseline.\n\nTraceback (most recent call last):\n  File \"eval.py\", line 9"
    fail_search(path, error)

    async def body():
        async with make_app(path).run_test(size=(80, 24)) as pilot:
            await wait_loaded(pilot)
            table = pilot.app.screen.query_one(ProjectTable)
            assert cell(table, PROJECT, "status") == "search failed"
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(pilot.app.screen, ProjectScreen)
            await pilot.press("l")
            dialog = pilot.app.screen
            assert isinstance(dialog, MessageDialog)
            body_text = str(dialog.body)
            assert 'File "eval.py", line 9' in body_text
            assert "job-1.log" in body_text
            await pilot.press("escape")
            assert isinstance(pilot.app.screen, ProjectScreen)

    run(body())


def test_summary_fits_80_columns(tmp_path):
    path = make_store(tmp_path)
    with open_store(path) as store:
        store.update_project(PROJECT, target=Decimal("0.05"), metric="memory")
        store.auto_select(PROJECT)

    async def body():
        async with make_app(path).run_test(size=(80, 24)) as pilot:
            screen = await open_demo(pilot)
            lines = str(screen.query_one(SummaryPanel).render()).splitlines()
            assert [line.split()[0] for line in lines] == ["Score", "Ratio", "Cost", "Layers"]
            assert "(missed)" in lines[1]
            for line in lines:
                assert len(line) <= 78, line

    run(body())
