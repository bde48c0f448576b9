"""LoRAs on the embedded model with the shipped outline LoRA (models/Lora/outline.safetensors): what it draws,
weights, combining, file formats, switching cost on both backends, both backends' agreement, and metadata."""
from __future__ import annotations

import hashlib
import json
import logging
import struct

import numpy as np
import pytest
import torch

from dreamworld import DreamWorld, creations, infotext, loras, prompts
from dreamworld.settings import PROJECT_DIR, Settings
from embedded_model.train_lora import outline_fill

from .conftest import TINY, pixels

OUTLINE = PROJECT_DIR / "models" / "Lora" / "outline.safetensors"
SQUARE = "a large red square on a blue background"
CIRCLE = "a large yellow circle on a black background"
QUICK = dict(steps=12, width=128, height=128, precision="fp32")  # engines compared: auto is bf16 on bf16 CPUs


def diffusers_copy(kohya_file, target):
    """The same LoRA in diffusers' own format, written by diffusers from the kohya file loaded as PEFT adapter."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict
    pipe = StableDiffusionPipeline.from_pretrained(TINY, safety_checker=None)
    pipe.load_lora_weights(str(kohya_file), adapter_name="x")
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet, adapter_name="x"))
    StableDiffusionPipeline.save_lora_weights(target.parent, unet_lora_layers=state, weight_name=target.name)
    return target


@pytest.fixture(scope="module")
def lora_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora-models")
    (root / "Stable-diffusion").mkdir()
    (root / "Stable-diffusion" / "dreamworld-tiny").symlink_to(TINY)
    (root / "Lora").mkdir()
    (root / "Lora" / "outline.safetensors").symlink_to(OUTLINE)
    diffusers_copy(OUTLINE, root / "Lora" / "outline-diffusers.safetensors")
    return root


@pytest.fixture(scope="module")
def lora_world(lora_models, tmp_path_factory) -> DreamWorld:
    return DreamWorld(settings=Settings(), models_dir=lora_models, creations_dir=tmp_path_factory.mktemp("creations"))


def make(world, prompt=SQUARE, seed=0, **fields):
    return world.create(prompt=prompt, seed=seed, **{**QUICK, **fields})


def compiles(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("compile:")]


# ----- the prompt syntax ----------------------------------------------------------------------------------
def test_lora_tags_are_read_and_taken_out_of_the_encoded_text():
    prompt = "a red circle <lora:outline:0.8> on a blue background <lora:shade>"
    assert loras.prompt_loras(prompt) == [("outline", 0.8), ("shade", 1.0)]
    assert prompts.strip_networks(prompt) == "a red circle  on a blue background "
    assert prompts.strip_networks("a <hypernet:x:1> fox") == "a <hypernet:x:1> fox"  # not ours: text


def test_the_field_and_the_tags_join_and_a_tag_wins_over_the_field():
    from dreamworld.schema import validate
    request = validate({"prompt": "x <lora:outline:0.3>", "lora": ["outline:0.9", "other"]})
    assert request.lora == (("outline", 0.9), ("other", 1.0))
    assert loras.wanted(request) == (("other", 1.0), ("outline", 0.3))


# ----- what it draws --------------------------------------------------------------------------------------
@pytest.mark.parametrize("prompt", [SQUARE, CIRCLE])
def test_the_outline_lora_draws_outlines_where_the_model_draws_filled_shapes(lora_world, prompt):
    for seed in range(3):
        plain = make(lora_world, prompt, seed).images[0]
        outlined = make(lora_world, f"{prompt} <lora:outline:1>", seed).images[0]
        assert outline_fill(plain) > 0.8, (prompt, seed, outline_fill(plain))
        assert outline_fill(outlined) is not None and outline_fill(outlined) < 0.3, (prompt, seed,
                                                                                       outline_fill(outlined))


def test_weight_zero_gives_the_pictures_of_no_lora(lora_world):
    plain = pixels(make(lora_world).images[0])
    assert np.abs(plain - pixels(make(lora_world, lora=["outline:0"]).images[0])).max() == 0
    assert np.abs(plain - pixels(make(lora_world, lora=["outline:1"]).images[0])).mean() > 5
    assert np.abs(plain - pixels(make(lora_world).images[0])).max() == 0  # and off again


def test_kohya_and_diffusers_files_of_the_same_weights_give_the_same_picture(lora_world):
    kohya = pixels(make(lora_world, lora=["outline:0.8"]).images[0])
    assert np.array_equal(kohya, pixels(make(lora_world, lora=["outline-diffusers:0.8"]).images[0]))


def test_two_loras_combine_their_weights(lora_world):
    """Two adapters at half weight each add up to one at full weight (within rounding: PEFT adds them in turn)."""
    whole = pixels(make(lora_world, lora=["outline:1"]).images[0])
    halves = pixels(make(lora_world, SQUARE + " <lora:outline:0.5> <lora:outline-diffusers:0.5>").images[0])
    one_half = pixels(make(lora_world, lora=["outline:0.5"]).images[0])
    assert np.abs(whole - halves).max() <= 2 and np.abs(whole - halves).mean() < 0.05
    assert np.abs(whole - one_half).mean() > 1


def test_switching_loras_on_torch_reloads_nothing(lora_world, caplog):
    make(lora_world)
    with caplog.at_level(logging.INFO, logger="dreamworld"):
        for fields in ({"lora": ["outline:1"]}, {"lora": ["outline:0.4"]}, {"lora": ["outline-diffusers"]}, {}):
            make(lora_world, **fields)
    assert compiles(caplog) == []


# ----- metadata -------------------------------------------------------------------------------------------
def addnet_hash(path) -> str:
    data = path.read_bytes()
    return hashlib.sha256(data[8 + struct.unpack("<Q", data[:8])[0]:]).hexdigest()[:12]


def test_lora_hashes_are_written_as_a1111_writes_them_and_the_creation_reruns_exactly(lora_world):
    prompt = "a large red square <lora:outline:0.7> on a blue background"
    result = make(lora_world, prompt, seed=5)
    text = result.parameters[0]
    assert text.startswith(prompt + "\n")  # the tag stays in the saved prompt
    assert f'Lora hashes: "outline: {addnet_hash(OUTLINE)}", Version' in text
    assert result.paths[0].with_suffix(".txt").read_text() == text
    assert infotext.parse_parameters(text)["Lora hashes"] == f"outline: {addnet_hash(OUTLINE)}"
    again = lora_world.generateArt(lora_world.request(**creations.request_from_file(result.paths[0])))
    assert np.array_equal(pixels(result.paths[0]), pixels(again.paths[0]))
    field = make(lora_world, seed=5, lora=["outline:0.7"])  # the field: kept in the JSON record
    record = json.loads(json.dumps(creations.request_from_file(field.paths[0])))
    assert record["lora"] == [["outline", 0.7]]
    assert np.array_equal(pixels(field.paths[0]), pixels(result.paths[0]))


# ----- TensorFlow -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tf_world(lora_models, tmp_path_factory) -> DreamWorld:
    pytest.importorskip("tensorflow")
    return DreamWorld(settings=Settings(), models_dir=lora_models, creations_dir=tmp_path_factory.mktemp("tf"))


def test_a_lora_change_on_tensorflow_is_one_recompile_and_torch_agrees(tf_world, lora_world, caplog):
    make(tf_world, backend="tensorflow")
    with caplog.at_level(logging.INFO, logger="dreamworld"):
        caplog.clear()
        tf_outline = make(tf_world, backend="tensorflow", lora=["outline:0.8"]).images[0]
        assert len(compiles(caplog)) == 1 and "changed=lora" in compiles(caplog)[0]
        caplog.clear()
        make(tf_world, backend="tensorflow", lora=["outline:0.8"])
        assert compiles(caplog) == []
        caplog.clear()
        tf_plain = make(tf_world, backend="tensorflow").images[0]
        assert len(compiles(caplog)) == 1
    torch_outline = make(lora_world, lora=["outline:0.8"]).images[0]
    difference = np.abs(pixels(tf_outline) - pixels(torch_outline))
    assert difference.max() <= 2 and difference.mean() < 0.05, (difference.max(), difference.mean())
    assert np.array_equal(pixels(tf_plain), pixels(make(tf_world, backend="tensorflow").images[0]))
    assert outline_fill(tf_outline) < 0.3 < 0.8 < outline_fill(tf_plain)


def test_tensorflow_combines_two_loras_as_torch_does(tf_world):
    whole = pixels(make(tf_world, backend="tensorflow", lora=["outline:1"]).images[0])
    halves = pixels(make(tf_world, backend="tensorflow", lora=["outline:0.5", "outline-diffusers:0.5"]).images[0])
    assert np.abs(whole - halves).max() <= 2 and np.abs(whole - halves).mean() < 0.05


def test_lora_deltas_are_what_peft_fuses(lora_models):
    """TensorFlow's merged weights: base + weight * delta is what diffusers' fuse_lora makes."""
    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(TINY, safety_checker=None)
    base = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    lora = loras.resolve(lora_models, [("outline", 0.6)])[0]
    deltas = loras.deltas(pipe, lora)["unet"]
    pipe.load_lora_weights(str(OUTLINE), adapter_name="fused")
    pipe.fuse_lora(lora_scale=0.6, adapter_names=["fused"])
    pipe.unload_lora_weights()
    fused = pipe.unet.state_dict()
    assert len(deltas) == 10 * 7  # q, k, v, out of two attentions and two feed-forward layers, 7 blocks
    for key, delta in deltas.items():
        torch.testing.assert_close(fused[key], base[key] + 0.6 * torch.from_numpy(delta), atol=1e-6, rtol=0)


def test_the_gui_picker_puts_the_tag_in_the_prompt_or_reweights_it():
    assert loras.with_tag("a fox", "outline", 0.8) == "a fox <lora:outline:0.8>"
    assert loras.with_tag("a fox <lora:outline> at night", "outline", 0.5) == "a fox <lora:outline:0.5> at night"
    assert loras.with_tag("", "outline", 1) == "<lora:outline:1>"
