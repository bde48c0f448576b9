"""Live previews: a picture of the latents every few steps, at almost no cost. With a TAESD for the model in
models/VAE-approx (dreamworld/taesd.py) the preview is its decode, which looks like the picture; without,
a linear map:

A linear map from the latent channels to RGB (A1111's "Approx cheap" idea), fitted once per loaded model
from its own VAE: a test image of colours is encoded, and least squares finds the map from each latent
pixel to the mean colour of the image block it covers. Fitted, not hard-coded, so it holds for any VAE:
SD 1.x, SDXL, or the embedded model's own."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .errors import BackendError

FIT_SIZE = 256  # pixels of the test image


def _test_image() -> torch.Tensor:
    """An NCHW image in [-1, 1]: hue across, brightness down, with flat colour blocks."""
    y, x = np.mgrid[0:FIT_SIZE, 0:FIT_SIZE] / (FIT_SIZE - 1)
    rgb = np.stack([np.clip(np.abs(6 * x - 3) - 1, 0, 1), np.clip(2 - np.abs(6 * x - 2), 0, 1),
                    np.clip(2 - np.abs(6 * x - 4), 0, 1)], axis=-1) * (1 - y[..., None]) + 0.5 * y[..., None]
    block = FIT_SIZE // 8
    for i, colour in enumerate(((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1), (0, 0, 0), (1, 1, 0))):
        rgb[block * (i + 1):block * (i + 2), :block] = colour
    return torch.from_numpy(rgb.transpose(2, 0, 1)[None].astype(np.float32) * 2 - 1)


def fit(backend) -> np.ndarray:
    """The (channels + 1, 3) map from a latent pixel (and 1) to RGB in [-1, 1], for a backend's VAE."""
    image = _test_image()
    latents = backend.encode_mean(image).float()
    scale = FIT_SIZE // latents.shape[-1]
    target = torch.nn.functional.avg_pool2d(image, scale)[0].reshape(3, -1).T.numpy()
    inputs = latents[0].reshape(latents.shape[1], -1).T.numpy()
    inputs = np.concatenate([inputs, np.ones((len(inputs), 1), np.float32)], axis=1)
    return np.linalg.lstsq(inputs, target, rcond=None)[0].astype(np.float32)


def picture(latents, mapping: np.ndarray, size: tuple[int, int] | None = None) -> Image.Image:
    """The preview of NCHW latents: one pixel per latent pixel, enlarged to `size` (width, height)."""
    array = latents.float().cpu().numpy() if isinstance(latents, torch.Tensor) else np.asarray(latents, np.float32)
    pixels = array[0].reshape(array.shape[1], -1).T @ mapping[:-1] + mapping[-1]
    rgb = ((np.clip(pixels, -1, 1) + 1) * 127.5).astype(np.uint8).reshape(*array.shape[2:], 3)
    image = Image.fromarray(rgb, "RGB")
    return image.resize(size, Image.BILINEAR) if size else image


def painter(backend, tiny=None):
    """(latents, size) -> preview picture: the TAESD `tiny`'s decode when there is one, else the linear map
    fitted for the backend's VAE; None where there is neither (a backend that cannot encode an image)."""
    if tiny is not None:
        from . import taesd
        return lambda latents, size: _enlarged(taesd.decode(tiny, torch.as_tensor(latents), backend.device), size)
    try:
        mapping = fit(backend)
    except (BackendError, AttributeError, NotImplementedError):
        return None
    return lambda latents, size: picture(latents, mapping, size)


def _enlarged(decoded: torch.Tensor, size) -> Image.Image:
    rgb = ((decoded[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    image = Image.fromarray(rgb, "RGB")
    return image.resize(size, Image.BILINEAR) if size and image.size != tuple(size) else image
