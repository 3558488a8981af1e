"""Train the bundled Fashion-MNIST demo CNN and write its files.

Run it from the repository root:

    python -m workbench.demo.train [--data-dir DIR] [--output-dir DIR]

The data come from the original Fashion-MNIST IDX files as Debian's
`dataset-fashion-mnist` package installs them. The script writes the trained model
(`fashion_cnn.keras`), a stratified evaluation subset of the test set
(`fashion_eval.npz`) and the Fashion-MNIST licence note next to this file, and prints
the test accuracies at the end.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
from pathlib import Path

import numpy as np

from workbench.demo import (
    EVAL_FILENAME,
    EVAL_PER_CLASS,
    LICENSE_FILENAME,
    MODEL_FILENAME,
    NUM_CLASSES,
)

DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
COPYRIGHT_FILE = Path("/usr/share/doc/dataset-fashion-mnist/copyright")
APT_PACKAGE = "dataset-fashion-mnist"

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

SEED = 20240601
EPOCHS = 6
BATCH_SIZE = 128
LEARNING_RATE = 1e-3

# IDX magic numbers: 0x0000 then the element type (0x08 = unsigned byte) and the
# number of dimensions.
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801

SOURCE_LINE = (
    "Data source: the Fashion-MNIST IDX files of Debian's dataset-fashion-mnist package,\n"
    "which packages https://github.com/zalandoresearch/fashion-mnist. fashion_cnn.keras\n"
    "was trained on its 60,000 training images, and fashion_eval.npz contains 2,000 of\n"
    "its 10,000 test images."
)


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read a gzip-compressed IDX file of unsigned bytes.

    Args:
        path: The `.gz` file.
        expected_magic: `IDX_IMAGES_MAGIC` or `IDX_LABELS_MAGIC`.

    Returns:
        A uint8 array with the shape stored in the file header.

    Raises:
        ValueError: The header does not match `expected_magic` or the data size.
    """
    with gzip.open(path, "rb") as stream:
        raw = stream.read()

    magic = int.from_bytes(raw[0:4], "big")
    if magic != expected_magic:
        raise ValueError(
            f"Invalid IDX header in {path}: expected magic {expected_magic:#010x}. "
            f"Received: {magic:#010x}"
        )

    num_dims = raw[3]
    header_size = 4 + 4 * num_dims
    shape = tuple(
        int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(num_dims)
    )
    data = np.frombuffer(raw, dtype=np.uint8, offset=header_size)
    if data.size != int(np.prod(shape)):
        raise ValueError(
            f"Invalid IDX file {path}: header shape {shape} needs {int(np.prod(shape))} "
            f"bytes of data. Received: {data.size}"
        )
    return data.reshape(shape)


def load_fashion_mnist(data_dir: Path):
    """Load Fashion-MNIST from its IDX files.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: images as float32 of shape
        (N, 28, 28, 1) scaled to [0, 1], labels as int64.

    Raises:
        FileNotFoundError: A file is missing; the message names the apt package.
    """
    missing = [name for name in IDX_FILES.values() if not (data_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST IDX files not found in {data_dir}: {', '.join(missing)}. "
            f"Install them with `apt-get install {APT_PACKAGE}` or pass the folder "
            f"that contains them with --data-dir."
        )

    def images(key: str) -> np.ndarray:
        pixels = read_idx(data_dir / IDX_FILES[key], IDX_IMAGES_MAGIC)
        return (pixels.astype(np.float32) / 255.0)[..., np.newaxis]

    def labels(key: str) -> np.ndarray:
        return read_idx(data_dir / IDX_FILES[key], IDX_LABELS_MAGIC).astype(np.int64)

    return (
        (images("train_images"), labels("train_labels")),
        (images("test_images"), labels("test_labels")),
    )


def stratified_subset(
    labels: np.ndarray, per_class: int, seed: int
) -> np.ndarray:
    """Pick `per_class` indices of each class at random, returned in ascending order."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(NUM_CLASSES):
        candidates = np.flatnonzero(labels == label)
        chosen.append(rng.choice(candidates, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def build_model():
    """Build the demo CNN: six 3x3 convolutions and a softmax Dense head.

    conv2 and conv4 have stride 2, conv5 and conv6 use 'valid' padding, so the
    spatial size goes 28 -> 14 -> 7 -> 5 -> 3. All six convolutions are eligible for
    spatial SVD.
    """
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1), name="image"),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
            layers.Conv2D(
                32, 3, strides=2, padding="same", activation="relu", name="conv2"
            ),
            layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3"),
            layers.Conv2D(
                64, 3, strides=2, padding="same", activation="relu", name="conv4"
            ),
            layers.Conv2D(128, 3, padding="valid", activation="relu", name="conv5"),
            layers.Conv2D(128, 3, padding="valid", activation="relu", name="conv6"),
            layers.Flatten(name="flatten"),
            layers.Dropout(0.3, name="dropout"),
            layers.Dense(NUM_CLASSES, activation="softmax", name="dense"),
        ],
        name="fashion_cnn",
    )


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """Compute the top-1 accuracy of `model` on images `x` and integer labels `y`."""
    probabilities = model.predict(x, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=1) == y))


def read_expat_license(copyright_file: Path) -> tuple[str, str]:
    """Read the upstream copyright line and the Expat licence from a Debian copyright file.

    The file is in the machine-readable format (DEP-5): the stanza `Files: *` names
    the upstream copyright holder, and a stand-alone `License: Expat` stanza contains
    the licence text, indented by one space, with ` .` marking a blank line.

    Returns:
        `(copyright_line, license_text)`.

    Raises:
        FileNotFoundError: `copyright_file` is missing; the message names the apt package.
        ValueError: The file has no `Files: *` copyright or no Expat licence text.
    """
    if not copyright_file.is_file():
        raise FileNotFoundError(
            f"Fashion-MNIST copyright file not found: {copyright_file}. "
            f"Install it with `apt-get install {APT_PACKAGE}`."
        )

    stanzas = copyright_file.read_text(encoding="utf-8").split("\n\n")
    copyright_line = None
    license_lines = None
    for stanza in stanzas:
        lines = stanza.strip("\n").splitlines()
        if lines and lines[0] == "Files: *":
            for line in lines:
                if line.startswith("Copyright:"):
                    copyright_line = "Copyright " + line.removeprefix("Copyright:").strip()
        if lines and lines[0] == "License: Expat" and len(lines) > 1:
            license_lines = ["" if line == " ." else line[1:] for line in lines[1:]]

    if copyright_line is None or license_lines is None:
        raise ValueError(
            f"No 'Files: *' copyright line or no 'License: Expat' text in {copyright_file}"
        )
    license_text = "\n".join(line.rstrip() for line in license_lines) + "\n"
    return copyright_line, license_text


def format_license_note(copyright_line: str, license_text: str) -> str:
    """Format the Fashion-MNIST licence note: title, data source, copyright and licence."""
    return (
        "Fashion-MNIST, MIT licence (Expat)\n"
        "\n"
        f"{SOURCE_LINE}\n"
        "\n"
        f"{copyright_line}\n"
        "\n"
        f"{license_text}"
    )


def train_model(x_train: np.ndarray, y_train: np.ndarray, epochs: int):
    """Train the demo CNN from a fixed seed and return the trained model."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    # Deterministic kernels, so that a rerun on the same machine and versions gives
    # the same weights.
    tf.config.experimental.enable_op_determinism()

    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.summary()
    model.fit(
        x_train,
        y_train,
        batch_size=BATCH_SIZE,
        epochs=epochs,
        shuffle=True,
        verbose=2,
    )
    return model


def save_uncompiled(model, path: Path) -> None:
    """Save the weights of `model` in an uncompiled copy of the demo CNN.

    The file then contains no optimizer state (Adam's moments would triple its size),
    and loading it prints no optimizer warnings.
    """
    export = build_model()
    export.set_weights(model.get_weights())
    export.save(path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m workbench.demo.train",
        description="Train the Fashion-MNIST demo CNN and write the bundled demo files.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"folder with the four Fashion-MNIST IDX .gz files (default: {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="folder to write the model, evaluation subset and licence note into "
        "(default: the workbench/demo package folder)",
    )
    parser.add_argument(
        "--epochs", type=int, default=EPOCHS, help=f"training epochs (default: {EPOCHS})"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.epochs < 1:
        print(f"error: --epochs must be at least 1. Received: {args.epochs}", file=sys.stderr)
        return 2

    # Read every input before the minutes of training, so a missing file fails fast.
    try:
        (x_train, y_train), (x_test, y_test) = load_fashion_mnist(args.data_dir)
        license_note = format_license_note(*read_expat_license(COPYRIGHT_FILE))
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    model = train_model(x_train, y_train, args.epochs)

    subset = stratified_subset(y_test, EVAL_PER_CLASS, SEED)
    x_eval, y_eval = x_test[subset], y_test[subset]

    args.output_dir.mkdir(parents=True, exist_ok=True)
    model_path = args.output_dir / MODEL_FILENAME
    eval_path = args.output_dir / EVAL_FILENAME
    license_path = args.output_dir / LICENSE_FILENAME
    save_uncompiled(model, model_path)
    np.savez_compressed(eval_path, x=x_eval, y=y_eval)
    license_path.write_text(license_note, encoding="utf-8")

    # Measure the saved model, so the printed numbers are those of the bundled file.
    saved = keras.models.load_model(model_path)
    test_accuracy = accuracy(saved, x_test, y_test)
    eval_accuracy = accuracy(saved, x_eval, y_eval)
    print(f"wrote {model_path} ({model_path.stat().st_size:,} bytes)")
    print(f"wrote {eval_path} ({eval_path.stat().st_size:,} bytes)")
    print(f"wrote {license_path}")
    print(f"test accuracy (10,000 images): {test_accuracy:.4f}")
    print(f"eval subset accuracy ({len(y_eval):,} images): {eval_accuracy:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
