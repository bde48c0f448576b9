"""The one schema of a generation request.

Every field is declared once here, with its type, default, allowed range and
help text. The CLI flags, the GUI controls, the HTTP API, the metadata writer
and reader, and validation are all derived from `FIELDS`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

MODES = ("txt2img", "img2img", "inpaint")
BACKENDS = ("torch", "tensorflow")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
FORMATS = ("png", "jpg", "webp")
SCHEDULERS = (
    "Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE Karras",
    "DDIM", "LMS", "Heun", "UniPC", "PNDM",
)
MAX_SEED = 2**32 - 1


class RequestError(ValueError):
    """A request field is invalid. `str(error)` is one sentence for the user."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


def _spec(default, *, help: str, min=None, max=None, choices=None,
          multiple_of=None, key=False, kind=None):
    return field(default=default, metadata=dict(
        help=help, min=min, max=max, choices=choices,
        multiple_of=multiple_of, key=key, kind=kind))


@dataclass
class Request:
    """A generation request. `None` for width/height means the model's native size."""

    mode: str = _spec("txt2img", choices=MODES, help="txt2img, img2img or inpaint")
    prompt: str = _spec("", help="what to draw")
    negative_prompt: str = _spec("", help="what to avoid")
    width: int | None = _spec(None, min=64, max=2048, multiple_of=8,
                              help="image width in pixels (default: the model's native size)")
    height: int | None = _spec(None, min=64, max=2048, multiple_of=8,
                               help="image height in pixels (default: the model's native size)")
    steps: int = _spec(20, min=1, max=150, help="number of denoising steps")
    guidance_scale: float = _spec(7.0, min=0.0, max=30.0, help="classifier-free guidance (CFG) scale")
    scheduler: str = _spec("Euler a", choices=SCHEDULERS, help="sampler / scheduler")
    seed: int = _spec(-1, min=-1, max=MAX_SEED, help="random seed, -1 for a random one")
    count: int = _spec(1, min=1, max=16, help="number of images; seeds run seed, seed+1, ...")
    strength: float = _spec(0.75, min=0.0, max=1.0,
                            help="denoising strength for img2img and inpaint")
    init_image: str | None = _spec(None, kind="image", help="input image file for img2img and inpaint")
    mask: str | None = _spec(None, kind="image", help="inpaint mask file (white = repaint)")
    mask_blur: int = _spec(4, min=0, max=64, help="blur radius of the inpaint mask edge in pixels")
    clip_skip: int = _spec(1, min=1, max=12, help="skip the last CLIP layers (1 = none)")
    model: str = _spec("", key=True, help="model name in models/ (default: from settings)")
    vae: str = _spec("", key=True, help="VAE name in models/VAE (default: the model's own)")
    backend: str = _spec("torch", choices=BACKENDS, key=True, help="generation engine")
    device: str = _spec("auto", choices=DEVICES, key=True, help="compute device")
    precision: str = _spec("auto", choices=PRECISIONS, key=True, help="numeric precision")
    format: str = _spec("png", choices=FORMATS, help="image file format")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "Request":
        return dataclasses.replace(self, **changes)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(Request)}
KEY_FIELDS = tuple(name for name, f in FIELDS.items() if f.metadata["key"])


def field_type(name: str) -> type:
    """The base Python type of a field: int, float or str."""
    annotation = str(FIELDS[name].type)
    for t in (int, float, str):
        if annotation.startswith(t.__name__):
            return t
    raise TypeError(f"unsupported annotation {annotation} for {name}")


def allowed(name: str) -> str:
    """Describe the allowed values of a field, for error and help messages."""
    m = FIELDS[name].metadata
    if m["choices"]:
        return "one of " + ", ".join(repr(c) for c in m["choices"])
    parts = []
    if m["min"] is not None:
        parts.append(f"from {m['min']} to {m['max']}")
    if m["multiple_of"]:
        parts.append(f"a multiple of {m['multiple_of']}")
    return " and ".join(parts) or "text"


def _convert(name: str, value: Any) -> Any:
    f = FIELDS[name]
    if value is None or (isinstance(value, str) and value == "" and f.default is None):
        if f.default is None:
            return None
        raise RequestError(name, f"{name} is required ({allowed(name)})")
    kind = field_type(name)
    if f.metadata["kind"] == "image":
        return value if not hasattr(value, "__fspath__") else str(value)
    if kind is str:
        if not isinstance(value, str):
            raise RequestError(name, f"{name} must be text, got {value!r}")
        return value
    if isinstance(value, bool):
        raise RequestError(name, f"{name} must be a number {allowed(name)}, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RequestError(name, f"{name} must be a number {allowed(name)}, got {value!r}") from None
    if not math.isfinite(number):
        raise RequestError(name, f"{name} must be a finite number {allowed(name)}, got {value!r}")
    if kind is int:
        if number != int(number):
            raise RequestError(name, f"{name} must be a whole number {allowed(name)}, got {value!r}")
        return int(number)
    return number


def _check(name: str, value: Any) -> None:
    m = FIELDS[name].metadata
    if value is None or m["kind"] == "image":
        return
    if m["choices"] and value not in m["choices"]:
        raise RequestError(name, f"{name} must be {allowed(name)}, got {value!r}")
    if m["min"] is not None and not (m["min"] <= value <= m["max"]):
        raise RequestError(name, f"{name} must be {allowed(name)}, got {value!r}")
    if m["multiple_of"] and value % m["multiple_of"]:
        raise RequestError(name, f"{name} must be {allowed(name)}, got {value!r}")


def validate(values: dict[str, Any] | None = None, base: Request | None = None,
             limits: dict[str, dict] | None = None) -> Request:
    """Build a Request from `values` over `base`, or raise RequestError naming the field.

    `limits` may lower a field's maximum, e.g. {"steps": {"max": 80}} from settings.json.
    """
    values = dict(values or {})
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise RequestError(unknown[0], f"unknown field {unknown[0]!r}; known fields: {', '.join(FIELDS)}")
    merged = (base or Request()).to_dict()
    merged.update(values)
    out = {}
    for name, value in merged.items():
        value = _convert(name, value)
        _check(name, value)
        limit = (limits or {}).get(name, {}).get("max")
        if limit is not None and value is not None and value > limit:
            raise RequestError(name, f"{name} must be at most {limit} (settings limit), got {value!r}")
        out[name] = value
    request = Request(**out)
    _check_consistency(request)
    return request


def _check_consistency(r: Request) -> None:
    if r.mode in ("img2img", "inpaint") and not r.init_image:
        raise RequestError("init_image", f"init_image is required in {r.mode} mode")
    if r.mode == "inpaint" and r.mask is None:
        raise RequestError("mask", "mask is required in inpaint mode (white = repaint)")
