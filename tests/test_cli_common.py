import subprocess
import sys

from workbench.cli.common import STARTUP_NOISE


def test_startup_noise_pattern_matches_absl_lines():
    assert STARTUP_NOISE.match("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
    assert STARTUP_NOISE.match("I0000 00:00:1796419720.837299    1885 port.cc:153] oneDNN custom operations are on.")
    assert STARTUP_NOISE.match("W0000 00:00:1796419720.837597    1885 cudart_stub.cc:31] Could not find cuda drivers")
    assert STARTUP_NOISE.match(
        "E0000 00:00:1796419720.8 1885 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: (303)"
    )
    assert not STARTUP_NOISE.match("E0000 00:00:1796419720.837597    1885 cuda_dnn.cc:8] Unable to register cuDNN")
    assert not STARTUP_NOISE.match("Traceback (most recent call last):")


def test_quiet_import_hides_startup_lines():
    code = "from workbench.cli.common import quiet_tensorflow; quiet_tensorflow(); import tensorflow; print('imported')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "imported" in result.stdout
    assert "absl::InitializeLog" not in result.stderr
    assert "I0000" not in result.stderr
