"""Records of compressed models written to disk."""

from __future__ import annotations

import json
import os
from typing import Mapping

from store.base import StoreBase
from store.connection import hash_file
from store.rows import Export, Project, ratio_text, utc_now


class ExportsMixin(StoreBase):
    def record_export(
        self,
        project: str | Project,
        path: str | os.PathLike,
        *,
        ratios: Mapping[str, object],
        ranks: Mapping[str, int | None],
        baseline_score: float | None = None,
        compressed_score: float | None = None,
        macs_before: int | None = None,
        macs_after: int | None = None,
        params_before: int | None = None,
        params_after: int | None = None,
        content_hash: str | None = None,
    ) -> Export:
        """Record an exported model file.

        Args:
            path: The written model file; stored as an absolute path.
            ratios: Ratio per layer (None: uncompressed), stored as decimal strings.
            ranks: Rank per layer (None: uncompressed).
            content_hash: sha256 of the file; computed from `path` when None.

        Raises:
            FileNotFoundError: if `content_hash` is None and the file is missing.
            ValueError: for a ratio outside (0, 1].
        """
        path = os.path.abspath(os.fspath(path))
        content_hash = content_hash if content_hash is not None else hash_file(path)
        ratio_texts = {
            layer: None if ratio is None else ratio_text(ratio, f"ratio for layer '{layer}'")
            for layer, ratio in ratios.items()
        }
        with self.transaction():
            project = self._project(project)
            cursor = self._conn.execute(
                "INSERT INTO exports (project_id, path, content_hash, ratios, ranks, baseline_score, "
                "compressed_score, macs_before, macs_after, params_before, params_after, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    project.id,
                    path,
                    content_hash,
                    json.dumps(ratio_texts),
                    json.dumps(dict(ranks)),
                    baseline_score,
                    compressed_score,
                    macs_before,
                    macs_after,
                    params_before,
                    params_after,
                    utc_now(),
                ],
            )
            export_id = cursor.lastrowid
        return Export.from_row(self._query("SELECT * FROM exports WHERE id = ?", [export_id])[0])

    def exports(self, project: str | Project) -> list[Export]:
        """Return the project's export records, newest first."""
        with self._read():
            project = self._project(project)
            rows = self._query("SELECT * FROM exports WHERE project_id = ? ORDER BY id DESC", [project.id])
        return [Export.from_row(row) for row in rows]
