"""The backends' stages (encode_prompt, initial_noise, denoise, decode_latents, encode_image): generate is
them in order, they give diffusers' pipelines' pixels, and the loop stops and continues at any step."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from dreamworld import backends
from dreamworld.backends import LoadSpec, samplers
from dreamworld.backends.base import Job
from dreamworld.backends.torch_backend import TorchBackend
from dreamworld.errors import RequestError
from dreamworld.models import find_model
from dreamworld.schema import validate

PROMPT = "a red circle on a blue background"
TORCH_VAE = ("openvino",)  # engines whose VAE decode is the torch backend's own (tested there)


@pytest.fixture(scope="module", params=backends.ENGINES)
def engine(request, models_dir):
    backend = backends.backend_class(request.param)(LoadSpec(find_model(models_dir, "dreamworld-tiny"), None,
                                                             "cpu", "fp32"))
    yield backend
    backend.close()


def request(**fields):
    return validate({"prompt": PROMPT, "steps": 10, "width": 128, "height": 128, **fields})


def scene() -> Image.Image:
    y, x = np.mgrid[0:128, 0:128]
    return Image.fromarray(np.stack([x * 2, y * 2, np.full_like(x, 60)], axis=-1).astype(np.uint8))


@pytest.mark.parametrize("fields", [dict(), dict(scheduler="DPM++ 2M", negative_prompt="blurry"),
                                    dict(mode="img2img", init_image="in.png", strength=0.6)])
def test_torch_generate_gives_the_diffusers_pipelines_pixels(models_dir, fields):
    engine = TorchBackend(LoadSpec(find_model(models_dir, "dreamworld-tiny"), None, "cpu", "fp32"))
    r = request(**fields)
    init = scene() if r.mode == "img2img" else None
    pipe = engine._pipe(r.mode)
    pipe.scheduler = samplers.make(r.scheduler, engine._scheduler_config, 3)
    args = dict(prompt=r.prompt, negative_prompt=r.negative_prompt or None, num_inference_steps=r.steps,
                guidance_scale=r.guidance_scale, generator=torch.Generator("cpu").manual_seed(3))
    args.update(dict(image=init, strength=r.strength) if init else dict(width=r.width, height=r.height))
    expected = np.asarray(pipe(**args).images[0]).astype(int)
    got = np.asarray(engine.generate(Job(r, 3, init_image=init))).astype(int)
    # img2img: the pipeline decodes its latents in the scheduler's channels-last layout, the stages in the
    # plain layout a TIFF state has (so that a run by parts gives generate's pixels); the kernels round apart
    assert np.abs(got - expected).max() <= (1 if init else 0)


def test_generate_is_the_stages_in_order(engine):
    r = request()
    latents, _ = engine.denoise(Job(r, 5, noise=engine.initial_noise(5, 128, 128)), engine.encode_prompt(r))
    staged = engine.to_image(engine.decode_latents(latents))
    assert np.array_equal(np.asarray(staged), np.asarray(engine.generate(Job(r, 5))))


@pytest.mark.parametrize("scheduler", ["Euler a", "DDIM"])
def test_a_loop_stopped_at_a_step_and_continued_gives_the_uninterrupted_latents(engine, scheduler):
    r, steps = request(scheduler=scheduler), []
    context = engine.encode_prompt(r)
    whole, _ = engine.denoise(Job(r, 7), context)
    half, rng = engine.denoise(Job(r, 7, to_step=7, on_step=lambda i, n: steps.append(i)), context)
    rest, _ = engine.denoise(Job(r, 7, from_step=7, on_step=lambda i, n: steps.append(i)), context,
                             latents=half, rng_state=rng)
    assert steps == list(range(1, 11))
    assert not np.array_equal(half, whole)
    assert np.array_equal(rest, whole)


def test_a_sampler_with_a_history_cannot_stop_midway(engine):
    with pytest.raises(RequestError) as e:
        engine.denoise(Job(request(scheduler="DPM++ 2M"), 7, to_step=4), engine.encode_prompt(request()))
    assert e.value.field == "scheduler" and "Euler a" in str(e.value)


def test_a_tiled_decode_matches_the_whole_decode_within_two_levels(engine, models_dir):
    if engine.name in TORCH_VAE:
        pytest.skip("its VAE decode is the torch backend's")
    r = request(width=512, height=512, steps=4)  # a 64x64 latent: four tiles and their borders
    latents, _ = engine.denoise(Job(r, 3), engine.encode_prompt(r))
    whole = np.asarray(engine.to_image(engine.decode_latents(latents))).astype(int)
    tiled = np.asarray(engine.to_image(engine.decode_latents(latents, tiled=True))).astype(int)
    assert np.abs(whole - tiled).max() <= 2


PEAK = """
import sys, numpy as np
from pathlib import Path
from dreamworld import backends
from dreamworld.backends import LoadSpec, torch_tiles
from dreamworld.models import find_model

def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key))

torch_tiles.PASSES = 1  # each pass holds the same memory
if sys.argv[3] == "tensorflow":
    from dreamworld.backends import tf_tiles
    tf_tiles.PASSES = 1
spec = LoadSpec(find_model([Path(sys.argv[1])], "dreamworld-tiny"), None, "cpu", "fp32")
engine = backends.backend_class(sys.argv[3])(spec)
latents = np.random.default_rng(0).standard_normal((1, 4, 128, 128)).astype(np.float32)
engine.decode_latents(latents[:, :, :8, :8])
with open("/proc/self/clear_refs", "w") as f:  # Linux: the peak resident size starts again from now
    f.write("5")
before = status("VmRSS")
engine.decode_latents(latents, tiled=sys.argv[2] == "tiled")
print(status("VmHWM") - before)
"""


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux's /proc/self/clear_refs")
@pytest.mark.parametrize("backend", [n for n in backends.ENGINES if n not in TORCH_VAE])
def test_a_tiled_decode_of_a_large_latent_takes_less_peak_memory(models_dir, backend):
    import subprocess
    import sys

    from dreamworld.settings import PROJECT_DIR

    # glibc keeps freed blocks below its (growing) mmap threshold: a fixed one makes the peak RSS the peak
    # of the memory in use
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}

    def peak(how):  # KiB above the resident size before, decoding a 128x128 latent (a 1024x1024 picture)
        run = subprocess.run([sys.executable, "-c", PEAK, str(models_dir), how, backend], capture_output=True, text=True,
                             cwd=PROJECT_DIR, timeout=600, env=env)
        assert run.returncode == 0, run.stderr
        return int(run.stdout.split()[-1])

    whole, tiled = peak("whole"), peak("tiled")
    print(f"peak above the start: whole {whole} KiB, tiled {tiled} KiB")
    assert tiled < whole / 2, (whole, tiled)
