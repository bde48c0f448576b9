"""Hostile and unlucky input, one table: each case must end in one sentence (exit 2 on the command
line), with nothing half-written in the creations folder and nothing read from where it must not be.

New surfaces (the HTTP API, LoRA and ControlNet files, TIFF states) add their rows to CASES.
A case is (id, argv after `app.py`, files to make first, words the one-line error must hold).
`files` maps a name to bytes or a callable(tmp_path) -> bytes; `{tmp}` in argv is the case's folder.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from dreamworld.settings import PROJECT_DIR

from .conftest import files_in

CASES = [
    # id, argv, files, words
    ("unknown-flag", ["generate", "--prompt", "x", "--stepz", "3"], {}, "unrecognized arguments: --stepz"),
    # issue 19: folders of one's own only; never the root or a system folder
    ("creations-dir-root", ["generate", "--prompt", "x", "--creations-dir", "/"], {},
     "error: creations_dir: / is a system or shared folder; choose a folder of your own"),
    ("models-dir-etc", ["generate", "--prompt", "x", "--models-dir", "/etc"], {}, "models_dir: /etc is a system"),
    ("creations-dir-a-file", ["generate", "--prompt", "x", "--creations-dir", "{tmp}/f"], {"f": b"x"},
     "/f is not a folder"),
    ("settings-a-folder", ["--settings", "{tmp}", "generate", "--prompt", "x"], {},
     "is a folder, not a settings file"),
    ("settings-missing", ["--settings", "{tmp}/nonexistent.json", "generate", "--prompt", "x"], {},
     "/nonexistent.json does not exist"),
    ("port-out-of-range", ["--port", "99999"], {}, "port must be from 1 to 65535, got 99999"),
]


def _run(argv, tmp_path, creations_dir, timeout=300, env=None):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    command = [sys.executable, str(PROJECT_DIR / "app.py"), *argv]
    if "--creations-dir" not in argv:
        command += ["--creations-dir", str(creations_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=PROJECT_DIR, env=env)


@pytest.mark.parametrize("argv, files, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_is_one_sentence_and_writes_nothing(tmp_path, argv, files, words):
    creations_dir = tmp_path / "creations"
    creations_dir.mkdir()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data(tmp_path) if callable(data) else data)
    run = _run(argv, tmp_path, creations_dir)
    assert run.returncode == 2, run.stderr
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert words in lines[0] and "Traceback" not in run.stderr
    assert files_in(creations_dir) == set()
