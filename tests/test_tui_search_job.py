"""A real search through the app: new project, analysis job, search job, quit while it runs, reopen."""

from __future__ import annotations

import os

import numpy as np
import pytest
from test_tui_support import run, wait_loaded, wait_until

from store import open_store
from workbench.tui.app import WorkbenchApp
from workbench.tui.dialogs.new_project import NewProjectDialog
from workbench.tui.screens.project import ProjectScreen
from workbench.tui.widgets.layer_table import LayerTable
from workbench.tui.widgets.project_table import ProjectTable

# Each job process imports TensorFlow, which takes several seconds on a busy
# machine; the whole flow stays well under a minute.
JOB_TIMEOUT = 90


@pytest.fixture
def tiny_model(tmp_path):
    """A two-conv Keras model and a 32-image `accuracy:` npz, both in tmp_path."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a"),
            keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_b"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax", name="head"),
        ]
    )
    model_path = tmp_path / "tiny.keras"
    model.save(model_path)
    rng = np.random.default_rng(0)
    data_path = tmp_path / "eval.npz"
    np.savez(data_path, x=rng.normal(size=(32, 8, 8, 1)).astype("float32"), y=rng.integers(0, 3, size=32))
    return model_path, data_path


def project_status(app) -> str:
    table = app.screen.query_one(ProjectTable)
    return str(table.get_cell("tiny", "status")) if table.row_count else ""


def test_search_job_from_the_app(tmp_path, tiny_model):
    model_path, data_path = tiny_model
    store_path = tmp_path / "store.db"

    async def create_and_search():
        app = WorkbenchApp(store_path, keymap={}, poll_interval=0.2)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_loaded(pilot)
            await pilot.press("n")
            form = app.screen
            assert isinstance(form, NewProjectDialog)
            form.query_one("#name").value = "tiny"
            form.query_one("#model").value = str(model_path)
            form.query_one("#evaluator").value = f"accuracy:{data_path}"
            form.query_one("#candidates").value = "3"
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: project_status(app) not in ("", "analysis queued", "analysing"),
                             "the layer analysis", JOB_TIMEOUT)
            assert project_status(app) == "not searched"
            await pilot.press("enter")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, ProjectScreen)
            table = screen.query_one(LayerTable)
            assert str(table.get_cell("conv_a", "scores")) == "0/2"
            assert str(table.get_cell("head", "eligible")) != "yes"
            await pilot.press("s")
            await app.workers.wait_for_complete()
            await wait_until(pilot, lambda: screen.view.search_running, "the search job to appear")
        # Quitting the app leaves the job running.

    async def reopen_and_watch():
        app = WorkbenchApp(store_path, keymap={}, poll_interval=0.2)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_loaded(pilot)
            await pilot.press("enter")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, ProjectScreen)
            seen_running = screen.view.search_running
            table = screen.query_one(LayerTable)
            await wait_until(pilot, lambda: str(table.get_cell("conv_b", "scores")) == "2/2", "scores in the table",
                             JOB_TIMEOUT)
            await wait_until(pilot, lambda: not screen.view.search_running, "the search job to end", JOB_TIMEOUT)
            await pilot.press("a")
            summary = screen.view.summary
            return seen_running, summary

    run(create_and_search())
    seen_running, summary = run(reopen_and_watch())

    assert seen_running, "the reopened app did not show the search that the first one started"
    assert summary.baseline is not None
    assert summary.missing_scores == 0
    with open_store(store_path, readonly=True) as store:
        (job,) = [job for job in store.jobs("tiny") if job.kind == "search"]
        assert job.status == "done", job.error
        assert set(store.scores("tiny")) == {"conv_a", "conv_b"}
