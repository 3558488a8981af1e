"""Reading, writing and checking eval-score dicts. Does not import TensorFlow.

Two formats:

- AIMET's pickles: `{layer_name: {Decimal(ratio): score}}` for the scores and a
  list of `(layer_name, Decimal or None)` pairs for a selection. They are read with
  an unpickler that admits only dict, list, tuple, str, int, float, Decimal and
  None, because a pickle can run any code it names when loaded unrestricted.
- svd-workbench JSON: `{"format": "svd-workbench-scores", "version": 1,
  "baseline": float or null, "scores": {layer: {"0.5": score}}}` with ratios as
  strings so that no precision is lost.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import tempfile
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Mapping

JSON_FORMAT = "svd-workbench-scores"
JSON_VERSION = 1
SELECTION_FORMAT = "svd-workbench-selection"

# AIMET writes its caches here, relative to the working directory.
AIMET_SCORES_PICKLE = Path("data") / "greedy_selection_eval_scores_dict.pkl"
AIMET_SELECTION_PICKLE = Path("data") / "greedy_selection_comp_ratios_list.pkl"


class ScoreFileError(ValueError):
    """A score or selection file is missing, unreadable, untrusted or malformed."""


class ForbiddenGlobalError(pickle.UnpicklingError):
    """A pickle names a global that score files must not contain."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves no global except `decimal.Decimal`.

    Builtin containers and scalars need no global lookup, so everything else a
    pickle could name (functions, classes, `os.system`) is rejected.
    """

    def find_class(self, module: str, name: str):
        if (module, name) == ("decimal", "Decimal"):
            return Decimal
        raise ForbiddenGlobalError(
            f"refusing to load global '{module}.{name}': only dict, list, tuple, str, int, float, "
            "Decimal and None are allowed in score files"
        )


def load_pickle(path: str | os.PathLike):
    """Load a pickle through `RestrictedUnpickler`.

    Raises:
        ScoreFileError: if the file is missing, unreadable, or names a global
            other than Decimal.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ScoreFileError(f"Score file not found: '{path}'.") from None
    except OSError as error:
        raise ScoreFileError(f"Cannot read score file '{path}': {error.strerror}.") from None
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except ForbiddenGlobalError as error:
        raise ScoreFileError(
            f"Rejected pickle '{path}': {error}. Only load pickles from a source you trust; "
            "convert other files to svd-workbench JSON."
        ) from None
    except Exception as error:  # truncated or corrupt pickles raise many types
        # Strip the full stop that some messages end with ("invalid load key, 'n'.").
        raise ScoreFileError(f"Corrupt pickle '{path}': {type(error).__name__}: {str(error).rstrip('.')}.") from None


def to_decimal(value, where: str) -> Decimal:
    try:
        ratio = Decimal(str(value)) if not isinstance(value, Decimal) else value
    except (InvalidOperation, ValueError):
        raise ScoreFileError(f"Invalid ratio {value!r} {where}: expected a number in (0, 1).") from None
    if not ratio.is_finite() or not 0 < ratio <= 1:
        raise ScoreFileError(f"Invalid ratio {value!r} {where}: expected a number in (0, 1].")
    return ratio


def normalise_scores(raw, source: str = "score dict") -> dict[str, dict[Decimal, float]]:
    """Check an eval-score dict's types and return it with Decimal ratios and float scores.

    Raises:
        ScoreFileError: naming the first entry that is not `{str: {ratio: finite number}}`.
    """
    if not isinstance(raw, Mapping):
        raise ScoreFileError(f"Invalid {source}: expected a dict of layer name -> {{ratio: score}}, got {type(raw).__name__}.")
    scores: dict[str, dict[Decimal, float]] = {}
    for layer, curve in raw.items():
        if not isinstance(layer, str):
            raise ScoreFileError(f"Invalid {source}: layer key {layer!r} is not a string.")
        if not isinstance(curve, Mapping):
            raise ScoreFileError(f"Invalid {source}: scores of layer '{layer}' are not a dict of ratio -> score.")
        clean: dict[Decimal, float] = {}
        for ratio, score in curve.items():
            key = to_decimal(ratio, f"for layer '{layer}' in {source}")
            if isinstance(score, bool) or not isinstance(score, (int, float, Decimal)):
                raise ScoreFileError(f"Invalid score {score!r} for layer '{layer}' at ratio {ratio} in {source}.")
            value = float(score)
            if not math.isfinite(value):
                raise ScoreFileError(f"Non-finite score {score!r} for layer '{layer}' at ratio {ratio} in {source}.")
            clean[key] = value
        scores[layer] = clean
    return scores


def check_layers(scores: Mapping[str, Mapping], expected_layers, source: str = "score dict") -> None:
    """Check that a score dict names exactly the expected layers.

    Raises:
        ScoreFileError: listing the unknown and the missing layers.
    """
    expected = set(expected_layers)
    present = set(scores)
    unknown = sorted(present - expected)
    missing = sorted(expected - present)
    problems = []
    if unknown:
        problems.append(f"layers not among the model's compressible layers: {unknown}")
    if missing:
        problems.append(f"compressible layers with no scores: {missing}")
    if problems:
        raise ScoreFileError(
            f"The {source} does not match the model: " + "; ".join(problems) + ". "
            "Use the scores saved for this model, or run the search again without them."
        )


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    if not path.parent.is_dir():
        # The same message as `svd-workbench export --output`: a typo in the folder
        # name should not silently create a new folder.
        raise ScoreFileError(
            f"Cannot write '{path}': the folder '{path.parent}' does not exist or is not a folder. "
            "Create it or choose another path."
        )
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def scores_to_json(scores: Mapping[str, Mapping[Decimal, float]], baseline: float | None = None) -> str:
    payload = {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "baseline": baseline,
        "scores": {layer: {str(ratio): float(score) for ratio, score in sorted(curve.items())} for layer, curve in scores.items()},
    }
    return json.dumps(payload, indent=2)


def scores_from_json(text: str, source: str = "JSON score file") -> tuple[dict[str, dict[Decimal, float]], float | None]:
    """Parse svd-workbench JSON; a bare `{layer: {ratio: score}}` object is accepted too."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise ScoreFileError(f"Invalid {source}: {error}.") from None
    baseline = None
    if isinstance(payload, dict) and payload.get("format") == JSON_FORMAT:
        version = payload.get("version")
        if not isinstance(version, int) or version > JSON_VERSION:
            raise ScoreFileError(
                f"{source} has format version {version!r}; this svd-workbench reads up to version {JSON_VERSION}. Upgrade svd-workbench."
            )
        baseline = payload.get("baseline")
        if baseline is not None and (isinstance(baseline, bool) or not isinstance(baseline, (int, float)) or not math.isfinite(baseline)):
            raise ScoreFileError(f"Invalid baseline {baseline!r} in {source}.")
        payload = payload.get("scores")
    return normalise_scores(payload, source), (float(baseline) if baseline is not None else None)


def load_scores(path: str | os.PathLike) -> tuple[dict[str, dict[Decimal, float]], float | None]:
    """Load an eval-score dict from an AIMET pickle (.pkl) or svd-workbench JSON.

    Returns:
        (scores, baseline); baseline is None for pickles, which do not carry it.
    """
    path = Path(path)
    if path.suffix.lower() in (".pkl", ".pickle"):
        return normalise_scores(load_pickle(path), f"pickle '{path}'"), None
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScoreFileError(f"Score file not found: '{path}'.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ScoreFileError(f"Cannot read score file '{path}': {error}.") from None
    return scores_from_json(text, f"score file '{path}'")


def save_scores(path: str | os.PathLike, scores: Mapping[str, Mapping[Decimal, float]], baseline: float | None = None) -> Path:
    """Write an eval-score dict as an AIMET pickle (.pkl) or svd-workbench JSON, atomically."""
    path = Path(path)
    if path.suffix.lower() in (".pkl", ".pickle"):
        plain = {layer: {Decimal(ratio): float(score) for ratio, score in curve.items()} for layer, curve in scores.items()}
        write_atomically(path, pickle.dumps(plain, protocol=4))
    else:
        write_atomically(path, scores_to_json(scores, baseline).encode("utf-8"))
    return path


def save_selection(path: str | os.PathLike, selection: Mapping[str, Decimal | None]) -> Path:
    """Write a selection as AIMET's pickled list of (layer, Decimal or None), or JSON."""
    path = Path(path)
    if path.suffix.lower() in (".pkl", ".pickle"):
        pairs = [(layer, None if ratio is None else Decimal(ratio)) for layer, ratio in selection.items()]
        write_atomically(path, pickle.dumps(pairs, protocol=4))
    else:
        payload = {
            "format": SELECTION_FORMAT,
            "version": JSON_VERSION,
            "selection": {layer: None if ratio is None else str(ratio) for layer, ratio in selection.items()},
        }
        write_atomically(path, json.dumps(payload, indent=2).encode("utf-8"))
    return path


def load_selection(path: str | os.PathLike) -> dict[str, Decimal | None]:
    """Load a selection written by `save_selection` or by AIMET."""
    path = Path(path)
    if path.suffix.lower() in (".pkl", ".pickle"):
        raw = load_pickle(path)
        if not isinstance(raw, (list, tuple)) or not all(isinstance(pair, (list, tuple)) and len(pair) == 2 for pair in raw):
            raise ScoreFileError(f"Invalid selection pickle '{path}': expected a list of (layer name, ratio or None).")
        items = raw
    else:
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ScoreFileError(f"Selection file not found: '{path}'.") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ScoreFileError(f"Cannot read selection file '{path}': {error}.") from None
        if not isinstance(payload, dict) or payload.get("format") != SELECTION_FORMAT:
            raise ScoreFileError(f"'{path}' is not an svd-workbench selection file.")
        items = list(payload.get("selection", {}).items())
    selection: dict[str, Decimal | None] = {}
    for layer, ratio in items:
        if not isinstance(layer, str):
            raise ScoreFileError(f"Invalid layer name {layer!r} in selection file '{path}'.")
        selection[layer] = None if ratio is None else to_decimal(ratio, f"for layer '{layer}' in '{path}'")
    return selection
