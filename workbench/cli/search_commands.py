"""Search commands: search (in the foreground or detached), status, cancel.

`search` without --detach runs the job in this process, printing progress to
stderr; TensorFlow loads inside the handler. `status` and `cancel` only read
and flag the store.
"""

from __future__ import annotations

import importlib.util
import signal
import sys
import threading
import time

from workbench.cli import common
from workbench.cli.common import EXIT_FAILURE, EXIT_USAGE, CliError
from workbench.cli.project_commands import open_cli_store, positive_int, store_errors

EXIT_INTERRUPTED = 130
# How long `cancel` waits for the job to stop unless --no-wait is given, in seconds.
CANCEL_WAIT_S = 60.0


def register(subparsers) -> None:
    search = subparsers.add_parser(
        "search",
        help="evaluate the baseline and every missing (layer, candidate ratio) score",
        description="Evaluate the baseline and each candidate ratio of each compressible layer that has no cached "
        "score, and store every score as it arrives. A rerun after a cancel or a crash evaluates only what is "
        "missing. Progress, rate and ETA go to stderr.",
    )
    search.add_argument("name", metavar="NAME", help="project name")
    search.add_argument(
        "--jobs",
        type=positive_int,
        default=None,
        metavar="N",
        help="worker processes that evaluate in parallel, each loading the model once; with --backend dask, "
        "the most evaluation chunks in flight (default: 1 for loky, every cluster thread for dask)",
    )
    search.add_argument(
        "--backend",
        choices=("loky", "dask"),
        default="loky",
        help="joblib backend: loky runs local worker processes; dask runs on the cluster at --scheduler "
        "and needs dask[distributed] (default: loky)",
    )
    search.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="Dask scheduler address for --backend dask, e.g. tcp://10.0.0.5:8786; every worker must see the "
        "model and evaluator files at the same paths",
    )
    search.add_argument(
        "--detach",
        action="store_true",
        help="start the search as a background job, print its id and return; follow it with 'svd-workbench status'",
    )
    common.add_store_option(search)
    search.set_defaults(handler=search_command)

    status = subparsers.add_parser(
        "status",
        help="show a project's active job, else its latest: state, progress, rate, ETA, process, heartbeat and errors",
    )
    status.add_argument("name", metavar="NAME", help="project name")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    common.add_store_option(status)
    status.set_defaults(handler=status_command)

    cancel = subparsers.add_parser(
        "cancel",
        help="stop a project's running job; finished scores are kept",
    )
    cancel.add_argument("name", metavar="NAME", help="project name")
    cancel.add_argument(
        "--no-wait",
        action="store_true",
        help=f"return at once instead of waiting up to {CANCEL_WAIT_S:.0f} seconds for the job to stop",
    )
    common.add_store_option(cancel)
    cancel.set_defaults(handler=cancel_command)


def search_options(args) -> dict:
    """Validate the search options and return them as stored in the job row."""
    if args.backend == "dask":
        if not args.scheduler:
            raise CliError("--backend dask needs --scheduler ADDRESS, e.g. tcp://10.0.0.5:8786.", EXIT_USAGE)
        if importlib.util.find_spec("distributed") is None:
            raise CliError(
                "--backend dask needs dask.distributed, which is not installed. "
                "Install it with: pip install 'svd-workbench[dask]'"
            )
    elif args.scheduler:
        raise CliError("--scheduler applies to --backend dask only.", EXIT_USAGE)
    options = {"backend": args.backend, "jobs": args.jobs}
    if args.backend == "loky" and args.jobs is None:
        options["jobs"] = 1
    if args.scheduler:
        options["scheduler"] = args.scheduler
    return options


def search_command(args) -> int:
    options = search_options(args)
    if args.detach:
        return detached_search(args, options)
    from workbench.jobs.runner import end_process, install_stop_handler, run_job

    store = open_cli_store(args)
    with store, store_errors():
        project = store.get_project(args.name)
        if not store.layers(project):
            raise CliError(f"Project {project.name!r} has no layers yet; its model was never analysed.")
        job = store.create_job(project, "search", options=options)
    common.quiet_tensorflow()
    stop_signal = threading.Event()
    previous_handlers = install_stop_handler(stop_signal, (signal.SIGINT, signal.SIGTERM))
    try:
        store = open_cli_store(args)
        with store:
            outcome = run_job(store, job.id, progress_stream=sys.stderr, stop_signal=stop_signal)
            missing = len(store.missing_tasks(args.name)) + (store.baseline(args.name) is None)
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
    if outcome.status == "done":
        if missing:
            print(f"Search of project {args.name!r} finished; {missing} score(s) are still missing.")
        else:
            print(f"Every score of project {args.name!r} is cached. Next: svd-workbench select {args.name}")
        code = 0
    elif outcome.status == "cancelled":
        print(f"svd-workbench: search cancelled: {outcome.message}", file=sys.stderr)
        code = EXIT_INTERRUPTED if stop_signal.is_set() else EXIT_FAILURE
    else:
        print(f"svd-workbench: error: search job {job.id} failed: {outcome.message}", file=sys.stderr)
        if "svd-workbench status" not in outcome.message:
            print(f"Details: svd-workbench status {args.name}", file=sys.stderr)
        code = EXIT_FAILURE
    if outcome.abandoned:
        end_process(code)
    return code


def detached_search(args, options: dict) -> int:
    from workbench.jobs import job_log_path, launch_job

    store_path = common.resolve_store_path(args)
    store = open_cli_store(args)
    with store, store_errors():
        project = store.get_project(args.name)
        if not store.layers(project):
            raise CliError(f"Project {project.name!r} has no layers yet; its model was never analysed.")
    with store_errors():
        job_id = launch_job(store_path, args.name, "search", options)
    print(job_id)
    print(
        f"Started search job {job_id} of project {args.name!r}; log: {job_log_path(store_path, job_id)}. "
        f"Follow it with: svd-workbench status {args.name}",
        file=sys.stderr,
    )
    return 0


def status_command(args) -> int:
    from workbench.jobs.status import format_job_report, job_report

    store = open_cli_store(args, readonly=True)
    with store, store_errors():
        project = store.get_project(args.name)
        jobs = store.jobs(project, limit=1)
        job = store.active_job(project) or (jobs[0] if jobs else None)
        report = job_report(store, job) if job else None
        missing = len(store.missing_tasks(project))
        baseline = store.baseline(project)
    if args.json:
        common.print_json(
            {"project": project.name, "missing_scores": missing, "baseline": baseline, "job": report}
        )
        return 0
    cached = "baseline cached" if baseline is not None else "baseline missing"
    print(f"Project {project.name!r}: {missing} candidate score(s) missing, {cached}.")
    print(format_job_report(report) if report else "No job has run yet.")
    return 0


def cancel_command(args) -> int:
    from workbench.jobs import cancel_job

    store_path = common.resolve_store_path(args)
    with store_errors():
        job_id = cancel_job(store_path, args.name)
    if job_id is None:
        print(f"Project {args.name!r} has no queued or running job.")
        return 0
    if args.no_wait:
        print(f"Cancel requested for job {job_id}; it stops within seconds and keeps its finished scores.")
        return 0
    print(f"Waiting for job {job_id} to stop...", file=sys.stderr, flush=True)
    store = open_cli_store(args, readonly=True)
    with store:
        deadline = time.monotonic() + CANCEL_WAIT_S
        job = store.job(job_id)
        while job.active and store.job_liveness(job) not in ("dead", "stale") and time.monotonic() < deadline:
            time.sleep(0.2)
            job = store.job(job_id)
    if job.active:
        raise CliError(
            f"Job {job_id} (pid {job.pid}) has not stopped after {CANCEL_WAIT_S:.0f} s; its cancel flag stays set. "
            f"Check it with: svd-workbench status {args.name}"
        )
    print(f"Job {job_id} is {job.status}; {job.done} of {job.total or 0} evaluations were stored.")
    return 0
