"""TAESD decoders in models/VAE-approx: the shipped one of the embedded model (fast decode, previews) and the
files users bring (A1111 / ComfyUI's taesd_decoder.pth or .safetensors, diffusers folders)."""
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from dreamworld import DreamWorld, taesd
from dreamworld import world as world_module
from dreamworld.errors import DreamWorldError, RequestError
from dreamworld.settings import Settings

from .conftest import PROJECT_DIR, TINY, pixels

SHIPPED = PROJECT_DIR / "models" / "VAE-approx" / "dreamworld-tiny"
FIELDS = dict(prompt="a red circle on a blue background", seed=3, steps=12, width=128, height=128, precision="fp32")


def psnr(a, b) -> float:
    return 10 * np.log10(255 ** 2 / max(((pixels(a) - pixels(b)) ** 2).mean(), 1e-9))


def make_world(tmp_path, with_taesd=True) -> DreamWorld:
    models = tmp_path / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    (models / "Stable-diffusion" / "dreamworld-tiny").symlink_to(TINY)
    (models / "VAE-approx").mkdir()
    if with_taesd:
        (models / "VAE-approx" / "dreamworld-tiny").symlink_to(SHIPPED)
    return DreamWorld(settings=Settings(), models_dir=models, creations_dir=tmp_path / "creations")


def test_fast_decode_with_the_shipped_taesd_is_near_the_vae_and_recorded(tmp_path):
    world = make_world(tmp_path)
    full = world.create(**FIELDS)
    fast = world.create(**FIELDS, fast_decode=True)
    assert not np.array_equal(pixels(fast.images[0]), pixels(full.images[0]))
    assert psnr(fast.images[0], full.images[0]) > 24, psnr(fast.images[0], full.images[0])
    again = world.create(**FIELDS, fast_decode=True)
    assert np.array_equal(pixels(again.images[0]), pixels(fast.images[0]))


def test_fast_decode_without_a_taesd_is_one_sentence_naming_the_field(tmp_path):
    world = make_world(tmp_path, with_taesd=False)
    (tmp_path / "models" / "Stable-diffusion" / "other-tiny").symlink_to(TINY)  # no TAESD named after it
    with pytest.raises(RequestError) as e:
        world.create(**FIELDS, model="other-tiny", fast_decode=True)
    assert e.value.field == "fast_decode" and "'taesd'" in str(e.value) and "VAE-approx" in str(e.value)
    assert not list((tmp_path / "creations").rglob("*.png"))


def test_previews_come_from_the_taesd_and_look_like_the_picture(tmp_path, monkeypatch):
    monkeypatch.setattr(world_module, "PREVIEW_INTERVAL", 0.0)
    shown = {}
    world = make_world(tmp_path)
    made = world.create(**FIELDS, on_progress=lambda p: p.preview is not None and shown.update({p.step: p.preview}))
    assert sorted(shown) == list(range(1, 13)) and shown[12].size == (128, 128)
    assert np.array_equal(pixels(made.images[0]), pixels(world.create(**FIELDS).images[0]))
    assert psnr(shown[12], made.images[0]) > 24  # the TAESD's decode, not a blurred map of latent pixels


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_an_a1111_taesd_decoder_file_is_found_by_family_and_decodes_as_its_net(tmp_path, suffix):
    """madebyollin's layout: the decoder Sequential's keys, layer 0 being the clamp diffusers does itself."""
    from diffusers import AutoencoderTiny
    torch.manual_seed(0)
    net = AutoencoderTiny().eval()
    state = {f"{int(k.split('.')[1]) + 1}.{k.split('.', 2)[2]}": v.contiguous()
             for k, v in net.decoder.state_dict().items()}
    folder = tmp_path / "models" / "VAE-approx"
    folder.mkdir(parents=True)
    path = folder / f"taesd_decoder{suffix}"
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    found = taesd.find(tmp_path / "models", "some-sd15-model", "sd")
    assert found is not None and found.path == path
    assert taesd.find(tmp_path / "models", "an-sdxl-model", "sdxl") is None  # taesdxl_decoder is SDXL's
    latents = torch.randn(1, 4, 8, 8)
    with torch.inference_mode():
        expected = net.decode(latents).sample
    torch.testing.assert_close(taesd.decode(found, latents), expected)


def test_a_pickled_taesd_with_code_is_refused_without_running_it(tmp_path):
    import pickle
    folder = tmp_path / "models" / "VAE-approx"
    folder.mkdir(parents=True)

    class Bad:
        def __reduce__(self):
            return (shutil.rmtree, (str(tmp_path / "victim"),))

    (tmp_path / "victim").mkdir()
    (folder / "taesd_decoder.pth").write_bytes(pickle.dumps({"1.weight": Bad()}))
    found = taesd.find(tmp_path / "models", "m", "sd")
    with pytest.raises(DreamWorldError):
        taesd.decode(found, torch.randn(1, 4, 8, 8))
    assert (tmp_path / "victim").is_dir()
