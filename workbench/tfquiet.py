"""Import TensorFlow without its start-up noise. Importing this module does not import TensorFlow.

The command line, job processes and search worker processes call
`quiet_tensorflow()` before they first use TensorFlow.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

# Lines that TensorFlow's C++ runtime writes straight to file descriptor 2 while
# it loads, before absl logging is set up, so that TF_CPP_MIN_LOG_LEVEL cannot
# hide them (seen with TensorFlow 2.21): informational and warning lines, and the
# cuInit error that every machine without an NVIDIA driver prints.
STARTUP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\] "
    r"|E\d{4} [\d:.]+\s+\d+ cuda_platform\.cc:\d+\] failed call to cuInit: )"
)


def quiet_tensorflow() -> None:
    """Import TensorFlow and Keras with their informational start-up lines filtered out.

    Errors and any other output of the import still reach stderr. Set
    SVD_WORKBENCH_TF_LOGS=1 to see everything.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or os.environ.get("SVD_WORKBENCH_TF_LOGS"):
        return
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow

            # The cuInit error comes when the GPU list is first read, not at import.
            tensorflow.config.list_physical_devices("GPU")
        finally:
            sys.stderr.flush()
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
        capture.seek(0)
        for line in capture.read().decode("utf-8", errors="replace").splitlines():
            if not STARTUP_NOISE.match(line):
                sys.stderr.write(line + "\n")
        sys.stderr.flush()
