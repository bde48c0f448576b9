"""The pose preprocessor's detector: controlnet-aux's OpenPose body model (lllyasviel's port of CMU OpenPose's
COCO body network, the `body_pose_model.pth` of A1111's ControlNet extension), its limbs drawn as ControlNet's
openpose models were trained on (coloured sticks on black).

controlnet-aux's package `__init__` imports every detector it has, some of them through torchvision, whose PyPI
builds do not load beside the CPU build of torch. The body detector and its drawing need none of that, so their
modules are imported under empty stand-ins for the two parent packages instead of through that `__init__`.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from .single_file import load_pickle_safely


@lru_cache(maxsize=1)
def _modules():
    """(controlnet_aux.open_pose.body, controlnet_aux.open_pose.util, controlnet_aux.util); ImportError."""
    spec = importlib.util.find_spec("controlnet_aux")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("No module named 'controlnet_aux'")
    root = Path(list(spec.submodule_search_locations)[0])
    added = []
    for name, folder in (("controlnet_aux", root), ("controlnet_aux.open_pose", root / "open_pose")):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(folder)]
            sys.modules[name] = added.append(name) or package
    try:
        util = importlib.import_module("controlnet_aux.open_pose.util")  # first, as the package does: it and
        body = importlib.import_module("controlnet_aux.open_pose.body")  # body import each other
        return body, util, importlib.import_module("controlnet_aux.util")
    finally:
        for name in added:
            sys.modules.pop(name, None)


@lru_cache(maxsize=1)
def _detector(path: Path):
    """controlnet-aux's Body over the weights of `path`, read without running code (torch weights_only)."""
    body, util, _ = _modules()
    detector = body.Body.__new__(body.Body)
    detector.model = body.bodypose_model()
    state = load_pickle_safely(path, map_location="cpu", name=path.name)
    detector.model.load_state_dict(util.transfer(detector.model, state))
    detector.model.eval()
    return detector


def skeleton(image: Image.Image, path: Path) -> np.ndarray:
    """The OpenPose body skeletons found in `image` (detected at its size, short side rounded to 64 as
    controlnet-aux does), drawn on black: an HxWx3 uint8 array of the image's size."""
    body, util, common = _modules()
    detector = _detector(Path(path))
    array = common.resize_image(common.HWC3(np.asarray(image.convert("RGB"))), min(image.size))
    height, width = array.shape[:2]
    with torch.no_grad():
        candidate, subset = detector(array[:, :, ::-1].copy())  # it reads BGR, as OpenCV gives
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for person in body.Body.format_body_result(candidate, subset):
        keypoints = [k._replace(x=k.x / width, y=k.y / height) if k is not None else None for k in person.keypoints]
        canvas = util.draw_bodypose(canvas, keypoints)
    return cv2.resize(canvas, image.size, interpolation=cv2.INTER_LINEAR)
