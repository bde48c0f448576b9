"""precision=int8 on the OpenVINO backend: its UNet quantized by NNCF the way optimum-intel's hybrid quantization
treats diffusion models. The convolutions but the first and the last run in int8, weights and activations (their
ranges calibrated on the UNet's inputs over a few of the model's own denoising steps); the matrix products keep
float activations with int8 weights; the rest stays in the float precision. Quantized once per model and kept
beside the converted UNet. docs/benchmarks.md gives its speed and its distance from fp32's pictures.
"""
from __future__ import annotations

import logging
from typing import Callable

from ..models import ModelInfo
from . import cache
from .base import BackendError
from .openvino_backend import CONVERSION, cached_ir

QUANTIZATION = 2  # bump when the quantized IR's meaning changes


def quantized_unet(model: ModelInfo, calibrated: Callable[[], tuple]):
    """The model's UNet quantized: read from the cache, else quantized from calibrated() (the float IR and lists
    of its inputs) and cached."""
    version = CONVERSION * 1000 + QUANTIZATION
    xml = cache.converted_dir("openvino-int8", model, None, version, named=False) / "unet.xml"
    return cached_ir(xml, lambda: hybrid_quantized(*calibrated()),
                     f"quantizing the UNet of {model.name} to int8 for OpenVINO")


def hybrid_quantized(converted, inputs: list):
    try:
        import nncf
    except ImportError:
        raise BackendError("precision int8 needs the nncf package: "
                           "pip install --no-deps -r requirements-nodeps.txt") from None
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    logging.getLogger("nncf").setLevel(logging.ERROR)  # its INFO tables (not nncf.set_log_level: that sets
    # the levels of whatever handlers its logger holds)
    ops = [(op.get_type_name(), op.get_friendly_name()) for op in converted.get_ops()]
    products = [name for kind, name in ops if kind == "MatMul"]
    # the UNet's first and last convolutions (latents in, noise out) stay float: on the embedded model that
    # keeps what the pictures show (docs/benchmarks.md) for no measurable time
    ends = [name for kind, name in ops if kind == "Convolution" and (".conv_in/" in name or ".conv_out/" in name)]
    weights = nncf.compress_weights(converted.clone(), ignored_scope=nncf.IgnoredScope(types=["Convolution"]))
    floats = nncf.IgnoredScope(names=products + ends, validate=False)
    return nncf.quantize(weights, nncf.Dataset(inputs), model_type=nncf.ModelType.TRANSFORMER,
                         subset_size=len(inputs), ignored_scope=floats,
                         advanced_parameters=AdvancedQuantizationParameters(smooth_quant_alpha=-1))
