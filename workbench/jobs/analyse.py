"""Analysing a project's model file: load it, describe its layers, store the rows.

`check_model_file` needs no TensorFlow, so the CLI and the terminal app can
reject a missing or non-Keras file at once. The other functions load the model.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

from workbench.jobs.errors import JobFailed

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class ModelFileError(ValueError):
    """A model file is missing, unreadable, not a Keras model, or not supported."""


def check_model_file(path: str | os.PathLike) -> Path:
    """Check that `path` is a readable Keras model file, without loading it; return it as a Path.

    Accepts the Keras 3 format (`.keras`, a zip archive with config.json) and
    the legacy HDF5 format (`.h5`). A SavedModel folder is rejected, because
    Keras 3 cannot load one as a model.

    Raises:
        ModelFileError: saying what is wrong with the file.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise ModelFileError(
            f"Model path '{path}' is a folder. Keras 3 loads only .keras and .h5 files; save the model with "
            "model.save('model.keras')."
        )
    if not path.exists():
        raise ModelFileError(f"Model file not found: '{path}'.")
    try:
        with open(path, "rb") as file:
            head = file.read(len(HDF5_SIGNATURE))
    except OSError as error:
        raise ModelFileError(f"Cannot read model file '{path}': {error.strerror}.") from None
    if head == HDF5_SIGNATURE:
        return path
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, OSError) as error:
            raise ModelFileError(f"Model file '{path}' is a damaged zip archive: {error}.") from None
        if "config.json" in names:
            return path
        raise ModelFileError(
            f"'{path}' is a zip archive without config.json, so it is not a Keras model file. "
            "Save the model with model.save('model.keras')."
        )
    raise ModelFileError(
        f"'{path}' is not a Keras model file: expected a .keras archive (model.save('model.keras')) or an HDF5 .h5 file."
    )


def load_model_file(path: str | os.PathLike, hide_gpus: bool = False):
    """Load a Keras model file.

    Args:
        hide_gpus: Keep TensorFlow in this process off the GPUs, for a driver
            whose workers use them. Effective only before TensorFlow first
            places a tensor in this process.

    Raises:
        ModelFileError: if the file is not a loadable Keras model.
    """
    path = check_model_file(path)
    from workbench.tfquiet import quiet_tensorflow

    quiet_tensorflow()
    if hide_gpus:
        import tensorflow as tf

        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:
            pass  # devices are already initialised in this process
    import keras

    try:
        return keras.models.load_model(path)
    except Exception as error:  # Keras raises many types for a bad file
        custom = describe_custom_class_error(path, error)
        if custom:
            raise ModelFileError(custom) from None
        raise ModelFileError(f"Cannot load Keras model '{path}': {type(error).__name__}: {error}") from error


# Keras 3 (seen with 3.15) names a class that no imported module registered this way, at the top level
# for a subclassed model, and inside a "could not be deserialized" message for a layer.
MISSING_CLASS = re.compile(r"Could not locate class '([^']+)'")


def describe_custom_class_error(path, error: Exception) -> str | None:
    """Return a one-line error for a model that needs a custom class, or None for other errors."""
    match = MISSING_CLASS.search(str(error))
    if match is None:
        return None
    name = match.group(1)
    if str(error).startswith("Could not locate class"):
        return (
            f"Cannot load Keras model '{path}': it is a subclassed model (class '{name}'), which svd-workbench "
            "cannot analyse or rebuild. Rebuild it with the functional API (keras.Model(inputs, outputs)) and save it again."
        )
    # NOTE: the command line cannot import the module that defines a custom class yet.
    return (
        f"Cannot load Keras model '{path}': it uses the custom class '{name}', which must be importable to load the "
        "model, and the command line does not import custom code. Use built-in Keras layers, or call "
        "workbench.compress.ModelCompressor from a script that imports the class."
    )


def analyse_model_file(path: str | os.PathLike, hide_gpus: bool = False):
    """Load a model file and return its layer records and the file's sha256.

    Raises:
        ModelFileError: if it cannot be loaded, or is a model that spatial SVD
            cannot rebuild (e.g. a subclassed model).
    """
    from store.connection import hash_file
    from workbench.engine.layers import UnsupportedModelError, analyze_model

    model_hash = hash_file(path)
    model = load_model_file(path, hide_gpus)
    try:
        analysis = analyze_model(model)
    except UnsupportedModelError as error:
        raise ModelFileError(f"Model file '{path}': {error}") from None
    return list(analysis.layers), model_hash


def unknown_layers(names, records) -> list[str]:
    known = {record.name for record in records}
    return [name for name in names if name not in known]


def analyse_project(store, project, hide_gpus: bool = False):
    """Analyse the project's model file and replace its model hash and layer rows in one transaction.

    Returns:
        The updated project.

    Raises:
        ModelFileError: see `analyse_model_file`.
        JobFailed: if layers the project ignores are not in the model.
    """
    records, model_hash = analyse_model_file(project.model_path, hide_gpus)
    missing = unknown_layers(project.ignored, records)
    if missing:
        raise JobFailed(
            f"Project {project.name!r} ignores layers that model '{project.model_path}' does not have: {missing}. "
            f"Its layers are: {[record.name for record in records if record.eligible]}."
        )
    with store.transaction():
        store.update_project(project.name, model_hash=model_hash)
        store.set_layers(project.name, records)
    return store.get_project(project.name)


def run_analyse_job(store, job) -> None:
    """Job kind 'analyse': fill the project's layer rows and model hash from its model file."""
    project = store.get_project(job.project)
    try:
        analyse_project(store, project)
    except ModelFileError as error:
        raise JobFailed(str(error)) from None
