"""The pipeline by parts: text -> noise -> diffuse -> decode gives generate's pixels, on each backend;
states are float TIFF files read and written with tifffile (ours and StableDiffusion-By-Parts' layout)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from dreamworld import backends, creations
from dreamworld.parts.tiff import PartsError
from dreamworld.settings import PROJECT_DIR

from .conftest import pixels

PROMPT = "a red circle on a blue background"
RUN = dict(steps=10, width=128, height=128)


def chain(world, tmp_path, name="fox", seed=5, backend="torch", text=None, **fields):
    """text -> noise -> diffuse -> decode; the png path."""
    engine = dict(backend=backend, device="cpu", precision="fp32")
    text = text or world.parts.text(tmp_path / name, prompt=PROMPT, **engine)
    noise = world.parts.noise(tmp_path / name, seed=seed, width=RUN["width"], height=RUN["height"], **engine)
    state = world.parts.diffuse(noise, text, tmp_path / name, steps=RUN["steps"], **engine, **fields)
    return world.parts.decode(state, tmp_path / name, **engine)[0]


def generated(world, seed=5, backend="torch", **fields):
    result = world.create(prompt=PROMPT, seed=seed, backend=backend, device="cpu", precision="fp32", **RUN, **fields)
    return result.paths[0]


@pytest.mark.parametrize("backend", backends.ENGINES)
def test_the_chain_gives_generates_pixels(world, tmp_path, backend):
    png = chain(world, tmp_path, backend=backend)
    assert np.array_equal(pixels(png), pixels(generated(world, backend=backend)))
    record = creations.read_creation(png)["request"]
    assert record["parts"] == {"noise": "fox_state1.tiff", "text": "fox_text.tiff", "state2": "fox_state2.tiff"}
    assert record["seed"] == 5 and record["prompt"] == PROMPT
    for suffix in ("text", "state1", "state2", "decoded"):
        assert (tmp_path / f"fox_{suffix}.tiff").is_file()


def test_the_files_are_float_tiffs_with_their_description(world, tmp_path):
    chain(world, tmp_path)
    with tifffile.TiffFile(tmp_path / "fox_state1.tiff") as tif:
        noise, info = tif.asarray(), tif.shaped_metadata[0]["dreamworld"]
    assert noise.dtype == np.float32 and noise.shape == (4, 16, 16) and info["seed"] == 5
    assert info["model"] == "dreamworld-tiny" and info["kind"] == "noise"
    with tifffile.TiffFile(tmp_path / "fox_text.tiff") as tif:
        text, info = tif.asarray(), tif.shaped_metadata[0]["dreamworld"]
    assert text.dtype == np.float32 and text.shape == (2, 77, 128) and len(tif.pages) == 2
    assert info["prompt"] == PROMPT and info["clip_skip"] == 1
    assert tifffile.imread(tmp_path / "fox_decoded.tiff").dtype == np.float16


def test_a_run_stopped_at_step_7_and_continued_equals_one_run(world, tmp_path):
    text = world.parts.text(tmp_path / "a", prompt=PROMPT)
    noise = world.parts.noise(tmp_path / "a", seed=5, width=128, height=128)
    whole = world.parts.diffuse(noise, text, tmp_path / "whole", steps=10)
    half = world.parts.diffuse(noise, text, tmp_path / "half", steps=10, to_step=7)
    rest = world.parts.diffuse(half, text, tmp_path / "rest", from_step=7)
    assert np.array_equal(tifffile.imread(rest), tifffile.imread(whole))
    assert not np.array_equal(tifffile.imread(half), tifffile.imread(whole))


def test_one_text_file_with_two_noise_files_gives_the_two_seeds_pictures(world, tmp_path):
    text = world.parts.text(tmp_path / "shared", prompt=PROMPT, precision="fp32")
    for seed in (11, 12):
        png = chain(world, tmp_path, name=f"seed{seed}", seed=seed, text=text)
        assert np.array_equal(pixels(png), pixels(generated(world, seed=seed)))


def test_an_edited_latent_shows_its_edit(world, tmp_path):
    chain(world, tmp_path)
    latent = tifffile.imread(tmp_path / "fox_state2.tiff")
    edited = np.concatenate([latent, latent], axis=2)  # tiled side by side in an editor
    tifffile.imwrite(tmp_path / "edit_state2.tiff", edited)
    png = world.parts.decode(tmp_path / "edit_state2.tiff", tmp_path / "edit")[0]
    image = pixels(png)
    assert image.shape == (128, 256, 3)
    assert np.abs(image[:, :128] - pixels(tmp_path / "fox.png")).mean() < 2


def test_encode_then_decode_is_within_the_vaes_round_trip_error(world, tmp_path):
    scene = Image.open(generated(world, seed=8))
    scene.save(tmp_path / "scene.png")
    state = world.parts.encode(tmp_path / "scene.png", tmp_path / "scene")
    png = world.parts.decode(state, tmp_path / "back")[0]
    error = np.abs(pixels(png) - pixels(scene)).mean()
    assert error < 12, error  # the embedded model's VAE: about 6 levels on its own scenes (docs/embedded-model.md)


def test_img2img_by_parts_diffuses_an_encoded_image(world, tmp_path):
    scene = Image.open(generated(world, seed=8))
    scene.save(tmp_path / "scene.png")
    state = world.parts.encode(tmp_path / "scene.png", tmp_path / "scene")
    text = world.parts.text(tmp_path / "t", prompt=PROMPT)
    out = world.parts.diffuse(state, text, tmp_path / "i2i", steps=10, strength=0.3, seed=1)
    png = world.parts.decode(out, tmp_path / "i2i")[0]
    assert np.abs(pixels(png) - pixels(scene)).mean() < 40


def test_files_in_the_by_parts_layout_are_read(world, tmp_path):
    chain(world, tmp_path)
    noise = tifffile.imread(tmp_path / "fox_state1.tiff")
    embeddings = tifffile.imread(tmp_path / "fox_text.tiff")
    # as StableDiffusion-By-Parts writes them: float16 (1, 4, h, w) latent pages, float32 embeddings,
    # a description holding the shape only
    tifffile.imwrite(tmp_path / "old_state1.tiff", noise[None].astype(np.float16))
    tifffile.imwrite(tmp_path / "old_text.tiff", embeddings)
    assert json.loads(tifffile.TiffFile(tmp_path / "old_state1.tiff").pages[0].description) == {
        "shape": [1, 4, 16, 16]}
    state = world.parts.diffuse(tmp_path / "old_state1.tiff", tmp_path / "old_text.tiff", tmp_path / "old",
                                steps=10, seed=5)
    png = world.parts.decode(state, tmp_path / "old")[0]
    assert np.abs(pixels(png) - pixels(tmp_path / "fox.png")).mean() < 1  # the float16 noise rounds a little


def test_a_float32_decode_keeps_what_an_8_bit_png_cannot(world, tmp_path):
    chain(world, tmp_path)
    png, decoded = world.parts.decode(tmp_path / "fox_state2.tiff", tmp_path / "f32", float32=True)
    values = tifffile.imread(decoded)
    assert values.dtype == np.float32 and values.shape == (128, 128, 3)
    difference = np.abs(values - pixels(png) / 255)
    assert difference.max() < 1 / 255 and difference.max() > 0
    assert len(np.unique(values)) > 256


def tiff_bomb() -> bytes:
    """A small TIFF whose header declares a 100000 x 100000 float32 page (40 GB if read as declared)."""
    import io
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((8, 8), np.float32))
    data = bytearray(buffer.getvalue())
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        for name in ("ImageWidth", "ImageLength"):
            tag = tif.pages[0].tags[name]
            data[tag.valueoffset:tag.valueoffset + 4] = (100000).to_bytes(4, "little")
    return bytes(data)


@pytest.mark.parametrize("make, words", [
    (lambda p: tifffile.imwrite(p, np.zeros((3, 16, 16), np.float32)), "not a latent of shape (4,"),
    (lambda p: tifffile.imwrite(p, np.zeros((4, 16, 16), np.uint8)), "uint8 pages"),
    (lambda p: p.write_bytes(b"not a tiff"), "not a TIFF file"),
    (lambda p: p.write_bytes(tiff_bomb()), "declares 100000 x 100000 values, more than any state holds"),
    (lambda p: tifffile.imwrite(p, np.full((4, 16, 16), np.nan, np.float32)), "not finite numbers"),
    (lambda p: p.write_bytes(tiff_bomb()[:60]), "not a TIFF file, or it is damaged"),
])
def test_a_bad_state_is_one_sentence_and_writes_nothing(world, tmp_path, make, words):
    make(tmp_path / "bad.tiff")
    text = world.parts.text(tmp_path / "t", prompt=PROMPT)
    with pytest.raises(PartsError) as e:
        world.parts.diffuse(tmp_path / "bad.tiff", text, tmp_path / "out")
    assert words in str(e.value)
    assert not list(tmp_path.glob("out*"))


def test_a_text_file_of_another_family_is_refused(world, tmp_path):
    tifffile.imwrite(tmp_path / "sd15_text.tiff", np.zeros((2, 77, 768), np.float32))
    noise = world.parts.noise(tmp_path / "n", seed=1, width=128, height=128)
    with pytest.raises(PartsError, match="768-wide embeddings"):
        world.parts.diffuse(noise, tmp_path / "sd15_text.tiff", tmp_path / "out")


def test_the_command_line_prints_the_written_paths_only(tmp_path, models_dir):
    def app(*argv):
        run = subprocess.run([sys.executable, str(PROJECT_DIR / "app.py"), "parts", *argv, "--models-dir",
                              str(models_dir), "--creations-dir", str(tmp_path / "creations")],
                             capture_output=True, text=True, cwd=tmp_path, timeout=600)
        assert run.returncode == 0, run.stderr
        return run.stdout.split()

    assert app("text", "--prompt", PROMPT, "--out", "fox") == ["fox_text.tiff"]
    assert app("noise", "--seed", "5", "--width", "128", "--height", "128", "--out", "fox") == ["fox_state1.tiff"]
    assert app("diffuse", "fox_state1.tiff", "fox_text.tiff", "--steps", "4", "--to-step", "2",
               "--out", "fox") == ["fox_state2.tiff"]
    assert app("diffuse", "fox_state2.tiff", "fox_text.tiff", "--from-step", "2", "--out", "fox") == [
        "fox_state2.tiff"]
    assert app("decode", "fox_state2.tiff", "--out", "fox") == ["fox.png", "fox_decoded.tiff"]
    assert app("encode", "fox.png", "--out", "back") == ["back_state1.tiff"]
