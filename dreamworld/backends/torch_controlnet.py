"""ControlNet on the PyTorch backend: loading a models/ControlNet entry (a diffusers folder or an A1111 single
file, offline), the control image as the net takes it, and SDXL's ControlNet pipelines over the loaded parts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import controlnet as cn
from ..models import ModelError
from . import weights
from .base import BackendError


def load(info, unet_config, model_name: str, dtype, device: str):
    """The ControlNet of `info`, checked against the model's UNet config first: one of another family is
    refused by name before anything is loaded."""
    cn.check_family(info, dict(unet_config), model_name)
    try:
        if info.format == "diffusers":
            from diffusers import ControlNetModel
            with weights._pickled_weights_checked(info.path):
                net = ControlNetModel.from_pretrained(info.path, torch_dtype=dtype, local_files_only=True)
        else:
            net = single_file(info.path, dtype)
    except ModelError as e:
        raise BackendError(str(e)) from None
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise BackendError(f"ControlNet {info.name!r} could not be loaded from {info.path}: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    return net.to(device).eval()


def single_file(path, dtype):
    """An A1111 single-file ControlNet (control_v11p_sd15_*, SDXL ones), loaded offline with the family's
    config from model_configs/."""
    from diffusers import ControlNetModel

    from .. import single_file as files
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        files.load_pickle_safely(path)  # refuse unsafe pickles with a sentence first
    config = Path(files.__file__).parent / "model_configs" / cn.single_file_family(path)
    try:
        return ControlNetModel.from_single_file(str(path), config=str(config), torch_dtype=dtype, local_files_only=True)
    except Exception as e:
        raise files._load_error(e, path.name, "ControlNet", "a") from e


def control_tensor(image: np.ndarray) -> torch.Tensor:
    """A control image (H, W, 3) float as the ControlNet takes it: NCHW, in [0, 1] (-1: masked)."""
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
