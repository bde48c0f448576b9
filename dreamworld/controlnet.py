"""ControlNet units: their declaration (one unit's fields), their models in models/ControlNet, and their
A1111 infotext (the ControlNet extension's `ControlNet 0: "Module: canny, Model: name [hash], ..."`).

A request's `controlnet` field is a list of `ControlUnit`s (several: multi-ControlNet). The controller
(world.py) turns each into a `ControlInput`: the model file, the control image already preprocessed and
sized to the picture, and when in the loop it acts; a backend whose capabilities say `controlnet` adds
each active unit's residuals to its UNet's (see backends/latents.py and torch_backend.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelError
from .preprocessors import NAMES as PREPROCESSORS
from .spec import spec


@dataclass
class ControlUnit:
    """One ControlNet unit. On the command line `preprocessor:model:weight:start:end:image` (later parts may
    be left out), e.g. `canny:control_dreamworld_edges:0.8`; or a JSON object of these fields."""

    preprocessor: str = spec(str, "none", choices=PREPROCESSORS, label="Preprocessor",
                             help="how the control image is made from the image (none: used as it is)")
    model: str = spec(str, "", models="controlnet", label="Model", help="ControlNet name in models/ControlNet")
    weight: float = spec(float, 1.0, min=0.0, max=2.0, step=0.05, label="Control weight",
                         help="how strongly the ControlNet steers (0: not at all)")
    start: float = spec(float, 0.0, min=0.0, max=1.0, step=0.01, label="Starting control step",
                        help="fraction of the denoising steps after which the unit starts acting")
    end: float = spec(float, 1.0, min=0.0, max=1.0, step=0.01, label="Ending control step",
                      help="fraction of the denoising steps after which it stops")
    image: str | None = spec(str, None, kind="image", label="Control image",
                             help="the unit's image (default: the request's input image)")
    threshold_a: float | None = spec(float, None, min=0.0, max=1000.0, label="Threshold A",
                                     help="canny: low threshold (100); soft-sobel / soft: blur sigma x10")
    threshold_b: float | None = spec(float, None, min=0.0, max=1000.0, label="Threshold B",
                                     help="canny: high threshold (200)")


@dataclass(frozen=True)
class ControlInput:
    """A unit ready for a backend: its model, its control image (float32 (H, W, 3), in [0, 1]; -1 marks
    masked pixels for the inpaint preprocessor) at the picture's size, its weight and active span."""
    model: Any  # models.ModelInfo
    image: Any  # numpy array
    weight: float
    start: float
    end: float

    def active(self, i: int, steps: int) -> bool:
        """Whether the unit acts at step i of steps (diffusers' control_guidance_start/end rule)."""
        return not (i / steps < self.start or (i + 1) / steps > self.end)


def check_unit(unit: ControlUnit, index: int):
    from .errors import RequestError
    if not unit.model:
        raise RequestError("controlnet", f"ControlNet unit {index} names no model; choose one in models/ControlNet")
    if unit.end < unit.start:
        raise RequestError("controlnet", f"ControlNet unit {index} ends ({unit.end:g}) before it starts "
                                         f"({unit.start:g})")


# ----- models -----------------------------------------------------------------------------------------
# A diffusers ControlNet config's layout -> the family it belongs to
FAMILY_LABELS = {(768, 320): "SD 1.x", (1024, 320): "SD 2.x", (2048, 320): "SDXL"}
LAYOUT_KEYS = ("cross_attention_dim", "block_out_channels", "layers_per_block", "down_block_types",
               "addition_embed_type", "in_channels")


def describe(config: dict) -> str:
    """The family of a UNet or ControlNet config in words."""
    cad = config.get("cross_attention_dim")
    blocks = tuple(config.get("block_out_channels") or ())
    label = FAMILY_LABELS.get((cad, blocks[0] if blocks else None))
    if config.get("addition_embed_type") == "text_time":
        label = "SDXL"
    return label or f"a custom layout (cross-attention width {cad}, blocks {', '.join(map(str, blocks))})"


def compatible(controlnet_config: dict, unet_config: dict) -> bool:
    def layout(c):
        values = {k: c.get(k) for k in LAYOUT_KEYS}
        values["block_out_channels"] = tuple(values["block_out_channels"] or ())
        values["down_block_types"] = tuple(values["down_block_types"] or ())
        values["in_channels"] = 4  # an inpainting UNet (9 channels) takes SD 1.x ControlNets (4)
        return values
    return layout(controlnet_config) == layout(unet_config)


def single_file_family(path) -> str:
    """'controlnet-sd15' or 'controlnet-sdxl' for an A1111 ControlNet file (reading keys and shapes only)."""
    from .single_file import read_checkpoint
    path = Path(path)
    shapes, _ = read_checkpoint(path)
    prefix = "control_model." if any(k.startswith("control_model.") for k in shapes) else ""
    if f"{prefix}input_hint_block.0.weight" not in shapes:
        raise ModelError(f"{path.name} is not a ControlNet: it holds no input hint block "
                         f"(A1111 ControlNet files such as control_v11p_sd15_canny do)")
    if f"{prefix}label_emb.0.0.weight" in shapes:
        return "controlnet-sdxl"
    key = f"{prefix}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    width = shapes.get(key, (None, None))[1]
    if width == 768:
        return "controlnet-sd15"
    raise ModelError(f"{path.name} is a ControlNet of a layout DreamWorld does not load (cross-attention width "
                     f"{width}); it loads SD 1.x and SDXL ControlNets")


def model_config(info) -> dict:
    """The diffusers config of a ControlNet in models/ (a folder's config.json; for a single file, the
    family's config in model_configs/)."""
    if info.format == "diffusers":
        try:
            return json.loads((Path(info.path) / "config.json").read_text())
        except (OSError, ValueError):
            raise ModelError(f"ControlNet {info.name!r} has no readable config.json in {info.path}") from None
    family = single_file_family(info.path)
    return json.loads((Path(__file__).parent / "model_configs" / family / "config.json").read_text())


def check_family(info, unet_config: dict, model_name: str) -> dict:
    """The ControlNet's config; ModelError if it belongs to another family than the model's UNet."""
    config = model_config(info)
    if not compatible(config, unet_config):
        raise ModelError(f"ControlNet {info.name!r} is for {describe(config)} models and cannot guide "
                         f"{model_name!r}, which is {describe(unet_config)}")
    return config


# ----- A1111 infotext ---------------------------------------------------------------------------------
RESIZE_MODE = "Just Resize"


def unit_infotext(unit: ControlUnit, model_hash: str | None, width: int, height: int) -> str:
    """One unit as the A1111 ControlNet extension writes it (serialize_unit): `Key: value` pairs."""
    model = f"{unit.model} [{model_hash}]" if model_hash else unit.model
    pairs = [("Module", unit.preprocessor), ("Model", model), ("Weight", _num(unit.weight)),
             ("Resize Mode", RESIZE_MODE), ("Processor Res", min(width, height))]
    if unit.threshold_a is not None:
        pairs.append(("Threshold A", _num(unit.threshold_a)))
    if unit.threshold_b is not None:
        pairs.append(("Threshold B", _num(unit.threshold_b)))
    pairs += [("Guidance Start", _num(unit.start)), ("Guidance End", _num(unit.end)),
              ("Pixel Perfect", "False"), ("Control Mode", "Balanced")]
    return ", ".join(f"{k}: {v}" for k, v in pairs)


def infotext_pairs(request, hashes: dict | None = None) -> dict:
    """{"ControlNet 0": "...", ...} for a resolved request's units."""
    return {f"ControlNet {i}": unit_infotext(u, (hashes or {}).get(u.model), request.width, request.height)
            for i, u in enumerate(getattr(request, "controlnet", ()) or ())}


def units_from_infotext(params: dict) -> list[dict]:
    """The units of a parse_parameters() dict (`ControlNet N` keys), as field dicts; unreadable ones left out."""
    names = {"module": "preprocessor", "model": "model", "weight": "weight", "guidance_start": "start",
             "guidance_end": "end", "threshold_a": "threshold_a", "threshold_b": "threshold_b"}
    units = []
    for key in sorted((k for k in params if k.startswith("ControlNet ") and k[11:].isdigit()), key=lambda k: int(k[11:])):
        unit = {}
        for item in str(params[key]).split(","):
            name, sep, value = item.strip().partition(": ")
            field = names.get("_".join(name.lower().split()))
            if sep and field:
                unit[field] = value.split(" [")[0].strip() if field == "model" else value.strip()
        if unit.get("preprocessor") in PREPROCESSORS and unit.get("model"):
            units.append(unit)
    return units


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
