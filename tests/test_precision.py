"""precision=auto: bf16 only on CPUs with bf16 instructions (the detection mocked both ways), fp16 on CUDA with
the VAE falling back to fp32 when fp16 overflows."""
from __future__ import annotations

import pytest
import torch

from dreamworld.backends import base, torch_backend


@pytest.mark.parametrize("flags, expected", [
    ("fpu sse2 avx2 fma", False),  # an AVX2-only CPU (AMD EPYC Zen 3)
    ("fpu avx2 avx512f avx512bw", False),  # AVX-512 without bf16
    ("fpu avx2 avx512f avx512_bf16", True),
    ("fpu avx2 amx_tile amx_bf16", True),
])
def test_cpu_bf16_is_read_from_the_cpuinfo_flags(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: some CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert base.cpu_has_bf16(str(cpuinfo)) is expected


def test_no_cpuinfo_means_no_bf16(tmp_path):
    assert base.cpu_has_bf16(str(tmp_path / "missing")) is False


@pytest.mark.parametrize("has_bf16, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_on_the_cpu_follows_the_detection(monkeypatch, has_bf16, expected):
    monkeypatch.setattr(base, "cpu_has_bf16", lambda *a: has_bf16)
    assert torch_backend.resolve_precision("cpu", "auto") == expected
    assert base.auto_precision("cpu") == expected


@pytest.mark.parametrize("has_bf16", [True, False])
def test_auto_precision_on_a_gpu_is_fp16(monkeypatch, has_bf16):
    monkeypatch.setattr(base, "cpu_has_bf16", lambda *a: has_bf16)
    assert base.auto_precision("cuda") == "fp16"


def test_an_explicit_precision_is_kept(monkeypatch):
    monkeypatch.setattr(base, "cpu_has_bf16", lambda *a: False)
    assert torch_backend.resolve_precision("cpu", "bf16") == "bf16"
    assert torch_backend.resolve_precision("cpu", "fp32") == "fp32"


class _OverflowingVae(torch.nn.Module):
    """Decodes to NaN in fp16, as SD 1.5's VAE does on CUDA."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.calls = []

    @property
    def dtype(self):
        return self.weight.dtype

    def decode(self, z, return_dict=False):
        self.calls.append(self.dtype)
        out = torch.zeros(1, 3, 8, 8, dtype=self.dtype)
        return (out * float("nan") if self.dtype == torch.float16 else out,)


def test_an_fp16_vae_that_overflows_decodes_again_in_fp32():
    backend = torch_backend.TorchBackend.__new__(torch_backend.TorchBackend)
    vae = _OverflowingVae().to(torch.float16)
    pipe = type("Pipe", (), {"vae": vae})()
    backend._pipes, backend.device, backend.model_name, backend.sdxl = {"txt2img": pipe}, "cpu", "m", False
    backend.vae_config = {"scaling_factor": 0.18215}
    image = backend.decode(torch.zeros(1, 4, 1, 1))
    assert torch.isfinite(image).all() and image.dtype == torch.float32
    assert vae.calls == [torch.float16, torch.float32]
    backend.decode(torch.zeros(1, 4, 1, 1))  # stays fp32: no second failed fp16 pass
    assert vae.calls[2:] == [torch.float32]
