"""Projects and their layer database."""

from __future__ import annotations

import copy
import json
import os
from collections import Counter
from typing import Iterable, Sequence

from workbench.costs import check_multiplicity, metric_name
from workbench.records import LayerRecord

from store.base import StoreBase
from store.connection import hash_file
from store.errors import JobConflict, ProjectExists
from store.rows import Project, ScoreKey, ratio_text, utc_now

# Fields that update_project accepts; baseline totals follow from set_layers.
PROJECT_FIELDS = (
    "name",
    "model_path",
    "model_hash",
    "evaluator_spec",
    "evaluator_key",
    "eval_iterations",
    "metric",
    "target",
    "candidates",
    "multiplicity",
    "ignored",
    "monotonic_fit",
)


def require_text(value, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"Expected {what} to be a non-empty string. Received: {what}={value!r}")
    return value


def require_int(value, what: str, minimum: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Expected {what} to be an integer of at least {minimum}{hint}. Received: {what}={value!r}")
    return value


def clean_project_fields(fields: dict) -> dict:
    """Validate project fields and convert them to column values.

    Raises:
        ValueError: naming the first invalid field and its value.
    """
    unknown = sorted(set(fields) - set(PROJECT_FIELDS))
    if unknown:
        raise ValueError(f"Unknown project field(s) {unknown}. Expected some of: {', '.join(PROJECT_FIELDS)}.")
    columns = {}
    for key, value in fields.items():
        if key in ("name", "evaluator_spec", "evaluator_key", "model_hash"):
            columns[key] = require_text(value, key)
        elif key == "model_path":
            columns[key] = os.path.abspath(os.fspath(value))
        elif key == "eval_iterations":
            if value is not None:
                require_int(value, key, 1, ", or None for the whole evaluation set")
            columns[key] = value
        elif key == "metric":
            columns[key] = metric_name(value)
        elif key == "target":
            columns[key] = ratio_text(value, "target")
        elif key == "candidates":
            columns[key] = require_int(value, key, 2, " (the candidate ratios are i/N for i = 1 .. N-1)")
        elif key == "multiplicity":
            columns[key] = check_multiplicity(value)
        elif key == "ignored":
            columns[key] = json.dumps(clean_layer_names(value, "ignored"))
        elif key == "monotonic_fit":
            if not isinstance(value, bool):
                raise ValueError(f"Expected monotonic_fit to be True or False. Received: monotonic_fit={value!r}")
            columns[key] = int(value)
    return columns


def clean_layer_names(names, what: str) -> list[str]:
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise ValueError(f"Expected {what} to be a list of layer names. Received: {what}={names!r}")
    cleaned: list[str] = []
    for name in names:
        require_text(name, f"a layer name in {what}")
        if name not in cleaned:
            cleaned.append(name)
    return cleaned


class ProjectsMixin(StoreBase):
    def create_project(
        self,
        name: str,
        model_path: str | os.PathLike,
        evaluator_spec: str,
        evaluator_key: str,
        *,
        model_hash: str | None = None,
        eval_iterations: int | None = None,
        metric: str = "mac",
        target="0.5",
        candidates: int = 10,
        multiplicity: int = 1,
        ignored: Sequence[str] = (),
        monotonic_fit: bool = False,
    ) -> Project:
        """Create a project.

        Args:
            name: Unique project name.
            model_path: The Keras model file; stored as an absolute path.
            evaluator_spec: How to build the evaluator, e.g. 'accuracy:data.npz'.
            evaluator_key: Identity of the evaluator's results (see
                `make_evaluator_key`); part of every score key.
            model_hash: sha256 of the model file; computed from `model_path`
                when None.
            eval_iterations: Iterations per evaluation; None for the whole set.
            metric: 'mac' or 'memory', the cost that ratios are measured in.
            target: Target cost ratio in (0, 1], stored as a decimal string.
            candidates: N; the candidate ratios are i/N for i = 1 .. N-1.
            multiplicity: Ranks are rounded up to a multiple of this.
            ignored: Layers that auto-select leaves uncompressed.
            monotonic_fit: Select on the monotonic fit of each score curve.

        Raises:
            ProjectExists: if the name is taken.
            ValueError: for an invalid field, naming it.
            FileNotFoundError: if `model_hash` is None and the model file is missing.
        """
        fields = {
            "name": name,
            "model_path": model_path,
            "evaluator_spec": evaluator_spec,
            "evaluator_key": evaluator_key,
            "eval_iterations": eval_iterations,
            "metric": metric,
            "target": target,
            "candidates": candidates,
            "multiplicity": multiplicity,
            "ignored": ignored,
            "monotonic_fit": monotonic_fit,
        }
        columns = clean_project_fields(fields)
        columns["model_hash"] = require_text(model_hash, "model_hash") if model_hash is not None else hash_file(model_path)
        now = utc_now()
        columns.update(created=now, updated=now)
        with self.transaction():
            if self._query("SELECT 1 FROM projects WHERE name = ?", [name]):
                raise ProjectExists(f"A project named {name!r} already exists. Choose another name or delete it first.")
            self._db["projects"].insert(columns)
        return self.get_project(name)

    def get_project(self, name: str) -> Project:
        """Return a project by name.

        Raises:
            ProjectNotFound: listing the existing names.
        """
        return self._project(name)

    def list_projects(self) -> list[Project]:
        return [Project.from_row(row) for row in self._query("SELECT * FROM projects ORDER BY name")]

    def update_project(self, name: str, /, **fields) -> Project:
        """Change project fields; accepts the keyword arguments of `create_project`, and `name`.

        A new `model_path` without a `model_hash` hashes the new file. Scores stay
        keyed by the old hash, so a new model file or evaluator key starts from
        an empty score cache. The layers stay until `set_layers` replaces them.
        Layers that become ignored while selected are reset to uncompressed in
        one 'manual' revision.

        Raises:
            ProjectNotFound, ProjectExists (for a taken new name), ValueError.
        """
        columns = clean_project_fields(fields)
        if "model_path" in columns and "model_hash" not in columns:
            columns["model_hash"] = hash_file(columns["model_path"])
        with self.transaction():
            project = self._project(name)
            new_name = columns.get("name", project.name)
            if new_name != project.name and self._query("SELECT 1 FROM projects WHERE name = ?", [new_name]):
                raise ProjectExists(f"Cannot rename project {project.name!r} to {new_name!r}: that name is taken.")
            if "ignored" in columns:
                self._check_ignored(project, json.loads(columns["ignored"]))
            if columns:
                columns["updated"] = utc_now()
                self._db["projects"].update(project.id, columns)
        return self.get_project(new_name)

    def _check_ignored(self, project: Project, ignored: list[str]) -> None:
        """Reject ignored names that are not layers, and unselect newly ignored layers."""
        names = {row["name"] for row in self._query("SELECT name FROM layers WHERE project_id = ?", [project.id])}
        if names:
            unknown = [layer for layer in ignored if layer not in names]
            if unknown:
                raise ValueError(f"Cannot ignore layers that project {project.name!r} does not have: {unknown}.")
        selected = {layer for layer, ratio in self.selection(project).items() if ratio is not None}
        newly_ignored = [layer for layer in ignored if layer in selected and layer not in project.ignored]
        if newly_ignored:
            self._record_revision(
                project.id, "manual", "ignore " + ", ".join(newly_ignored), {layer: None for layer in newly_ignored}
            )

    def delete_project(self, name: str) -> None:
        """Delete a project with its layers, selection history, jobs and export records.

        Cached scores and baselines stay: they are keyed by model and evaluator,
        not by project, and another project may use them.

        Raises:
            ProjectNotFound: if there is no such project.
            JobConflict: while one of its jobs is queued or running with a live
                process.
        """
        with self.transaction():
            project = self._project(name)
            for job in self.jobs(project):
                if job.active and self.job_liveness(job) != "dead":
                    raise JobConflict(
                        f"Cannot delete project {name!r} while its {job.kind} job {job.id} is {job.status} "
                        f"(pid {job.pid} on {job.host}). Cancel it first.",
                        job.id,
                        job.pid,
                    )
            self._conn.execute("DELETE FROM projects WHERE id = ?", [project.id])

    def score_key(self, project: str | Project) -> ScoreKey:
        """Return the key of the scores that the project's current settings reuse."""
        return self._project(project).score_key

    def set_layers(self, project: str | Project, records: Sequence[LayerRecord]) -> None:
        """Replace the project's layer database and its baseline parameter, MAC and memory totals.

        Raises:
            ValueError: if a record is not a LayerRecord or two share a name.
        """
        records = list(records)
        for record in records:
            if not isinstance(record, LayerRecord):
                raise ValueError(f"Expected LayerRecord items in records. Received: {type(record).__name__}")
        duplicates = sorted(name for name, count in Counter(record.name for record in records).items() if count > 1)
        if duplicates:
            raise ValueError(f"Layer names must be unique within a model. Repeated: {duplicates}")
        with self.transaction():
            project = self._project(project)
            self._conn.execute("DELETE FROM layers WHERE project_id = ?", [project.id])
            rows = [
                {
                    "project_id": project.id,
                    "position": position,
                    "name": record.name,
                    "class_name": record.class_name,
                    "eligible": int(record.eligible),
                    "reason": record.reason,
                    "macs": record.macs,
                    "memory": record.memory,
                    "params": record.params,
                    "record": json.dumps(record.to_dict()),
                }
                for position, record in enumerate(records)
            ]
            self._db["layers"].insert_all(rows)
            self._conn.execute(
                "UPDATE projects SET baseline_params = ?, baseline_macs = ?, baseline_memory = ?, "
                "layers_revision = layers_revision + 1, updated = ? WHERE id = ?",
                [
                    sum(record.params for record in records),
                    sum(record.macs for record in records),
                    sum(record.memory for record in records),
                    utc_now(),
                    project.id,
                ],
            )

    def layers(self, project: str | Project) -> list[LayerRecord]:
        """Return the project's layer records in model order (copies, safe to change)."""
        with self._read():
            records = self._cached_layers(self._project(project))
        return [copy.copy(record) for record in records]

    def _cached_layers(self, project: Project) -> list[LayerRecord]:
        """Return the parsed layer records, parsing the JSON once per `set_layers` call.

        The cache key (project id, layers_revision) changes whenever any
        process replaces the layers, and project ids are never reused.
        Callers must not change the returned records.
        """
        key = (project.id, project.layers_revision)
        records = self._layer_cache.get(key)
        if records is None:
            rows = self._query("SELECT record FROM layers WHERE project_id = ? ORDER BY position", [project.id])
            records = [LayerRecord.from_dict(json.loads(row["record"])) for row in rows]
            self._layer_cache = {key: records, **{k: v for k, v in self._layer_cache.items() if k[0] != project.id}}
        return records
