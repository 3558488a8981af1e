"""Shared pytest setup.

TensorFlow reads TF_CPP_MIN_LOG_LEVEL when it is first imported, and OpenBLAS
reads OPENBLAS_NUM_THREADS when NumPy is first imported, so both are set here,
before any test module imports them.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# NumPy's OpenBLAS starts one thread per core. Next to TensorFlow's thread pools on
# a busy 2-core machine, the threads of a large SVD wait on each other. At a load
# average of 9 on 2 cores, one 1536x1536 kernel SVD took 9 to 34 s with them and
# 3.4 to 4.2 s with one thread. Set the variable before pytest starts to choose
# another count.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A random generator with a fixed seed, so that failures reproduce."""
    return np.random.default_rng(1234)
