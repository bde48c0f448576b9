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


def test_product_modules_and_functions_stay_short():
    """One job per module: none over about 400 lines, no function over about 60 (docs/architecture.md)."""
    import ast
    files = [PROJECT_DIR / "app.py", *PROJECT_DIR.glob("dreamworld/**/*.py"), *PROJECT_DIR.glob("gui/*.py")]
    long_modules, long_functions = [], []
    for path in files:
        source = path.read_text(encoding="utf-8")
        if source.count("\n") > 420:
            long_modules.append(path.relative_to(PROJECT_DIR).as_posix())
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 65:
                long_functions.append(f"{path.relative_to(PROJECT_DIR).as_posix()}:{node.name}")
    assert long_modules == [] and long_functions == []
