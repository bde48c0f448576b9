"""Where the engines keep what they converted from models/ (the TensorFlow arrays, the OpenVINO UNet)."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..models import ModelInfo


def root(engine: str) -> Path:
    """$DREAMWORLD_CACHE/ENGINE (default ~/.cache/dreamworld/ENGINE)."""
    return Path(os.environ.get("DREAMWORLD_CACHE", Path.home() / ".cache" / "dreamworld")) / engine


def converted_dir(engine: str, model: ModelInfo, vae: ModelInfo | None, version: int, named: bool = True) -> Path:
    """An engine's folder for one model (and VAE), named after their names and hashes and the conversion's
    version, so that a changed file or converter never reads an old conversion. Not `named`: after the hashes
    alone, shared by copies of the same weights under other names (for what depends on the hashed weights only)."""
    def tag(m):
        return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', m.name)[:60]}-{m.hash}" if named else m.hash
    return root(engine) / (tag(model) + (f"+vae-{tag(vae)}" if vae else "") + f"-c{version}")


@contextmanager
def replacing(folder: Path) -> Iterator[Path]:
    """A temp folder beside `folder` to write into; when the block succeeds it replaces `folder` at once, so a
    reader never sees half a conversion. On failure it is removed and `folder` stays as it was."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        yield tmp
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
