"""The app as a process: no TensorFlow in it, no Textual in the domain core, clean exit on hang-up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from test_tui_support import make_store, read_until, spawn_in_pty, wait_exit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def test_app_process_never_imports_tensorflow(tmp_path):
    store = make_store(tmp_path)
    code = textwrap.dedent(
        f"""
        import asyncio, sys
        import workbench.cli
        from workbench.tui import run_app
        from workbench.tui.app import WorkbenchApp
        from test_tui_support import wait_loaded

        async def main():
            app = WorkbenchApp({str(store)!r}, keymap={{}})
            async with app.run_test(size=(100, 30)) as pilot:
                await wait_loaded(pilot)
                await pilot.press("enter")
                await pilot.press("down", "right_square_bracket", "e", "escape", "n", "u", "a", "f1", "escape")
                await pilot.press("x", "escape", "t", "escape", "ctrl+p", "escape", "escape")
                await pilot.press("n")
                await pilot.pause()
                assert type(app.screen).__name__ == "NewProjectDialog", app.screen

        asyncio.run(main())
        loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("tensorflow", "keras", "jax", "torch"))
        print("LOADED", loaded)
        """
    )
    completed = run_python(code)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "LOADED []" in completed.stdout


def test_domain_core_never_imports_textual():
    code = textwrap.dedent(
        """
        import sys
        import workbench.costs, workbench.selection, workbench.records, workbench.report
        import store, store.testing
        import workbench.tui.data.backend, workbench.tui.data.views, workbench.tui.data.ratios
        import workbench.tui.data.progress, workbench.tui.data.format, workbench.tui.data.keymap
        print("LOADED", sorted(name for name in sys.modules if name.split(".")[0] in ("textual", "textual_plotext")))
        """
    )
    completed = run_python(code)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "LOADED []" in completed.stdout


def app_command(store) -> list[str]:
    return [sys.executable, "-m", "workbench.cli", "--store", str(store)]


def app_env() -> dict:
    env = dict(os.environ, TERM="xterm-256color", PYTHONPATH=ROOT)
    env.pop("NO_COLOR", None)
    return env


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="needs POSIX signals and terminals")
def test_terminal_hangup_exits_cleanly(tmp_path):
    store = make_store(tmp_path)
    pid, master = spawn_in_pty(app_command(store), env=app_env())
    try:
        read_until(master, b"cnn.keras", timeout=60)
    except AssertionError:
        os.close(master)
        wait_exit(pid, 5)
        raise
    os.close(master)  # the terminal goes away, as with a dropped SSH connection
    assert wait_exit(pid, timeout=30) == 0


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="needs POSIX signals and terminals")
def test_sighup_signal_exits_cleanly(tmp_path):
    store = make_store(tmp_path)
    pid, master = spawn_in_pty(app_command(store), env=app_env())
    try:
        read_until(master, b"cnn.keras", timeout=60)
        os.kill(pid, signal.SIGHUP)
        status = wait_exit(pid, timeout=30)
    finally:
        os.close(master)
    assert status == 0


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="needs POSIX signals and terminals")
def test_entry_point_reports_bad_store(tmp_path):
    bad = tmp_path / "store.db"
    bad.write_bytes(b"plain text, not a database\n" * 100)
    pid, master = spawn_in_pty(app_command(bad), env=app_env())
    try:
        read_until(master, b"Cannot open the store", timeout=60)
        os.write(master, b"\r")  # Enter closes the dialog
        output = read_until(master, b"svd-workbench: error:", timeout=30)
        status = wait_exit(pid, timeout=30)
    finally:
        os.close(master)
    assert status == 1
    assert b"corrupt" in output


def test_entry_point_without_terminal_refuses(tmp_path):
    store = make_store(tmp_path)
    completed = subprocess.run(
        app_command(store), stdin=subprocess.DEVNULL, capture_output=True, timeout=120, env=app_env(), cwd=ROOT
    )
    assert completed.returncode == 2
    assert completed.stderr.decode().strip().endswith("use a command such as 'svd-workbench list' in scripts")
    assert b"\x1b" not in completed.stdout
    assert completed.stdout == b""
