"""Where the engines keep what they converted from models/ (the TensorFlow arrays, the OpenVINO UNet)."""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..models import ModelInfo


def root(engine: str) -> Path:
    """$DREAMWORLD_CACHE/ENGINE (default ~/.cache/dreamworld/ENGINE)."""
    return Path(os.environ.get("DREAMWORLD_CACHE", Path.home() / ".cache" / "dreamworld")) / engine


def converted_dir(engine: str, model: ModelInfo, vae: ModelInfo | None, version: int) -> Path:
    """An engine's folder for one model (and VAE), named after their names and hashes and the conversion's
    version, so that a changed file or converter never reads an old conversion."""
    def tag(m):
        return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', m.name)[:60]}-{m.hash}"
    return root(engine) / (tag(model) + (f"+vae-{tag(vae)}" if vae else "") + f"-c{version}")
