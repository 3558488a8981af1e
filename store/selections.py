"""The selection of per-layer ratios, kept as revisions so that edits can be undone.

Each revision sets the ratios of some layers: an auto-select sets every
eligible layer, a manual edit sets one. A layer's current ratio comes from the
newest revision that set it and is not undone. Undo marks the newest revision
undone; no revision is ever deleted.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Mapping

from workbench.selection import format_ratio

from store.base import StoreBase
from store.errors import LayerNotFound
from store.rows import SELECTION_SOURCES, Project, Revision, optional_ratio, ratio_text, utc_now

# Per layer, the entry of the newest revision that set it and is not undone.
CURRENT_SELECTION_SQL = """
SELECT layer, ratio, source, revision_id FROM (
    SELECT e.layer, e.ratio, r.source, r.id AS revision_id,
           row_number() OVER (PARTITION BY e.layer ORDER BY r.id DESC) AS newest
    FROM selection_entries AS e
    JOIN selection_revisions AS r ON r.id = e.revision_id
    WHERE r.project_id = ? AND r.undone = 0
)
WHERE newest = 1
"""


class SelectionsMixin(StoreBase):
    def selection(self, project: str | Project) -> dict[str, Decimal | None]:
        """Return the current ratio of every eligible layer, in model order (None: uncompressed)."""
        return {layer: ratio for layer, (ratio, _) in self.selection_sources(project).items()}

    def selection_sources(self, project: str | Project) -> dict[str, tuple[Decimal | None, str | None]]:
        """Return `{layer: (ratio, source)}` for every eligible layer, in model order.

        `source` is 'auto' or 'manual' for the revision that set the ratio, None
        for a layer no revision has set.
        """
        with self._read():
            project = self._project(project)
            records = self._cached_layers(project)
            current = self._current_entries(project.id)
        result = {}
        for record in records:
            if record.eligible:
                ratio, source = current.get(record.name, (None, None))
                result[record.name] = (ratio, source)
        return result

    def _current_entries(self, project_id: int) -> dict[str, tuple[Decimal | None, str]]:
        rows = self._query(CURRENT_SELECTION_SQL, [project_id])
        return {row["layer"]: (optional_ratio(row["ratio"]), row["source"]) for row in rows}

    def set_selection(
        self,
        project: str | Project,
        mapping: Mapping[str, object],
        source: str = "manual",
        note: str | None = None,
    ) -> Revision:
        """Record the ratios of several layers as one revision.

        Args:
            mapping: Layer name to ratio in (0, 1], or None to leave it uncompressed.
            source: 'auto' or 'manual'.
            note: A line for the history, e.g. what produced the revision.

        Raises:
            ValueError: for an unknown source, an empty mapping, a layer that is
                not an eligible layer of the project, a ratio for an ignored
                layer, or a ratio outside (0, 1].
        """
        if source not in SELECTION_SOURCES:
            raise ValueError(f"Expected source 'auto' or 'manual'. Received: source={source!r}")
        if not mapping:
            raise ValueError("Expected at least one layer in the selection mapping. Received an empty mapping.")
        with self.transaction():
            project = self._project(project)
            entries = self._check_selection(project, mapping)
            revision_id = self._record_revision(project.id, source, note, entries)
        return self._revision(revision_id)

    def set_layer_ratio(self, project: str | Project, layer: str, ratio) -> Revision:
        """Set one layer's ratio (None: uncompressed) as a 'manual' revision.

        Raises:
            ValueError: if the layer is missing, ineligible or ignored, or the
                ratio is outside (0, 1].
        """
        if ratio is not None:
            ratio_text(ratio, f"ratio for layer '{layer}'")  # validate before format_ratio reads it
        note = f"set {layer} to {format_ratio(ratio)}"
        return self.set_selection(project, {layer: ratio}, "manual", note)

    def _check_selection(self, project: Project, mapping: Mapping[str, object]) -> dict[str, str | None]:
        """Validate a selection against the project's layers; return canonical ratio strings."""
        records = {record.name: record for record in self._cached_layers(project)}
        entries: dict[str, str | None] = {}
        for layer, ratio in mapping.items():
            record = records.get(layer)
            if record is None:
                compressible = [name for name, item in records.items() if item.eligible]
                raise LayerNotFound(layer, project.name, compressible)
            if not record.eligible:
                raise ValueError(
                    f"Layer {layer!r} of project {project.name!r} cannot be compressed: {record.reason or 'not eligible'}."
                )
            if ratio is not None and layer in project.ignored:
                raise ValueError(
                    f"Layer {layer!r} is ignored in project {project.name!r}; remove it from the ignored "
                    "layers before giving it a ratio."
                )
            entries[layer] = None if ratio is None else ratio_text(ratio, f"ratio for layer '{layer}'")
        return entries

    def _record_revision(self, project_id: int, source: str, note: str | None, entries: Mapping[str, str | None]) -> int:
        """Insert a revision and its entries; the caller must have opened a write transaction."""
        cursor = self._conn.execute(
            "INSERT INTO selection_revisions (project_id, source, note, created) VALUES (?, ?, ?, ?)",
            [project_id, source, note, utc_now()],
        )
        revision_id = cursor.lastrowid
        self._conn.executemany(
            "INSERT INTO selection_entries (revision_id, layer, ratio) VALUES (?, ?, ?)",
            [(revision_id, layer, ratio) for layer, ratio in entries.items()],
        )
        return revision_id

    def undo(self, project: str | Project) -> bool:
        """Mark the newest revision that is not undone as undone.

        Returns:
            False when there is nothing left to undo.
        """
        with self.transaction():
            project = self._project(project)
            rows = self._query(
                "SELECT id FROM selection_revisions WHERE project_id = ? AND undone = 0 ORDER BY id DESC LIMIT 1",
                [project.id],
            )
            if not rows:
                return False
            self._conn.execute(
                "UPDATE selection_revisions SET undone = 1, undone_at = ? WHERE id = ?", [utc_now(), rows[0]["id"]]
            )
        return True

    def selection_history(self, project: str | Project) -> list[Revision]:
        """Return every revision of the project, newest first, undone ones included."""
        with self._read():
            project = self._project(project)
            ids = [row["id"] for row in self._query(
                "SELECT id FROM selection_revisions WHERE project_id = ? ORDER BY id DESC", [project.id]
            )]
            return [self._revision(revision_id) for revision_id in ids]

    def _revision(self, revision_id: int) -> Revision:
        with self._read():
            row = self._query("SELECT * FROM selection_revisions WHERE id = ?", [revision_id])[0]
            entries = self._query(
                "SELECT layer, ratio FROM selection_entries WHERE revision_id = ? ORDER BY rowid", [revision_id]
            )
        return Revision(
            id=row["id"],
            source=row["source"],
            note=row["note"],
            created=row["created"],
            undone=bool(row["undone"]),
            undone_at=row["undone_at"],
            changes={entry["layer"]: optional_ratio(entry["ratio"]) for entry in entries},
        )
