"""ControlNet preprocessors: turn an input picture into the control image a ControlNet expects.

Each preprocessor takes a PIL image and returns an RGB PIL image of the same size. The classical
edge detectors (canny, soft-sobel, soft) are pure functions of their input: the same picture and
thresholds give the same control image.
"""
from __future__ import annotations

import numpy as np

from .errors import DreamWorldError


# ----- array-level detectors (also used by embedded_model.train_controlnet) ---------------------
def canny_array(rgb: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """OpenCV's Canny on an RGB uint8 array (H, W, 3), as A1111's ControlNet extension runs it: on
    the colour image (OpenCV takes the strongest channel's gradient), white edges on black (H, W)."""
    import cv2
    return cv2.Canny(np.ascontiguousarray(rgb, dtype=np.uint8), int(low), int(high))


def soft_sobel_array(rgb: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Soft edges: the strongest channel's Sobel gradient magnitude, blurred by a Gaussian of sigma
    pixels, scaled so that the strongest edge is white (uint8 (H, W))."""
    import cv2
    x = np.asarray(rgb, dtype=np.float32) / 255.0
    gx = cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy)
    mag = mag.max(axis=2) if mag.ndim == 3 else mag
    if sigma > 0:
        mag = cv2.GaussianBlur(mag, (0, 0), sigma)
    peak = float(mag.max())
    if peak < 1e-6:
        return np.zeros(mag.shape, np.uint8)
    return np.clip(np.round(mag / peak * 255.0), 0, 255).astype(np.uint8)


def soft_array(rgb: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """A second soft-edge detector (scikit-image): the Scharr gradient magnitude of each channel after a
    Gaussian of sigma pixels, the strongest channel, scaled so that the strongest edge is white (uint8)."""
    from skimage import filters
    x = np.asarray(rgb, dtype=np.float64) / 255.0
    mag = np.max([filters.scharr(filters.gaussian(x[..., c], sigma=sigma)) for c in range(x.shape[2])], axis=0)
    peak = float(mag.max())
    if peak < 1e-9:
        return np.zeros(mag.shape, np.uint8)
    return np.clip(np.round(mag / peak * 255.0), 0, 255).astype(np.uint8)


# ----- the preprocessors a ControlNet unit names ------------------------------------------------
PREPROCESSORS = {
    "none": "the control image as it is",
    "canny": "OpenCV Canny edges (threshold_a: low, threshold_b: high)",
    "soft-sobel": "soft edges: blurred Sobel gradient magnitude (threshold_a: blur sigma x10)",
    "soft": "soft edges: scikit-image Scharr gradient magnitude after a Gaussian (threshold_a: sigma x10)",
    "ip2p": "the image itself (InstructPix2Pix ControlNet)",
    "qr": "the image itself (QR-code / brightness ControlNets)",
    "inpaint": "the input image with the masked pixels set to -1 (the ControlNet inpaint model)",
    "depth": "a depth map from a transformers DPT / Depth-Anything model in models/depth",
    "pose": "an OpenPose body skeleton from an OpenPose body model in models/openpose",
}
NAMES = tuple(PREPROCESSORS)
# threshold_a / threshold_b defaults per preprocessor (A1111's sliders)
DEFAULT_A = {"canny": 100.0, "soft-sobel": 10.0, "soft": 15.0}
DEFAULT_B = {"canny": 200.0}


class PreprocessorError(DreamWorldError, ValueError):
    """A preprocessor cannot run (a missing model, a missing mask): one sentence."""


def _gray3(array: np.ndarray) -> np.ndarray:
    return np.repeat(array[..., None], 3, axis=2).astype(np.float32) / 255.0


def run(name: str, image, *, threshold_a: float | None = None, threshold_b: float | None = None, mask=None,
        models_dirs=()) -> np.ndarray:
    """The control image of `image` (PIL) by the preprocessor `name`: float32 (H, W, 3), values in [0, 1]
    (the inpaint preprocessor marks masked pixels -1)."""
    rgb = np.asarray(image.convert("RGB"))
    a = DEFAULT_A.get(name, 0.0) if threshold_a is None else float(threshold_a)
    b = DEFAULT_B.get(name, 0.0) if threshold_b is None else float(threshold_b)
    if name in ("none", "ip2p", "qr"):
        return rgb.astype(np.float32) / 255.0
    if name == "canny":
        return _gray3(canny_array(rgb, int(a), int(b)))
    if name == "soft-sobel":
        return _gray3(soft_sobel_array(rgb, sigma=a / 10.0))
    if name == "soft":
        return _gray3(soft_array(rgb, sigma=max(a, 1.0) / 10.0))
    if name == "inpaint":
        if mask is None:
            raise PreprocessorError("the inpaint preprocessor needs a mask: use it in inpaint mode")
        out = rgb.astype(np.float32) / 255.0
        m = np.asarray(mask.convert("L").resize(image.size)) > 127
        out[m] = -1.0
        return out
    if name == "depth":
        return _gray3(depth_map(image, models_dirs))
    if name == "pose":
        return pose_map(image, models_dirs)
    raise PreprocessorError(f"unknown preprocessor {name!r}; known: {', '.join(NAMES)}")


def to_pil(control: np.ndarray):
    """A control image as a picture (the inpaint preprocessor's masked pixels shown black)."""
    from PIL import Image
    return Image.fromarray(np.clip(np.round(control * 255.0), 0, 255).astype(np.uint8))


# ----- model-based preprocessors ----------------------------------------------------------------
DEPTH_FOLDERS = ("depth", "Depth")
POSE_FOLDERS = ("openpose", "ControlNet/annotator/ckpts")
_depth_cache: dict = {}


def find_depth_model(models_dirs):
    """The first transformers depth-estimation folder (a config.json whose model type is a depth model)
    in models/depth, or None."""
    import json
    from pathlib import Path
    for root in models_dirs:
        for folder in DEPTH_FOLDERS:
            base = Path(root) / folder
            candidates = [base] + (sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else [])
            for c in candidates:
                try:
                    config = json.loads((c / "config.json").read_text())
                except (OSError, ValueError):
                    continue
                if config.get("model_type") in ("dpt", "depth_anything", "glpn", "zoedepth", "depth_pro") or any(
                        "Depth" in a for a in config.get("architectures", [])):
                    return c
    return None


def depth_map(image, models_dirs) -> np.ndarray:
    """A depth map (uint8, near = white, as MiDaS-style depth ControlNets expect) from the depth model in
    models/depth; PreprocessorError naming the folder if there is none."""
    path = find_depth_model(models_dirs)
    if path is None:
        where = " or ".join(f"{d}/depth" for d in map(str, models_dirs)) or "models/depth"
        raise PreprocessorError(f"the depth preprocessor needs a depth model (a transformers DPT or "
                                f"Depth-Anything folder) in {where}, and there is none")
    import torch
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation
    key = str(path)
    if key not in _depth_cache:
        _depth_cache.clear()
        _depth_cache[key] = (AutoImageProcessor.from_pretrained(path, local_files_only=True),
                             AutoModelForDepthEstimation.from_pretrained(path, local_files_only=True).eval())
    processor, model = _depth_cache[key]
    with torch.inference_mode():
        inputs = processor(images=image.convert("RGB"), return_tensors="pt")
        predicted = model(**inputs).predicted_depth
        depth = torch.nn.functional.interpolate(predicted[:, None].float(), size=image.size[::-1], mode="bicubic",
                                                align_corners=False)[0, 0].numpy()
    lo, hi = float(depth.min()), float(depth.max())
    depth = (depth - lo) / (hi - lo) if hi > lo else np.zeros_like(depth)
    return np.round(depth * 255).astype(np.uint8)  # DPT's output is relative inverse depth: near is large


class DepthHook:
    """The cinema's 3D motion depth (cinema.transforms.DepthModel) from the depth model in models/depth:
    relative inverse depth d in [0, 1] (near = 1) taken as distance 1 + (1 - d) (the nearest on the picture
    plane, the farthest twice as far)."""

    def __init__(self, models_dirs):
        self.models_dirs = models_dirs

    def __call__(self, image: np.ndarray) -> np.ndarray:
        from PIL import Image
        near = depth_map(Image.fromarray(np.asarray(image, dtype=np.uint8)), self.models_dirs)
        return 1.0 + (1.0 - near.astype(np.float32) / 255.0)


def depth_hook(models_dirs):
    """A DepthHook if models/depth holds a depth model, else None."""
    return DepthHook(models_dirs) if find_depth_model(models_dirs) is not None else None


def pose_map(image, models_dirs) -> np.ndarray:
    """OpenPose skeletons from models/openpose/body_pose_model.pth through controlnet-aux (openpose.py)."""
    from pathlib import Path
    found = next((Path(r) / f / "body_pose_model.pth" for r in models_dirs for f in POSE_FOLDERS
                  if (Path(r) / f / "body_pose_model.pth").is_file()), None)
    if found is None:
        where = " or ".join(f"{d}/openpose" for d in map(str, models_dirs)) or "models/openpose"
        raise PreprocessorError(f"the pose preprocessor needs an OpenPose body model (body_pose_model.pth) "
                                f"in {where}, and there is none")
    from . import openpose
    try:
        drawn = openpose.skeleton(image, found)
    except ImportError as e:
        raise PreprocessorError(f"the pose preprocessor needs the controlnet-aux package, which cannot be "
                                f"imported here ({e})") from None
    except (RuntimeError, KeyError) as e:  # weights of another network
        raise PreprocessorError(f"{found.name} is not an OpenPose body model "
                                f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return drawn.astype(np.float32) / 255.0
