"""Stores for the terminal app's tests, filled through the store API without TensorFlow.

Imported by the other tests of the app (`from test_tui_support import ...`);
it holds no tests itself.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from store import open_store
from store.testing import synthetic_layers, synthetic_scores
from workbench.selection import candidate_ratios

PROJECT = "demo"
BASELINE = 0.9


def make_store(
    folder: Path,
    layers: int = 12,
    candidates: int = 10,
    ineligible_every: int = 4,
    scored: bool = True,
    auto_select: bool = True,
    extra_projects: bool = True,
) -> Path:
    """Create `folder/store.db` with project 'demo' (synthetic conv layers, scores for every candidate).

    With `extra_projects`, a second project 'empty' has no layers yet. Model
    paths point into `folder`; the files need not exist, because the model
    hash is given.
    """
    path = folder / "store.db"
    with open_store(path) as store:
        store.create_project(
            PROJECT,
            folder / "cnn.keras",
            "accuracy:eval.npz",
            "accuracy:eval.npz|iterations=all|sha256=test",
            model_hash="0" * 64,
            candidates=candidates,
        )
        records = synthetic_layers(layers, ineligible_every=ineligible_every)
        store.set_layers(PROJECT, records)
        if scored:
            key = store.score_key(PROJECT)
            scores = synthetic_scores(records, candidate_ratios(candidates), BASELINE)
            store.put_scores(key, [(layer, ratio, score) for layer, curve in scores.items() for ratio, score in curve.items()])
            store.put_baseline(key, BASELINE)
            if auto_select:
                store.auto_select(PROJECT)
        if extra_projects:
            store.create_project(
                "empty",
                folder / "other.h5",
                "accuracy:eval.npz",
                "accuracy:eval.npz|iterations=all|sha256=other",
                model_hash="1" * 64,
            )
    return path


def screen_text(app) -> str:
    """Return the active screen as plain text lines, as the terminal would show it."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def run(coroutine):
    """Run an async test body; the suite has no asyncio plugin."""
    return asyncio.run(coroutine)


async def wait_until(pilot, condition, what: str, timeout: float = 15.0) -> None:
    """Let the app run until `condition()` is true, then one more frame; fail naming `what` after `timeout` s."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}.")
        await pilot.pause(0.05)
    await pilot.pause()
