"""Frame transforms for animations, on RGB uint8 arrays (height x width x 3), with OpenCV.

Motions are 3x3 matrices mapping a pixel of the previous frame to its place in the next one
(pixel coordinates, x right, y down), so consecutive motions compose by matrix product and a
chain of them is applied with a single resampling:

- `matrix_2d`: zoom and angle (degrees, counter-clockwise as seen) about a centre given as a
  fraction of the frame, then a translation in pixels (x right, y down), as Deforum's 2D mode.
- `matrix_3d`: a camera move in front of the picture, seen as a plane: translation x/y/z (in
  Deforum's units, 1/200 of the distance to the picture; +x moves the picture right, +y down,
  +z moves the camera forward so the picture grows) and rotation about x/y/z in degrees (+x tilts
  the camera up so the picture moves down, +y pans right so it moves left, +z rolls so that it
  turns counter-clockwise as `angle` does), through a pinhole camera with the given horizontal
  field of view: the plane-induced homography K R^T (I - C n^T / d) K^-1.
- `warp_3d_depth`: the same camera move for a picture with a depth per pixel, the hook for a depth
  model (`DepthModel`); none is required.

Colour coherence (`match_colors`), `add_noise`, `adjust_contrast` and `blend` complete the set.
"""
from __future__ import annotations

import math
from typing import Protocol

import cv2
import numpy as np

BORDERS = {"replicate": cv2.BORDER_REPLICATE, "wrap": cv2.BORDER_WRAP, "reflect": cv2.BORDER_REFLECT_101}
COLOR_SPACES = ("lab", "hsv", "rgb")
TRANSLATION_SCALE = 1 / 200  # 3D translations: units of 1/200 of the distance to the picture plane
IDENTITY = np.eye(3)


def matrix_2d(width: int, height: int, *, zoom: float = 1.0, angle: float = 0.0, translate_x: float = 0.0,
              translate_y: float = 0.0, center_x: float = 0.5, center_y: float = 0.5) -> np.ndarray:
    """The 3x3 matrix of a 2D move: zoom and rotate about the centre, then translate (pixels)."""
    if zoom <= 0:
        raise ValueError(f"zoom must be above 0, got {zoom}")
    center = (center_x * (width - 1), center_y * (height - 1))
    m = np.vstack([cv2.getRotationMatrix2D(center, angle, zoom), [0.0, 0.0, 1.0]])
    m[0, 2] += translate_x
    m[1, 2] += translate_y
    return m


def focal_length(width: int, fov: float) -> float:
    """The focal length in pixels of a camera `width` pixels wide with a horizontal field of view in degrees."""
    if not 0 < fov < 180:
        raise ValueError(f"fov must be between 0 and 180 degrees, got {fov}")
    return (width / 2) / math.tan(math.radians(fov) / 2)


def intrinsics(width: int, height: int, fov: float) -> np.ndarray:
    f = focal_length(width, fov)
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def rotation(rotate_x: float = 0.0, rotate_y: float = 0.0, rotate_z: float = 0.0) -> np.ndarray:
    """The camera's rotation (degrees about its x, y and z axes, applied z, then x, then y)."""
    x, y, z = (math.radians(a) for a in (rotate_x, rotate_y, rotate_z))
    rx = np.array([[1, 0, 0], [0, math.cos(x), -math.sin(x)], [0, math.sin(x), math.cos(x)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(z), -math.sin(z), 0], [math.sin(z), math.cos(z), 0], [0, 0, 1]])
    return ry @ rx @ rz


def camera_position(translate_x: float = 0.0, translate_y: float = 0.0, translate_z: float = 0.0) -> np.ndarray:
    """Where the camera moves, in units of the distance to the picture plane (camera axes: x right, y down)."""
    return TRANSLATION_SCALE * np.array([-translate_x, -translate_y, translate_z], dtype=float)


def matrix_3d(width: int, height: int, *, translate_x: float = 0.0, translate_y: float = 0.0,
              translate_z: float = 0.0, rotate_x: float = 0.0, rotate_y: float = 0.0, rotate_z: float = 0.0,
              fov: float = 40.0) -> np.ndarray:
    """The homography of a 3D camera move in front of the picture plane (see the module doc)."""
    k = intrinsics(width, height, fov)
    r = rotation(rotate_x, rotate_y, rotate_z)
    c = camera_position(translate_x, translate_y, translate_z)
    if c[2] >= 1:
        raise ValueError("translate_z moves the camera through the picture; use a smaller value")
    plane = np.eye(3) - np.outer(c, [0.0, 0.0, 1.0])  # points on the plane z = 1, seen from the moved camera
    h = k @ r.T @ plane @ np.linalg.inv(k)
    return h / abs(h[2, 2])  # a positive scale keeps the sign of depth, which sees_picture reads


def sees_picture(matrix: np.ndarray, width: int, height: int) -> bool:
    """Whether every pixel of the moved frame still looks at the picture plane in front of the camera
    (a camera turned by 90 degrees or more, less half the field of view, sees past its edge)."""
    inverse = np.linalg.inv(matrix)
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]], float)
    return bool((corners @ inverse[2] > 1e-6).all())


def is_identity(matrix: np.ndarray, tolerance: float = 1e-9) -> bool:
    return bool(np.allclose(matrix / matrix[2, 2], IDENTITY, atol=tolerance, rtol=0))


def warp(image: np.ndarray, matrix: np.ndarray, border: str = "replicate") -> np.ndarray:
    """Move an image by a 3x3 matrix (affine or perspective), filling uncovered areas by `border`."""
    if is_identity(matrix):
        return image.copy()
    height, width = image.shape[:2]
    mode = BORDERS[border]
    if np.allclose(matrix[2], [0.0, 0.0, matrix[2, 2]]):
        return cv2.warpAffine(image, (matrix / matrix[2, 2])[:2], (width, height), flags=cv2.INTER_LANCZOS4,
                              borderMode=mode)
    return cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_LANCZOS4, borderMode=mode)


class DepthModel(Protocol):
    """What a depth estimator offers the 3D motion: depth per pixel for an RGB image.

    Depth is in units of the distance to the picture plane (1 = on the plane; larger is farther),
    as a float array of the image's height x width.
    """

    def __call__(self, image: np.ndarray) -> np.ndarray: ...


def warp_3d_depth(image: np.ndarray, depth: np.ndarray, *, translate_x: float = 0.0, translate_y: float = 0.0,
                  translate_z: float = 0.0, rotate_x: float = 0.0, rotate_y: float = 0.0, rotate_z: float = 0.0,
                  fov: float = 40.0, border: str = "replicate", iterations: int = 3) -> np.ndarray:
    """The 3D camera move of `matrix_3d` for a picture whose pixels lie at `depth` (see DepthModel).

    Each output pixel looks up its source along its ray: the source depth is found by a few
    fixed-point steps starting from the plane homography's answer. A depth of 1 everywhere gives
    the plane homography's result.
    """
    height, width = image.shape[:2]
    depth = np.asarray(depth, dtype=np.float64)
    if depth.shape != (height, width):
        raise ValueError(f"depth must be {height}x{width}, got {depth.shape}")
    k = intrinsics(width, height, fov)
    r = rotation(rotate_x, rotate_y, rotate_z)
    c = camera_position(translate_x, translate_y, translate_z)
    plane = matrix_3d(width, height, translate_x=translate_x, translate_y=translate_y, translate_z=translate_z,
                      rotate_x=rotate_x, rotate_y=rotate_y, rotate_z=rotate_z, fov=fov)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    target = np.stack([xs, ys, np.ones_like(xs)], axis=-1)  # output pixels
    rays = target @ np.linalg.inv(k).T @ r.T  # their rays in the source camera's axes (before scaling)
    source = target @ np.linalg.inv(plane).T
    source = source[..., :2] / source[..., 2:3]
    for _ in range(iterations):
        z = cv2.remap(depth.astype(np.float32), source[..., 0].astype(np.float32),
                      source[..., 1].astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        scale = (z - c[2]) / rays[..., 2]  # distance along the ray that reaches depth z
        points = rays * scale[..., None] + c
        projected = points @ k.T
        source = projected[..., :2] / projected[..., 2:3]
    return cv2.remap(image, source[..., 0].astype(np.float32), source[..., 1].astype(np.float32),
                     cv2.INTER_LANCZOS4, borderMode=BORDERS[border])


# ----- colour and noise -------------------------------------------------------------------
def _match_channel(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Histogram matching of one uint8 channel (the quantile mapping skimage's match_histograms uses)."""
    src_counts = np.bincount(source.ravel(), minlength=256)
    ref_counts = np.bincount(reference.ravel(), minlength=256)
    src_quantiles = np.cumsum(src_counts) / source.size
    present = ref_counts > 0
    ref_quantiles = (np.cumsum(ref_counts) / reference.size)[present]
    lut = np.interp(src_quantiles, ref_quantiles, np.arange(256)[present])
    return np.clip(np.round(lut), 0, 255).astype(np.uint8)[source]


_TO = {"lab": cv2.COLOR_RGB2LAB, "hsv": cv2.COLOR_RGB2HSV}
_FROM = {"lab": cv2.COLOR_LAB2RGB, "hsv": cv2.COLOR_HSV2RGB}


def match_colors(image: np.ndarray, reference: np.ndarray, space: str = "lab") -> np.ndarray:
    """Match the colour histogram of `image` to `reference`'s per channel in LAB, HSV or RGB."""
    if space not in COLOR_SPACES:
        raise ValueError(f"colour space must be one of {', '.join(COLOR_SPACES)}, got {space!r}")
    src = cv2.cvtColor(image, _TO[space]) if space in _TO else image
    ref = cv2.cvtColor(reference, _TO[space]) if space in _TO else reference
    matched = np.stack([_match_channel(src[..., i], ref[..., i]) for i in range(3)], axis=-1)
    return cv2.cvtColor(matched, _FROM[space]) if space in _FROM else matched


def add_noise(image: np.ndarray, amount: float, seed: int) -> np.ndarray:
    """Add seeded Gaussian noise; `amount` is its standard deviation on Deforum's [-1, 1] scale."""
    if amount <= 0:
        return image
    rng = np.random.default_rng(seed)
    noisy = image.astype(np.float32) + rng.standard_normal(image.shape, dtype=np.float32) * (amount * 127.5)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def adjust_contrast(image: np.ndarray, contrast: float) -> np.ndarray:
    """Scale the distance from mid-grey by `contrast` (1 = unchanged)."""
    if contrast == 1:
        return image
    out = (image.astype(np.float32) - 127.5) * contrast + 127.5
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def blend(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    """(1 - weight) * a + weight * b, rounded."""
    if weight <= 0:
        return a.copy()
    if weight >= 1:
        return b.copy()
    out = a.astype(np.float32) * (1 - weight) + b.astype(np.float32) * weight
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
