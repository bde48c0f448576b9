"""Stable Diffusion's networks in Keras 3, built from a diffusers model's own configs.

keras-cv's `TextEncoder`, `DiffusionModel`, `ImageEncoder` and `Decoder` are fixed to the full SD 1.x
sizes, use a tanh approximation of GELU and one GroupNorm epsilon everywhere, so they cannot hold
other models (such as DreamWorld's embedded one) nor give diffusers' pixels. The same networks are
built here with any config of diffusers' `UNet2DConditionModel`, `AutoencoderKL` and transformers'
`CLIPTextModel` (SD 1.x and 2.x), from keras-cv's own layers where they fit (`CLIPEmbedding`,
`CLIPEncoderLayer`) and Keras layers elsewhere, channels last.

Every layer that holds weights is registered under its diffusers / transformers module path
(`down_blocks.0.attentions.0.proj_in`), so `load_state_dict` can pour a PyTorch state dict in and
check that every tensor found a home and every weight was set.
"""
from __future__ import annotations

from .blocks import ConfigError, load_state_dict, set_tensors
from .text import TextEncoder
from .unet import UNet, check_unet_config
from .vae import VaeDecoder, VaeEncoder, check_vae_config

__all__ = ["ConfigError", "TextEncoder", "UNet", "VaeDecoder", "VaeEncoder", "check_unet_config", "check_vae_config",
           "load_state_dict", "set_tensors"]
