"""Queries behind the terminal app: the layer table, the model summary and auto-select.

Everything here works from cached numbers (layer records, scores, the
selection), so a manual edit is recomputed without TensorFlow.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal
from typing import Mapping

from workbench.costs import ConvGeometry, costs_at_ranks, selection_ranks
from workbench.records import LayerRecord, cost_items
from workbench.selection import (
    ScoreDict,
    SelectionResult,
    candidate_ratios,
    format_ratio,
    greedy_select,
    interpolate_score,
    predict_score,
)

from store.base import StoreBase
from store.errors import StoreError
from store.rows import LayerRow, Project, Summary
from store.scores import missing_pairs


@functools.lru_cache(maxsize=1 << 16)
def cached_rank(geometry: ConvGeometry, ratio: Decimal, metric: str, multiplicity: int) -> int:
    """Return `geometry.rank_for_ratio`, memoised because every refresh requests the same few ratios."""
    return geometry.rank_for_ratio(ratio, metric, multiplicity)


@dataclass
class Snapshot:
    """The cached numbers of one project, read in one transaction."""

    project: Project
    records: list[LayerRecord]
    scores: ScoreDict
    baseline: float | None
    current: dict[str, tuple[Decimal | None, str]]

    def selection(self) -> dict[str, Decimal | None]:
        return {
            record.name: self.current.get(record.name, (None, None))[0] for record in self.records if record.eligible
        }


class QueriesMixin(StoreBase):
    def _snapshot(self, project: str | Project) -> Snapshot:
        """Read a project's numbers, or reuse the last read if the database has not changed since.

        `PRAGMA data_version` changes when another connection commits, and
        `total_changes` when this one writes, so an unchanged pair means the
        cached snapshot is still current. The app calls layer_table and summary
        on every refresh, and most refreshes find nothing new.
        """
        name = project.name if isinstance(project, Project) else project
        with self._lock:
            version = None
            if self._transaction_kind is None:
                version = (self._conn.execute("PRAGMA data_version").fetchone()[0], self._conn.total_changes)
                cached = self._snapshot_cache.get(name)
                if cached is not None and cached[0] == version:
                    return cached[1]
            with self._read():
                current_project = self._project(project)
                snapshot = Snapshot(
                    project=current_project,
                    records=self._cached_layers(current_project),
                    scores=self._scores_for_key(current_project.score_key),
                    baseline=self._baseline_for_key(current_project.score_key),
                    current=self._current_entries(current_project.id),
                )
            if version is not None:
                # Read before the snapshot, so a commit in between only causes an extra reread.
                self._snapshot_cache = {name: (version, snapshot)}
            return snapshot

    def layer_table(self, project: str | Project) -> list[LayerRow]:
        """Return one `LayerRow` per layer of the project, in model order.

        Each row joins the layer's record with its cached scores, its current
        ratio, the rank and score at that ratio, and its share of the model's
        original cost, all in the project's metric and multiplicity.
        """
        snapshot = self._snapshot(project)
        project = snapshot.project
        metric = project.metric
        total_cost = sum(record.memory if metric == "memory" else record.macs for record in snapshot.records)
        candidates = candidate_ratios(project.candidates)
        ignored = set(project.ignored)
        rows = []
        for position, record in enumerate(snapshot.records):
            curve = snapshot.scores.get(record.name, {})
            ratio, source = snapshot.current.get(record.name, (None, None)) if record.eligible else (None, None)
            geometry = record.geometry
            rank = rank_ratio = score = drop = None
            exact = False
            if ratio is not None and geometry is not None:
                rank = cached_rank(geometry, ratio, metric, project.multiplicity)
                rank_ratio = geometry.ratio_of_rank(rank, metric)
                score, exact = interpolate_score(curve, ratio, snapshot.baseline)
                if score is not None and snapshot.baseline is not None:
                    drop = snapshot.baseline - score
            if record.eligible and record.name not in ignored:
                missing = sum(1 for candidate in candidates if candidate not in curve)
            else:
                missing = 0
            cost = record.memory if metric == "memory" else record.macs
            rows.append(
                LayerRow(
                    position=position,
                    name=record.name,
                    class_name=record.class_name,
                    eligible=record.eligible,
                    reason=record.reason,
                    ignored=record.name in ignored,
                    macs=record.macs,
                    memory=record.memory,
                    params=record.params,
                    max_rank=geometry.max_rank if geometry else None,
                    scores=dict(curve),
                    missing=missing,
                    ratio=ratio,
                    source=source,
                    rank=rank,
                    rank_ratio=rank_ratio,
                    score=score,
                    score_exact=exact,
                    drop=drop,
                    cost_share=cost / total_cost if total_cost else 0.0,
                )
            )
        return rows

    def summary(self, project: str | Project, selection: Mapping[str, object] | None = None) -> Summary:
        """Return the model-level numbers of the current selection, or of `selection` if given.

        Ranks come from the project's metric and multiplicity; the MAC and
        memory costs are then both computed at those ranks. A given `selection`
        is not stored: it previews an edit.

        Raises:
            ValueError: if `selection` contains a ratio outside (0, 1].
        """
        snapshot = self._snapshot(project)
        project = snapshot.project
        chosen = snapshot.selection() if selection is None else dict(selection)
        items = cost_items(snapshot.records)
        ranks = selection_ranks(items, chosen, project.metric, project.multiplicity)
        costs = costs_at_ranks(items, ranks)
        params_before = sum(record.params for record in snapshot.records)
        params_after = params_before
        for item in items:
            rank = ranks.get(item.name)
            if rank is not None:
                # The pair keeps the bias and replaces the kernel weights.
                params_after += item.geometry.rank_cost(rank, "memory") - item.memory
        return Summary(
            project=project.name,
            metric=project.metric,
            target=project.target,
            baseline=snapshot.baseline,
            predicted=predict_score(snapshot.baseline, snapshot.scores, chosen),
            mac_ratio=costs["mac"].ratio,
            memory_ratio=costs["memory"].ratio,
            macs_before=costs["mac"].original,
            macs_after=costs["mac"].compressed,
            memory_before=costs["memory"].original,
            memory_after=costs["memory"].compressed,
            params_before=params_before,
            params_after=params_after,
            compressed_layers=sum(1 for rank in ranks.values() if rank is not None),
            missing_scores=len(missing_pairs(project, snapshot.records, snapshot.scores)),
            baseline_missing=snapshot.baseline is None,
        )

    def auto_select(self, project: str | Project, target=None) -> SelectionResult:
        """Run greedy selection on the cached scores and store the result as one 'auto' revision.

        Ignored layers are excluded and set uncompressed; every eligible layer
        gets an entry in the revision. The revision is stored even when the
        target cannot be reached (`result.reachable` is False and `result.notes`
        explains why), because it is the most compressed selection available.

        Args:
            target: Target cost ratio in (0, 1]; the project's target when None.

        Raises:
            StoreError: if the project has no layers yet.
            ValueError: for a target outside (0, 1].
        """
        snapshot = self._snapshot(project)
        project = snapshot.project
        if not snapshot.records:
            raise StoreError(f"Project {project.name!r} has no layers yet; analyse its model first.")
        target = project.target if target is None else target
        ignored = set(project.ignored)
        eligible = [record.name for record in snapshot.records if record.eligible]
        scores = {
            layer: curve
            for layer, curve in snapshot.scores.items()
            if layer in eligible and layer not in ignored and curve
        }
        result = greedy_select(
            scores,
            cost_items(snapshot.records),
            target,
            project.metric,
            project.multiplicity,
            project.monotonic_fit,
        )
        mapping = {layer: result.selection.get(layer) for layer in eligible}
        note = f"auto-select: target {format_ratio(result.target)}, achieved {result.achieved:.4f}"
        self.set_selection(project, mapping, "auto", note)
        return result
