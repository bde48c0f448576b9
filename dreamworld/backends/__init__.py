"""The backend registry: which engines exist, how one is loaded, and whether it can serve a request.

A backend is a module with a Backend subclass, named here once; the controller, the GUI and the CLI ask
this module, never the classes directly. A new engine is a new module and one line in REGISTRY.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..models import ModelInfo
    from .base import Backend, Capabilities

# name: (module, class). Imported on first use: each engine pulls in its own framework.
REGISTRY = {
    "torch": ("dreamworld.backends.torch_backend", "TorchBackend"),
    "tensorflow": ("dreamworld.backends.tf_backend", "TensorflowBackend"),
    "openvino": ("dreamworld.backends.openvino_backend", "OpenVINOBackend"),
}
ENGINES = tuple(REGISTRY)
AUTO = "auto"  # the fastest engine here that serves every request (engine())
NAMES = (AUTO,) + ENGINES


@dataclass(frozen=True)
class LoadSpec:
    """What a backend is built from: the request's key variables, resolved to files.

    A new key field of the schema becomes a new attribute here, read by the backends that honour it."""
    model: ModelInfo
    vae: ModelInfo | None = None
    device: str = "auto"
    precision: str = "auto"
    jit: bool = False


def engine(name: str, device: str = "auto") -> str:
    """The registered engine a backend name stands for: 'auto' is openvino where the generation runs on the CPU
    and the openvino package is installed (its UNet is the fastest here: docs/benchmarks.md), torch elsewhere."""
    if name != AUTO:
        return name
    from .torch_devices import resolve_device
    if device not in ("auto", "cpu") or resolve_device(device) != "cpu":
        return "torch"
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "torch"
    return "openvino"


def backend_class(name: str, device: str = "auto") -> type[Backend]:
    from ..schema import RequestError
    if name not in NAMES:
        raise RequestError("backend", f"backend must be one of {', '.join(NAMES)}, got {name!r}")
    module, cls = REGISTRY[engine(name, device)]
    return getattr(importlib.import_module(module), cls)


def capabilities(name: str, device: str = "auto") -> Capabilities:
    return backend_class(name, device).capabilities()


def field_choices(name: str, caps: Capabilities) -> tuple | None:
    """The values of a choice field that a backend allows, or None where it does not limit the field."""
    if name == "motion":
        from ..schema import MOTIONS
        return tuple(m for m in MOTIONS if m != "dream" or caps.latent_walk)
    return {"mode": caps.modes, "scheduler": caps.schedulers, "device": caps.devices,
            "precision": caps.precisions}.get(name)


# Yes/no fields a backend honours only where its capability of the same name is true: what they do.
SWITCH_FIELDS = {"jit": "jit-compile (XLA compilation)",
                 "deepcache": "reuse the UNet's deep features between steps (DeepCache)"}


def serves(name: str, caps: Capabilities) -> bool:
    """Whether the backend honours the field at all (its control is shown)."""
    return bool(getattr(caps, name)) if name in SWITCH_FIELDS else True


def field_max(name: str, caps: Capabilities) -> Any:
    """A backend's own upper limit of a numeric field, or None."""
    return caps.max_clip_skip if name == "clip_skip" else None


def check(request, caps: Capabilities) -> None:
    """Refuse, naming the field, what the backend declares it cannot do (before any model is loaded)."""
    from ..schema import RequestError
    backend = repr(request.backend)
    for name in ("mode", "motion", "scheduler", "device", "precision"):
        allowed = field_choices(name, caps)
        value = getattr(request, name, None)
        if value is None or value in allowed:
            continue
        if name in ("mode", "motion"):
            raise RequestError(name, f"backend {backend} cannot do {name} {value}; it can do " + ", ".join(allowed))
        raise RequestError(name, f"{name} must be one of {', '.join(allowed)} on backend {backend} here, "
                                 f"got {value!r}")
    for name, what in SWITCH_FIELDS.items():
        if getattr(request, name, False) and not serves(name, caps):
            off = "false" if isinstance(getattr(request, name), bool) else "0"
            raise RequestError(name, f"backend {backend} cannot {what}; set {name} to {off}")
    if getattr(request, "controlnet", ()) and not caps.controlnet:
        raise RequestError("controlnet", f"backend {backend} cannot do ControlNet; remove the ControlNet units "
                                         "or use backend 'torch'")
    for name in ("width", "height"):
        value = getattr(request, name)
        if value is not None and value % caps.size_multiple:
            raise RequestError(name, f"{name} must be a multiple of {caps.size_multiple} on backend {backend}, "
                                     f"got {value}")
