"""How a run's motion moves its input over its frames, shown without any diffusion."""
from __future__ import annotations

import numpy as np
from PIL import Image

from .. import creations
from ..errors import RequestError
from . import transforms, video
from .planning import DEFAULT_FRAMES, plan

PREVIEW_SIZE = 128


def _pattern(width: int, height: int) -> np.ndarray:
    """A grid with a disc, to show motion when there is no input image."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 200 // max(1, width - 1) + 30, y * 200 // max(1, height - 1) + 30,
                      np.full_like(x, 120)], axis=-1).astype(np.uint8)
    step = max(8, min(width, height) // 8)
    image[(x % step < 2) | (y % step < 2)] = 255
    disc = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(width, height) / 6) ** 2
    image[disc] = (220, 40, 40)
    return image


def preview(request, image: Image.Image | None = None, limit: int = 96) -> list[np.ndarray]:
    """How the motion moves the input over the run's frames, without any diffusion: the init image
    (or a test pattern) moved by the accumulated motion, or the input video's frames."""
    frames = min(request.frames or DEFAULT_FRAMES, limit)
    if request.motion == "dream":
        raise RequestError("motion", "dream motion walks through noise and prompts: it has no motion to preview")
    if image is None and request.init_image:
        image = creations.open_image(request.init_image)
    if request.motion == "video":
        try:
            return [f for _, f in video.read_frames(request.video, request.every_nth, frames)]
        except video.VideoError as e:
            raise RequestError("video", f"video: {e}") from None
    width = request.width or (image.width // 8 * 8 if image is not None else PREVIEW_SIZE)
    height = request.height or (image.height // 8 * 8 if image is not None else PREVIEW_SIZE)
    source = _pattern(width, height) if image is None else \
        np.asarray(image.convert("RGB").resize((width, height), Image.LANCZOS))
    moves = plan(request.replace(width=width, height=height, frames=frames, seed=max(request.seed, 0)))
    out, m = [source], np.eye(3)
    for p in moves.frames[1:]:
        m = p.motion @ m
        if not transforms.sees_picture(m, width, height):  # the moves add up past the view: show them so far
            break
        out.append(transforms.warp(source, m, request.border))
    return out
