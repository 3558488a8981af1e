"""Values that the store returns, and the conversions its columns need."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from workbench.costs import check_ratio

JOB_KINDS = ("analyse", "search", "export")
JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE_JOB_STATUSES = ("queued", "running")
FINISHED_JOB_STATUSES = ("done", "failed", "cancelled")
SELECTION_SOURCES = ("auto", "manual")


def utc_now() -> str:
    """Return the current time as an ISO 8601 string in UTC, the store's timestamp format."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


def parse_time(text: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(text) if text else None


def ratio_text(ratio, what: str = "ratio") -> str:
    """Return the canonical decimal string of a ratio in (0, 1], the form stored in keys.

    Trailing zeros are dropped and no exponent is used, so Decimal("0.50"),
    0.5 and "0.5" all give "0.5". Digits are never rounded: the 28-digit
    Decimal(1) / Decimal(3) of the candidate ratios keeps all its digits.

    Raises:
        ValueError: naming `what` if the ratio is not a number in (0, 1].
    """
    check_ratio(ratio, what)
    if isinstance(ratio, Decimal):
        value = ratio
    elif isinstance(ratio, Fraction):
        value = Decimal(ratio.numerator) / Decimal(ratio.denominator)
    elif isinstance(ratio, float):
        value = Decimal(repr(ratio))
    else:
        value = Decimal(str(ratio))
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def optional_ratio(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def column_values(cls, row) -> dict:
    """Return the columns of an sqlite3.Row that are named like the dataclass's fields."""
    return {name: row[name] for name in cls.__dataclass_fields__}


@dataclass(frozen=True)
class ScoreKey:
    """The facts a cached score depends on.

    A score is reused only when all four match: the model file's sha256, the
    evaluator key (evaluator spec, eval iterations and a hash of the evaluator's
    files), and the cost metric and multiplicity that turn a ratio into a rank.
    """

    model_hash: str
    evaluator_key: str
    metric: str
    multiplicity: int


@dataclass(frozen=True)
class Project:
    """A compression project: a model, an evaluator and the selection settings."""

    id: int
    name: str
    model_path: str
    model_hash: str
    evaluator_spec: str
    evaluator_key: str
    eval_iterations: int | None
    metric: str
    target: Decimal
    candidates: int
    multiplicity: int
    ignored: tuple[str, ...]
    monotonic_fit: bool
    baseline_params: int | None
    baseline_macs: int | None
    baseline_memory: int | None
    layers_revision: int
    created: str
    updated: str

    @property
    def score_key(self) -> ScoreKey:
        return ScoreKey(self.model_hash, self.evaluator_key, self.metric, self.multiplicity)

    @classmethod
    def from_row(cls, row) -> "Project":
        values = column_values(cls, row)
        values["target"] = Decimal(values["target"])
        values["ignored"] = tuple(json.loads(values["ignored"]))
        values["monotonic_fit"] = bool(values["monotonic_fit"])
        return cls(**values)


@dataclass(frozen=True)
class Revision:
    """One change of a project's selection, with the layers it set.

    `changes` maps each layer the revision set to its ratio (None: uncompressed).
    An undone revision stays in the history with `undone` True.
    """

    id: int
    source: str
    note: str | None
    created: str
    undone: bool
    undone_at: str | None
    changes: dict[str, Decimal | None]


@dataclass(frozen=True)
class Job:
    """A background job of a project (analyse, search or export) as last written."""

    id: int
    project_id: int
    project: str
    kind: str
    status: str
    pid: int | None
    host: str | None
    created: str
    started: str | None
    heartbeat: str | None
    finished: str | None
    done: int
    total: int | None
    error: str | None
    log_path: str | None
    cancel_requested: bool
    options: dict

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_JOB_STATUSES

    @classmethod
    def from_row(cls, row) -> "Job":
        values = column_values(cls, row)
        values["cancel_requested"] = bool(values["cancel_requested"])
        values["options"] = json.loads(values["options"])
        return cls(**values)


@dataclass(frozen=True)
class Export:
    """A compressed model written to disk, with the numbers it was written with."""

    id: int
    project_id: int
    path: str
    content_hash: str | None
    ratios: dict[str, Decimal | None]
    ranks: dict[str, int | None]
    baseline_score: float | None
    compressed_score: float | None
    macs_before: int | None
    macs_after: int | None
    params_before: int | None
    params_after: int | None
    created: str

    @classmethod
    def from_row(cls, row) -> "Export":
        values = column_values(cls, row)
        values["ratios"] = {layer: optional_ratio(text) for layer, text in json.loads(values["ratios"]).items()}
        values["ranks"] = json.loads(values["ranks"])
        return cls(**values)


@dataclass(frozen=True)
class LayerRow:
    """One line of the terminal app's layer table.

    Attributes:
        scores: Cached score per candidate ratio for the project's current model,
            evaluator, metric and multiplicity.
        missing: Candidate ratios of this layer with no cached score; 0 for
            layers that are ineligible or ignored.
        ratio: Selected ratio; None keeps the layer as it is.
        source: 'auto' or 'manual' for the revision that set `ratio`; None if
            no revision set it.
        rank: Rank at `ratio` under the project's metric and multiplicity.
        rank_ratio: Cost of `rank` over the original cost, in the project's metric.
        score: Score at `ratio`: cached when `score_exact`, else interpolated
            between neighbouring candidates (ratio 1.0 being the baseline).
        drop: Baseline minus `score`.
        cost_share: The layer's original cost over the model's original cost, in
            the project's metric.
    """

    position: int
    name: str
    class_name: str
    eligible: bool
    reason: str | None
    ignored: bool
    macs: int
    memory: int
    params: int
    max_rank: int | None
    scores: dict[Decimal, float]
    missing: int
    ratio: Decimal | None
    source: str | None
    rank: int | None
    rank_ratio: float | None
    score: float | None
    score_exact: bool
    drop: float | None
    cost_share: float


@dataclass(frozen=True)
class Summary:
    """Model-level numbers of a selection, computed from cached scores only.

    `predicted` is an estimate that assumes per-layer score drops add up; the
    export measures the real score. The ratios are compressed over original cost.
    """

    project: str
    metric: str
    target: Decimal
    baseline: float | None
    predicted: float | None
    mac_ratio: float
    memory_ratio: float
    macs_before: int
    macs_after: int
    memory_before: int
    memory_after: int
    params_before: int
    params_after: int
    compressed_layers: int
    missing_scores: int
    baseline_missing: bool


@dataclass
class ImportReport:
    """Outcome of `Store.import_scores`.

    `overwritten` counts cached scores replaced by different values, which
    happens only with force=True; `conflicts` lists them as
    `(layer, ratio, cached score, imported score)`, ratio None for the baseline.
    """

    added: int = 0
    unchanged: int = 0
    overwritten: int = 0
    baseline: str = "absent"  # 'absent', 'added', 'unchanged' or 'overwritten'
    conflicts: list[tuple[str, Decimal | None, float, float]] = field(default_factory=list)
