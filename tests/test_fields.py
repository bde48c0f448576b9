"""Schema v2: every field is declared once and appears in the CLI, the GUI, validation, the A1111 text and
the JSON record; list fields (an explicit seed list) flow from every entry point into metadata and re-runs."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from dreamworld import creations, infotext, schema, spec
from dreamworld.schema import Request, RequestError, validate
from dreamworld.settings import PROJECT_DIR

from .conftest import FAST, pixels

# A value unlike the default for each field with an A1111 key, in a mode where the key is written.
NON_DEFAULT = {"width": 96, "height": 72, "steps": 13, "guidance_scale": 5.5, "scheduler": "DPM++ 2M Karras",
               "seed": 4242, "strength": 0.35, "mask_blur": 9, "clip_skip": 2, "model": "some-model, v2",
               "vae": "kl-f8: ft", "ngms": 2.5, "deepcache": 2}
HIRES = {"hires_scale": 1.5, "hires_steps": 7, "hires_upscaler": "dreamworld-2x", "hires_denoising": 0.45}  # txt2img


def test_every_a1111_key_we_write_is_read_back_into_the_same_field():
    keys = {s.name for s in schema.FIELDS.values() if s.infotext and s.kind != "units"}  # units: below
    assert keys == set(NON_DEFAULT) | set(HIRES)  # a new infotext field gets a value here
    request = Request(mode="inpaint", prompt="a fox\nsecond line", negative_prompt="blur", init_image="i.png",
                      mask="m.png", **NON_DEFAULT)
    text = infotext.format_parameters(request, {"Model hash": "abc", "Version": "v"})
    read = infotext.request_from_parameters(infotext.parse_parameters(text))
    assert read == {"prompt": "a fox\nsecond line", "negative_prompt": "blur", **NON_DEFAULT,
                    "hires_denoising": 0.35}  # A1111's "Denoising strength" is both: the mode picks


def test_controlnet_units_are_written_as_the_a1111_extension_writes_them_and_read_back():
    units = ("canny:control_dreamworld_edges:0.8:0.1:0.9", '{"preprocessor": "soft", "model": "b", "threshold_a": 20}')
    request = validate({"prompt": "a fox", "controlnet": units, "width": 128, "height": 128})
    text = infotext.format_parameters(request, {"ControlNet hashes": {"control_dreamworld_edges": "cd562d83"}})
    assert ('ControlNet 0: "Module: canny, Model: control_dreamworld_edges [cd562d83], Weight: 0.8, Resize Mode: '
            'Just Resize, Processor Res: 128, Guidance Start: 0.1, Guidance End: 0.9, Pixel Perfect: False, '
            'Control Mode: Balanced"') in text
    assert 'ControlNet 1: "Module: soft, Model: b, Weight: 1, Resize Mode: Just Resize, Processor Res: 128, ' \
           'Threshold A: 20, Guidance Start: 0' in text
    read = validate(infotext.request_from_parameters(infotext.parse_parameters(text)))
    assert read.controlnet == request.controlnet


def test_hires_keys_are_written_as_a1111_writes_them_and_read_back():
    request = Request(prompt="a fox", **{k: v for k, v in NON_DEFAULT.items() if k != "strength"}, **HIRES)
    text = infotext.format_parameters(request)
    assert ("Denoising strength: 0.45, Clip skip: 2, Hires upscale: 1.5, Hires steps: 7, "
            "Hires upscaler: dreamworld-2x") in text
    read = infotext.request_from_parameters(infotext.parse_parameters(text))
    assert {k: read[k] for k in HIRES} == HIRES and read["strength"] == 0.45  # A1111's one key for both
    plain = infotext.format_parameters(request.replace(hires_scale=1.0))
    assert "Hires" not in plain and "Denoising strength" not in plain  # hires fix off: no hires keys


def test_the_cli_has_a_flag_for_every_field_with_its_allowed_range():
    sys.path.insert(0, str(PROJECT_DIR))
    import app
    for command, fields in (("generate", schema.FIELDS), ("cinema", schema.CINEMA_FIELDS)):
        text = app.build_parser()._subparsers._group_actions[0].choices[command].format_help()
        for name in fields:
            assert "--" + name.replace("_", "-") in text, name
    assert "--seeds SEEDS" in app.build_parser()._subparsers._group_actions[0].choices["generate"].format_help()


def test_gui_controls_are_derived_from_the_schema_and_the_backend():
    import gradio as gr

    from dreamworld import backends
    from gui import controls
    torch_caps, tf_caps = backends.capabilities("torch"), backends.capabilities("tensorflow")
    with gr.Blocks():
        made = {n: controls.control(n, getattr(Request(), n), torch_caps, {"steps": {"max": 60}})
                for n, s in schema.FIELDS.items() if s.kind != "image"}
        assert made["guidance_scale"].label == "CFG scale" and made["scheduler"].label == "Sampler"
        assert made["jit"].label == "XLA compile" and made["jit"].visible is False  # torch cannot
        assert controls.control("jit", False, tf_caps, {}).visible is True
        assert isinstance(made["seeds"], gr.Textbox) and isinstance(made["steps"], gr.Slider)
        assert made["steps"].maximum == 60  # the settings' limit
        assert isinstance(made["mode"], gr.Radio) and made["mode"].choices == [(m, m) for m in schema.MODES]
        assert made["width"].step == 8 and controls.control("width", None, tf_caps, {}).step == 64
    assert controls.field_value(schema.FIELDS["width"], 0) is None  # 0: the model's native size
    assert controls.shown_value(schema.FIELDS["seeds"], (3, 7)) == "3, 7"
    assert validate({"seeds": controls.shown_value(schema.FIELDS["seeds"], (3, 7))}).seeds == (3, 7)


# ----- the kinds of list fields -----------------------------------------------------------------------
@dataclass
class Unit:
    module: str = spec.spec(str, "canny", choices=("canny", "depth"), help="preprocessor")
    model: str = spec.spec(str, "", help="model")
    weight: float = spec.spec(float, 1.0, min=0.0, max=2.0, help="weight")


@dataclass
class Lists:
    seeds: tuple = spec.spec(int, (), kind="list", min=0, max=99, help="seeds")
    loras: tuple = spec.spec(str, (), kind="pairs", min=-2.0, max=2.0, help="name:weight")
    units: tuple = spec.spec(str, (), kind="units", unit=Unit, help="units")


LISTS = spec.specs(Lists)


def check(values):
    return spec.validate_fields(Lists, LISTS, values)


def test_list_fields_take_lists_text_and_repeated_flags():
    assert check({"seeds": "3, 7,11"}).seeds == check({"seeds": ["3", "7,11"]}).seeds == (3, 7, 11)
    assert check({"loras": ["outline:0.8", "shade"]}).loras == (("outline", 0.8), ("shade", 1.0))
    assert check({"loras": {"outline": 0.5}}).loras == check({"loras": [["outline", "0.5"]]}).loras
    units = check({"units": ["depth:control_x:0.5", '{"model": "y"}']}).units
    assert units == (Unit("depth", "control_x", 0.5), Unit("canny", "y", 1.0))
    assert spec.plain(check({"units": units}))["units"][0] == {"module": "depth", "model": "control_x", "weight": 0.5}


@pytest.mark.parametrize("values, words", [
    ({"seeds": "3,x"}, "each of seeds must be a number"),
    ({"seeds": "3,100"}, "each of seeds must be from 0 to 99, got 100"),
    ({"loras": "outline:abc"}, "the weight of 'outline' in loras must be a number"),
    ({"loras": "outline:3"}, "the weight of 'outline' in loras must be from -2.0 to 2.0"),
    ({"units": "blur:m:1"}, "units: module must be one of 'canny', 'depth', got 'blur'"),
    ({"units": "canny:m:1:9"}, "units must be units such as module:model:weight"),
    ({"units": "canny:m:5"}, "units: weight must be from 0.0 to 2.0"),
])
def test_list_field_errors_name_the_field_and_the_range(values, words):
    with pytest.raises(RequestError) as e:
        check(values)
    assert e.value.field == next(iter(values)) and words in str(e.value), str(e.value)


# ----- an explicit seed list from every entry point ------------------------------------------------------
def test_a_seed_list_from_python_makes_one_image_per_seed_and_each_reruns(world):
    result = world.create(prompt="a red ring", seeds=[3, 7, 11], **FAST)
    assert result.seeds == [3, 7, 11] and len(result.paths) == 3
    records = [creations.read_creation(p) for p in result.paths]
    assert [r["request"]["seed"] for r in records] == [3, 7, 11]
    assert all(r["request"]["seeds"] == [3, 7, 11] and "Seed: " in r["parameters"] for r in records)
    again = world.create(**creations.request_from_file(result.paths[1], world.creations_dir))
    assert again.seeds == [7] and np.array_equal(pixels(again.paths[0]), pixels(result.paths[1]))
    single = world.create(prompt="a red ring", seed=7, **FAST)
    assert np.array_equal(pixels(single.paths[0]), pixels(result.paths[1]))


def test_a_seed_list_from_the_command_line(tmp_path):
    def app(*args):
        command = [sys.executable, str(PROJECT_DIR / "app.py"), *args, "--creations-dir", str(tmp_path)]
        return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=PROJECT_DIR)

    run = app("generate", "--prompt", "a blue star", "--seeds", "3,7", "--seeds", "11", "--steps", "3",
              "--width", "64", "--height", "64")
    assert run.returncode == 0, run.stderr
    paths = [Path(p) for p in run.stdout.splitlines()]
    assert [creations.read_creation(p)["request"]["seed"] for p in paths] == [3, 7, 11]
    again = app("generate", "--from", str(paths[2]))
    assert again.returncode == 0, again.stderr
    assert np.array_equal(pixels(again.stdout.strip()), pixels(paths[2]))
    bad = app("generate", "--prompt", "x", "--seeds", "3,-4")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: each of seeds must be from 0 to 4294967295, got -4"
