"""Offline loading of single-file checkpoints (`.safetensors`, `.ckpt`) of SD 1.x, SD 2.x and SDXL.

`Pipeline.from_single_file(path)` guesses the model type from the state-dict keys and then downloads
the matching diffusers repo's configs from the Hugging Face hub. Each folder of model_configs/ holds
those json configs (no weights) for one model family; `config_dir(family)` completes a copy with the CLIP
tokenizer files (built from the vendored BPE vocabulary), so that

    pipe = load_pipeline(path, torch.float32)

works without a network. Before anything is loaded the file's keys are read (no tensor data, and for
`.ckpt` no pickled code is run) to name its family or refuse it with a sentence saying why. Sources
of the configs and how they are checked are in model_configs/README.md.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from .models import ModelError

HERE = Path(__file__).parent / "model_configs"  # the configs, as data
CACHE_DIR = Path(os.environ.get("DREAMWORLD_CACHE", Path.home() / ".cache" / "dreamworld")) / "configs"
EOS = "<|endoftext|>"


@dataclass(frozen=True)
class Family:
    label: str
    pipeline: str  # diffusers pipeline class
    tokenizers: dict  # tokenizer folder -> pad token
    text_keys: tuple  # state-dict keys that show the family's text encoder(s) are in the file


_CLIP = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
_OPEN_CLIP = "cond_stage_model.model.token_embedding.weight"
_SDXL_TEXT = ("conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
              "conditioner.embedders.1.model.token_embedding.weight")
FAMILIES = {
    "sd15": Family("SD 1.x", "StableDiffusionPipeline", {"tokenizer": EOS}, (_CLIP,)),
    "sd15-inpainting": Family("SD 1.x inpainting", "StableDiffusionInpaintPipeline", {"tokenizer": EOS}, (_CLIP,)),
    "sd21": Family("SD 2.x 768 (v-prediction)", "StableDiffusionPipeline", {"tokenizer": "!"}, (_OPEN_CLIP,)),
    "sd2-base": Family("SD 2.x 512", "StableDiffusionPipeline", {"tokenizer": "!"}, (_OPEN_CLIP,)),
    "sd2-inpainting": Family("SD 2.x inpainting", "StableDiffusionInpaintPipeline", {"tokenizer": "!"},
                             (_OPEN_CLIP,)),
    "sdxl": Family("SDXL", "StableDiffusionXLPipeline", {"tokenizer": EOS, "tokenizer_2": "!"}, _SDXL_TEXT),
}
# diffusers.loaders.single_file_utils.infer_diffusers_model_type() answer -> family
MODEL_TYPES = {"v1": "sd15", "inpainting": "sd15-inpainting", "v2": "sd21",
               "inpainting_v2": "sd2-inpainting", "xl_base": "sdxl"}
UNSUPPORTED = {"xl_refiner": "an SDXL refiner", "xl_inpaint": "an SDXL inpainting model",
               "playground-v2-5": "a Playground v2.5 model", "upscale": "the SD x4 upscaler",
               "instruct-pix2pix": "an InstructPix2Pix model",
               "controlnet": "a ControlNet (those go in models/ControlNet)"}
UNET_KEY = "model.diffusion_model.input_blocks.0.0.weight"  # the UNet's first convolution
# diffusers' "v1" answer is its fallback for anything it does not recognise: require the key it names
SD_UNET_KEY = "model.diffusion_model.output_blocks.11.0.skip_connection.weight"
SDXL_UNET_KEY = "model.diffusion_model.output_blocks.8.0.skip_connection.weight"
VAE_KEYS = ("first_stage_model.decoder.conv_out.weight", "vae.decoder.conv_out.weight")
SD2_BASE_GLOBAL_STEP = 875000  # the heuristic of diffusers' legacy scheduler loader for 512px epsilon SD 2


def config_dir(family: str) -> Path:
    """A complete diffusers-format config folder (jsons + tokenizers, no weights) for a family."""
    src = HERE / family
    if family not in FAMILIES or not src.is_dir():
        raise ModelError(f"unknown model family {family!r} (known: {', '.join(FAMILIES)})")
    digest = hashlib.sha256((Path(__file__).parent / "tokenizer.py").read_bytes())  # tokenizer files derive from it
    for p in sorted(src.rglob("*.json")):
        digest.update(str(p.relative_to(src)).encode() + b"\0" + p.read_bytes())
    stamp = digest.hexdigest()
    out = CACHE_DIR / family
    if (out / ".stamp").is_file() and (out / ".stamp").read_text() == stamp:
        return out

    from .tokenizer import write_clip_tokenizer

    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = CACHE_DIR / f".{family}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    for folder, pad in FAMILIES[family].tokenizers.items():
        write_clip_tokenizer(tmp / folder, pad_token=pad)
    (tmp / ".stamp").write_text(stamp)
    shutil.rmtree(out, ignore_errors=True)
    try:
        tmp.rename(out)
    except OSError:  # another process finished first: use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return out


class _Shapes(Mapping):
    """Key -> object with `.shape`: all diffusers' model-type inference needs, without the data."""

    def __init__(self, shapes: Mapping):
        self._shapes = shapes

    def __getitem__(self, key):
        import torch

        value = self._shapes[key]
        return SimpleNamespace(shape=torch.Size(getattr(value, "shape", value)))

    def __iter__(self):
        return iter(self._shapes)

    def __len__(self):
        return len(self._shapes)


def detect_family(shapes: Mapping, prediction_type: str | None = None, name: str = "this checkpoint") -> str:
    """The family of a checkpoint from its state-dict keys and shapes (tensors or shape tuples);
    ModelError (beginning with `name`) if it is not a complete SD 1.x, SD 2.x or SDXL checkpoint.

    SD 2.x 512px (epsilon) and 768px (v-prediction) checkpoints have identical weight layouts;
    `prediction_type` ("epsilon" or "v_prediction") picks between them, else SD 2.x 768-v.
    """
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    if UNET_KEY not in shapes:
        raise ModelError(f"{name} is not a Stable Diffusion checkpoint: it holds no UNet weights"
                         f"{_what_it_looks_like(shapes)}")
    model_type = infer_diffusers_model_type(_Shapes(shapes))
    if model_type in UNSUPPORTED:
        raise ModelError(f"{name} is {UNSUPPORTED[model_type]}, which DreamWorld cannot load; it loads SD 1.x, "
                         "SD 2.x and SDXL base checkpoints and their SD 1.x / 2.x inpainting variants")
    family = MODEL_TYPES.get(model_type)
    unet_key = SDXL_UNET_KEY if family == "sdxl" else SD_UNET_KEY
    if family is None or unet_key not in shapes:
        raise ModelError(f"{name} has a UNet of a layout DreamWorld does not know (not SD 1.x, SD 2.x or SDXL)")
    label = FAMILIES[family].label
    if not any(key in shapes for key in VAE_KEYS):
        raise ModelError(f"{name} ({label}) holds no VAE weights; DreamWorld needs a complete checkpoint "
                         "(UNet, VAE and text encoder)")
    if not all(key in shapes for key in FAMILIES[family].text_keys):
        raise ModelError(f"{name} ({label}) does not hold the text encoder weights of {label}; DreamWorld "
                         "needs a complete checkpoint (UNet, VAE and text encoder)")
    if family == "sd21" and prediction_type == "epsilon":
        return "sd2-base"
    return family


def _what_it_looks_like(shapes: Mapping) -> str:
    keys = list(shapes)
    if any("lora_" in k or ".lora." in k or "lora_A" in k for k in keys):
        return " (it looks like a LoRA: those go in models/Lora)"
    if keys and all(k.startswith(("encoder.", "decoder.", "quant_conv.", "post_quant_conv.", "first_stage_model.",
                                  "loss.", "model_ema.")) for k in keys):
        return " (it looks like a VAE: those go in models/VAE)"
    return ""


def load_pickle_safely(path: Path, map_location="meta", name: str | None = None):
    """torch.load with weights_only=True: tensors and plain containers only, no code is run. A refusal is
    one sentence beginning with `name` (the file's name), and torch's warnings about the file stay quiet."""
    import torch

    name = name or path.name
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4 in the checkpoint...": the refusal says it
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if unsafe:
            raise ModelError(
                f"{name} was refused: besides tensors it holds pickled Python objects ({unsafe.group(1)}), "
                "and loading them could run arbitrary code; use a .safetensors version of the model") from None
        raise ModelError(f"{name} is not a readable PyTorch checkpoint{_lfs_hint(path)}") from None
    except Exception as e:
        raise ModelError(f"{name} is not a readable PyTorch checkpoint{_lfs_hint(path)} "
                         f"({_first_line(e)})") from None


def _lfs_hint(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            if f.read(40).startswith(b"version https://git-lfs"):
                return " (it is a Git LFS pointer, not the weights: fetch them with `git lfs pull`)"
    except OSError:
        pass
    return ""


def read_checkpoint(path) -> tuple[dict, str | None]:
    """(key -> shape, prediction-type hint) of a checkpoint, reading no tensor data.

    `.ckpt` (and `.pt`, `.bin`) files are unpickled with `weights_only=True` onto the meta device: a
    file holding anything but tensors and plain containers is refused, and no code in it runs.
    """
    path = Path(path)
    hint = None
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(path, framework="pt") as f:
                shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
                meta = f.metadata() or {}
        except Exception as e:
            raise ModelError(f"{path.name} is not a readable .safetensors file{_lfs_hint(path)} "
                             f"({_first_line(e)})") from None
        pred, arch = meta.get("modelspec.prediction_type", ""), meta.get("modelspec.architecture", "")
        if pred == "v" or arch.startswith("stable-diffusion-v2-768-v"):
            hint = "v_prediction"
        elif pred == "epsilon" or arch.startswith("stable-diffusion-v2-512"):
            hint = "epsilon"
    else:
        import torch

        obj = load_pickle_safely(path)
        if isinstance(obj, dict) and obj.get("global_step") == SD2_BASE_GLOBAL_STEP:
            hint = "epsilon"
        while isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise ModelError(f"{path.name} does not hold a state dict")
        shapes = {k: tuple(v.shape) for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return shapes, _yaml_hint(path) or hint


def _yaml_hint(path: Path) -> str | None:
    """A1111's convention: `<name>.yaml` next to the checkpoint is its LDM config."""
    yaml_file = path.with_suffix(".yaml")
    if not yaml_file.is_file():
        return None
    import yaml

    try:
        params = (yaml.safe_load(yaml_file.read_text()) or {}).get("model", {}).get("params", {})
    except (yaml.YAMLError, AttributeError, OSError):
        return None
    return "v_prediction" if params.get("parameterization") == "v" else "epsilon"


def checkpoint_family(path) -> str:
    shapes, hint = read_checkpoint(path)
    return detect_family(shapes, hint, name=Path(path).name)


def single_file_pipeline(path, family: str | None = None):
    """(diffusers pipeline class, kwargs for its `from_single_file(path, **kwargs)`) that load the
    checkpoint offline."""
    import diffusers

    family = family or checkpoint_family(path)
    kwargs = {"config": str(config_dir(family)), "local_files_only": True}
    if family != "sdxl":  # no safety checker (not in the file), hence no feature extractor
        kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return getattr(diffusers, FAMILIES[family].pipeline), kwargs


def load_pipeline(path, dtype):
    """The diffusers pipeline of a single-file checkpoint, loaded offline; ModelError naming the file
    if it is not a complete SD 1.x / 2.x / SDXL checkpoint or cannot be read."""
    path = Path(path)
    family = checkpoint_family(path)
    pipeline_class, kwargs = single_file_pipeline(path, family)
    try:
        return pipeline_class.from_single_file(str(path), torch_dtype=dtype, **kwargs)
    except Exception as e:
        raise _load_error(e, path.name, f"{FAMILIES[family].label} checkpoint", "an") from e


def load_vae(path, dtype, family: str = "sd15"):
    """A single-file VAE (A1111's models/VAE files), with the VAE config of `family`
    (SD 1.x/2.x scale latents by 0.18215, SDXL by 0.13025)."""
    from diffusers import AutoencoderKL

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        load_pickle_safely(path)  # refuse unsafe pickles with a sentence before diffusers reads it
    try:
        return AutoencoderKL.from_single_file(str(path), torch_dtype=dtype, config=str(config_dir(family)),
                                              subfolder="vae", local_files_only=True)
    except Exception as e:
        raise _load_error(e, path.name, "VAE", "a") from e


def _load_error(error: Exception, name: str, what: str, article: str) -> ModelError:
    if isinstance(error, MemoryError):
        return ModelError(f"not enough memory to load {name}")
    if "meta tensor" in str(error):  # diffusers leaves the weights a file lacks on the meta device
        return ModelError(f"{name} is not a complete {what}: some of its weights are missing")
    return ModelError(f"{name} could not be loaded as {article} {what}: {_first_line(error)}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
