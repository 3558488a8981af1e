"""Stores for the terminal app's tests, filled through the store API without TensorFlow.

Imported by the other tests of the app (`from test_tui_support import ...`);
it contains no tests.
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


def spawn_in_pty(args: list[str], columns: int = 80, rows: int = 24, env: dict | None = None) -> tuple[int, int]:
    """Start `args` under a new pseudo-terminal of the given size; return (pid, master fd).

    The child is a session leader with the terminal as its controlling
    terminal, so closing the master fd hangs the terminal up, as a dropped
    SSH connection does.
    """
    import fcntl
    import os
    import pty
    import struct
    import termios

    pid, master = pty.fork()
    if pid == 0:  # child
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        os.execve(args[0], args, env if env is not None else dict(os.environ))
    return pid, master


def read_until(master: int, marker: bytes, timeout: float) -> bytes:
    """Read the child's terminal output until `marker` appears; fail after `timeout` seconds."""
    import os
    import select
    import time

    output = b""
    deadline = time.monotonic() + timeout
    while marker not in output:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{marker!r} not seen on the terminal within {timeout:.0f} s; got {output[-400:]!r}")
        ready, _, _ = select.select([master], [], [], left)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    return output


def wait_exit(pid: int, timeout: float) -> int | None:
    """Wait for a child to exit; return its exit status, or None (after killing it) on timeout."""
    import os
    import signal
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


async def wait_loaded(pilot) -> None:
    """Wait until the projects screen has opened the store and shown the projects."""
    from workbench.tui.screens.projects import ProjectsScreen

    def loaded() -> bool:
        screens = [screen for screen in pilot.app.screen_stack if isinstance(screen, ProjectsScreen)]
        return bool(screens) and screens[0].loaded

    await wait_until(pilot, loaded, "the store to open")
