"""The OpenVINO backend: the torch backend on the CPU with its UNet, nearly all of the work, compiled by
OpenVINO wherever that can serve the step (on an AVX512_BF16 CPU its bf16 UNet runs 1.6x faster than torch's:
docs/benchmarks.md). It is what backend 'auto' picks on a machine without a GPU.

The UNet of an SD 1.x or 2.x model is converted once from the loaded diffusers UNet (`openvino.convert_model`,
any batch and size) and kept as OpenVINO IR under $DREAMWORLD_CACHE/openvino. Steps the IR cannot take run on
the torch UNet, kept in the same precision: ControlNet units, active LoRAs, DeepCache, latents whose sides are
not multiples of 8 (the IR keeps its upsampling sizes) and SDXL models (not converted). The VAE's decoder is
converted too (in the float precision); the text encoder, the VAE's encoder and tiled decoding are torch's.
precision=int8 runs a quantized copy of the UNet's IR (openvino_int8.py).
"""
from __future__ import annotations

import importlib.util
import logging
import warnings
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..models import ModelInfo
from . import LoadSpec, cache
from .base import BackendError, Capabilities, Job, auto_precision
from .torch_backend import DTYPES, TorchBackend

log = logging.getLogger("dreamworld")
CONVERSION = 1  # bump when the cached IR's meaning changes
HINTS = {"fp32": "f32", "bf16": "bf16"}  # OpenVINO's INFERENCE_PRECISION_HINT
# prompts of a few short generations whose UNet inputs calibrate precision=int8
CALIBRATION = ("a photograph of a cat on a wooden table, soft light", "a green triangle on a white background",
               "a large red circle on a blue background", "a photograph of a mountain lake at dawn")
CALIBRATION_STEPS = 10


@lru_cache(maxsize=1)
def supported_precisions() -> tuple[str, ...]:
    try:
        import openvino as ov
    except ImportError:
        raise BackendError("backend 'openvino' needs the openvino package: "
                           "pip install --no-deps -r requirements-nodeps.txt") from None
    bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return ("fp32", "bf16", "int8") if bf16 else ("fp32", "int8")


def default_precision(floats: str) -> str:
    """What precision=auto means here: int8 where NNCF can quantize (1.24x the float UNet; docs/benchmarks.md
    states its fidelity), else the CPU's float precision."""
    return "int8" if importlib.util.find_spec("nncf") is not None else floats


class OpenVINOBackend(TorchBackend):
    name = "openvino"

    @classmethod
    def capabilities(cls) -> Capabilities:
        return replace(TorchBackend.capabilities(), devices=("auto", "cpu"),
                       precisions=("auto",) + supported_precisions())

    def __init__(self, spec: LoadSpec):
        precisions = supported_precisions()
        floats = auto_precision("cpu", "bf16" in precisions)  # of all but int8's quantized products
        precision = default_precision(floats) if spec.precision == "auto" else spec.precision
        if spec.device not in ("auto", "cpu") or precision not in precisions:
            raise BackendError(f"backend 'openvino' runs on the CPU in {' or '.join(precisions)} here, "
                               f"not {spec.device} {spec.precision}")
        floats = floats if precision == "int8" else precision
        super().__init__(replace(spec, device="cpu", precision="fp32"))  # the UNet is converted from fp32
        pipe = self._pipes["txt2img"]
        self._ir = None
        self._loras_on = self._deepcache_on = False
        if not self.sdxl:  # (SDXL's UNet takes more inputs than the IR: its steps are torch's)
            self._ir = compiled(self._unet_ir(spec.model, precision, floats), floats)
        self._decoder = compiled(converted_decoder(spec.model, spec.vae, pipe.vae), floats)
        for net in (pipe.unet, pipe.vae):  # (diffusers' own .to logs a warning for bf16)
            torch.nn.Module.to(net, DTYPES[floats])
        self.precision, self.dtype = precision, DTYPES[floats]

    def _unet_ir(self, model: ModelInfo, precision: str, floats: str):
        unet = self._pipes["txt2img"].unet
        if precision != "int8":
            return converted_unet(model, unet)
        from . import openvino_int8

        def calibrated():
            converted = converted_unet(model, unet)
            return converted, self._calibration(compiled(converted, floats))

        return openvino_int8.quantized_unet(model, calibrated)

    def _calibration(self, ir) -> list:
        """The inputs of `ir` (the float UNet) over a few short generations of varied prompts at the model's size
        (512 at most)."""
        from ..schema import validate
        size, inputs = min(self.native_size[0], 512), []

        def recording(arrays):
            inputs.append([np.array(a) for a in arrays])
            return ir(arrays)

        self._ir = recording
        try:
            for seed, prompt in enumerate(CALIBRATION):
                job = Job(validate(dict(prompt=prompt, steps=CALIBRATION_STEPS, width=size, height=size)), seed)
                self.denoise(job, self.encode_prompt(job.request))
        finally:
            self._ir = None
        return inputs

    def set_loras(self, loras: tuple) -> bool:
        self._loras_on = any(lora.weight for lora in loras)  # (at weight 0 the UNet is the base one)
        return super().set_loras(loras)

    def denoise(self, job: Job, context, latents=None, rng_state: bytes | None = None):
        self._deepcache_on = bool(job.request.deepcache)
        return super().denoise(job, context, latents, rng_state)

    def serves(self, latents: torch.Tensor, context, control) -> bool:
        """Whether the IR takes this step (else the torch UNet does)."""
        return (self._ir is not None and not control and not self._loras_on and not self._deepcache_on
                and isinstance(context, np.ndarray) and latents.shape[-1] % 8 == 0 and latents.shape[-2] % 8 == 0)

    def predict_noise(self, latents: torch.Tensor, t, context, control=(), control_input=None) -> torch.Tensor:
        if not self.serves(latents, context, control):
            return super().predict_noise(latents, t, context, control, control_input)
        inputs = [np.ascontiguousarray(latents.numpy(), np.float32), np.float32(float(t)),
                  np.ascontiguousarray(context, np.float32)]
        return torch.from_numpy(np.array(self._ir(inputs)[0]))  # a copy: the request reuses its buffer

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = np.ascontiguousarray((latents / self.vae_config["scaling_factor"]).numpy(), np.float32)
        decoded = np.array(self._decoder([z])[0])
        if decoded.shape[-2:] != (z.shape[-2] * self.scale, z.shape[-1] * self.scale):
            return super().decode(latents)  # (not seen: the decoder's upsampling follows the input's size)
        return torch.from_numpy(decoded)

    def close(self) -> None:
        self._ir = self._decoder = None
        super().close()


class UNetCall(torch.nn.Module):
    """The UNet as a function of (latents, timestep, text features) -> noise, the form OpenVINO converts."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, hidden):
        return self.unet(sample, timestep, encoder_hidden_states=hidden, return_dict=False)[0]


class DecoderCall(torch.nn.Module):
    """The VAE's decoder as a function of unscaled latents -> picture in [-1, 1], the form OpenVINO converts."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latents):
        return self.vae.decode(latents, return_dict=False)[0]


def converted_decoder(model: ModelInfo, vae_file: ModelInfo | None, vae):
    """The VAE's decoder as OpenVINO IR with fp32 weights, read from the cache, else converted and cached."""
    import openvino as ov

    def convert():
        example = torch.randn(1, vae.config.latent_channels, 16, 16)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            return ov.convert_model(DecoderCall(vae).eval(), example_input=example)

    xml = cache.converted_dir("openvino-vae", model, vae_file, CONVERSION) / "decoder.xml"
    return cached_ir(xml, convert, f"converting the VAE decoder of {model.name} for OpenVINO")


def converted_unet(model: ModelInfo, unet):
    """The model's UNet as OpenVINO IR with fp32 weights (so that fp32 gives torch's noise predictions): read
    from the cache, else converted and cached."""
    import openvino as ov

    def convert():
        channels, width = unet.config.in_channels, unet.config.cross_attention_dim
        example = (torch.randn(2, channels, 16, 16), torch.tensor(500.0), torch.randn(2, 77, width))
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on the branches it fixes
            return ov.convert_model(UNetCall(unet).eval(), example_input=example)

    xml = cache.converted_dir("openvino", model, None, CONVERSION, named=False) / "unet.xml"  # the hashed UNet's
    return cached_ir(xml, convert, f"converting the UNet of {model.name} for OpenVINO")


def compiled(converted, precision: str):
    import openvino as ov
    return ov.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": HINTS[precision]})


def cached_ir(xml: Path, make: Callable, doing: str):
    """The IR kept at `xml`, else made by make() and kept there (a damaged copy is made again; a cache that
    cannot be written costs making it next time)."""
    import openvino as ov
    if xml.is_file():
        try:
            return ov.Core().read_model(xml)
        except RuntimeError as e:
            log.warning("the OpenVINO model kept in %s could not be read (%s); making it again", xml.parent,
                        str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    log.info("%s (once: it is kept in %s)", doing, xml.parent)
    made = make()
    try:
        with cache.replacing(xml.parent) as tmp:
            ov.save_model(made, tmp / xml.name, compress_to_fp16=False)
    except OSError as e:
        log.warning("could not keep the OpenVINO model in %s: %s", xml.parent, e)
    return made
