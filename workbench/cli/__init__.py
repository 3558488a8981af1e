"""Command line of svd-workbench.

`svd-workbench` with no command opens the terminal app; each command below runs the
same work headlessly. Importing this package does not import TensorFlow: command
modules import the engine inside their handlers, so the app paints at once.

Exit status: 0 on success, 1 on failure, 2 on a usage error, 141 when the
reader of stdout closed the pipe early.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from workbench import __version__
from workbench.cli import common

EXIT_BROKEN_PIPE = 141

# Each module registers its subcommands with `register(subparsers)`.
COMMAND_MODULES = (
    "workbench.cli.project_commands",
    "workbench.cli.search_commands",
    "workbench.cli.export_commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="svd-workbench",
        description="Compress Keras convolutional networks with spatial SVD. Without a command, opens the terminal app.",
    )
    parser.add_argument("--version", action="version", version=f"svd-workbench {__version__}")
    common.add_store_option(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import importlib

    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command is None:
        from workbench.tui import run_app

        return run_app(common.resolve_store_path(args)) or 0
    try:
        code = args.handler(args) or 0
        # Flush here, so that a closed pipe raises below and not at interpreter exit.
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader of stdout (e.g. `| head -1`) exited. Point stdout at /dev/null so
        # the flush at exit cannot fail again, and exit 141 (128 + SIGPIPE), the status
        # of a tool killed by SIGPIPE, so `set -o pipefail` treats us like cat or grep.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except common.CliError as error:
        print(f"svd-workbench: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("svd-workbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
