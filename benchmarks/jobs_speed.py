"""Time the same search with one loky worker and with two, and check that the scores match.

Each run creates a fresh store and project on the bundled demo model
(`workbench/demo/fashion_cnn.keras`) with the built-in evaluator
`accuracy:workbench/demo/fashion_eval.npz`, then runs

    svd-workbench --store STORE search demo --jobs N

as a child process, so every run pays the same start-up: the driver process,
its workers importing TensorFlow and loading the model. Runs alternate between
the job counts (1, 2, 1, 2, ...) so that a change in machine load affects both
alike. For each run the script prints three numbers. The wall time covers the whole
command. The search time is what the job row records from the job's start to
its end, so the workers' start-up is included. The steady rate counts the
evaluations stored after the first chunk, per second until the last chunk,
which leaves the start-up out. Then it prints
the medians, their ratios, and whether the score dicts of all runs are
identical. It exits with status 1 if they differ.

Run it from the repository root:

    python benchmarks/jobs_speed.py [--eval-iterations 5] [--candidates 10] [--repeats 1] [--jobs 1 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from store import open_store
from workbench.demo import eval_data_path, model_path


def svd_workbench(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "workbench.cli", *args]
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(command, capture_output=True, text=True, env=environment)
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with status {completed.returncode}:\n{completed.stderr}")
    return completed


def run_search(folder: Path, jobs: int, candidates: int, eval_iterations: int) -> dict:
    """Create a project in a new store under `folder`, search it with `jobs` workers, and return the timings."""
    store_path = folder / f"jobs{jobs}.db"
    svd_workbench(
        "--store", str(store_path), "init", "demo",
        "--model", str(model_path()),
        "--evaluator", f"accuracy:{eval_data_path()}",
        "--candidates", str(candidates),
        "--eval-iterations", str(eval_iterations),
    )

    started = time.perf_counter()
    svd_workbench("--store", str(store_path), "search", "demo", "--jobs", str(jobs))
    wall = time.perf_counter() - started

    with open_store(store_path, readonly=True) as store:
        job = store.jobs("demo")[0]
        scores = store.scores("demo")
        baseline = store.baseline("demo")
    search = (datetime.datetime.fromisoformat(job.finished) - datetime.datetime.fromisoformat(job.started)).total_seconds()
    # The store API has no per-score timestamps, so read them from the scores table.
    with sqlite3.connect(f"file:{store_path}?mode=ro", uri=True) as connection:
        times = sorted(datetime.datetime.fromisoformat(row[0]) for row in connection.execute("SELECT created FROM scores"))
    # Scores of one chunk share a timestamp, so the first chunk's scores open the interval.
    after_first_chunk = sum(1 for time_ in times if time_ > times[0])
    steady_rate = after_first_chunk / (times[-1] - times[0]).total_seconds()
    return {
        "jobs": jobs,
        "wall_s": wall,
        "search_s": search,
        "steady_rate": steady_rate,
        "evaluations": job.done,
        "scores": {layer: {str(ratio): score for ratio, score in curve.items()} for layer, curve in scores.items()},
        "baseline": baseline,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-iterations", type=int, default=5, help="evaluator iterations per evaluation (100 images each)")
    parser.add_argument("--candidates", type=int, default=10, help="candidate count N: ratios i/N for i = 1 .. N-1")
    parser.add_argument("--repeats", type=int, default=1, help="runs per job count")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="job counts to compare (default: 1 2)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()

    print(
        f"machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            for jobs in args.jobs:
                run_folder = Path(folder) / f"run{repeat}"
                run_folder.mkdir(exist_ok=True)
                result = run_search(run_folder, jobs, args.candidates, args.eval_iterations)
                runs.append(result)
                print(
                    f"--jobs {jobs}: {result['evaluations']} evaluations, wall {result['wall_s']:.1f} s, "
                    f"search {result['search_s']:.1f} s, steady rate {result['steady_rate']:.2f} eval/s"
                )

    reference = runs[0]
    identical = all(run["scores"] == reference["scores"] and run["baseline"] == reference["baseline"] for run in runs)
    medians = {}
    for jobs in args.jobs:
        chosen = [run for run in runs if run["jobs"] == jobs]
        medians[jobs] = [statistics.median(run[key] for run in chosen) for key in ("wall_s", "search_s", "steady_rate")]
        wall, search, rate = medians[jobs]
        print(f"median --jobs {jobs}: wall {wall:.1f} s, search {search:.1f} s, steady rate {rate:.2f} eval/s")
    first, *others = args.jobs
    for jobs in others:
        print(
            f"speed-up of --jobs {jobs} over --jobs {first}: wall {medians[first][0] / medians[jobs][0]:.2f}, "
            f"search {medians[first][1] / medians[jobs][1]:.2f}, steady rate {medians[jobs][2] / medians[first][2]:.2f}"
        )
    print(f"score dicts identical across all runs: {identical}")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "identical": identical}, indent=2))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
