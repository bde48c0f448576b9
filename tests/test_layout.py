"""The tree shows the flow: the runtime never imports the embedded model's tooling."""
import subprocess
import sys

from dreamworld.settings import PROJECT_DIR


def test_the_runtime_never_imports_the_embedded_model_tooling():
    code = ("import sys, app, dreamworld.world, dreamworld.service, gui.app; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'embedded_model'))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_DIR, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
