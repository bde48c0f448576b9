"""LoRAs: which a request asks for, their files in models/Lora, what they are made for, and their hashes.

A request names LoRAs two ways, as A1111 users do: `<lora:name:weight>` in the prompt (weight optional,
default 1; prompts.py strips the tags before encoding, the saved prompt keeps them) and the `loras` field
(`--lora outline:0.8`). `wanted()` joins both (a name given twice: the prompt's tag wins); `resolve()` finds
the files; `check()` reads each file's header and tensor names (no tensor data) and refuses, in one
sentence naming the LoRA, a file that is not a LoRA, a LyCORIS kind diffusers cannot load, or one made for
another model family. The backends apply them: torch as diffusers/PEFT adapters (`load_lora_weights`,
`set_adapters`: the base weights stay loaded), TensorFlow by merging each LoRA's weight deltas into the
converted weights (`deltas()`: diffusers' own loading and kohya conversion computes them, once per model and
LoRA file, cached).

`Lora hashes` in the A1111 text are A1111's: the sha256 of a .safetensors file's data after its header
(sd-webui-additional-networks' "addnet" hash), first 12 hex digits.
"""
from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from . import models, prompts
from .errors import ModelError, RequestError

FIELD = "lora"


@dataclass(frozen=True)
class LoraFile:
    name: str
    path: Path
    weight: float
    hash: str  # A1111's short hash (12 hex digits)

    @property
    def adapter(self) -> str:
        """The PEFT adapter name of this file (by content, so a replaced file is a new adapter)."""
        return f"lora_{self.hash}"


# ----- what a request asks for ------------------------------------------------------------------------
def wanted(request) -> tuple[tuple[str, float], ...]:
    """(name, weight) of every LoRA the request asks for: the loras field, then the prompt's tags."""
    out = dict(getattr(request, "lora", ()) or ())
    for name, weight in prompt_loras(request.prompt):
        out.pop(name, None)
        out[name] = weight
    return tuple(out.items())


def prompt_loras(prompt: str) -> list[tuple[str, float]]:
    """The `<lora:name[:weight]>` tags of a prompt; a malformed one is a RequestError naming the prompt."""
    found = []
    for kind, args in prompts.extra_networks(prompt):
        if kind != "lora":
            continue
        parts = args.split(":")
        tag = f"<lora:{args}>"
        if not parts[0].strip():
            raise RequestError("prompt", f"the prompt's {tag} names no LoRA; write <lora:name:weight>")
        if len(parts) > 2:
            raise RequestError("prompt", f"the prompt's {tag} has more than one weight; write <lora:name:weight> "
                                         "(separate text encoder and UNet weights are not supported)")
        weight = parts[1].strip() if len(parts) == 2 else "1"
        try:
            value = float(weight)
        except ValueError:
            value = float("nan")
        if not -10 <= value <= 10:  # also NaN
            raise RequestError("prompt", f"the prompt's {tag} has weight {weight!r}; a LoRA's weight must be a "
                                         "number from -10 to 10, as in <lora:name:0.8>")
        found.append((parts[0].strip(), value))
    return found


def with_tag(prompt: str, name: str, weight: float) -> str:
    """The prompt with `<lora:name:weight>` at its end, or that LoRA's tag there given the new weight."""
    tag = f"<lora:{name}:{weight:g}>"
    pattern = re.compile(r"<lora:" + re.escape(name) + r"(?::[^>]*)?>")
    if pattern.search(prompt or ""):
        return pattern.sub(lambda m: tag, prompt, count=1)
    return f"{prompt.rstrip()} {tag}".strip()


def resolve(model_dirs, pairs) -> tuple[LoraFile, ...]:
    """The LoRA files of (name, weight) pairs, in order; RequestError naming an unknown one."""
    out = []
    for name, weight in pairs:
        try:
            info = models.find_model(model_dirs, name, "lora")
        except ModelError as e:
            raise RequestError(FIELD, str(e).replace("lora ", "LoRA ", 1)) from None
        out.append(LoraFile(info.name, info.path, float(weight), short_hash(info.path)))
    return tuple(out)


# ----- hashes ---------------------------------------------------------------------------------------
_hashes: dict[tuple, str] = {}
_lock = threading.Lock()


def addnet_hash(path: Path) -> str:
    """sha256 of a file's tensor data (after the safetensors header), as A1111 hashes LoRA files; of the
    whole file for other formats."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key in _hashes:
            return _hashes[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if path.suffix.lower() == ".safetensors":
            header = f.read(8)
            if len(header) == 8:
                f.seek(8 + struct.unpack("<Q", header)[0])
            else:
                f.seek(0)
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    with _lock:
        _hashes[key] = digest.hexdigest()
    return _hashes[key]


def short_hash(path: Path) -> str:
    return addnet_hash(path)[:12]


def hashes_text(loras: tuple[LoraFile, ...]) -> str | None:
    """The value of A1111's `Lora hashes` key ("name: hash, name: hash"), or None without LoRAs."""
    return ", ".join(f"{lora.name}: {lora.hash}" for lora in loras) or None


# ----- what a file is -------------------------------------------------------------------------------
def header(path: Path, name: str) -> tuple[dict, dict]:
    """(tensor name -> shape, metadata) of a LoRA file, reading no tensor data; ModelError if unreadable."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        from .single_file import load_pickle_safely
        state = load_pickle_safely(path, name=f"LoRA {name!r} ({path.name})")
        if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
            raise ModelError(f"LoRA {name!r} ({path.name}) is not a LoRA: it holds no tensors by name")
        return {k: tuple(v.shape) for k, v in state.items()}, {}
    try:
        with open(path, "rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            if size > 100_000_000 or size > path.stat().st_size:
                raise ValueError("header size")
            data = json.loads(f.read(size))
        meta = data.pop("__metadata__", {}) or {}
        shapes = {k: tuple(v["shape"]) for k, v in data.items()}
        end = max((v["data_offsets"][1] for v in data.values()), default=0)
        if 8 + size + end > path.stat().st_size:
            raise ValueError("truncated")
    except (OSError, ValueError, KeyError, TypeError, struct.error, AttributeError):
        raise ModelError(f"LoRA {name!r} ({path.name}) is not a readable .safetensors file "
                         "(damaged or truncated)") from None
    return shapes, meta


# LyCORIS tensors that diffusers' loaders do not read for SD 1.x / SDXL UNets and text encoders.
_UNSUPPORTED = {"hada_w1_a": "LoHa", "lokr_w1": "LoKr", "oft_blocks": "OFT", "oft_diag": "OFT",
                ".diff": "full-difference (LyCORIS 'full')", ".b_norm": "GLoRA", "a1.weight": "GLoRA"}
_LORA_KEYS = ("lora_down", "lora_up", "lora_A", "lora_B", "lora.down", "lora.up", "lora_linear_layer")


def family(shapes: dict, meta: dict) -> str:
    """'sdxl' or 'sd' (SD 1.x/2.x): from kohya's metadata, else from the tensors' names."""
    version = str(meta.get("ss_base_model_version", "")) + str(meta.get("modelspec.architecture", ""))
    if "sdxl" in version or "stable-diffusion-xl" in version:
        return "sdxl"
    if version.startswith(("sd_v1", "sd_v2", "stable-diffusion-v1", "stable-diffusion-v2")):
        return "sd"
    sdxl = re.compile(r"lora_te2_|text_encoder_2\.|transformer_blocks[._][1-9]|lora_unet_(input|output)_blocks_")
    return "sdxl" if any(sdxl.search(k) for k in shapes) else "sd"


def context_width(shapes: dict) -> int | None:
    """The text-feature width a LoRA's cross-attention key projection takes (768 SD 1.x, 1024 SD 2.x,
    2048 SDXL...), or None if it has none."""
    for key, shape in shapes.items():
        k = key.replace("_", ".")
        if "attn2.to.k" in k and ("lora.down" in k or "lora.A" in k) and len(shape) >= 2:
            return int(shape[1])
    return None


FAMILY_WORDS = {"sd": "SD 1.x/2.x", "sdxl": "SDXL"}


def check(loras: tuple[LoraFile, ...], model_name: str, model_family: str, model_context: int) -> None:
    """Refuse, before generating and naming the LoRA, what the model cannot take."""
    for lora in loras:
        shapes, meta = header(lora.path, lora.name)
        what = f"LoRA {lora.name!r} ({lora.path.name})"
        for marker, kind in _UNSUPPORTED.items():
            if any(marker in k for k in shapes):
                raise ModelError(f"{what} is a LyCORIS {kind} file, which diffusers cannot load for this model; "
                                 "use a plain LoRA (LoCon) version of it")
        if not any(m in k for k in shapes for m in _LORA_KEYS):
            raise ModelError(f"{what} is not a LoRA: it has no lora_down/lora_up (or lora_A/lora_B) tensors")
        made_for = family(shapes, meta)
        if made_for != model_family:
            raise ModelError(f"{what} is made for {FAMILY_WORDS[made_for]} models and cannot be used with "
                             f"{FAMILY_WORDS[model_family]} model {model_name!r}")
        width = context_width(shapes)
        if width is not None and width != model_context:
            raise ModelError(f"{what} is made for a model whose text features are {width} wide; model "
                             f"{model_name!r} has {model_context}, so it is another model family")


# ----- the weights, as diffusers reads them -----------------------------------------------------------
def load_adapter(pipe, lora: LoraFile) -> None:
    """Load a LoRA file into a diffusers pipeline as the PEFT adapter `lora.adapter` (kohya, A1111, diffusers
    and PEFT key layouts are all converted by diffusers); ModelError naming the LoRA if it cannot."""
    from diffusers.utils import logging as diffusers_logging
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # not "No LoRA keys associated to CLIPTextModel found..."
    try:
        pipe.load_lora_weights(str(lora.path.parent), weight_name=lora.path.name, adapter_name=lora.adapter)
    except (ValueError, KeyError, RuntimeError, OSError, TypeError, AttributeError) as e:
        try:
            pipe.delete_adapters([lora.adapter])
        except Exception:  # nothing was registered
            pass
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"LoRA {lora.name!r} ({lora.path.name}) could not be loaded: {first[:200]}") from None
    finally:
        diffusers_logging.set_verbosity(verbosity)


def deltas(pipe, lora: LoraFile) -> dict[str, dict]:
    """{part: {state-dict key: float32 numpy delta at weight 1}} of a LoRA on a pipeline's UNet and text
    encoder: the weight change PEFT's own `get_delta_weight` gives each adapted layer (alpha / rank
    scaling included), so that merged weights = base + weight * delta, as fuse_lora would make them."""
    load_adapter(pipe, lora)
    out: dict[str, dict] = {}
    try:
        for part in ("unet", "text_encoder"):
            module = getattr(pipe, part, None)
            if module is None:
                continue
            for path, layer in module.named_modules():
                if lora.adapter not in getattr(layer, "lora_A", {}):
                    continue
                delta = layer.get_delta_weight(lora.adapter).detach().float().cpu().numpy()
                key = path.removeprefix("text_model.") + ".weight"
                out.setdefault(part, {})[key] = delta
    finally:
        pipe.delete_adapters([lora.adapter])
    return out
