"""The headless command line: stdout holds only paths, bad input exits 2 with one line naming the field."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dreamworld import creations
from dreamworld.settings import PROJECT_DIR

from .conftest import files_in, pixels


def app(*args, creations_dir):
    command = [sys.executable, str(PROJECT_DIR / "app.py"), *args, "--creations-dir", str(creations_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=PROJECT_DIR)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("cli-creations")


def test_generate_prints_each_path_and_nothing_else(out):
    run = app("generate", "--prompt", "a small yellow star", "--seed", "11", "--count", "2", "--steps", "5",
              "--width", "64", "--height", "96", "--format", "jpg", "--sampler", "DPM++ 2M", creations_dir=out)
    assert run.returncode == 0, run.stderr
    paths = [Path(line) for line in run.stdout.splitlines()]
    assert len(paths) == 2 and all(p.exists() and p.suffix == ".jpg" for p in paths)
    assert Image.open(paths[0]).size == (64, 96)
    records = [creations.read_creation(p)["request"] for p in paths]
    assert [r["seed"] for r in records] == [11, 12]
    assert records[0]["scheduler"] == "DPM++ 2M"  # --sampler, as A1111 calls it


def test_info_and_from_reproduce_a_creation(out):
    first = app("generate", "--prompt", "a green ring, on a black background", "--negative-prompt", "red",
                "--seed", "5", "--steps", "6", "--scheduler", "DPM++ 2M Karras", "--width", "64",
                "--height", "64", creations_dir=out)
    [original] = first.stdout.splitlines()
    info = app("info", original, creations_dir=out)
    assert info.returncode == 0
    assert info.stdout.splitlines()[:2] == ["a green ring, on a black background", "Negative prompt: red"]
    assert "Sampler: DPM++ 2M Karras" in info.stdout and "Seed: 5" in info.stdout
    again = app("generate", "--from", original, creations_dir=out)
    assert again.returncode == 0, again.stderr
    [copy] = again.stdout.splitlines()
    assert copy != original and np.array_equal(pixels(original), pixels(copy))


def test_from_an_a1111_image_reads_its_parameters(out, tmp_path):
    from PIL.PngImagePlugin import PngInfo
    meta = PngInfo()
    meta.add_text("parameters", "a blue square\nNegative prompt: green\nSteps: 3, Sampler: DDIM, CFG scale: 5.5, "
                                "Seed: 99, Size: 64x72, Model hash: 0123456789, Model: sd15, Version: v1.10.1")
    source = tmp_path / "a1111.png"
    Image.new("RGB", (64, 72)).save(source, pnginfo=meta)
    run = app("generate", "--from", str(source), "--model", "dreamworld-tiny", creations_dir=out)
    assert run.returncode == 0, run.stderr
    text = creations.read_creation(run.stdout.strip())["parameters"]
    assert "Steps: 3, Sampler: DDIM, CFG scale: 5.5, Seed: 99, Size: 64x72" in text


@pytest.mark.parametrize("args, words", [
    (["--width", "100"], "width must be from 64 to 2048 and a multiple of 8, got 100"),
    (["--steps", "-3"], "steps must be from 1 to 150"),
    (["--mode", "img2img"], "init_image is required in img2img mode"),
    (["--mode", "img2img", "--init-image", "missing.png"], "init_image"),
    (["--scheduler", "Euler z"], "scheduler must be one of"),
    (["--model", "nope"], "model 'nope' was not found"),
    (["--stepz", "3"], "unrecognized arguments: --stepz"),
    (["--mode", "img2img", "--init-image", "in.png", "--strength", "0.05", "--steps", "10"],
     "strength 0.05 with 10 steps leaves no denoising step; strength must be at least 0.1 for 10 steps"),
])
def test_bad_input_exits_2_with_one_line(out, args, words):
    before = files_in(out)
    run = app("generate", "--prompt", "x", *args, creations_dir=out)
    assert run.returncode == 2
    assert run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1 and words in run.stderr
    assert files_in(out) == before


def test_info_on_a_file_without_metadata_exits_2(out, tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    run = app("info", str(plain), creations_dir=out)
    assert run.returncode == 2 and "no generation parameters" in run.stderr


def test_img2img_and_inpaint_from_the_command_line(out, tmp_path):
    from embedded_model import shapes
    source = shapes.render_pil([shapes.scene_from("white", ("square", "red", "large", "center"))], 128)[0]
    source.save(tmp_path / "in.png")
    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, (0, 0, 64, 128))
    mask.save(tmp_path / "mask.png")
    common = ("--prompt", "a green circle on a black background", "--seed", "4", "--steps", "20",
              "--init-image", str(tmp_path / "in.png"))

    run = app("generate", *common, "--mode", "img2img", "--strength", "0.05", "--scheduler", "Euler", creations_dir=out)
    assert run.returncode == 0, run.stderr
    [path] = run.stdout.splitlines()
    assert creations.read_creation(path)["request"]["mode"] == "img2img"
    assert Image.open(path).size == (128, 128)
    assert np.abs(pixels(path) - pixels(source)).mean() < 30  # low strength stays near the input (less VAE blur)

    run = app("generate", *common, "--mode", "inpaint", "--mask", str(tmp_path / "mask.png"), creations_dir=out)
    assert run.returncode == 0, run.stderr
    [path] = run.stdout.splitlines()
    assert creations.read_creation(path)["request"]["mode"] == "inpaint"
    kept = slice(64 + 12, 128)  # the unmasked half, past the blurred edge
    assert np.array_equal(pixels(path)[:, kept], pixels(source)[:, kept])
    assert not np.array_equal(pixels(path)[:, :64], pixels(source)[:, :64])


def test_common_flags_work_before_the_subcommand(out, tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text('{"defaults": {"steps": 3, "guidance_scale": 2.5}}')
    command = [sys.executable, str(PROJECT_DIR / "app.py"), "--settings", str(settings), "--creations-dir", str(out),
               "--model", "dreamworld-tiny", "generate", "--prompt", "a red ring", "--width", "64", "--height", "64"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=PROJECT_DIR)
    assert run.returncode == 0, run.stderr
    [path] = run.stdout.splitlines()
    assert Path(path).is_relative_to(out)
    request = creations.read_creation(path)["request"]
    assert (request["steps"], request["guidance_scale"], request["model"]) == (3, 2.5, "dreamworld-tiny")


def test_ctrl_c_keeps_and_prints_every_saved_image_and_exits_130(tmp_path):
    """Issue 19: Ctrl-C during `generate --count 16` exited 130 with an empty stdout although images were
    saved. Each path is printed as soon as it is saved; the first Ctrl-C stops at the next step."""
    command = [sys.executable, str(PROJECT_DIR / "app.py"), "generate", "--prompt", "a red ring", "--count", "16",
               "--steps", "2", "--width", "64", "--height", "64", "--seed", "1", "--creations-dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT_DIR)
    try:
        first = process.stdout.readline()  # the first image is saved
        assert first.strip(), process.stderr.read()
        process.send_signal(signal.SIGINT)
        rest, err = process.communicate(timeout=120)
    finally:
        process.kill()
    printed = [Path(line) for line in (first + rest).splitlines()]
    assert process.returncode == 130, err
    assert err.strip().splitlines() == [f"interrupted: {len(printed)} of 16 images are saved"]
    assert 1 <= len(printed) < 16 and all(p.is_file() for p in printed)
    assert set(printed) == {p for p in files_in(tmp_path) if p.suffix == ".png"}
    assert {p.with_suffix(".png") for p in files_in(tmp_path) if p.suffix == ".txt"} == set(printed)


def test_importing_dreamworld_and_its_backends_prints_nothing():
    """Issue 19: three transformers warnings ("requires torchvision") on every run."""
    env = {k: v for k, v in os.environ.items() if k != "TRANSFORMERS_VERBOSITY"}
    for code in ("import dreamworld.world", "import dreamworld.backends.torch_backend"):
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                             cwd=PROJECT_DIR, env=env)
        assert (run.returncode, run.stdout, run.stderr) == (0, "", ""), code


def test_a_diffusers_folder_of_bin_weights_loads_without_noise(tmp_path):
    """Issue 19: diffusers logged "Defaulting to unsafe serialization" (it loads .bin weights-only) for each
    .bin component. The weights are checked weights-only first, then loaded without those lines."""
    import shutil

    import torch
    from safetensors.torch import load_file

    from .conftest import TINY

    folder = tmp_path / "models" / "Stable-diffusion" / "tiny-bin"
    shutil.copytree(TINY, folder)
    for sub, name, pickled in (("unet", "diffusion_pytorch_model", "diffusion_pytorch_model"),
                               ("vae", "diffusion_pytorch_model", "diffusion_pytorch_model"),
                               ("text_encoder", "model", "pytorch_model")):
        torch.save(load_file(folder / sub / f"{name}.safetensors"), folder / sub / f"{pickled}.bin")
        (folder / sub / f"{name}.safetensors").unlink()
    run = app("generate", "--prompt", "a red ring", "--seed", "3", "--steps", "2", "--width", "64", "--height", "64",
              "--models-dir", str(tmp_path / "models"), "--model", "tiny-bin", creations_dir=tmp_path / "out")
    assert (run.returncode, run.stderr) == (0, "")
    reference = app("generate", "--prompt", "a red ring", "--seed", "3", "--steps", "2", "--width", "64", "--height",
                    "64", creations_dir=tmp_path / "out")
    assert np.array_equal(pixels(run.stdout.strip()), pixels(reference.stdout.strip()))
