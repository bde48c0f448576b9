"""The TensorFlow backend's weights: a model read by the torch loader (`weights.py`: diffusers folders, single
files), its configs and numpy state dicts cached under DREAMWORLD_CACHE (default ~/.cache/dreamworld), so that
the next load needs neither PyTorch's loader nor the conversion."""
from __future__ import annotations

import gc
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from ..models import ModelError, ModelInfo
from . import cache
from .base import BackendError

log = logging.getLogger("dreamworld")
CONVERSION = 1  # bump when the cached arrays' meaning changes


def cache_root() -> Path:
    return cache.root("tensorflow")


def part(state: dict, *prefixes: str) -> dict:
    return {k: v for k, v in state.items() if k.split(".", 1)[0] in prefixes}


PARTS = ("unet", "vae", "text_encoder")


def cache_dir(model: ModelInfo, vae: ModelInfo | None) -> Path:
    return cache.converted_dir("tensorflow", model, vae, CONVERSION)


def read_converted(model: ModelInfo, vae: ModelInfo | None) -> tuple[dict, dict]:
    """(configs, {part: state dict of numpy arrays}) of a model, from the cache or converted into it."""
    folder = cache_dir(model, vae)
    try:
        meta = json.loads((folder / "meta.json").read_text())
        return meta, {part: load_file(folder / f"{part}.safetensors") for part in PARTS}
    except Exception:  # absent, partial or damaged (safetensors raises its own error type): convert again
        pass
    meta, states = _convert(model, vae)
    try:
        _write_cache(folder, meta, states)
    except OSError as e:
        log.warning("could not cache the TensorFlow weights of %s in %s: %s", model.name, folder, e)
    return meta, states


def _convert(model: ModelInfo, vae: ModelInfo | None) -> tuple[dict, dict]:
    from . import weights
    try:
        pipe = weights.load_pipeline(model, torch.float32)
        if vae is not None:
            pipe.vae = weights.load_vae(vae, torch.float32, pipe)
    except ModelError as e:
        raise BackendError(str(e)) from None
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise BackendError(f"model {model.name!r} could not be loaded from {model.path}: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    if getattr(pipe, "text_encoder_2", None) is not None:
        raise BackendError(f"model {model.name!r} is an SDXL model, which backend 'tensorflow' cannot run; "
                           "use backend 'torch'")
    meta = {"unet": dict(pipe.unet.config), "vae": dict(pipe.vae.config),
            "text_encoder": pipe.text_encoder.config.to_dict(), "scheduler": dict(pipe.scheduler.config),
            "pad_id": int(pipe.tokenizer.pad_token_id)}
    meta = json.loads(json.dumps(meta, default=str))
    # transformers 4 names the text encoder's tensors text_model.*, transformers 5 does not
    states = {part: {k.removeprefix("text_model."): v.detach().float().numpy()
                     for k, v in getattr(pipe, part).state_dict().items()} for part in PARTS}
    del pipe
    gc.collect()
    return meta, states


def _write_cache(folder: Path, meta: dict, states: dict) -> None:
    """Write the cache folder atomically; arrays that fp16 holds exactly are stored as fp16."""
    with cache.replacing(folder) as tmp:
        for part, state in states.items():
            packed = {}
            for key, value in state.items():
                half = value.astype(np.float16)
                packed[key] = half if np.array_equal(half.astype(np.float32), value) else value
            save_file(packed, tmp / f"{part}.safetensors")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))


def lora_deltas(model: ModelInfo, vae: ModelInfo | None, lora) -> dict:
    """{part: {key: float32 delta}} of a LoRA on this model (loras.deltas), cached beside its weights."""
    from .. import loras
    file = cache_dir(model, vae) / "loras" / f"{lora.hash}.safetensors"
    try:
        flat = load_file(file)
    except Exception:  # absent or damaged: computed again
        from . import weights
        pipe = weights.load_pipeline(model, torch.float32)
        found = loras.deltas(pipe, lora)
        del pipe
        flat = {f"{part}/{key}": value for part, state in found.items() for key, value in state.items()}
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            save_file(flat, file.with_suffix(".tmp"))
            os.replace(file.with_suffix(".tmp"), file)
        except OSError as e:
            log.warning("could not cache the LoRA deltas of %s in %s: %s", lora.name, file, e)
    deltas: dict[str, dict] = {}
    for name, value in flat.items():
        part_name, key = name.split("/", 1)
        deltas.setdefault(part_name, {})[key] = value.astype(np.float32)
    return deltas


def base_arrays(model: ModelInfo, vae: ModelInfo | None, keys) -> dict[str, dict]:
    """The converted (LoRA-free) arrays of these (part, key) weights, from the weight cache."""
    from safetensors import safe_open
    out: dict[str, dict] = {}
    folder = cache_dir(model, vae)
    for part_name in {p for p, _ in keys}:
        wanted = [key for p, key in keys if p == part_name]
        try:
            with safe_open(folder / f"{part_name}.safetensors", framework="numpy") as f:
                out[part_name] = {key: f.get_tensor(key) for key in wanted}
        except Exception:  # the cache could not be written: convert again
            _, states = read_converted(model, vae)
            out[part_name] = {key: states[part_name][key] for key in wanted}
    return out
