"""Finding and describing the models in models/.

Checkpoints live in A1111-style (`Stable-diffusion/`, `VAE/`, `Lora/`, `ESRGAN/`) or ComfyUI-style
(`checkpoints/`, `vae/`, `loras/`, `upscale_models/`) sub-folders, as diffusers folders (with a
`model_index.json`) or single files (`.safetensors`, `.ckpt`).
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from . import files
from .errors import ModelError

KINDS = {
    "checkpoint": ("Stable-diffusion", "checkpoints", "diffusers"),
    "vae": ("VAE", "vae"),
    "lora": ("Lora", "loras"),
    "esrgan": ("ESRGAN", "upscale_models"),
    "controlnet": ("ControlNet", "controlnet"),
    "embedding": ("embeddings",),
    "taesd": ("VAE-approx", "vae_approx"),
}
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")
SUFFIXES = {"esrgan": (".safetensors", ".pth", ".pt"), "embedding": (".safetensors", ".pt", ".bin"),
            "taesd": (".safetensors", ".pth", ".pt")}  # kinds whose files are not WEIGHT_SUFFIXES


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path
    kind: str  # checkpoint, vae, lora, esrgan or controlnet
    format: str  # diffusers, safetensors or ckpt

    @property
    def weights_file(self) -> Path:
        """The file whose hash identifies the model (the UNet for diffusers folders)."""
        if self.format != "diffusers":
            return self.path
        if self.kind == "controlnet":  # a ControlNet folder: its weights beside its config
            for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                         "diffusion_pytorch_model.bin"):
                if (self.path / name).exists():
                    return self.path / name
        for sub in ("unet", "transformer", "."):
            for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
                if (self.path / sub / name).exists():
                    return self.path / sub / name
        return self.path / "model_index.json"

    @property
    def hash(self) -> str:
        """A1111's model hash: the first 10 hex digits of the weights' sha256."""
        return file_sha256(self.weights_file)[:10]


def _describe(path: Path, kind: str) -> ModelInfo | None:
    if path.name.startswith("."):
        return None
    if path.is_dir():
        if (path / "model_index.json").exists() or (kind in ("vae", "controlnet", "taesd")
                                                    and (path / "config.json").exists()):
            return ModelInfo(path.name, path, kind, "diffusers")
        return None
    if path.suffix.lower() in SUFFIXES.get(kind, WEIGHT_SUFFIXES):
        fmt = "safetensors" if path.suffix.lower() == ".safetensors" else "ckpt"
        return ModelInfo(path.stem, path, kind, fmt)
    return None


def _roots(models_dirs) -> list[Path]:
    return [Path(models_dirs)] if isinstance(models_dirs, (str, os.PathLike)) else [Path(d) for d in models_dirs]


def list_models(models_dirs, kind: str = "checkpoint") -> list[ModelInfo]:
    """Every model of a kind in one or more models folders, sorted by name; the first folder wins a
    name clash. Sub-folders inside a kind's folder are searched too."""
    found: dict[str, ModelInfo] = {}
    for root, folder in ((root, folder) for root in _roots(models_dirs) for folder in KINDS[kind]):
        for top, dirs, names in os.walk(root / folder, followlinks=True):
            dirs.sort()
            for name in list(dirs):
                info = _describe(Path(top) / name, kind)
                if info or name.startswith("."):
                    dirs.remove(name)  # never look inside a diffusers folder
                if info:
                    found.setdefault(info.name, info)
            for name in sorted(names):
                info = _describe(Path(top) / name, kind)
                if info:
                    found.setdefault(info.name, info)
    return sorted(found.values(), key=lambda m: m.name.lower())


def find_model(models_dirs, name: str, kind: str = "checkpoint") -> ModelInfo:
    """The model called `name` (or `name.safetensors`); ModelError lists what exists."""
    models = list_models(models_dirs, kind)
    wanted = Path(name).stem if Path(name).suffix.lower() in SUFFIXES.get(kind, WEIGHT_SUFFIXES) else name
    wanted = wanted.split(" [")[0]  # A1111 titles look like "name [hash]"
    for m in models:
        if m.name == wanted:
            return m
    field = "model" if kind == "checkpoint" else kind
    available = ", ".join(m.name for m in models) or "none in " + ", ".join(map(str, _roots(models_dirs)))
    raise ModelError(f"{field} {name!r} was not found; available: {available}")


_hash_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """sha256 of a file, cached in models' `.hashes.json` by path, size and mtime."""
    path = Path(path).resolve()
    stat = path.stat()
    cache_file = _hash_cache_file(path)
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    with _hash_lock:
        cache = _read_json(cache_file)
        if key in cache:
            return cache[key]
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        cache[key] = digest.hexdigest()
        try:
            files.write_json(cache_file, cache)
        except OSError:
            pass  # a read-only models folder still works, only slower
        return cache[key]


def _hash_cache_file(path: Path) -> Path:
    for parent in path.parents:
        if parent.name in ("models",):
            return parent / ".hashes.json"
    return path.parent / ".hashes.json"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
