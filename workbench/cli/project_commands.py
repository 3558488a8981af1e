"""Project commands: init, list, show, select, set, scores import|export.

Only `init` loads TensorFlow (inside its handler, to analyse the model); the
other commands read and write the store alone.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from decimal import Decimal
from pathlib import Path
from typing import Iterator

from workbench.cli import common
from workbench.cli.common import EXIT_USAGE, CliError
from workbench.report import human_count


# Argument types: argparse reports their errors as usage errors (exit status 2)
# naming the option.
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def candidate_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 2:
        raise argparse.ArgumentTypeError(
            f"expected an integer of at least 2 (the candidate ratios are i/N for i = 1 .. N-1), received {text!r}"
        )
    return value


def target_ratio(text: str) -> Decimal:
    from workbench.costs import check_ratio

    try:
        check_ratio(text, "target")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a cost ratio in (0, 1], e.g. 0.5, received {text!r}") from None
    return Decimal(text)


def layer_ratio(text: str) -> Decimal | None:
    if text.lower() == "none":
        return None
    try:
        return target_ratio(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a ratio in (0, 1] or 'none', received {text!r}") from None


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Turn the store's and the engine's expected errors into one-line CLI errors."""
    from store import JobConflict, ScoreConflictError, StoreError
    from workbench.scores import ScoreFileError

    try:
        yield
    except (JobConflict, ScoreConflictError) as error:
        raise CliError(str(error)) from None
    except StoreError as error:
        raise CliError(str(error)) from None
    except ScoreFileError as error:
        raise CliError(str(error)) from None
    except (FileExistsError, FileNotFoundError) as error:
        raise CliError(str(error)) from None
    except ValueError as error:
        raise CliError(str(error), EXIT_USAGE) from None


def open_cli_store(args, readonly: bool = False):
    """Open the store named by --store (or the default one).

    Raises:
        CliError: for a read-only open of a store file that does not exist,
            which is never created: the named project is not found.
    """
    from store import open_store

    path = common.resolve_store_path(args)
    if readonly and not path.exists():
        name = getattr(args, "name", None)
        subject = f"Project {name!r} not found" if name else "No projects found"
        raise CliError(
            f"{subject}: the store '{path}' does not exist yet. "
            "Create a project with: svd-workbench init NAME --model FILE --evaluator SPEC"
        )
    with store_errors():
        return open_store(path, readonly=readonly)


def jsonable(value):
    """Convert dataclasses, Decimals and Decimal-keyed dicts to JSON values; ratios become strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: jsonable(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


def register(subparsers) -> None:
    init = subparsers.add_parser(
        "init",
        help="create a project from a Keras model and an evaluator, and analyse the model's layers",
        description="Create a project and fill its layer table from the model file. Loads TensorFlow.",
    )
    init.add_argument("name", metavar="NAME", help="project name, unique in the store")
    init.add_argument("--model", required=True, metavar="FILE", help="Keras model file (.keras or .h5)")
    init.add_argument(
        "--evaluator",
        required=True,
        metavar="SPEC",
        help="evaluator that scores a model, higher is better: 'package.module:function', "
        "'path/to/file.py:function' (called as f(model, iterations) or f(model, iterations, use_cuda)), "
        "or 'accuracy:FILE.npz' (top-1 accuracy on the arrays x and y, 100 images per iteration)",
    )
    init.add_argument(
        "--metric",
        choices=("mac", "memory"),
        default="mac",
        help="cost that ratios measure: multiply-accumulates (mac) or kernel weights (memory) (default: mac)",
    )
    init.add_argument(
        "--target",
        type=target_ratio,
        default=Decimal("0.5"),
        metavar="R",
        help="target cost ratio of the compressed model in (0, 1], compressed cost over original cost (default: 0.5)",
    )
    init.add_argument(
        "--candidates",
        type=candidate_count,
        default=10,
        metavar="N",
        help="number N of candidate ratios per layer: i/N for i = 1 .. N-1 are evaluated (default: 10)",
    )
    init.add_argument(
        "--multiplicity",
        type=positive_int,
        default=1,
        metavar="M",
        help="round every rank up to a multiple of M (default: 1)",
    )
    init.add_argument(
        "--ignore",
        nargs="+",
        default=[],
        metavar="LAYER",
        help="layers to leave uncompressed, by name ('block/conv1' inside a nested model)",
    )
    init.add_argument(
        "--eval-iterations",
        type=positive_int,
        default=None,
        metavar="N",
        help="iterations passed to the evaluator per evaluation; for 'accuracy:' one iteration is 100 images "
        "(default: the whole evaluation set)",
    )
    common.add_store_option(init)
    init.set_defaults(handler=init_command)

    listing = subparsers.add_parser("list", help="list the projects of the store")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    common.add_store_option(listing)
    listing.set_defaults(handler=list_command)

    show = subparsers.add_parser("show", help="show a project's settings, layers, scores and selection")
    show.add_argument("name", metavar="NAME", help="project name")
    show.add_argument("--json", action="store_true", help="print JSON instead of tables")
    common.add_store_option(show)
    show.set_defaults(handler=show_command)

    select = subparsers.add_parser(
        "select",
        help="choose per-layer ratios by greedy selection on the cached scores",
        description="Run greedy selection on the cached scores and store the result as the current selection. "
        "Needs no TensorFlow.",
    )
    select.add_argument("name", metavar="NAME", help="project name")
    select.add_argument(
        "--target",
        type=target_ratio,
        default=None,
        metavar="R",
        help="target cost ratio in (0, 1], compressed cost over original cost (default: the project's target)",
    )
    common.add_store_option(select)
    select.set_defaults(handler=select_command)

    setter = subparsers.add_parser("set", help="set one layer's ratio by hand")
    setter.add_argument("name", metavar="NAME", help="project name")
    setter.add_argument("layer", metavar="LAYER", help="layer name, as 'show' lists it")
    setter.add_argument(
        "ratio",
        type=layer_ratio,
        metavar="RATIO",
        help="cost ratio of the layer in (0, 1], compressed cost over original cost, or 'none' to leave it uncompressed",
    )
    common.add_store_option(setter)
    setter.set_defaults(handler=set_command)

    scores = subparsers.add_parser("scores", help="import or export cached scores (.pkl as AIMET writes, or .json)")
    actions = scores.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (
        ("import", "add the scores of FILE to the project's cache"),
        ("export", "write the project's cached scores to FILE"),
    ):
        parser = actions.add_parser(action, help=text)
        parser.add_argument("name", metavar="NAME", help="project name")
        parser.add_argument(
            "file", metavar="FILE", type=Path, help="score file: .json (svd-workbench) or .pkl (AIMET's eval-score dict)"
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="import: overwrite cached scores that differ from the file's; export: overwrite FILE",
        )
        common.add_store_option(parser)
        parser.set_defaults(handler=scores_command)
    common.add_store_option(scores)


# init


def init_command(args) -> int:
    from store import ProjectExists
    from workbench.evaluators import EvaluatorSpecError, check_evaluator
    from workbench.jobs.analyse import ModelFileError, analyse_model_file, check_model_file, unknown_layers

    try:
        model_path = check_model_file(args.model).absolute()
    except ModelFileError as error:
        raise CliError(str(error)) from None
    store = open_cli_store(args)
    with store, store_errors():
        if any(project.name == args.name for project in store.list_projects()):
            raise CliError(f"A project named {args.name!r} already exists. Choose another name.")
        try:
            # This process loads TensorFlow for the analysis anyway, so the
            # evaluator is imported here rather than in a child process.
            checked = check_evaluator(args.evaluator, args.eval_iterations, isolated=False)
        except EvaluatorSpecError as error:
            raise CliError(str(error)) from None
        common.quiet_tensorflow()
        print(f"Analysing {model_path.name} ...", file=sys.stderr)
        try:
            records, model_hash = analyse_model_file(model_path)
        except ModelFileError as error:
            raise CliError(str(error)) from None
        missing = unknown_layers(args.ignore, records)
        if missing:
            names = [record.name for record in records if record.eligible]
            raise CliError(f"--ignore names layers that the model does not have: {missing}. Compressible layers: {names}.", EXIT_USAGE)
        # Accepted, because ignoring a layer that is never compressed does what the user asked.
        for record in records:
            if record.name in args.ignore and not record.eligible:
                print(
                    f"svd-workbench: note: --ignore {record.name}: the layer is not compressible "
                    f"({record.reason}), so it is never compressed anyway.",
                    file=sys.stderr,
                )
        try:
            with store.transaction():
                store.create_project(
                    args.name,
                    model_path,
                    checked.spec.text,
                    checked.key,
                    model_hash=model_hash,
                    eval_iterations=args.eval_iterations,
                    metric=args.metric,
                    target=args.target,
                    candidates=args.candidates,
                    multiplicity=args.multiplicity,
                    ignored=args.ignore,
                )
                store.set_layers(args.name, records)
        except ProjectExists as error:
            raise CliError(str(error)) from None
        project = store.get_project(args.name)
        tasks = len(store.missing_tasks(project))
        baseline_missing = store.baseline(project) is None
    eligible = [record for record in records if record.eligible]
    print(f"Created project {project.name!r} in {store.path}.")
    print(
        f"  model: {model_path} ({len(records)} weighted layers, {len(eligible)} compressible, "
        f"{human_count(project.baseline_macs)} MACs, {human_count(project.baseline_params)} parameters)"
    )
    print(f"  evaluator: {checked.spec.text} ({checked.description})")
    print(
        f"  metric {project.metric}, target {project.target}, {project.candidates} candidates, "
        f"multiplicity {project.multiplicity}"
        + (f", ignoring {', '.join(project.ignored)}" if project.ignored else "")
    )
    if tasks == 0 and not baseline_missing:
        print(f"Every score is cached. Next: svd-workbench select {project.name}")
    else:
        baseline_text = " and the baseline" if baseline_missing else ""
        print(f"Next: svd-workbench search {project.name}   ({tasks} evaluations{baseline_text})")
    return 0


# list and show


def project_overview(store, project) -> dict:
    from workbench.jobs.status import job_report

    jobs = store.jobs(project, limit=1)
    return {
        "name": project.name,
        "model_path": project.model_path,
        "evaluator_spec": project.evaluator_spec,
        "metric": project.metric,
        "target": str(project.target),
        "candidates": project.candidates,
        "missing_scores": len(store.missing_tasks(project)),
        "baseline": store.baseline(project),
        "last_job": job_report(store, jobs[0]) if jobs else None,
    }


def list_command(args) -> int:
    store_path = common.resolve_store_path(args)
    if not store_path.exists():
        if args.json:
            common.print_json([])
        else:
            print(
                f"No projects yet: the store '{store_path}' does not exist. "
                "Create one with: svd-workbench init NAME --model FILE --evaluator SPEC"
            )
        return 0
    store = open_cli_store(args, readonly=True)
    with store, store_errors():
        overviews = [project_overview(store, project) for project in store.list_projects()]
    if args.json:
        common.print_json(overviews)
        return 0
    if not overviews:
        print(f"No projects in {store.path}. Create one with: svd-workbench init NAME --model FILE --evaluator SPEC")
        return 0
    print(f"{'NAME':<20} {'MODEL':<24} {'METRIC':<6} {'TARGET':>6} {'MISSING':>7}  LAST JOB")
    for item in overviews:
        job = item["last_job"]
        job_text = f"{job['kind']} {job['state']}" if job else "-"
        print(
            f"{item['name']:<20} {Path(item['model_path']).name:<24} {item['metric']:<6} "
            f"{item['target']:>6} {item['missing_scores']:>7}  {job_text}"
        )
    return 0


def show_command(args) -> int:
    from workbench.selection import format_ratio

    store = open_cli_store(args, readonly=True)
    with store, store_errors():
        project = store.get_project(args.name)
        rows = store.layer_table(project)
        summary = store.summary(project)
        overview = project_overview(store, project)
    if args.json:
        common.print_json(
            {
                "project": jsonable(project),
                "summary": jsonable(summary),
                "layers": [jsonable(row) for row in rows],
                "last_job": overview["last_job"],
            }
        )
        return 0
    print(f"Project {project.name!r}")
    print(f"  model:      {project.model_path} (sha256 {project.model_hash[:12]})")
    print(f"  evaluator:  {project.evaluator_spec}, iterations {project.eval_iterations or 'all'}")
    print(
        f"  settings:   metric {project.metric}, target {project.target}, {project.candidates} candidates, "
        f"multiplicity {project.multiplicity}, ignored {list(project.ignored) or 'none'}"
    )
    baseline = "missing" if summary.baseline is None else f"{summary.baseline:.4f}"
    predicted = "?" if summary.predicted is None else f"{summary.predicted:.4f}"
    print(
        f"  scores:     baseline {baseline}, {summary.missing_scores} candidate score(s) missing; "
        f"predicted score of the selection {predicted} (an estimate)"
    )
    print(
        f"  selection:  {summary.compressed_layers} layer(s) compressed; MAC ratio {summary.mac_ratio:.4f} "
        f"({human_count(summary.macs_before)} -> {human_count(summary.macs_after)}), memory ratio "
        f"{summary.memory_ratio:.4f}, parameters {human_count(summary.params_before)} -> {human_count(summary.params_after)}"
    )
    print()
    print(f"{'LAYER':<28} {'CLASS':<16} {'MACS':>9} {'SHARE':>6} {'RATIO':>6} {'RANK':>9} {'SCORE':>8}  SCORES")
    for row in rows:
        if not row.eligible:
            note = f"not compressible: {row.reason}"
        elif row.ignored:
            note = "ignored"
        else:
            note = f"{len(row.scores)} cached, {row.missing} missing"
        rank = f"{row.rank}/{row.max_rank}" if row.rank is not None else "-"
        if row.score is None:
            score = "-"
        else:
            # '~' marks a score interpolated between cached candidates.
            score = f"{row.score:.4f}" if row.score_exact else f"{row.score:.4f}~"
        print(
            f"{row.name:<28} {row.class_name:<16} {human_count(row.macs):>9} {row.cost_share:>6.1%} "
            f"{format_ratio(row.ratio):>6} {rank:>9} {score:>8}  {note}"
        )
    if overview["last_job"]:
        from workbench.jobs.status import format_job_report

        print()
        print(format_job_report(overview["last_job"]))
    return 0


# select and set


def select_command(args) -> int:
    from workbench.selection import format_ratio

    store = open_cli_store(args)
    with store, store_errors():
        project = store.get_project(args.name)
        missing = len(store.missing_tasks(project))
        result = store.auto_select(project, args.target)
        rows = store.layer_table(project)
        summary = store.summary(project)
    for row in rows:
        if row.eligible:
            rank = f"rank {row.rank}/{row.max_rank}" if row.rank is not None else "uncompressed"
            print(f"{row.name:<28} {format_ratio(row.ratio):>6}  {rank}")
    print(
        f"Target {format_ratio(result.target)}, achieved {project.metric} ratio {result.achieved:.4f} "
        f"(MAC ratio {summary.mac_ratio:.4f}, memory ratio {summary.memory_ratio:.4f})."
    )
    if not result.reachable:
        print(f"svd-workbench: warning: target not reached. {result.message}", file=sys.stderr)
    elif result.notes:
        print(f"svd-workbench: note: {result.message}", file=sys.stderr)
    if missing:
        print(
            f"svd-workbench: warning: {missing} candidate score(s) are missing, so the selection uses only the "
            f"cached ones. Run: svd-workbench search {project.name}",
            file=sys.stderr,
        )
    return 0


def set_command(args) -> int:
    from workbench.selection import format_ratio

    store = open_cli_store(args)
    with store, store_errors():
        store.set_layer_ratio(args.name, args.layer, args.ratio)
        row = next(row for row in store.layer_table(args.name) if row.name == args.layer)
        summary = store.summary(args.name)
    rank = f"rank {row.rank}/{row.max_rank}" if row.rank is not None else "uncompressed"
    print(f"{row.name}: ratio {format_ratio(row.ratio)}, {rank}.")
    print(f"Model: MAC ratio {summary.mac_ratio:.4f}, memory ratio {summary.memory_ratio:.4f}.")
    return 0


# scores import|export


def scores_command(args) -> int:
    store = open_cli_store(args)
    with store, store_errors():
        if args.action == "import":
            report = store.import_scores(args.name, args.file, force=args.force)
            print(
                f"Imported {args.file}: {report.added} added, {report.unchanged} unchanged, "
                f"{report.overwritten} overwritten; baseline {report.baseline}."
            )
        else:
            path = store.export_scores(args.name, args.file, force=args.force)
            print(f"Wrote the cached scores of project {args.name!r} to {path}.")
    return 0
