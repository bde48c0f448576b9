"""Which torch devices and precisions this machine has, and what "auto" means on it."""
from __future__ import annotations

import torch

from . import base
from .base import BackendError


def available_devices() -> tuple[str, ...]:
    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append("mps")
    return tuple(devices)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if "mps" in available_devices() else "cpu"
    if device not in available_devices():
        raise BackendError(f"device {device!r} is not available on this machine; available: "
                           + ", ".join(available_devices()))
    return device


def supported_precisions(device: str) -> tuple[str, ...]:
    if device == "cuda":
        return ("fp32", "fp16", "bf16") if torch.cuda.is_bf16_supported() else ("fp32", "fp16")
    if device == "mps":
        return ("fp32", "fp16")
    return ("fp32", "bf16")


def resolve_precision(device: str, precision: str) -> str:
    if precision == "auto":  # fp16 on GPUs (the VAE decodes in fp32 if fp16 overflows), bf16 on bf16 CPUs
        return base.auto_precision(device)
    if precision not in supported_precisions(device):
        raise BackendError(f"precision {precision!r} is not supported on {device}; use one of "
                           + ", ".join(supported_precisions(device)))
    return precision
