"""TIFF states of the pipeline by parts: reading, checking and writing them with tifffile.

Files (NAME is the user's):
    NAME_text.tiff     the [negative, positive] text embeddings, float32, pages (2, tokens, width); SDXL's
                       pooled embeddings (2, pooled width) follow as a second series
    NAME_state1.tiff   a starting latent (noise for a seed, or an image's latent), float32 (C, H/8, W/8),
                       one planar page an image editor opens with its channels as float
    NAME_state2.tiff   the latent after (part of) the denoising loop, same layout
    NAME_decoded.tiff  the decoder's output in [0, 1], float16 or float32, (H, W, 3)
Each holds a JSON description (tifffile's shaped metadata): {"shape": [...], "dreamworld": {...}}. Files of
StableDiffusion-By-Parts (float16 latent pages (1, 4, h, w), float32 embedding pages (2, 77, 768), a
description {"shape": [...]} only) are read too.
"""
from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path

import numpy as np
import tifffile

from .. import files
from ..backends.base import Conditioning
from ..errors import DreamWorldError

KEY = "dreamworld"
# A damaged file is said in one PartsError sentence; tifffile's own log lines about it would only repeat it.
logging.getLogger("tifffile").setLevel(logging.CRITICAL)
FLOATS = (np.float16, np.float32, np.float64)
MAX_VALUES = 8192 * 8192 * 3  # the largest state: a decoded image of the largest size, or far bigger latents


class PartsError(DreamWorldError, ValueError):
    """A state file cannot be read, or does not fit the stage or the model it is given to."""


SUFFIXES = ("text", "state1", "state2", "decoded")


def keep(path, folder) -> Path:
    """Copy a user's state or text file into `folder` under its own name, once it reads as a state."""
    path = Path(path)
    suffix = path.stem.rsplit("_", 1)[-1] if "_" in path.stem else ""
    if suffix not in ("text", "state1", "state2"):
        raise PartsError(f"file: {path.name!r} is not named NAME_text.tiff, NAME_state1.tiff or NAME_state2.tiff")
    read(path, "file")  # a readable, finite, floating-point state of a sane size
    target = Path(folder) / f"{base_name(path.name)}_{suffix}.tiff"
    target.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomic(target, path.read_bytes())
    return target


def base_name(name) -> str:
    """NAME of NAME, NAME.png, NAME_state2.tiff..."""
    name = str(name)
    for end in (".tiff", ".tif", ".png"):
        name = name.removesuffix(end)
    for suffix in SUFFIXES:
        name = name.removesuffix(f"_{suffix}")
    return name


def path_for(name, suffix: str) -> Path:
    """NAME -> NAME_<suffix>.tiff."""
    return Path(f"{base_name(name)}_{suffix}.tiff")


def write(path, array: np.ndarray, info: dict, *, planar: bool = False, more: tuple = ()) -> Path:
    """Write `array` with `info` in its description, and the arrays `more` as further series, atomically
    (a temp file beside it, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    options = dict(photometric="minisblack", planarconfig="separate") if planar else {}
    if array.ndim == 3 and array.shape[-1] == 3 and not planar:
        options = dict(photometric="rgb")
    try:
        tifffile.imwrite(tmp, array, metadata={KEY: info}, **options)
        for extra in more:
            tifffile.imwrite(tmp, extra, append=True, photometric="minisblack")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path, embeddings, info: dict) -> Path:
    """A text file: the embeddings array, or SDXL's Conditioning (its pooled features a second series)."""
    if isinstance(embeddings, Conditioning):
        return write(path, embeddings.context, info, more=(embeddings.pooled,))
    return write(path, embeddings, info)


def read(path, what: str) -> tuple[np.ndarray, dict]:
    """(array, our description or {}) of a TIFF state; `what` names the file in errors."""
    arrays, info = read_series(path, what)
    return arrays[0], info


def read_series(path, what: str) -> tuple[list[np.ndarray], dict]:
    """([each series' array], our description or {}) of a TIFF state, every array checked as a state."""
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            shapes = [tuple(series.shape) for series in tif.series] or [()]
            values = sum(int(np.prod(shape, dtype=np.float64)) for shape in shapes)
            if values > MAX_VALUES:  # checked before anything is allocated
                raise PartsError(f"{what}: {path.name!r} declares {' x '.join(map(str, shapes[0]))} values, more "
                                 f"than any state holds (at most {MAX_VALUES:,})")
            arrays = [series.asarray() for series in tif.series] if tif.series else [tif.asarray()]
            shaped = tif.shaped_metadata or ({},)
            description = tif.pages[0].description
    except FileNotFoundError:
        raise PartsError(f"{what}: {path.name!r} does not exist") from None
    except PartsError:
        raise
    except Exception:
        raise PartsError(f"{what}: {path.name!r} is not a TIFF file, or it is damaged") from None
    info = shaped[0].get(KEY) if isinstance(shaped[0], dict) else None
    if info is None:  # another writer: a plain JSON description, if any
        try:
            info = json.loads(description).get(KEY) or {}
        except (ValueError, AttributeError):
            info = {}
    for array in arrays:
        if array.dtype not in FLOATS:
            raise PartsError(f"{what}: {path.name!r} holds {array.dtype} pages; a state is floating-point "
                             "(float16 or float32)")
        if not np.isfinite(array).all():
            raise PartsError(f"{what}: {path.name!r} holds values that are not finite numbers")
    return [array.astype(np.float32) for array in arrays], info if isinstance(info, dict) else {}


def as_latent(array: np.ndarray, channels: int, name: str, what: str = "latent") -> np.ndarray:
    """A state's array as a (channels, h, w) latent, from our planar pages, By-Parts' (1, C, h, w) pages or
    an editor's interleaved (h, w, C) image."""
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[0] != channels and array.shape[-1] == channels:
        array = np.moveaxis(array, -1, 0)
    if array.ndim != 3 or array.shape[0] != channels or min(array.shape[1:]) < 8:
        raise PartsError(f"{what}: {name!r} holds an array of shape {tuple(array.shape)}, not a latent of "
                         f"shape ({channels}, height/8, width/8) with at least 8x8 latent pixels")
    return np.ascontiguousarray(array)


def as_text(arrays: list[np.ndarray], width: int, family: str, name: str):
    """A text file's series as [negative, positive] embeddings (2, tokens, width); for an SDXL model, with
    the pooled embeddings of its second series, as a Conditioning."""
    array = arrays[0]
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[0] != 2:
        raise PartsError(f"text: {name!r} holds an array of shape {tuple(array.shape)}, not [negative, "
                         "positive] embeddings of shape (2, tokens, width)")
    if array.shape[2] != width:
        raise PartsError(f"text: {name!r} holds {array.shape[2]}-wide embeddings, made by a model of another "
                         f"family; this model takes {width}-wide ones")
    if family != "sdxl":
        return np.ascontiguousarray(array)
    pooled = arrays[1] if len(arrays) > 1 else None
    if pooled is None or pooled.ndim != 2 or pooled.shape[0] != 2:
        raise PartsError(f"text: {name!r} holds no pooled embeddings of shape (2, width) as its second series; "
                         "an SDXL model needs them (write the file with `parts text` on an SDXL model)")
    return Conditioning(np.ascontiguousarray(array), np.ascontiguousarray(pooled))


def check_family(info: dict, family: str, name: str, what: str) -> None:
    made = info.get("family")
    if made and made != family:
        raise PartsError(f"{what}: {name!r} was made by an {made.upper()} model; this model is {family.upper()}")


def pack_bytes(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unpack_bytes(text) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True) if text else None
    except (ValueError, TypeError):
        raise PartsError("the state's description holds a damaged noise generator state") from None
