"""Helpers shared by the command modules. Importing this module does not import TensorFlow."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Re-exported: command handlers call common.quiet_tensorflow().
from workbench.tfquiet import STARTUP_NOISE, quiet_tensorflow  # noqa: F401

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
