"""Upscalers: Lanczos (PIL) and Latent built in, and ESRGAN-family models from models/ESRGAN.

A model file (`.safetensors`, or `.pth`/`.pt` read with `torch.load(weights_only=True)`, so a pickle that
needs code is refused and never runs) is loaded with spandrel, which detects its architecture (ESRGAN,
Real-ESRGAN, SwinIR, ...) from its keys. It runs on the torch device in overlapping tiles, blended where
they overlap, so a large image fits in memory. A model whose scale is not the one asked for runs until the
image is at least that large, then Lanczos resizes it to the exact size (as A1111 does).
"""
from __future__ import annotations

import sys
import threading
import types
from pathlib import Path

import numpy as np
from PIL import Image

from . import models
from .errors import ModelError, RequestError

LANCZOS, LATENT, NONE = "Lanczos", "Latent", "None"
BUILTIN = (LANCZOS,)
MIN_SCALE, MAX_SCALE = 1.0, 8.0
TILE, OVERLAP, PAD = 192, 16, 8  # pixels of the input image
_cache: dict = {}
_cache_lock = threading.Lock()


def names(model_dirs, latent: bool = False) -> list[str]:
    """The upscalers' names: the built-in ones, then each file in models/ESRGAN by its name."""
    builtin = (LATENT, *BUILTIN) if latent else BUILTIN
    return [*builtin, *(m.name for m in models.list_models(model_dirs, "esrgan"))]


def check(name: str, model_dirs, field: str = "upscaler", latent: bool = False) -> str:
    """The upscaler's name as listed; RequestError naming the field and the choices if it is unknown."""
    known = names(model_dirs, latent)
    for candidate in known:
        if candidate.lower() == str(name).lower() or (candidate not in BUILTIN and Path(str(name)).stem == candidate):
            return candidate
    raise RequestError(field, f"{field} must be one of {', '.join(known)}, got {name!r}"[:300])


def check_scale(scale, field: str = "scale") -> float:
    try:
        value = float(scale)
    except (TypeError, ValueError):
        value = float("nan")
    if not MIN_SCALE <= value <= MAX_SCALE:
        raise RequestError(field, f"{field} must be a number from {MIN_SCALE:g} to {MAX_SCALE:g}, got {scale!r}"[:200])
    return value


def _spandrel():
    """The spandrel package. Its registry imports torchvision for two architectures that are not
    upscalers (RestoreFormer, LaMa); where torchvision cannot be imported (no build of it matches the CPU
    build of torch) placeholders stand in for it during the import, and those two stay unusable."""
    try:
        import spandrel
        return spandrel
    except (ImportError, RuntimeError) as e:
        if "torchvision" not in f"{e} {getattr(e, 'name', '')}" and not _torchvision_broken():
            raise
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith(("torchvision.", "spandrel"))]:
        del sys.modules[name]
    placeholders = {}
    for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
        module = placeholders[name] = types.ModuleType(name)
        module.__getattr__ = _missing  # type: ignore[method-assign]
    sys.modules.update(placeholders)
    try:
        import spandrel
    finally:
        for name in placeholders:
            sys.modules.pop(name, None)
    return spandrel


def _missing(attribute):
    if attribute.startswith("__"):
        raise AttributeError(attribute)
    return _Unavailable(attribute)


class _Unavailable:
    def __init__(self, name):
        self.name = name

    def __call__(self, *args, **kwargs):
        raise ModelError(f"this model needs torchvision ({self.name}), which is not installed")

    def __getattr__(self, attribute):
        return _Unavailable(f"{self.name}.{attribute}")


def _torchvision_broken() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:
        return True
    return False


def read_state_dict(path: Path) -> dict:
    """The tensors of a model file, no code run: safetensors, or a weights-only unpickling."""
    from .single_file import _first_line, load_pickle_safely

    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as e:
            raise ModelError(f"{path.name} is not a readable .safetensors file ({_first_line(e)})") from None
    state = load_pickle_safely(path, map_location="cpu")
    if not isinstance(state, dict):
        raise ModelError(f"{path.name} does not hold a state dict")
    return state


def load(info: models.ModelInfo):
    """The spandrel ImageModelDescriptor of an upscaler file, cached while the file is unchanged."""
    stat = info.path.stat()
    key = (str(info.path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        spandrel = _spandrel()
        state = read_state_dict(info.path)
        try:
            model = spandrel.ModelLoader().load_from_state_dict(state)
        except spandrel.UnsupportedModelError:
            raise ModelError(f"{info.path.name} is not an upscaler model of an architecture spandrel knows "
                             "(ESRGAN, Real-ESRGAN, SwinIR, ...)") from None
        except Exception as e:
            raise ModelError(f"{info.path.name} could not be loaded as an upscaler: {str(e)[:200]}") from None
        if model.purpose != "SR" or model.input_channels != 3 or model.output_channels != 3:
            raise ModelError(f"{info.path.name} is a {model.architecture.name} model for {model.purpose}, "
                             "not an upscaler of RGB images")
        _cache.clear()
        _cache[key] = model.eval()
        return _cache[key]


def run_tiled(model, image, device: str = "cpu", tile: int = TILE, overlap: int = OVERLAP):
    """The model's output for an (N, 3, H, W) tensor in [0, 1], computed on tiles of at most `tile` input
    pixels a side that overlap by `overlap`, each weighted by a ramp across the overlap when blended. The
    image is first extended by PAD pixels of its own edge, which are cut from the result."""
    import torch

    image = _pad(image, PAD)  # models see the image's edge continued, not the convolutions' zero padding
    n, c, h, w = image.shape
    s = model.scale
    out = torch.zeros(n, c, h * s, w * s)
    weight = torch.zeros(1, 1, h * s, w * s)
    step = max(1, tile - overlap)
    for y in _starts(h, tile, step):
        for x in _starts(w, tile, step):
            part = image[:, :, y:y + tile, x:x + tile].to(device)
            with torch.no_grad():
                result = model(part).float().clamp(0, 1).cpu()
            ramp = _ramp(result.shape[-2:], overlap * s, top=y > 0, left=x > 0,
                         bottom=y + tile < h, right=x + tile < w)
            out[:, :, y * s:y * s + result.shape[-2], x * s:x * s + result.shape[-1]] += result * ramp
            weight[:, :, y * s:y * s + result.shape[-2], x * s:x * s + result.shape[-1]] += ramp
    return (out / weight)[:, :, PAD * s:(h - PAD) * s, PAD * s:(w - PAD) * s]


def _pad(image, pad: int):
    import torch.nn.functional as F
    return F.pad(image, (pad, pad, pad, pad), mode="replicate")


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def _ramp(shape, width: int, *, top: bool, left: bool, bottom: bool, right: bool):
    """Weights rising from near 0 to 1 across `width` pixels on the sides that overlap a neighbour."""
    import torch

    h, w = shape
    width = max(1, width)
    rise = (torch.arange(width, dtype=torch.float32) + 0.5) / width
    wy, wx = torch.ones(h), torch.ones(w)
    if top:
        wy[:width] = torch.minimum(wy[:width], rise[:h])
    if bottom:
        wy[-width:] = torch.minimum(wy[-width:], rise.flip(0)[-h:])
    if left:
        wx[:width] = torch.minimum(wx[:width], rise[:w])
    if right:
        wx[-width:] = torch.minimum(wx[-width:], rise.flip(0)[-w:])
    return (wy[:, None] * wx[None, :])[None, None]


def _to_tensor(image: Image.Image):
    import torch
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


def _to_image(tensor) -> Image.Image:
    array = (tensor[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(array)


def with_model(image: Image.Image, model, size: tuple[int, int], device: str = "cpu",
               tile: int = TILE, overlap: int = OVERLAP) -> Image.Image:
    """Run the model until the image is at least `size` (at most 3 passes), then resize to `size` exactly."""
    for _ in range(3):
        if image.width >= size[0] and image.height >= size[1]:
            break
        image = _to_image(run_tiled(model, _to_tensor(image), device, tile, overlap))
    return image if image.size == size else image.resize(size, Image.LANCZOS)


def upscale(image: Image.Image, scale: float, name: str, model_dirs, device: str = "auto") -> Image.Image:
    """The image `scale` times larger (each side rounded), by the upscaler called `name`."""
    from .creations import MAX_SIDE

    name = check(name, model_dirs)
    scale = check_scale(scale)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if max(size) > MAX_SIDE:
        raise RequestError("scale", f"scale {scale:g} makes {size[0]}x{size[1]} pixels; each side must be at most "
                                    f"{MAX_SIDE}")
    return upscale_to(image, size, name, model_dirs, device)


def upscale_to(image: Image.Image, size: tuple[int, int], name: str, model_dirs, device: str = "auto"):
    """The image resized to `size` by the upscaler `name` (a checked name: Lanczos or a model's)."""
    image = image.convert("RGB")
    if name == LANCZOS:
        return image.resize(size, Image.LANCZOS)
    model = load(models.find_model(model_dirs, name, "esrgan"))
    return with_model(image, model, size, device_for(device))


def device_for(device: str) -> str:
    from .backends.torch_backend import resolve_device
    return resolve_device(device or "auto")


def model_scale(name: str, model_dirs) -> int | None:
    """The scale of an upscaler model (None for the built-in ones)."""
    if name in (LANCZOS, LATENT, NONE):
        return None
    return load(models.find_model(model_dirs, name, "esrgan")).scale


def postprocess_text(scale: float, name: str) -> str:
    """What A1111's extras tab adds to an image's parameters."""
    return f"Postprocess upscale by: {scale:g}, Postprocess upscaler: {name}"


def upscale_file(path, scale, name: str, model_dirs, creations_dir, device: str = "auto") -> Path:
    """Upscale an image file into a new creation: the source's metadata with A1111's postprocess keys
    added, and in our record the source, scale and upscaler. Returns the new file's path."""
    from . import __version__, creations

    name, scale = check(name, model_dirs), check_scale(scale)
    creations_dir = creations.check_folder(creations_dir)
    path = Path(path)
    source = creations.open_image(path)
    data = creations.read_creation(path)
    image = upscale(source.convert("RGB"), scale, name, model_dirs, device)
    added = postprocess_text(scale, name)
    parameters = f"{data['parameters']}, {added}" if data["parameters"] else added
    record = dict(data["request"] or {"prompt": ""})
    record.update(dreamworld_version=__version__, upscale={"source": _shown(path, creations_dir), "scale": scale,
                                                           "upscaler": name})
    fmt = path.suffix.lower().lstrip(".").replace("jpeg", "jpg")
    fmt = fmt if fmt in ("png", "jpg", "webp") else "png"
    slug = "-".join(filter(None, (creations._slug(str(record.get("prompt") or "")), "upscaled")))
    return creations.save_record(image, record, fmt, parameters=parameters, creations_dir=creations_dir, slug=slug)


def _shown(path: Path, creations_dir: Path) -> str:
    """The source as recorded: relative to the creations folder when inside it."""
    resolved = path.resolve()
    root = Path(creations_dir).resolve()
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(resolved)
