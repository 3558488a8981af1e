"""The score cache: per-layer eval scores and baselines, and score-file import and export."""

from __future__ import annotations

import math
import os
from decimal import Decimal
from pathlib import Path
from typing import Iterable

from workbench.scores import ScoreFileError, load_scores, save_scores
from workbench.selection import ScoreDict, candidate_ratios

from store.base import StoreBase
from store.errors import ScoreConflictError, StoreError
from store.rows import ImportReport, Project, ScoreKey, ratio_text, utc_now

SCORE_PK = ("model_hash", "evaluator_key", "metric", "multiplicity", "layer", "ratio")
BASELINE_PK = ("model_hash", "evaluator_key")
SCORE_FILE_SUFFIXES = (".json", ".pkl", ".pickle")

# Maximum number of conflicts an error message lists before "and N more".
CONFLICTS_SHOWN = 5


def check_score(score, what: str = "score") -> float:
    if isinstance(score, bool) or not isinstance(score, (int, float, Decimal)):
        raise ValueError(f"Expected {what} to be a number. Received: {what}={score!r}")
    value = float(score)
    if not math.isfinite(value):
        raise ValueError(f"Expected {what} to be a finite number. Received: {what}={score!r}")
    return value


def check_seconds(seconds) -> float | None:
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise ValueError(f"Expected seconds to be a number of at least 0, or None. Received: seconds={seconds!r}")
    return float(seconds)


def check_rank(rank) -> int | None:
    if rank is None:
        return None
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"Expected rank to be a positive integer, or None. Received: rank={rank!r}")
    return rank


def describe_conflicts(conflicts: list) -> str:
    shown = []
    for layer, ratio, cached, imported in conflicts[:CONFLICTS_SHOWN]:
        where = "baseline" if ratio is None else f"{layer} at {ratio}"
        shown.append(f"{where}: cached {cached!r}, file {imported!r}")
    more = f" and {len(conflicts) - CONFLICTS_SHOWN} more" if len(conflicts) > CONFLICTS_SHOWN else ""
    return "; ".join(shown) + more


class ScoresMixin(StoreBase):
    def _resolve_key(self, key: ScoreKey | str | Project) -> ScoreKey:
        return key if isinstance(key, ScoreKey) else self.score_key(key)

    def put_score(
        self,
        key: ScoreKey | str | Project,
        layer: str,
        ratio,
        score: float,
        *,
        rank: int | None = None,
        seconds: float | None = None,
    ) -> None:
        """Insert or replace one cached score in a single short transaction.

        Args:
            key: The score key the search was started with (`score_key(project)`),
                or a project whose current key to use. A job should keep the key it
                started with, so that scores of an old evaluator are never stored
                under a new one.
            layer: Layer name.
            ratio: Candidate ratio in (0, 1]; stored as its canonical decimal string.
            score: Finite evaluator result with only this layer compressed.
            rank: The rank the ratio gave.
            seconds: How long the evaluation took.

        Raises:
            ValueError: for an invalid ratio, score, rank or seconds.
        """
        self.put_scores(key, [(layer, ratio, score, rank, seconds)])

    def put_scores(self, key: ScoreKey | str | Project, entries: Iterable[tuple]) -> int:
        """Insert or replace several scores in one transaction.

        Args:
            entries: Tuples `(layer, ratio, score)` or `(layer, ratio, score,
                rank, seconds)`.

        Returns:
            The number of scores written.
        """
        key = self._resolve_key(key)
        now = utc_now()
        rows = []
        for entry in entries:
            layer, ratio, score, rank, seconds = (tuple(entry) + (None, None))[:5]
            rows.append(
                {
                    "model_hash": key.model_hash,
                    "evaluator_key": key.evaluator_key,
                    "metric": key.metric,
                    "multiplicity": key.multiplicity,
                    "layer": self._check_layer_name(layer),
                    "ratio": ratio_text(ratio),
                    "rank": check_rank(rank),
                    "score": check_score(score),
                    "seconds": check_seconds(seconds),
                    "created": now,
                }
            )
        if rows:
            with self.transaction():
                self._db["scores"].upsert_all(rows, pk=SCORE_PK)
        return len(rows)

    @staticmethod
    def _check_layer_name(layer) -> str:
        if not isinstance(layer, str) or not layer:
            raise ValueError(f"Expected layer to be a non-empty string. Received: layer={layer!r}")
        return layer

    def put_baseline(self, key: ScoreKey | str | Project, score: float, *, seconds: float | None = None) -> None:
        """Insert or replace the baseline score of a model and evaluator (metric does not matter)."""
        key = self._resolve_key(key)
        row = {
            "model_hash": key.model_hash,
            "evaluator_key": key.evaluator_key,
            "score": check_score(score, "baseline"),
            "seconds": check_seconds(seconds),
            "created": utc_now(),
        }
        with self.transaction():
            self._db["baselines"].upsert(row, pk=BASELINE_PK)

    def scores(self, project: str | Project) -> ScoreDict:
        """Return the cached eval-score dict `{layer: {Decimal(ratio): score}}` of the project.

        Only scores of the project's current model hash, evaluator key, metric
        and multiplicity count, at every ratio cached for them, including ratios
        that are not candidates of the current candidate count.
        """
        with self._read():
            return self._scores_for_key(self._project(project).score_key)

    def _scores_for_key(self, key: ScoreKey) -> ScoreDict:
        """Read the scores of a key, each curve in increasing ratio.

        Canonical ratio strings of (0, 1] sort as text in numeric order ('0.25' <
        '0.3333' < '0.5' < '1'), so ORDER BY ratio sorts the curves, and the
        primary key index already has that order.
        """
        with self._lock:
            cursor = self._conn.cursor()
            cursor.row_factory = None  # plain tuples: this query returns thousands of rows
            rows = cursor.execute(
                "SELECT layer, ratio, score FROM scores "
                "WHERE model_hash = ? AND evaluator_key = ? AND metric = ? AND multiplicity = ? "
                "ORDER BY layer, ratio",
                [key.model_hash, key.evaluator_key, key.metric, key.multiplicity],
            ).fetchall()
        decimals: dict[str, Decimal] = {}  # few distinct ratios: convert each once
        scores: ScoreDict = {}
        for layer, ratio, score in rows:
            value = decimals.get(ratio)
            if value is None:
                value = decimals[ratio] = Decimal(ratio)
            curve = scores.get(layer)
            if curve is None:
                curve = scores[layer] = {}
            curve[value] = score
        return scores

    def baseline(self, project: str | Project) -> float | None:
        """Return the cached baseline score of the project's model and evaluator, or None."""
        with self._read():
            return self._baseline_for_key(self._project(project).score_key)

    def _baseline_for_key(self, key: ScoreKey) -> float | None:
        rows = self._query(
            "SELECT score FROM baselines WHERE model_hash = ? AND evaluator_key = ?",
            [key.model_hash, key.evaluator_key],
        )
        return rows[0]["score"] if rows else None

    def missing_tasks(self, project: str | Project) -> list[tuple[str, Decimal]]:
        """Return the (layer, candidate ratio) pairs with no cached score, in model order.

        Covers the eligible layers that are not ignored, at the candidate ratios
        of the project's candidate count. The baseline is not a task here: check
        `baseline(project) is None`.
        """
        with self._read():
            project = self._project(project)
            records = self._cached_layers(project)
            scores = self._scores_for_key(project.score_key)
        return missing_pairs(project, records, scores)

    def import_scores(self, project: str | Project, path: str | os.PathLike, *, force: bool = False) -> ImportReport:
        """Import an AIMET pickle (.pkl) or svd-workbench JSON score file into the cache.

        The scores are stored under the project's current score key. Each layer
        of the file must be an eligible layer of the project; the file may cover
        only some of them. A baseline in a JSON file is imported too.

        Args:
            force: Overwrite cached scores that differ from the file's.

        Returns:
            An `ImportReport` with counts of added, unchanged and overwritten scores.

        Raises:
            ScoreFileError: if the file is unreadable, malformed, an untrusted
                pickle, or names unknown layers (listed in the message).
            ScoreConflictError: if a cached score differs and `force` is False;
                nothing is written then.
        """
        path = Path(path)
        file_scores, file_baseline = load_scores(path)
        with self.transaction():
            project = self._project(project)
            records = {record.name: record for record in self._cached_layers(project)}
            if not records:
                raise StoreError(
                    f"Project {project.name!r} has no layers yet; analyse its model before importing scores."
                )
            eligible = [name for name, record in records.items() if record.eligible]
            unknown = sorted(layer for layer in file_scores if layer not in eligible)
            if unknown:
                raise ScoreFileError(
                    f"The score file '{path}' names layers that are not compressible layers of project "
                    f"{project.name!r}: {unknown}. Compressible layers: {eligible}."
                )
            key = project.score_key
            cached = self._scores_for_key(key)
            report = ImportReport()
            rows = []
            for layer, curve in file_scores.items():
                geometry = records[layer].geometry
                for ratio, score in curve.items():
                    old = cached.get(layer, {}).get(ratio)
                    if old is not None and old == score:
                        report.unchanged += 1
                        continue
                    if old is not None:
                        report.conflicts.append((layer, ratio, old, score))
                    rank = geometry.rank_for_ratio(ratio, key.metric, key.multiplicity)
                    rows.append((layer, ratio, score, rank, None))
            old_baseline = self._baseline_for_key(key)
            if file_baseline is not None:
                if old_baseline is None:
                    report.baseline = "added"
                elif old_baseline == file_baseline:
                    report.baseline = "unchanged"
                else:
                    report.baseline = "overwritten"
                    report.conflicts.append(("", None, old_baseline, file_baseline))
            if report.conflicts and not force:
                raise ScoreConflictError(
                    f"The score file '{path}' differs from {len(report.conflicts)} cached score(s) of project "
                    f"{project.name!r} ({describe_conflicts(report.conflicts)}). Nothing was imported. "
                    "To overwrite the cached scores, pass --force (force=True in Python).",
                    report.conflicts,
                )
            report.overwritten = sum(1 for _, ratio, _, _ in report.conflicts if ratio is not None)
            report.added = len(rows) - report.overwritten
            self.put_scores(key, rows)
            if report.baseline in ("added", "overwritten"):
                self.put_baseline(key, file_baseline)
        return report

    def export_scores(self, project: str | Project, path: str | os.PathLike, *, force: bool = False) -> Path:
        """Write the project's cached scores as an AIMET pickle (.pkl) or svd-workbench JSON (.json).

        JSON carries the baseline too; AIMET's pickle format has no place for it.

        Raises:
            ValueError: for another file suffix.
            FileExistsError: if `path` exists and `force` is False.
            StoreError: if the project has no cached scores.
        """
        path = Path(path)
        if path.suffix.lower() not in SCORE_FILE_SUFFIXES:
            raise ValueError(
                f"Expected a score file ending in .json, .pkl or .pickle. Received: path='{path}'"
            )
        if path.exists() and not force:
            raise FileExistsError(f"'{path}' already exists. To overwrite it, pass --force (force=True in Python).")
        with self._read():
            project = self._project(project)
            scores = self._scores_for_key(project.score_key)
            baseline = self._baseline_for_key(project.score_key)
        if not scores:
            raise StoreError(
                f"Project {project.name!r} has no cached scores for its current model and evaluator; "
                "run a search or import scores first."
            )
        return save_scores(path, scores, baseline)


def missing_pairs(project: Project, records, scores: ScoreDict) -> list[tuple[str, Decimal]]:
    ratios = candidate_ratios(project.candidates)
    ignored = set(project.ignored)
    missing = []
    for record in records:
        if not record.eligible or record.name in ignored:
            continue
        curve = scores.get(record.name, {})
        missing.extend((record.name, ratio) for ratio in ratios if ratio not in curve)
    return missing
