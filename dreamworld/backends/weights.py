"""Reading a model from models/ as diffusers modules, whatever its format: one reader for every backend.

Diffusers folders may hold PyTorch pickles (`.bin`) instead of `.safetensors`. Those are loaded, as
diffusers and transformers load them, with `torch.load(weights_only=True)` (tensors and plain
containers, no code run), after each has been read that way here first so that a pickle holding
anything else is refused in one sentence naming the file; diffusers' log lines about falling back
to "unsafe serialization" (it is not: the load is weights-only) are left out.
"""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path

from diffusers import AutoencoderKL, AutoPipelineForText2Image, DiffusionPipeline

from ..models import ModelInfo

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_FALLBACK_NOISE = ("An error occurred while trying to fetch", "Defaulting to unsafe serialization")


def _no_fallback_noise(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_FALLBACK_NOISE)


@contextmanager
def _pickled_weights_checked(folder: Path):
    """Refuse unsafe pickles among a diffusers folder's weights, then load it without the fallback log lines."""
    from .. import single_file

    for sub in [folder, *(p for p in sorted(folder.iterdir()) if p.is_dir())]:
        files = [p for p in sorted(sub.iterdir()) if p.is_file()]
        if not any(p.suffix == ".safetensors" for p in files):  # else the .safetensors files are what is read
            for pickled in (p for p in files if p.suffix.lower() in PICKLE_SUFFIXES):
                single_file.load_pickle_safely(pickled, name=pickled.relative_to(folder.parent).as_posix())
    logger = logging.getLogger("diffusers.models.modeling_utils")
    logger.addFilter(_no_fallback_noise)
    try:
        yield
    finally:
        logger.removeFilter(_no_fallback_noise)


def load_pipeline(model: ModelInfo, dtype) -> DiffusionPipeline:
    """The text-to-image pipeline of a diffusers folder or single-file checkpoint, offline."""
    if model.format == "diffusers":
        index = json.loads((model.path / "model_index.json").read_text())
        extra = {"safety_checker": None, "requires_safety_checker": False} if "safety_checker" in index else {}
        with _pickled_weights_checked(model.path):
            return AutoPipelineForText2Image.from_pretrained(model.path, dtype=dtype, local_files_only=True, **extra)
    from .. import single_file
    return single_file.load_pipeline(model.path, dtype)


def load_vae(vae: ModelInfo, dtype, pipe) -> AutoencoderKL:
    """A VAE from models/VAE for `pipe`'s model family."""
    if vae.format == "diffusers":
        with _pickled_weights_checked(vae.path):
            return AutoencoderKL.from_pretrained(vae.path, dtype=dtype, local_files_only=True)
    from .. import single_file
    family = "sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "sd15"
    return single_file.load_vae(vae.path, dtype, family)
