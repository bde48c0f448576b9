"""Deleting creations into `<creations>/.trash/`, and undoing it.

A creation is its image with the `.txt` beside it; a frame of a cinema run stands for its whole run folder.
Each deletion is one entry `.trash/<time>-<n>/` holding the files at their paths relative to the creations
folder, so that restoring puts them back where they were. The listing of creations skips dot-folders."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from .creations import INPUTS, RUN_SETTINGS
from .errors import CreationError

TRASH = ".trash"
MOVED = "moved.json"  # in each entry: the paths it holds, relative to the creations folder


def _within(path: Path, root: Path) -> Path:
    """`path` relative to `root`, if it is a creation inside it (not a stored input, not in the trash)."""
    try:
        relative = path.resolve().relative_to(root.resolve())
    except ValueError:
        raise CreationError(f"{path.name!r} is not in the creations folder") from None
    if not relative.parts or relative.parts[0] in (INPUTS, TRASH):
        raise CreationError(f"{path.name!r} is not a creation")
    return relative


def delete(path, creations_dir) -> Path:
    """Move a creation (or the cinema run a frame belongs to) into the trash; return the trash entry."""
    root, path = Path(creations_dir), Path(path)
    if not path.exists():
        raise CreationError(f"{path.name!r} no longer exists")
    if (path.parent / RUN_SETTINGS).is_file():
        moved = [path.parent]
    else:
        moved = [p for p in (path, path.with_suffix(".txt")) if p.exists()]
    relatives = [_within(p, root) for p in moved]
    entry = root / TRASH / f"{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10**6:06d}"
    entry.mkdir(parents=True)
    (entry / MOVED).write_text(json.dumps([r.as_posix() for r in relatives]))
    for source, relative in zip(moved, relatives):
        (entry / relative).parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, entry / relative)  # same file system: a rename, all or nothing per file
    return entry


def latest(creations_dir) -> Path | None:
    """The newest trash entry, if any."""
    trash = Path(creations_dir) / TRASH
    entries = sorted(trash.iterdir()) if trash.is_dir() else []
    return entries[-1] if entries else None


def restore(entry, creations_dir) -> list[Path]:
    """Put a trash entry's files (or run folder) back where they were; return them."""
    root, entry = Path(creations_dir), Path(entry)
    try:
        moved = [Path(r) for r in json.loads((entry / MOVED).read_text())]
    except (OSError, ValueError):
        raise CreationError(f"{entry.name!r} is not a trash entry") from None
    for relative in moved:
        if (root / relative).exists():
            raise CreationError(f"cannot restore {relative.as_posix()!r}: something else has that name now")
    for relative in moved:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        os.replace(entry / relative, root / relative)
    shutil.rmtree(entry, ignore_errors=True)
    return [root / r for r in moved]
