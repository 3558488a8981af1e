"""Exceptions raised by the project store."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of the errors that the store raises on purpose."""


class StoreVersionError(StoreError):
    """The store file has a schema version this program cannot open.

    Raised for a store written by a newer svd-workbench (the file is left
    untouched), and for an older store opened read-only, which cannot be migrated.
    """

    def __init__(self, message: str, found: int, supported: int):
        super().__init__(message)
        self.found = found
        self.supported = supported


class StoreCorruptError(StoreError):
    """The store file is not an SQLite database, or fails `PRAGMA quick_check`."""

    def __init__(self, message: str, path):
        super().__init__(message)
        self.path = path


class StoreReadOnlyError(StoreError):
    """A write was attempted through a store opened with `readonly=True`."""


class LayerNotFound(StoreError, ValueError):
    """A project has no layer of the requested name.

    A ValueError too, as callers that catch the invalid-selection ValueError
    expect.
    """

    def __init__(self, layer: str, project: str, compressible: list[str]):
        shown = ", ".join(compressible) if compressible else "none"
        super().__init__(f"Layer {layer!r} not found in project {project!r}. Compressible layers: {shown}.")
        self.layer = layer
        self.project = project
        self.compressible = compressible


class ProjectNotFound(StoreError, LookupError):
    """No project has the requested name."""

    def __init__(self, name: str, existing: list[str]):
        shown = ", ".join(repr(item) for item in existing) if existing else "none"
        super().__init__(f"Project {name!r} not found. Existing projects: {shown}.")
        self.name = name
        self.existing = existing


class ProjectExists(StoreError):
    """A project with the requested name already exists."""


class JobNotFound(StoreError, LookupError):
    """No job has the requested id."""


class JobConflict(StoreError):
    """A second active job of a kind that allows only one per project was requested."""

    def __init__(self, message: str, job_id: int, pid: int | None):
        super().__init__(message)
        self.job_id = job_id
        self.pid = pid


class ScoreConflictError(StoreError):
    """An import would overwrite cached scores with different values.

    `conflicts` lists `(layer, ratio, cached score, imported score)`; `ratio` is
    None for the baseline.
    """

    def __init__(self, message: str, conflicts: list):
        super().__init__(message)
        self.conflicts = conflicts
