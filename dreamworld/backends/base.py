"""The interface every generation backend offers, and the capabilities it declares."""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

from PIL import Image, ImageFilter

from . import LoadSpec
from ..errors import BackendError
from ..schema import Request


def out_of_memory(device: str, width: int, height: int, error: BaseException | None = None) -> BackendError:
    """The one sentence for a generation that ran out of (GPU or CPU) memory, with what to try."""
    asked = re.search(r"tried to allocate (\d+) bytes", str(error or ""), re.IGNORECASE)
    more = f" (it needed {int(asked.group(1)) / 2**30:.1f} GiB more)" if asked else ""
    advice = "a smaller size or fewer images" if device == "cpu" else "a smaller size or a lower precision"
    return BackendError(f"out of memory on {device} making a {width}x{height} image{more}; try {advice}")


def is_out_of_memory(error: BaseException) -> bool:
    """A failed allocation, as PyTorch's CPU allocator and OpenVINO (plain RuntimeErrors) and Python report it."""
    said = ("can't allocate memory", "not enough memory", "out of memory", "bad_alloc")
    return isinstance(error, MemoryError) or any(words in str(error) for words in said)


class Interrupted(Exception):
    """Generation was stopped by the user."""


@dataclass(frozen=True)
class Conditioning:
    """SDXL's [negative, positive] text features: per token (2, tokens, width) and pooled (2, pooled width).
    Indexed by rows as a plain (2, tokens, width) array of SD's features is."""
    context: Any
    pooled: Any

    def __getitem__(self, rows) -> "Conditioning":
        return Conditioning(self.context[rows], self.pooled[rows])

    def __len__(self) -> int:
        return len(self.context)


@dataclass(frozen=True)
class Capabilities:
    modes: tuple[str, ...]
    schedulers: tuple[str, ...]
    devices: tuple[str, ...]
    precisions: tuple[str, ...]
    size_multiple: int = 8
    max_clip_skip: int = 12
    latent_walk: bool = False  # Job.noise, Job.prompt_blend and Backend.initial_noise (cinema's dream motion)
    jit: bool = False  # the request's jit field (XLA compilation) is honoured
    parts: bool = False  # the stages below (encode_prompt, denoise, decode_latents, encode_image)
    controlnet: bool = False  # Job.control: ControlNet units (models/ControlNet)
    lora: bool = False  # set_loras (the request's lora field and <lora:...> tags)
    deepcache: bool = False  # the request's deepcache field (reusing the UNet's deep features between steps)


@dataclass(frozen=True)
class Job:
    """One image to make: a resolved request, its seed and its prepared inputs.

    For a latent walk (backends whose capabilities say latent_walk), txt2img jobs may also give
    `noise`, the initial latent noise to start from instead of the seed's (an array shaped like
    Backend.initial_noise's; with initial_noise(seed) and the same seed the result is the plain
    generation's), and `prompt_blend`, ((prompt, weight), ...) whose text embeddings are mixed
    by weight in place of request.prompt.

    By parts (backends whose capabilities say parts): `init_latents`, an img2img job's input as latents
    (Backend.encode_image's) in place of init_image; `from_step` and `to_step`, the part of the denoising
    loop to run (0 and None: all of it).
    """
    request: Request
    seed: int
    init_image: Image.Image | None = None
    mask: Image.Image | None = None
    on_step: Callable[[int, int], None] = lambda step, total: None
    should_stop: Callable[[], bool] = lambda: False
    noise: Any = None
    prompt_blend: tuple[tuple[str, float], ...] | None = None
    init_latents: Any = None
    from_step: int = 0
    to_step: int | None = None
    on_latents: Callable[[int, Any], None] | None = None  # given (step, NCHW latents) after each step: previews
    control: tuple = ()  # controlnet.ControlInput per unit (backends whose capabilities say controlnet)
    original: Image.Image | None = None  # sketch inpainting: the unpainted input the result is pasted on

    @property
    def soft_mask(self) -> Image.Image | None:
        """The inpaint mask with its edge blurred by request.mask_blur pixels: what the backend inpaints
        through and what the result is composited on the input with."""
        return blurred(self.mask, self.request.mask_blur) if self.mask is not None else None

    @property
    def compose_mask(self) -> Image.Image | None:
        """The mask the inpainted result is pasted on the input with: blurred by request.compose_blur
        (default: mask_blur, as soft_mask)."""
        blur = self.request.compose_blur
        return self.soft_mask if blur is None or self.mask is None else blurred(self.mask, blur)

    @property
    def compose_image(self) -> Image.Image | None:
        """What the inpainted result is pasted on: the unpainted input (sketch mode), else the input."""
        return self.original if self.original is not None else self.init_image


class Backend(ABC):
    name: str

    @classmethod
    @abstractmethod
    def capabilities(cls) -> Capabilities:
        """What this backend can do on this machine (without loading a model)."""

    @abstractmethod
    def __init__(self, spec: LoadSpec):
        """Load spec.model (with spec.vae...); raise BackendError with a clear sentence on failure."""

    @classmethod
    def graph_key(cls, request: Request) -> dict:
        """Request fields, beyond the schema's key fields, that a compiled graph fixes (such as the image
        size of an XLA graph): a change calls recompile() instead of reusing the graph."""
        return {}

    def recompile(self, key: dict) -> None:
        """Make the graphs again for a new graph_key() (the weights stay loaded)."""

    @property
    @abstractmethod
    def native_size(self) -> tuple[int, int]:
        """The (width, height) the model was trained at."""

    @property
    @abstractmethod
    def clip_layers(self) -> int:
        """How many layers the model's text encoder has (the clip skip limit)."""

    @abstractmethod
    def generate(self, job: Job) -> Image.Image:
        """Make one image; raise Interrupted if job.should_stop() turned true."""

    def set_loras(self, loras: tuple) -> bool:
        """Apply these LoRAs (dreamworld.loras.LoraFile, with their weights) in place of the applied ones,
        keeping the base model loaded; True if weights or graphs were rebuilt (the controller logs it)."""
        if loras:
            raise BackendError(f"backend {self.name!r} cannot use LoRAs")
        return False

    def set_embeddings(self, embeddings: tuple) -> None:
        """Use these textual-inversion embeddings (dreamworld.embeddings.Embedding) for the words they name."""
        self.embeddings = tuple(embeddings)

    def embedding_vectors(self, encoder: str = "sd") -> dict:
        """word -> vectors of the embeddings in use, for one text encoder."""
        return {e.name: e.for_encoder(encoder) for e in getattr(self, "embeddings", ())
                if e.for_encoder(encoder) is not None}

    @property
    def text_width(self) -> int:
        """The width of the text features the UNet attends to (a LoRA's cross-attention must take it)."""
        return 0

    fast_decoder = None  # the TAESD (models.ModelInfo) a fast_decode request decodes with (set_fast_decoder)

    def set_fast_decoder(self, info) -> None:
        """The TAESD decoder that requests with fast_decode use (the controller finds it)."""
        self.fast_decoder = info

    def initial_noise(self, seed: int, width: int, height: int):
        """The initial latent noise (a float32 numpy array) of a txt2img generation with this seed."""
        raise BackendError(f"backend {self.name!r} cannot do latent walks (dream motion)")

    # ----- stages (by parts): generate is encode_prompt, initial_noise, denoise, decode_latents in order --
    def encode_prompt(self, request: Request, blend=None):
        """[negative, positive] text embeddings of the request's prompts, float32 (2, tokens, width); SDXL:
        a Conditioning, with the pooled embeddings too."""
        raise BackendError(f"backend {self.name!r} cannot run the pipeline by parts")

    def denoise(self, job: Job, context, latents=None, rng_state: bytes | None = None):
        """(latents after job.from_step..job.to_step of the loop, the noise generator's state then)."""
        raise BackendError(f"backend {self.name!r} cannot run the pipeline by parts")

    def decode_latents(self, latents, tiled: bool = False):
        """The VAE decoder's raw output of latents, float32 NCHW in about [-1, 1]."""
        raise BackendError(f"backend {self.name!r} cannot run the pipeline by parts")

    def encode_image(self, image: Image.Image):
        """An image's latents: the VAE posterior's mean, scaled as the model expects."""
        raise BackendError(f"backend {self.name!r} cannot run the pipeline by parts")

    def to_image(self, decoded) -> Image.Image:
        """decode_latents' output as the 8-bit picture generate gives."""
        raise BackendError(f"backend {self.name!r} cannot run the pipeline by parts")

    @property
    def family(self) -> str:
        """The model family whose latents and embeddings this model takes (e.g. 'sd', 'sdxl')."""
        return "sd"

    def close(self) -> None:
        """Release memory held by the model."""


def blurred(mask: Image.Image, radius: int) -> Image.Image:
    """The inpaint mask with its edge blurred by `radius` pixels, for compositing the result on the input."""
    return mask.filter(ImageFilter.GaussianBlur(radius)) if radius else mask


CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs that compute in bf16 natively


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bf16 instructions (AVX512_BF16 or AMX). Without them, bf16 is emulated and far
    slower than fp32 (on an AVX2-only AMD EPYC a 2048x2048 matmul took 350x longer), so `auto` keeps fp32."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return any(flag in CPU_BF16_FLAGS for flag in line.split(":", 1)[-1].split())
    except OSError:
        pass
    return False


def auto_precision(device: str, has_bf16=None) -> str:
    """What precision=auto means on a device: fp16 on GPUs, bf16 on CPUs with bf16 instructions, else fp32."""
    if device in ("cuda", "mps"):
        return "fp16"
    return "bf16" if (cpu_has_bf16() if has_bf16 is None else has_bf16) else "fp32"


def precisions_on(devices, supported) -> tuple[str, ...]:
    """'auto' and every precision that `supported(device)` gives on one of the devices, in a fixed order."""
    found = {p for d in devices if d != "auto" for p in supported(d)}
    return ("auto",) + tuple(p for p in ("fp32", "bf16", "fp16") if p in found)
