"""The svd-workbench terminal app (Textual).

`run_app` is what `svd-workbench` without a command calls. The app reads the
store and starts job processes; it never imports TensorFlow, so it paints at
once, and a test checks that. Layout: `app.py` (the App), `screens/`,
`widgets/`, `dialogs/`, and `data/` (store access and pure helpers, free of
Textual).
"""

from __future__ import annotations

import sys
from pathlib import Path


def run_app(store_path: str | Path, project: str | None = None) -> int:
    """Run the terminal app on a store file until the user quits; return the exit status.

    Returns:
        0 after a normal quit or a hang-up; 1 if the store cannot be opened.
        The app shows that error, and it is printed to stderr after the app
        has restored the terminal. 2, with a one-line error on stderr and
        nothing started, when stdin or stdout is not a terminal (a script or
        a pipe), because the app would write escape codes there.
    """
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(
            "svd-workbench: the terminal app needs an interactive terminal; "
            "use a command such as 'svd-workbench list' in scripts",
            file=sys.stderr,
        )
        return 2

    from workbench.tui.app import WorkbenchApp

    app = WorkbenchApp(store_path, project=project)
    app.run()
    if app.startup_error is not None:
        print(f"svd-workbench: error: {app.startup_error}", file=sys.stderr)
        return 1
    return app.return_code or 0


__all__ = ["run_app"]
