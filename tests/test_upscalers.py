"""Upscalers: the shipped ESRGAN model, tiling, the `app.py upscale` action and unsafe model files."""
from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from dreamworld import creations, upscalers
from dreamworld.errors import ModelError
from dreamworld.settings import PROJECT_DIR

from .conftest import files_in

MODELS = PROJECT_DIR / "models"
SHIPPED = "dreamworld-2x"


def _heldout(count: int = 6, size: int = 128) -> list[Image.Image]:
    from embedded_model import shapes
    rng = np.random.default_rng(2024)  # the upscaler trained on seed 0's "train" scenes
    return shapes.render_pil([shapes.sample_scene(rng, "heldout") for _ in range(count)], size)


def _psnr(a: Image.Image, b: Image.Image) -> float:
    error = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / error))


def test_shipped_upscaler_is_an_esrgan_that_spandrel_detects():
    info = next(m for m in upscalers.models.list_models(MODELS, "esrgan") if m.name == SHIPPED)
    assert info.path.suffix == ".safetensors" and info.path.stat().st_size < 2 * 1024 * 1024
    model = upscalers.load(info)
    assert model.architecture.id == "ESRGAN" and model.scale == 2
    assert SHIPPED in upscalers.names(MODELS)


def test_shipped_upscaler_beats_bicubic_and_lanczos_on_heldout_scenes():
    scores = {"model": [], "bicubic": [], "lanczos": []}
    for high in _heldout():
        low = high.resize((64, 64), Image.BICUBIC)
        up = upscalers.upscale(low, 2, SHIPPED, MODELS, "cpu")
        assert up.size == (128, 128)
        scores["model"].append(_psnr(up, high))
        scores["bicubic"].append(_psnr(low.resize((128, 128), Image.BICUBIC), high))
        scores["lanczos"].append(_psnr(upscalers.upscale(low, 2, "Lanczos", MODELS), high))
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    assert mean["model"] > mean["bicubic"] + 3 and mean["model"] > mean["lanczos"] + 3, mean  # 46.9, 38.1, 38.5


def test_tiles_give_the_pixels_of_one_pass():
    import torch
    model = upscalers.load(upscalers.models.find_model(MODELS, SHIPPED, "esrgan"))
    image = upscalers._to_tensor(_heldout(1, 100)[0])
    whole = upscalers.run_tiled(model, image, tile=1000)
    tiled = upscalers.run_tiled(model, image, tile=40, overlap=12)
    assert whole.shape == tiled.shape == (1, 3, 200, 200)
    difference = (whole - tiled).abs() * 255
    assert float(difference.mean()) < 0.5 and float(difference.max()) < 8, (difference.mean(), difference.max())
    assert not torch.equal(image, torch.zeros_like(image))


def _source(path, text: str | None = "a red circle\nSteps: 4, Seed: 7, Size: 48x40") -> None:
    info = PngImagePlugin.PngInfo()
    if text:
        info.add_text("parameters", text)
    Image.new("RGB", (48, 40), (30, 30, 200)).save(path, pnginfo=info)


def _app(*argv, cwd=PROJECT_DIR):
    return subprocess.run([sys.executable, str(PROJECT_DIR / "app.py"), *map(str, argv)], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_upscale_action_saves_a_creation_naming_its_source(tmp_path):
    source = tmp_path / "source.png"
    _source(source)
    run = _app("upscale", source, "--scale", "2", "--upscaler", SHIPPED, "--creations-dir", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    made = run.stdout.strip()
    with Image.open(made) as image:
        assert image.size == (96, 80)
    data = creations.read_creation(made)
    assert data["parameters"] == ("a red circle\nSteps: 4, Seed: 7, Size: 48x40, Postprocess upscale by: 2, "
                                  f"Postprocess upscaler: {SHIPPED}")
    assert data["request"]["upscale"] == {"source": str(source.resolve()), "scale": 2.0, "upscaler": SHIPPED}
    assert made.endswith(".png") and (tmp_path / "out").resolve() in [p.resolve() for p in
                                                                      __import__("pathlib").Path(made).parents]


def test_a_pickled_upscaler_with_code_is_refused_and_never_runs(tmp_path):
    import torch

    class Armed:
        def __reduce__(self):
            return exec, (f"open({str(tmp_path / 'ran')!r}, 'w').write('ran')",)

    (tmp_path / "ESRGAN").mkdir()
    buffer = io.BytesIO()
    torch.save({"model.0.weight": torch.zeros(1), "payload": Armed()}, buffer)
    (tmp_path / "ESRGAN" / "armed.pth").write_bytes(buffer.getvalue())
    with pytest.raises(ModelError, match="armed.pth was refused: besides tensors it holds pickled Python objects"):
        upscalers.upscale(Image.new("RGB", (8, 8)), 2, "armed", [tmp_path])
    assert not (tmp_path / "ran").exists()


def test_a_file_that_is_not_an_upscaler_is_refused_by_name(tmp_path):
    from safetensors.torch import save_file
    import torch

    (tmp_path / "ESRGAN").mkdir()
    save_file({"lora_unet_down.alpha": torch.ones(1)}, str(tmp_path / "ESRGAN" / "notone.safetensors"))
    with pytest.raises(ModelError, match="notone.safetensors is not an upscaler model"):
        upscalers.upscale(Image.new("RGB", (8, 8)), 2, "notone", [tmp_path])
    assert files_in(tmp_path) == {tmp_path / "ESRGAN" / "notone.safetensors"}


def test_a_pth_of_the_same_weights_gives_the_same_pixels_and_odd_scales_resize(tmp_path):
    import torch
    from safetensors.torch import load_file

    (tmp_path / "ESRGAN").mkdir()
    torch.save(load_file(str(MODELS / "ESRGAN" / f"{SHIPPED}.safetensors")), tmp_path / "ESRGAN" / "same.pth")
    low = _heldout(1, 64)[0]
    from_pth = upscalers.upscale(low, 2, "same.pth", [tmp_path], "cpu")
    assert np.array_equal(np.asarray(from_pth), np.asarray(upscalers.upscale(low, 2, SHIPPED, MODELS, "cpu")))
    assert upscalers.upscale(low, 3, SHIPPED, MODELS, "cpu").size == (192, 192)  # two passes, then Lanczos
    assert upscalers.upscale(low, 1.5, SHIPPED, MODELS, "cpu").size == (96, 96)
