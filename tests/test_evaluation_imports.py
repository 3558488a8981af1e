import subprocess
import sys


def test_evaluation_module_import_skips_tensorflow():
    code = (
        "import sys, workbench.evaluation as e\n"
        "e.check_evaluator_signature(lambda model, iterations: 1.0)\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
