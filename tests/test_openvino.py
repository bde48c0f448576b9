"""The OpenVINO backend on the embedded model: torch's pictures in fp32, the picture kept in its default
precision, its UNet converted once, and what it leaves to torch refused in one sentence naming the field."""
import numpy as np
import pytest

from dreamworld.backends import LoadSpec, base, cache, openvino_backend
from dreamworld.errors import DreamWorldError, RequestError
from dreamworld.models import find_model

from .conftest import pixels

FIELDS = dict(prompt="a red circle on a blue background", steps=20, width=128, height=128)
SCENES = [("a red circle on a blue background", 3), ("a yellow star on a black background", 4)]


def psnr(a, b) -> float:
    return 10 * np.log10(255 ** 2 / max(((a.astype(float) - b.astype(float)) ** 2).mean(), 1e-9))


def test_fp32_gives_the_torch_backends_pixels(world):
    for prompt, seed in SCENES:
        fields = dict(FIELDS, prompt=prompt, seed=seed, precision="fp32")
        ours = pixels(world.create(backend="openvino", **fields).images[0]).astype(int)
        torchs = pixels(world.create(backend="torch", **fields).images[0]).astype(int)
        assert np.abs(ours - torchs).max() <= 1


@pytest.mark.skipif("bf16" not in openvino_backend.supported_precisions(), reason="the CPU has no bf16")
def test_the_default_precision_keeps_the_picture_within_the_stated_bound(world):
    """docs/benchmarks.md states it: bf16 on a bf16 CPU, at least 35 dB from torch fp32's picture."""
    values = []
    for prompt, seed in SCENES:
        fields = dict(FIELDS, prompt=prompt, seed=seed)
        default = world.create(backend="openvino", **fields)
        assert world.backend.precision == base.auto_precision("cpu") == "bf16"
        values.append(psnr(pixels(default.images[0]), pixels(world.create(**fields, precision="fp32").images[0])))
    assert min(values) >= 35, values


def test_the_unet_is_converted_once_and_a_damaged_copy_again(models_dir, monkeypatch, caplog):
    import openvino
    model = find_model(models_dir, "dreamworld-tiny")
    spec = LoadSpec(model, None, "cpu", "fp32")
    from dreamworld.backends.base import Job
    from dreamworld.schema import validate
    job = Job(validate(dict(FIELDS, steps=4, backend="openvino")), 1)
    first = np.asarray(openvino_backend.OpenVINOBackend(spec).generate(job))
    xml = cache.converted_dir("openvino", model, None, openvino_backend.CONVERSION) / "unet.xml"
    assert xml.is_file() and xml.with_suffix(".bin").stat().st_size > 1_000_000

    def refused(*args, **kwargs):
        raise AssertionError("converted again")

    with monkeypatch.context() as patch:
        patch.setattr(openvino, "convert_model", refused)
        again = np.asarray(openvino_backend.OpenVINOBackend(spec).generate(job))
    assert np.array_equal(first, again)
    xml.write_text("<net>damaged")
    repaired = np.asarray(openvino_backend.OpenVINOBackend(spec).generate(job))
    assert np.array_equal(first, repaired)
    assert "could not be read" in caplog.text and "<net" in xml.read_text() and "damaged" not in xml.read_text()


@pytest.mark.parametrize("fields, field, said", [
    (dict(lora=[("outline", 1.0)]), "lora", "cannot use LoRAs"),
    (dict(deepcache=1), "deepcache", "set deepcache to 0"),
    (dict(controlnet="canny:control_dreamworld_edges:0.8", init_image="x.png"), "controlnet", "use backend 'torch'"),
    (dict(width=96), "width", "multiple of 64 on backend 'openvino'"),
    (dict(precision="fp16"), "precision", "precision must be one of"),
])
def test_what_it_leaves_to_torch_is_refused_naming_the_field(world, fields, field, said):
    with pytest.raises(RequestError) as e:
        world.create(backend="openvino", **dict(FIELDS, steps=1, **fields))
    assert e.value.field == field and said in str(e.value)


def test_an_sdxl_model_is_refused_in_one_sentence(tmp_path):
    from .test_sdxl import tiny_sdxl
    from dreamworld import DreamWorld
    from dreamworld.settings import Settings
    tiny_sdxl(tmp_path / "models" / "Stable-diffusion" / "tiny-sdxl")
    world = DreamWorld(settings=Settings(), models_dir=tmp_path / "models", creations_dir=tmp_path / "out")
    with pytest.raises(DreamWorldError) as e:
        world.create(backend="openvino", model="tiny-sdxl", prompt="x", steps=1, width=64, height=64)
    assert str(e.value) == "model 'tiny-sdxl' is an SDXL model: SDXL runs on the torch backend"
    assert not list((tmp_path / "out").rglob("*.png"))


def test_without_the_openvino_package_it_says_how_to_install_it(world, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "openvino", None)  # what an install without it gives
    openvino_backend.supported_precisions.cache_clear()
    try:
        with pytest.raises(DreamWorldError) as e:
            world.create(backend="openvino", **dict(FIELDS, steps=1))
        assert str(e.value) == ("backend 'openvino' needs the openvino package: "
                                "pip install --no-deps -r requirements-nodeps.txt")
    finally:
        openvino_backend.supported_precisions.cache_clear()
