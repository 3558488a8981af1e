"""Shared pytest setup.

TensorFlow reads TF_CPP_MIN_LOG_LEVEL when it is first imported, so it is set
here, before any test module imports Keras.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A random generator with a fixed seed, so that failures reproduce."""
    return np.random.default_rng(1234)
