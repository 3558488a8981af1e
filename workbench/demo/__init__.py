"""Bundled demo model: a small Fashion-MNIST CNN and a held-out evaluation subset.

`python -m workbench.demo.train` made the files (see README.md in this folder).
Importing this module does not import TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

MODEL_FILENAME = "fashion_cnn.keras"
EVAL_FILENAME = "fashion_eval.npz"
LICENSE_FILENAME = "LICENSE-fashion-mnist.txt"

NUM_CLASSES = 10
EVAL_PER_CLASS = 200
EVAL_SIZE = NUM_CLASSES * EVAL_PER_CLASS

# Top-1 accuracy of the bundled model file, as `python -m workbench.demo.train`
# printed it (TensorFlow 2.21, Keras 3.15.1, x86-64 CPU). Another CPU or version may
# flip a prediction or two.
TEST_ACCURACY = 0.9129  # on all 10,000 Fashion-MNIST test images
EVAL_ACCURACY = 0.9170  # on the 2,000 images of fashion_eval.npz

_DEMO_DIR = Path(__file__).resolve().parent


def model_path() -> Path:
    """Path of the bundled Keras model file (`fashion_cnn.keras`)."""
    return _DEMO_DIR / MODEL_FILENAME


def eval_data_path() -> Path:
    """Path of the bundled evaluation subset (`fashion_eval.npz`, arrays `x` and `y`)."""
    return _DEMO_DIR / EVAL_FILENAME


def license_path() -> Path:
    """Path of the Fashion-MNIST licence note that ships with the demo data."""
    return _DEMO_DIR / LICENSE_FILENAME
