"""Helpers shared by the command modules. Importing this module does not import TensorFlow."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

EXIT_FAILURE = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A failure to report as one line on stderr, with an exit status."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE):
        super().__init__(message)
        self.exit_code = exit_code


def add_store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="SQLite store file (default: $SVD_WORKBENCH_STORE, else $XDG_DATA_HOME/svd-workbench/store.db)",
    )


def resolve_store_path(args) -> Path:
    """Return the store path from --store or the default location."""
    explicit = getattr(args, "store", None)
    if explicit:
        return Path(explicit).expanduser()
    from store import default_store_path

    return default_store_path()


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


# Lines that TensorFlow's C++ runtime writes straight to file descriptor 2 while
# it loads, before absl logging is set up, so that TF_CPP_MIN_LOG_LEVEL cannot
# hide them (seen with TensorFlow 2.21): informational and warning lines, and the
# cuInit error that every machine without an NVIDIA driver prints.
STARTUP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\] "
    r"|E\d{4} [\d:.]+\s+\d+ cuda_platform\.cc:\d+\] failed call to cuInit: )"
)


def quiet_tensorflow() -> None:
    """Import TensorFlow and Keras with their informational start-up lines filtered out.

    Errors and any other output of the import still reach stderr. Set
    SVD_WORKBENCH_TF_LOGS=1 to see everything.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or os.environ.get("SVD_WORKBENCH_TF_LOGS"):
        return
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow

            # The cuInit error comes when the GPU list is first read, not at import.
            tensorflow.config.list_physical_devices("GPU")
        finally:
            sys.stderr.flush()
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
        capture.seek(0)
        for line in capture.read().decode("utf-8", errors="replace").splitlines():
            if not STARTUP_NOISE.match(line):
                sys.stderr.write(line + "\n")
        sys.stderr.flush()
