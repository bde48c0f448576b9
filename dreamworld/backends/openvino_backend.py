"""The OpenVINO backend: the torch backend's stages with the UNet, nearly all of the work, compiled by OpenVINO
for the CPU (on an AVX512_BF16 CPU its bf16 UNet runs 1.6x faster than torch's: docs/benchmarks.md).

The UNet is converted once from the loaded diffusers UNet (`openvino.convert_model`, any batch and size) and
kept as OpenVINO IR under $DREAMWORLD_CACHE/openvino; the text encoder and the VAE stay torch's. SD 1.x and 2.x
models; SDXL, ControlNet, LoRAs and DeepCache run on the torch backend.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..models import ModelInfo
from ..schema import MODES
from . import LoadSpec, cache, samplers
from .base import BackendError, Capabilities, auto_precision
from .torch_backend import DTYPES, TorchBackend

log = logging.getLogger("dreamworld")
CONVERSION = 1  # bump when the cached IR's meaning changes
SIZE_MULTIPLE = 64  # the converted UNet keeps its upsampling sizes: latents in multiples of 8
HINTS = {"fp32": "f32", "bf16": "bf16"}  # OpenVINO's INFERENCE_PRECISION_HINT


@lru_cache(maxsize=1)
def supported_precisions() -> tuple[str, ...]:
    try:
        import openvino as ov
    except ImportError:
        raise BackendError("backend 'openvino' needs the openvino package: "
                           "pip install --no-deps -r requirements-nodeps.txt") from None
    return ("fp32", "bf16") if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES") else ("fp32",)


class OpenVINOBackend(TorchBackend):
    name = "openvino"

    @classmethod
    def capabilities(cls) -> Capabilities:
        return Capabilities(modes=MODES, schedulers=tuple(samplers.SCHEDULERS), devices=("auto", "cpu"),
                            precisions=("auto",) + supported_precisions(), size_multiple=SIZE_MULTIPLE,
                            latent_walk=True, parts=True)

    def __init__(self, spec: LoadSpec):
        precisions = supported_precisions()
        precision = auto_precision("cpu", "bf16" in precisions) if spec.precision == "auto" else spec.precision
        if spec.device not in ("auto", "cpu") or precision not in precisions:
            raise BackendError(f"backend 'openvino' runs on the CPU in {' or '.join(precisions)} here, "
                               f"not {spec.device} {spec.precision}")
        super().__init__(replace(spec, device="cpu", precision="fp32"))  # the UNet is converted from fp32
        if self.sdxl:
            raise BackendError(f"model {self.model_name!r} is an SDXL model: SDXL runs on the torch backend")
        pipe = self._pipes["txt2img"]
        self._unet = compiled_unet(spec.model, pipe.unet, precision)
        pipe.unet.to("meta")  # its weights live in OpenVINO now; the config stays
        torch.nn.Module.to(pipe.vae, DTYPES[precision])  # (diffusers' own .to logs a warning for bf16)
        self.precision = precision

    def predict_noise(self, latents: torch.Tensor, t, context, control=(), control_input=None) -> torch.Tensor:
        if control:
            raise BackendError("backend 'openvino' cannot do ControlNet; use the torch backend")
        inputs = [np.ascontiguousarray(latents.numpy(), np.float32), np.float32(float(t)),
                  np.ascontiguousarray(context, np.float32)]
        return torch.from_numpy(np.array(self._unet(inputs)[0]))  # a copy: the request reuses its buffer

    def close(self) -> None:
        self._unet = None
        super().close()


class UNetCall(torch.nn.Module):
    """The UNet as a function of (latents, timestep, text features) -> noise, the form OpenVINO converts."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, hidden):
        return self.unet(sample, timestep, encoder_hidden_states=hidden, return_dict=False)[0]


def compiled_unet(model: ModelInfo, unet, precision: str):
    """The model's UNet compiled for the CPU: read from the cache, else converted and cached (with fp32 weights,
    so that fp32 gives torch's noise predictions)."""
    import openvino as ov
    core = ov.Core()
    xml = cache.converted_dir("openvino", model, None, CONVERSION) / "unet.xml"
    converted = None
    if xml.is_file():
        try:
            converted = core.read_model(xml)
        except RuntimeError as e:  # a damaged cache: convert again
            log.warning("the OpenVINO UNet kept in %s could not be read (%s); converting it again", xml.parent,
                        str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    if converted is None:
        log.info("converting the UNet of %s for OpenVINO (once: it is kept in %s)", model.name, xml.parent)
        channels, width = unet.config.in_channels, unet.config.cross_attention_dim
        example = (torch.randn(2, channels, 16, 16), torch.tensor(500.0), torch.randn(2, 77, width))
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on the branches it fixes
            converted = ov.convert_model(UNetCall(unet).eval(), example_input=example)
        _save(ov, converted, xml)
    return core.compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": HINTS[precision]})


def _save(ov, converted, xml: Path) -> None:
    """Keep the IR in its folder; a cache that cannot be written costs a conversion next time."""
    try:
        with cache.replacing(xml.parent) as tmp:
            ov.save_model(converted, tmp / xml.name, compress_to_fp16=False)
    except OSError as e:
        log.warning("could not keep the OpenVINO UNet in %s: %s", xml.parent, e)
