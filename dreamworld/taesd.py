"""TAESD: a tiny decoder distilled from a model's VAE (madebyollin's), for live previews that look like the
picture and for a fast final decode (the `fast_decode` field).

It lives in models/VAE-approx (A1111; ComfyUI: models/vae_approx) as a diffusers AutoencoderTiny folder, or
as the decoder file A1111 and ComfyUI use (`taesd_decoder.pth` / `.safetensors`; `taesdxl_decoder` for SDXL),
read with torch.load(weights_only=True). A model uses the one named after it, else `taesd` (SD 1.x/2.x) or
`taesdxl` (SDXL). Decoding runs in torch on the model's device (a TensorFlow model's GPU where torch has it
too), else on the CPU, whichever backend made the latents.
"""
from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import torch

from . import models
from .errors import ModelError

FAMILY_NAMES = {"sd": ("taesd", "taesd_decoder"), "sdxl": ("taesdxl", "taesdxl_decoder")}
_lock = threading.Lock()


def find(model_dirs, model_name: str, family: str) -> models.ModelInfo | None:
    """The TAESD for a model: named after it, else its family's (None: there is none)."""
    available = {m.name: m for m in models.list_models(model_dirs, "taesd")}
    for name in (model_name, *FAMILY_NAMES.get(family, ())):
        if name in available:
            return available[name]
    return None


@lru_cache(maxsize=4)
def load(path: Path, device: str = "cpu"):
    """The AutoencoderTiny of a folder or a decoder file (fp32, eval, on `device`); ModelError in one sentence."""
    from diffusers import AutoencoderTiny
    try:
        if path.is_dir():
            return AutoencoderTiny.from_pretrained(path).eval().to(device)
        net = AutoencoderTiny()
        state = _decoder_state(path)
        net.decoder.load_state_dict(state)
        return net.eval().to(device)
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise ModelError(f"TAESD {path.name!r} could not be loaded: "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def _decoder_state(path: Path) -> dict:
    """madebyollin's decoder keys ("1.weight": its Sequential, whose layer 0 is the clamp that diffusers
    does in forward) as diffusers' DecoderTiny's ("layers.0.weight")."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        from .single_file import load_pickle_safely
        state = load_pickle_safely(path, map_location="cpu", name=path.name)
    renamed = {}
    for key, value in state.items():
        index, rest = key.split(".", 1)
        renamed[f"layers.{int(index) - 1}.{rest}"] = value
    return renamed


def decode(info: models.ModelInfo, latents: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """Scaled NCHW latents (as the UNet makes them) -> NCHW float32 in about [-1, 1], on the CPU."""
    from .backends.torch_devices import available_devices
    net = load(info.path, device if device in available_devices() and device != "auto" else "cpu")
    with _lock, torch.inference_mode():
        return net.decode(latents.float().to(net.device)).sample.float().cpu()
