"""Hires fix: a first pass at the request's size, enlarged, then img2img at the larger size."""
from __future__ import annotations

import numpy as np
from PIL import Image

from dreamworld import creations, infotext

from .conftest import pixels

HIRES = dict(prompt="a red circle on a blue background", steps=3, width=64, height=64, seed=5, hires_steps=3)


def test_hires_fix_makes_the_larger_image_with_a1111_keys_and_reruns_to_the_same_pixels(world):
    result = world.create(**HIRES, hires_scale=2, hires_denoising=0.6)
    path = result.paths[0]
    assert Image.open(path).size == (128, 128)
    parsed = infotext.parse_parameters(creations.read_creation(path)["parameters"])
    assert {k: parsed[k] for k in ("Size", "Hires upscale", "Hires steps", "Hires upscaler", "Denoising strength")} \
        == {"Size": "64x64", "Hires upscale": "2", "Hires steps": "3", "Hires upscaler": "Latent",
            "Denoising strength": "0.6"}
    again = world.create(**creations.request_from_file(path, world.creations_dir))
    assert np.array_equal(pixels(again.paths[0]), pixels(path))
    plain = world.create(**HIRES)  # the first pass alone, enlarged: the hires pass redraws it
    enlarged = Image.open(plain.paths[0]).resize((128, 128), Image.BILINEAR)
    assert np.abs(pixels(enlarged) - pixels(path)).mean() > 2


def test_hires_fix_with_an_image_upscaler_and_a_size_not_a_multiple_of_8(world):
    result = world.create(**HIRES, hires_scale=1.4, hires_upscaler="dreamworld-2x", hires_denoising=0.5)
    assert Image.open(result.paths[0]).size == (88, 88)  # 64 * 1.4 = 89.6, down to a multiple of 8
    text = creations.read_creation(result.paths[0])["parameters"]
    assert "Hires upscale: 1.4, Hires steps: 3, Hires upscaler: dreamworld-2x" in text
    latent = world.create(**HIRES, hires_scale=1.4, hires_denoising=0.5)
    assert not np.array_equal(pixels(latent.paths[0]), pixels(result.paths[0]))


def test_hires_fix_on_tensorflow_gives_the_torch_picture(world):
    same = dict(hires_scale=2, hires_denoising=0.6, precision="fp32")  # auto is bf16 on a CPU with bf16
    torch_made = world.create(**HIRES, **same)
    tf_made = world.create(**HIRES, **same, backend="tensorflow")
    assert Image.open(tf_made.paths[0]).size == (128, 128)
    assert np.abs(pixels(tf_made.paths[0]) - pixels(torch_made.paths[0])).max() <= 2
    world.create(**{**HIRES, "steps": 1})  # the session's other tests expect torch loaded
