"""The `export` and `demo` commands.

Neither imports TensorFlow until its handler runs.
"""

from __future__ import annotations

import sys
import time
from decimal import Decimal
from pathlib import Path

from workbench.cli import common
from workbench.cli.project_commands import candidate_count, positive_int

DEMO_PROJECT = "demo"
DEMO_TARGET = Decimal("0.5")
DEMO_OUTPUT = "svd-workbench-demo.keras"
DEMO_CANDIDATES = 10


def register(subparsers) -> None:
    export = subparsers.add_parser(
        "export",
        help="write the project's model, compressed with its current selection, to a .keras file",
        description=(
            "Rebuild the project's model with its current selection (each selected Conv2D split into "
            "<layer>_v and <layer>_h, or <layer>_v and <layer> for a layer that is a model output), write it "
            "to FILE.keras, load the file back and check its outputs, "
            "evaluate it with the project's evaluator, and record the export in the store. The file is "
            "written under a temporary name in the same folder and renamed when complete, so a failed "
            "export leaves no partial file."
        ),
    )
    export.add_argument("name", metavar="NAME", help="project name")
    export.add_argument(
        "--output",
        "-o",
        required=True,
        metavar="FILE.keras",
        help="path of the model file to write; the name must end in .keras",
    )
    export.add_argument(
        "--force",
        action="store_true",
        help="replace FILE.keras if it exists (default: fail and leave it untouched)",
    )
    common.add_store_option(export)
    export.set_defaults(handler=run_export_command)

    demo = subparsers.add_parser(
        "demo",
        help="run the whole job on the bundled Fashion-MNIST CNN: analysis, search, selection, export",
        description=(
            f"Create or reuse the project '{DEMO_PROJECT}' (the bundled fashion_cnn.keras, evaluated by top-1 "
            "accuracy on the bundled fashion_eval.npz), analyse the model, compute the missing scores (scores "
            "cached in the store by an earlier run are reused), select per-layer ratios for "
            f"{DEMO_TARGET} of the MACs, export the compressed model and print the result."
        ),
    )
    demo.add_argument(
        "--candidates",
        type=candidate_count,
        default=DEMO_CANDIDATES,
        metavar="N",
        help=f"number of candidate ratios per layer: the ratios i/N for i = 1 .. N-1 (default: {DEMO_CANDIDATES}, at least 2)",
    )
    demo.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        metavar="N",
        help="worker processes that evaluate candidates in parallel (default: 1)",
    )
    demo.add_argument(
        "--output",
        "-o",
        metavar="FILE.keras",
        help=(
            f"path of the model file to write (default: ./{DEMO_OUTPUT}; when that exists, the first free "
            "name of ./svd-workbench-demo-2.keras, -3, ... is used). A path given here that exists is "
            "replaced only with --force"
        ),
    )
    demo.add_argument(
        "--force",
        action="store_true",
        help=(
            "replace the output file if it exists (default: never replace it; the default output then "
            "moves to the next numbered name)"
        ),
    )
    common.add_store_option(demo)
    demo.set_defaults(handler=run_demo_command)


def open_writable_store(args):
    """Open the store of the command, turning store errors into CliError."""
    from store import StoreError, open_store

    path = common.resolve_store_path(args)
    try:
        return open_store(path)
    except (StoreError, OSError) as error:
        raise common.CliError(str(error)) from None


def expected_errors() -> tuple[type[BaseException], ...]:
    """Return the exception types whose message is the whole story: printed as one line, exit status 1."""
    from store import StoreError
    from workbench.evaluators import EvaluatorSpecError
    from workbench.export import ExportError
    from workbench.jobs.analyse import ModelFileError
    from workbench.jobs.errors import JobFailed

    errors: tuple[type[BaseException], ...] = (ExportError, StoreError, EvaluatorSpecError, ModelFileError, JobFailed)
    # workbench.evaluation imports TensorFlow. If nothing imported it, nothing
    # raised its error, and an early failure need not wait for TensorFlow to load.
    evaluation = sys.modules.get("workbench.evaluation")
    if evaluation is not None:
        errors += (evaluation.EvaluationError,)
    return errors


def step(message: str) -> None:
    """Print a progress line to stderr, so that stdout carries only the result."""
    print(message, file=sys.stderr, flush=True)


def run_export_command(args) -> int:
    common.quiet_tensorflow()
    from workbench.export import export_project, format_export

    def progress(done: int, total: int, description: str) -> None:
        if done < total:
            step(f"[{done + 1}/{total}] {description}")

    with open_writable_store(args) as store:
        try:
            result = export_project(store, args.name, args.output, force=args.force, progress=progress)
        except expected_errors() as error:
            raise common.CliError(str(error)) from None
    print(format_export(result))
    return 0


def run_demo_command(args) -> int:
    common.quiet_tensorflow()
    with open_writable_store(args) as store:
        try:
            return run_demo(store, args)
        except expected_errors() as error:
            raise common.CliError(str(error)) from None


def demo_output_path(explicit: str | None, force: bool, folder: Path | None = None) -> Path:
    """Return the file the demo writes.

    An explicit path is returned as given; the export then fails if it exists
    and `force` is off. The default `./svd-workbench-demo.keras` is never
    replaced without `force`: when it exists, the first free name of
    `svd-workbench-demo-2.keras`, `-3`, ... is returned instead.
    """
    if explicit:
        return Path(explicit)
    folder = folder or Path.cwd()
    path = folder / DEMO_OUTPUT
    stem, suffix = path.stem, path.suffix
    number = 2
    while path.exists() and not force:
        path = folder / f"{stem}-{number}{suffix}"
        number += 1
    return path


def ensure_demo_project(store, candidates: int):
    """Create the demo project, or set an existing one back to the demo's settings.

    Raises:
        CliError: if a project named 'demo' exists with a model other than the
            bundled one, which the demo must not change.
    """
    from store import ProjectNotFound, hash_file
    from workbench import demo as bundled
    from workbench.evaluators import check_evaluator

    model_path = bundled.model_path()
    model_hash = hash_file(model_path)
    checked = check_evaluator(f"accuracy:{bundled.eval_data_path()}")
    settings = {
        "evaluator_spec": checked.spec.text,
        "evaluator_key": checked.key,
        "eval_iterations": None,
        "metric": "mac",
        "target": DEMO_TARGET,
        "candidates": candidates,
        "multiplicity": 1,
        "ignored": [],
        "monotonic_fit": False,
    }
    try:
        project = store.get_project(DEMO_PROJECT)
    except ProjectNotFound:
        step(f"Creating project '{DEMO_PROJECT}': {model_path.name}, {checked.description}.")
        return store.create_project(DEMO_PROJECT, model_path, model_hash=model_hash, **settings)
    if project.model_hash != model_hash:
        raise common.CliError(
            f"Project '{DEMO_PROJECT}' exists with another model ('{project.model_path}'), and the demo does not "
            "change it. Delete or rename that project, or run the demo with another store (--store PATH)."
        )
    step(f"Reusing project '{DEMO_PROJECT}' and the scores cached for it.")
    return store.update_project(DEMO_PROJECT, model_path=model_path, model_hash=model_hash, **settings)


def ensure_analysis(store, project):
    """Analyse the demo model unless its layers are stored for the current file; return the project."""
    from workbench.jobs.analyse import analyse_project

    if store.layers(project.name):
        step("Analysis: the layers are in the store already.")
        return project
    step("Analysis: loading the model and describing its layers...")
    project = analyse_project(store, project)
    eligible = [record for record in store.layers(project.name) if record.eligible]
    step(f"Analysis: {len(eligible)} compressible Conv2D layer(s).")
    return project


def run_demo_search(store, project, jobs: int) -> tuple[int, int]:
    """Compute the demo project's missing scores in this process; return (computed, reused).

    Ctrl-C or SIGTERM stop the search like a cancel request; the scores
    finished by then stay in the store, so a rerun continues from them.
    """
    import signal
    import threading

    from workbench.jobs.runner import end_process, install_stop_handler, run_job

    records = [record for record in store.layers(project.name) if record.eligible and record.name not in project.ignored]
    total = len(records) * (project.candidates - 1)
    missing = len(store.missing_tasks(project.name))
    reused = total - missing
    step(f"Search: {missing} of {total} candidate score(s) to compute, {reused} reused from the store.")
    job = store.create_job(project.name, "search", options={"jobs": jobs, "backend": "loky"})
    stop_signal = threading.Event()
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    install_stop_handler(stop_signal, tuple(previous))
    try:
        outcome = run_job(store, job.id, progress_stream=sys.stderr, stop_signal=stop_signal)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if outcome.abandoned:
        # Workers still evaluating would keep this process alive; their results are not needed.
        step(f"Search {outcome.status}: {outcome.message} Evaluations still running were abandoned.")
        end_process(130 if outcome.status == "cancelled" else common.EXIT_FAILURE)
    if outcome.status == "cancelled":
        raise common.CliError(
            "Search interrupted. The scores computed so far are kept; run 'svd-workbench demo' again to continue.",
            exit_code=130,
        )
    if outcome.status != "done":
        raise common.CliError(f"The search failed: {outcome.message}")
    return missing, reused


def run_demo(store, args) -> int:
    from workbench.export import export_project, format_export

    from workbench.export import check_output_path, reserved_temporary

    started = time.perf_counter()
    output = check_output_path(demo_output_path(args.output, args.force), args.force)
    # Fail on an unwritable folder now rather than after the search.
    with reserved_temporary(output):
        pass
    project = ensure_demo_project(store, args.candidates)

    analysis_started = time.perf_counter()
    project = ensure_analysis(store, project)
    analysis_seconds = time.perf_counter() - analysis_started

    search_started = time.perf_counter()
    computed, reused = run_demo_search(store, project, args.jobs)
    search_seconds = time.perf_counter() - search_started

    selection = store.auto_select(project.name, DEMO_TARGET)
    step(
        f"Selection: MACs ratio {selection.achieved:.4f} for target {DEMO_TARGET} "
        f"({sum(1 for ratio in selection.selection.values() if ratio is not None)} layer(s) compressed)."
    )
    for note in selection.notes:
        step(f"Selection note: {note}")

    def progress(done: int, total: int, description: str) -> None:
        if done < total:
            step(f"Export [{done + 1}/{total}]: {description}")

    result = export_project(store, project.name, output, force=args.force, progress=progress)
    total_seconds = time.perf_counter() - started
    print(
        format_export(
            result,
            score_label="accuracy",
            timings=[
                ("time taken", total_seconds),
                ("  analysis", analysis_seconds),
                (f"  search ({computed} computed, {reused} reused)", search_seconds),
                ("  export and final evaluation", result.seconds),
            ],
        )
    )
    return 0
