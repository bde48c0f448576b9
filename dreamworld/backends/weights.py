"""Reading a model from models/ as diffusers modules, whatever its format: one reader for every backend."""
from __future__ import annotations

import json

from diffusers import AutoencoderKL, AutoPipelineForText2Image, DiffusionPipeline

from ..models import ModelInfo


def load_pipeline(model: ModelInfo, dtype) -> DiffusionPipeline:
    """The text-to-image pipeline of a diffusers folder or single-file checkpoint, offline."""
    if model.format == "diffusers":
        index = json.loads((model.path / "model_index.json").read_text())
        extra = {"safety_checker": None, "requires_safety_checker": False} if "safety_checker" in index else {}
        return AutoPipelineForText2Image.from_pretrained(model.path, dtype=dtype, local_files_only=True, **extra)
    from .. import model_configs
    return model_configs.load_pipeline(model.path, dtype)


def load_vae(vae: ModelInfo, dtype, pipe) -> AutoencoderKL:
    """A VAE from models/VAE for `pipe`'s model family."""
    if vae.format == "diffusers":
        return AutoencoderKL.from_pretrained(vae.path, dtype=dtype, local_files_only=True)
    from .. import model_configs
    family = "sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "sd15"
    return model_configs.load_vae(vae.path, dtype, family)
