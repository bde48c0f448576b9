"""The TensorFlow backend: it loads the models PyTorch loads and draws the same pictures from the same
requests, part by part and image by image; the controller switches engines and refuses what one lacks."""
import gc
import logging
import os

import numpy as np
import psutil
import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image

from dreamworld import creations, single_file
from dreamworld.backends import LoadSpec, keras_nets, samplers, tf_weights, weights
from dreamworld.backends.base import BackendError, Job
from dreamworld.backends.tf_backend import TensorflowBackend
from dreamworld.backends.torch_backend import TorchBackend
from dreamworld.models import find_model
from dreamworld.schema import RequestError, validate

from .conftest import FAST, clip_reference, files_in, pixels

PROMPTS = ["a red circle on a blue background", "", "A  Large   YELLOW star, on the LEFT!! (big) [small]",
           "über café, 東京 & naïve 123.5 #tags", "a " + "very " * 90 + "long prompt"]


def compiles(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("compile:")]


@pytest.fixture(scope="module")
def model(models_dir):
    return find_model(models_dir, "dreamworld-tiny")


@pytest.fixture(scope="module")
def engines(model):
    """The embedded model loaded by both backends, side by side."""
    return TorchBackend(LoadSpec(model, None, "cpu", "fp32")), TensorflowBackend(LoadSpec(model, None, "cpu", "fp32"))


def torch_pipe(engines):
    return engines[0]._pipes["txt2img"]


def scene(size=128) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size]
    rgb = np.stack([x * 255 // (size - 1), y * 255 // (size - 1), np.full_like(x, 60)], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def half_mask(size=128) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (0, 0, size // 2, size))
    return mask


def stroke_mask(size=128) -> Image.Image:
    """A thin painted stroke: its blurred edge falls below one half, so blurring changes what is inpainted."""
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 2 - 2, 8, size // 2 + 2, size - 8))
    mask.paste(255, (8, size // 4, size - 8, size // 4 + 24))
    return mask


# ----- part by part -----------------------------------------------------------------------
@pytest.mark.parametrize("prompt", PROMPTS)
def test_token_ids_are_the_torch_tokenizers(engines, prompt):
    expected = torch_pipe(engines).tokenizer(prompt, padding="max_length", max_length=77, truncation=True).input_ids
    assert engines[1].token_ids(prompt).tolist() == [expected]


@pytest.mark.parametrize("clip_skip", [1, 2, 4])
def test_text_encoder_gives_the_torch_embeddings(engines, clip_skip):
    for prompt in PROMPTS[:3]:  # the third has A1111 weights: (big) [small]
        expected = engines[0].embed(prompt, clip_skip)
        np.testing.assert_allclose(engines[1].embed(prompt, clip_skip), expected, atol=2e-5 * np.abs(expected).max())


@pytest.mark.parametrize("t", [999, 500, 13.5])
def test_unet_predicts_the_torch_noise(engines, t):
    pipe = torch_pipe(engines)
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 4, 16, 16, generator=g)
    context = torch.cat([clip_reference(pipe, p) for p in PROMPTS[:2]])
    with torch.inference_mode():
        expected = pipe.unet(latents, torch.tensor(t), context).sample.numpy()
    got = engines[1].predict_noise(latents, torch.tensor(t), context.numpy()).numpy()
    np.testing.assert_allclose(got, expected, atol=2e-5 * np.abs(expected).max())


def test_vae_encodes_and_decodes_as_torch(engines):
    pipe = torch_pipe(engines)
    g = torch.Generator().manual_seed(2)
    latents = torch.randn(1, 4, 16, 16, generator=g)
    with torch.inference_mode():
        expected = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample.numpy()
    np.testing.assert_allclose(engines[1].decode(latents).numpy(), expected, atol=1e-4)

    image = torch.from_numpy(np.asarray(scene(), np.float32).transpose(2, 0, 1)[None] / 127.5 - 1)
    with torch.inference_mode():
        posterior = pipe.vae.encode(image).latent_dist
        expected = posterior.sample(torch.Generator().manual_seed(5)) * pipe.vae.config.scaling_factor
    got = engines[1].encode(image, torch.Generator().manual_seed(5))
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-4 * np.abs(expected.numpy()).max())


# ----- image by image ---------------------------------------------------------------------
def both(engines, seed=7, image=None, painted=None, **fields):
    """Both engines' pictures for the request `fields` (init image and mask given as images)."""
    request = validate({"prompt": "a large red circle on the left on a blue background", "negative_prompt": "green",
                        "steps": 8, "width": 128, "height": 128, "seed": seed, **fields})
    job = Job(request, seed, image, painted)
    return [np.asarray(engine.generate(job), np.int16) for engine in engines]


def assert_same_picture(a, b):
    difference = np.abs(a - b)
    assert difference.max() <= 2 and difference.mean() < 0.05, (difference.max(), difference.mean())


@pytest.mark.parametrize("fields", [
    dict(mode="txt2img"),
    dict(mode="txt2img", guidance_scale=1.0, clip_skip=2, width=64, height=192),
    dict(mode="img2img", strength=0.6, init_image="in.png"),
    dict(mode="inpaint", strength=1.0, init_image="in.png", mask="mask.png"),
    dict(mode="inpaint", strength=0.7, init_image="in.png", mask="mask.png", mask_blur=0),
    dict(mode="inpaint", strength=1.0, init_image="in.png", mask="stroke.png", mask_blur=6),
], ids=["txt2img", "no-guidance-clip-skip-tall", "img2img", "inpaint", "inpaint-partial", "inpaint-blurred-stroke"])
def test_a_request_gives_the_torch_picture(engines, fields):
    init = scene() if "init_image" in fields else None
    mask = {"mask.png": half_mask, "stroke.png": stroke_mask}[fields["mask"]]() if "mask" in fields else None
    torch_image, tf_image = both(engines, image=init, painted=mask, **fields)
    assert_same_picture(torch_image, tf_image)
    if fields.get("mask") == "mask.png":  # a real inpaint: the unmasked half, past the blurred edge, is the input's
        assert np.array_equal(tf_image[:, 64 + 12:], np.asarray(init, np.int16)[:, 64 + 12:])
        assert not np.array_equal(tf_image[:, :64], np.asarray(init, np.int16)[:, :64])


@pytest.mark.parametrize("scheduler", list(samplers.SCHEDULERS))
def test_every_sampler_gives_the_torch_picture(engines, scheduler):
    torch_image, tf_image = both(engines, scheduler=scheduler, steps=6, width=64, height=64)
    assert_same_picture(torch_image, tf_image)


def test_latent_walk_noise_and_prompt_blends_give_the_torch_picture(engines):
    request = validate({"prompt": "unused", "steps": 6, "width": 64, "height": 64, "seed": 3})
    noise = 0.6 * engines[1].initial_noise(3, 64, 64) + 0.8 * engines[1].initial_noise(4, 64, 64)
    np.testing.assert_array_equal(engines[1].initial_noise(3, 64, 64), engines[0].initial_noise(3, 64, 64))
    blend = (("a red circle", 0.3), ("a yellow star on a black background", 0.7))
    job = Job(request, 3, noise=noise, prompt_blend=blend)
    assert_same_picture(*[np.asarray(e.generate(job), np.int16) for e in engines])


def test_progress_is_reported_per_step_and_interrupt_stops(engines):
    steps = []
    request = validate({"prompt": "a star", "steps": 10, "width": 64, "height": 64, "seed": 1})
    with pytest.raises(Exception) as stopped:
        engines[1].generate(Job(request, 1, on_step=lambda i, n: steps.append((i, n)),
                                should_stop=lambda: len(steps) >= 3))
    assert type(stopped.value).__name__ == "Interrupted"
    assert steps == [(1, 10), (2, 10), (3, 10)]


# ----- loading ------------------------------------------------------------------------------
def test_converted_weights_are_cached_and_the_second_load_skips_the_torch_reader(model, engines, monkeypatch):
    folder = tf_weights.cache_dir(model, None)
    assert {p.name for p in folder.iterdir()} == {"meta.json", "unet.safetensors", "vae.safetensors",
                                                  "text_encoder.safetensors"}
    assert folder.is_relative_to(tf_weights.cache_root())

    def no_reading(*args, **kwargs):
        raise AssertionError("the model was read again instead of coming from the cache")

    monkeypatch.setattr(weights, "load_pipeline", no_reading)
    again = TensorflowBackend(LoadSpec(model, None, "cpu", "fp32"))
    request = validate({"prompt": "a blue star", "steps": 4, "width": 64, "height": 64, "seed": 9})
    assert_same_picture(np.asarray(again.generate(Job(request, 9)), np.int16),
                        np.asarray(engines[1].generate(Job(request, 9)), np.int16))
    again.close()


def test_a_damaged_cache_is_converted_again(model, tmp_path, monkeypatch):
    monkeypatch.setenv("DREAMWORLD_CACHE", str(tmp_path))
    TensorflowBackend(LoadSpec(model, None, "cpu", "fp32")).close()
    folder = tf_weights.cache_dir(model, None)
    (folder / "unet.safetensors").write_bytes(b"not a safetensors file")
    read = []
    original = weights.load_pipeline
    monkeypatch.setattr(weights, "load_pipeline", lambda *a, **k: read.append(1) or original(*a, **k))
    TensorflowBackend(LoadSpec(model, None, "cpu", "fp32")).close()
    assert read == [1]
    assert (folder / "unet.safetensors").stat().st_size > 1000
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".tmp")]


def test_sdxl_and_other_unets_are_refused_with_a_reason():
    config = UNet2DConditionModel.load_config(single_file.config_dir("sdxl"), subfolder="unet")
    with pytest.raises(keras_nets.ConfigError, match="addition_embed_type.*SDXL"):
        keras_nets.check_unet_config(config)
    sd15 = UNet2DConditionModel.load_config(single_file.config_dir("sd15"), subfolder="unet")
    keras_nets.check_unet_config(sd15)
    sd21 = UNet2DConditionModel.load_config(single_file.config_dir("sd21"), subfolder="unet")
    keras_nets.check_unet_config(sd21)


def test_mixed_precision_bf16_draws_nearly_the_same_picture(model, engines):
    half = TensorflowBackend(LoadSpec(model, None, "cpu", "bf16"))
    request = validate({"prompt": "a large red circle on a blue background", "steps": 8, "width": 128,
                        "height": 128, "seed": 4})
    full = np.asarray(engines[1].generate(Job(request, 4)), np.int16)
    mixed = np.asarray(half.generate(Job(request, 4)), np.int16)
    half.close()
    assert 0 < np.abs(full - mixed).mean() < 12


def test_capabilities_declare_what_the_gui_reshapes_to():
    tf_caps, torch_caps = TensorflowBackend.capabilities(), TorchBackend.capabilities()
    assert tf_caps.size_multiple == 64 and torch_caps.size_multiple == 8
    assert tf_caps.jit and not torch_caps.jit
    assert set(tf_caps.modes) == {"txt2img", "img2img", "inpaint"} and tf_caps.latent_walk
    assert "mps" not in tf_caps.devices and set(tf_caps.precisions) >= {"auto", "fp32", "bf16"}


# ----- through the controller ---------------------------------------------------------------
def test_the_controller_makes_creations_on_tensorflow_and_reruns_them(world, caplog):
    caplog.set_level(logging.INFO, logger="dreamworld")
    world.release()
    result = world.create(prompt="a small green star at the top on a white background", seed=21,
                          backend="tensorflow", **FAST)
    world.create(prompt="another prompt", seed=22, steps=3, backend="tensorflow", width=64, height=64)
    [path] = result.paths
    data = creations.read_creation(path)
    assert data["request"]["backend"] == "tensorflow" and "Seed: 21" in data["parameters"]
    messages = compiles(caplog)
    assert len(messages) == 1 and "backend=tensorflow" in messages[0]

    again = world.create(**creations.request_from_file(path, world.creations_dir))
    assert np.array_equal(pixels(again.paths[0]), pixels(path))
    on_torch = world.create(**{**creations.request_from_file(path, world.creations_dir), "backend": "torch"})
    assert "changed=backend" in compiles(caplog)[-1]
    assert np.abs(pixels(on_torch.paths[0]) - pixels(path)).max() <= 2


def test_the_controller_refuses_what_a_backend_cannot_do_before_loading(world, caplog):
    caplog.set_level(logging.INFO, logger="dreamworld")
    before = files_in(world.creations_dir)
    with pytest.raises(RequestError, match=r"^width must be a multiple of 64 on backend 'tensorflow', got 96$") as e:
        world.create(prompt="x", backend="tensorflow", width=96, height=64, steps=2, seed=1)
    assert e.value.field == "width"
    with pytest.raises(RequestError, match=r"^backend 'torch' cannot jit-compile") as e:
        world.create(prompt="x", backend="torch", jit=True, steps=2, seed=1, width=64, height=64)
    assert e.value.field == "jit"
    with pytest.raises(RequestError, match="device must be one of") as e:
        world.create(prompt="x", backend="tensorflow", device="mps", steps=2, seed=1, width=64, height=64)
    assert files_in(world.creations_dir) == before
    assert not [m for m in compiles(caplog) if "tensorflow" in m and "mps" in m]


TF32 = dict(backend="tensorflow", precision="fp32")  # jit and not agree in fp32; bf16 fusions differ


def test_an_xla_graph_is_made_again_for_a_new_size_without_reloading(world, caplog):
    caplog.set_level(logging.INFO, logger="dreamworld")
    plain = world.create(prompt="a purple ring", seed=5, **TF32, steps=3, width=64, height=64)
    world.create(prompt="a purple ring", seed=5, **TF32, jit=True, steps=3, width=64, height=64)
    loaded = world.backend
    jitted = world.create(prompt="a purple ring", seed=5, **TF32, jit=True, steps=3,
                          width=64, height=64)
    world.create(prompt="a purple ring", seed=5, **TF32, jit=True, steps=3, width=128, height=64)
    assert world.backend is loaded
    last = compiles(caplog)[-2:]
    assert "changed=jit" in last[0] and "changed=width" in last[1]
    assert np.abs(pixels(jitted.paths[0]) - pixels(plain.paths[0])).max() <= 2
    # no size given is the model's native size: the graph made for it is reused, not made again
    world.create(prompt="a purple ring", seed=5, **TF32, jit=True, steps=2, width=128, height=128)
    count = len(compiles(caplog))
    world.create(prompt="a purple ring", seed=5, **TF32, jit=True, steps=2)
    assert len(compiles(caplog)) == count and world.backend is loaded


@pytest.mark.slow
def test_switching_engines_ten_times_does_not_grow_memory(world):
    process = psutil.Process(os.getpid())
    rss = []
    for _ in range(10):
        for backend in ("torch", "tensorflow"):
            world.create(prompt="a red square", seed=1, backend=backend, steps=2, width=64, height=64)
        gc.collect()
        rss.append(process.memory_info().rss)
    growth = (rss[-1] - rss[2]) / 2**20
    assert growth < 150, [f"{r / 2**20:.0f} MB" for r in rss]


def test_a_cinema_run_and_a_dream_walk_work_on_tensorflow(world):
    run = world.animate(prompt="a large red circle on a blue background", backend="tensorflow", frames=3, fps=6,
                        zoom="1.1", steps=4, width=64, height=64, seed=3)
    assert len(run.frames) == 3 and run.video.exists()
    dream = world.animate(prompt="a red circle", motion="dream", prompts='{"2": "a yellow star"}', backend="tensorflow",
                          frames=3, fps=6, steps=4, width=64, height=64, seed=8, seed_behavior="iter")
    plain = world.create(prompt="a red circle", seed=8, steps=4, width=64, height=64, backend="tensorflow",
                         guidance_scale=7, scheduler="Euler")  # a walk swaps Euler a for Euler
    assert np.array_equal(pixels(dream.frames[0]), pixels(plain.paths[0]))


def test_a_model_the_backend_cannot_build_is_one_sentence(world, models_dir, tmp_path, monkeypatch):
    def sdxl_like(*args, **kwargs):
        raise keras_nets.ConfigError("its UNet uses addition_embed_type='text_time', which the TensorFlow "
                                     "backend does not build")

    monkeypatch.setattr(keras_nets.unet, "check_unet_config", sdxl_like)
    world.release()
    with pytest.raises(BackendError, match=r"^model 'dreamworld-tiny' cannot run on backend 'tensorflow': its UNet"):
        world.create(prompt="x", backend="tensorflow", steps=2, seed=1, width=64, height=64)


def test_the_command_line_generates_on_tensorflow_in_every_mode(tmp_path):
    import subprocess
    import sys

    from dreamworld.settings import PROJECT_DIR

    def app(*args):
        command = [sys.executable, str(PROJECT_DIR / "app.py"), "generate", "--backend", "tensorflow", "--steps", "3",
                   "--width", "64", "--height", "64", "--seed", "2", "--creations-dir", str(tmp_path / "out"), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=PROJECT_DIR)

    scene(64).save(tmp_path / "in.png")
    half_mask(64).save(tmp_path / "mask.png")
    for args in ([], ["--mode", "img2img", "--init-image", str(tmp_path / "in.png")],
                 ["--mode", "inpaint", "--init-image", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png")]):
        run = app("--prompt", "a blue circle", *args)
        assert run.returncode == 0, run.stderr
        [path] = run.stdout.splitlines()
        assert creations.read_creation(path)["request"]["backend"] == "tensorflow"
    bad = app("--prompt", "x", "--width", "96")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == ["error: width must be a multiple of 64 on backend 'tensorflow', got 96"]
