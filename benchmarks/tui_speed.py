"""Time the terminal app: first paint after process start, and the latency of manual edits.

First paint: the real entry point (`python -m workbench.cli --store PATH`)
runs under a pseudo-terminal of 80x24 with TERM=xterm-256color. The clock
starts just before the process is forked. "First paint" stops when the
terminal output first contains the projects screen's title, and "projects
shown" when it contains the project's model file name. The two differ
because the app paints its first screen before it opens the store, then fills
the table from a worker thread. Each run then quits with Ctrl+Q.

Edit latency: the app runs headless (`App.run_test`) on a project of 200
synthetic 3x3 conv layers with 9 cached candidate scores each. Each edit is
timed from the action call to the end of its synchronous work: the store
write, the layer table and summary read back from cached numbers, and the
widget updates. Painting the frame afterwards is not included.

Usage:
    python benchmarks/tui_speed.py [--paint-runs 5] [--edits 40] [--layers 200]

Goals: first paint under 1.5 s; each manual edit (step, exact ratio, none,
undo, ignore) under 50 ms at the median. Auto-select and a target change rerun
greedy selection over all layers and are reported without a goal.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import platform
import pty
import select
import signal
import statistics
import struct
import sys
import tempfile
import termios
import time
from pathlib import Path

from store import open_store
from store.testing import create_synthetic_project

PAINT_GOAL_S = 1.5
EDIT_GOAL_MS = 50.0
MANUAL_EDITS = ("step", "exact ratio", "none", "undo", "ignore")
PROJECT = "bench"
TITLE_MARKER = b"projects"
DATA_MARKER = f"{PROJECT}.keras".encode()


def make_store(folder: Path, layers: int) -> Path:
    path = folder / "store.db"
    with open_store(path) as store:
        create_synthetic_project(store, PROJECT, layers, candidates=10)
        store.auto_select(PROJECT)
    return path


def first_paint_seconds(store: Path, timeout: float = 30.0) -> tuple[float, float]:
    """Start the app under a new 80x24 pseudo-terminal; return seconds to its first frame and to the projects."""
    env = dict(os.environ, TERM="xterm-256color")
    command = [sys.executable, "-m", "workbench.cli", "--store", str(store)]
    start = time.perf_counter()
    pid, master = pty.fork()
    if pid == 0:
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        os.execve(command[0], command, env)
    output = b""
    painted = shown = None
    try:
        while shown is None:
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"No projects shown within {timeout:.0f} s; output so far: {output[-300:]!r}")
            ready, _, _ = select.select([master], [], [], 0.005)
            if ready:
                output += os.read(master, 65536)
                now = time.perf_counter() - start
                if painted is None and TITLE_MARKER in output:
                    painted = now
                if DATA_MARKER in output:
                    shown = now
        os.write(master, b"\x11")  # Ctrl+Q
        deadline = time.perf_counter() + 10
        while time.perf_counter() < deadline and not os.waitpid(pid, os.WNOHANG)[0]:
            if select.select([master], [], [], 0.05)[0]:
                try:
                    os.read(master, 65536)
                except OSError:
                    pass
        else:
            if time.perf_counter() >= deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    finally:
        os.close(master)
    return painted, shown


async def edit_latencies(store: Path, edits: int) -> dict[str, list[float]]:
    """Time each kind of manual edit on the project screen, in ms."""
    from workbench.tui.app import WorkbenchApp
    from workbench.tui.widgets.layer_table import LayerTable

    times: dict[str, list[float]] = {"step": [], "exact ratio": [], "none": [], "undo": [], "ignore": [],
                                     "auto-select": [], "target": []}
    app = WorkbenchApp(store, keymap={}, cursor_blink=False)
    async with app.run_test(size=(120, 40)) as pilot:
        while not app.screen.loaded:
            await pilot.pause(0.05)
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        table = screen.query_one(LayerTable)
        backend = app.backend

        def timed(kind: str, action) -> None:
            start = time.perf_counter()
            action()
            times[kind].append((time.perf_counter() - start) * 1000)

        for index in range(edits):
            table.move_cursor(row=(index * 7) % table.row_count)
            await pilot.pause()
            layer = table.highlighted_layer
            timed("step", lambda: screen.action_step(-1 if index % 2 else 1))
            timed("exact ratio", lambda: screen.apply_edit(lambda: backend.set_ratio(PROJECT, layer, "0.45")))
            timed("none", screen.action_uncompress)
            timed("undo", screen.action_undo)
            timed("ignore", screen.action_ignore)
            timed("ignore", screen.action_ignore)
            if index % 4 == 0:
                timed("auto-select", screen.action_auto_select)
                target = "0.4" if index % 8 else "0.6"
                timed("target", lambda: screen.apply_edit(lambda: backend.set_target(PROJECT, target)))
            await pilot.pause()
    return times


def summarise(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"median {statistics.median(ordered):.1f}, p90 {p90:.1f}, max {ordered[-1]:.1f} (n={len(ordered)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paint-runs", type=int, default=5, help="first-paint runs (default 5)")
    parser.add_argument("--edits", type=int, default=40, help="rounds of edits (default 40)")
    parser.add_argument("--layers", type=int, default=200, help="conv layers of the project (default 200)")
    args = parser.parse_args()

    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    ok = True
    with tempfile.TemporaryDirectory() as folder:
        store = make_store(Path(folder), args.layers)
        runs = [first_paint_seconds(store) for _ in range(args.paint_runs)]
        for label, values in (("first paint", [run[0] for run in runs]), ("projects shown", [run[1] for run in runs])):
            print(f"{label}, s: median {statistics.median(values):.3f}, max {max(values):.3f}, "
                  f"runs {', '.join(f'{value:.3f}' for value in values)}")
        ok &= statistics.median(run[0] for run in runs) < PAINT_GOAL_S

        times = asyncio.run(edit_latencies(store, args.edits))
        for kind, values in times.items():
            print(f"edit '{kind}' on {args.layers} layers, ms: {summarise(values)}")
            if kind in MANUAL_EDITS:
                ok &= statistics.median(values) < EDIT_GOAL_MS
    print("goals met" if ok else "goal missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
