import pytest

from dreamworld import schema
from dreamworld.schema import RequestError, validate


def test_defaults_are_valid_and_fill_every_field():
    request = validate({})
    assert request.to_dict().keys() == schema.FIELDS.keys()
    assert request.steps == 20 and request.seed == -1 and request.width is None


def test_strings_from_the_command_line_are_converted():
    request = validate({"steps": "30", "guidance_scale": "7.5", "width": "128", "seed": "42"})
    assert (request.steps, request.guidance_scale, request.width, request.seed) == (30, 7.5, 128, 42)


@pytest.mark.parametrize("values, field, words", [
    ({"width": 100}, "width", "multiple of 8"),
    ({"height": 32}, "height", "from 64 to 2048"),
    ({"steps": -5}, "steps", "from 1 to 150"),
    ({"steps": 2.5}, "steps", "whole number"),
    ({"steps": "many"}, "steps", "must be a number"),
    ({"guidance_scale": float("nan")}, "guidance_scale", "finite"),
    ({"strength": 1.5}, "strength", "from 0.0 to 1.0"),
    ({"seed": -2}, "seed", "from -1"),
    ({"scheduler": "Euler b"}, "scheduler", "'DPM++ 2M Karras'"),
    ({"mode": "outpaint"}, "mode", "'inpaint'"),
    ({"format": "gif"}, "format", "'webp'"),
    ({"mode": "img2img"}, "init_image", "required in img2img"),
    ({"mode": "inpaint", "init_image": "x.png"}, "mask", "required in inpaint"),
    ({"stepz": 3}, "stepz", "unknown field"),
    ({"count": True}, "count", "number"),
])
def test_bad_values_name_the_field_and_the_allowed_range(values, field, words):
    with pytest.raises(RequestError) as error:
        validate(values)
    assert error.value.field == field
    assert field in str(error.value) and words in str(error.value)


def test_settings_limits_lower_a_maximum():
    with pytest.raises(RequestError, match="steps must be at most 50"):
        validate({"steps": 60}, limits={"steps": {"max": 50}})
    assert validate({"steps": 50}, limits={"steps": {"max": 50}}).steps == 50


def test_key_fields_are_those_that_need_a_rebuild():
    assert set(schema.KEY_FIELDS) == {"model", "vae", "backend", "device", "precision", "jit"}


def test_cinema_request_shares_the_request_fields_and_adds_its_own():
    fields = schema.CINEMA_FIELDS
    shared = [n for n in schema.FIELDS if n not in schema.CINEMA_EXCLUDED]
    assert [n for n in fields if n in schema.FIELDS] == shared
    assert fields["steps"] == schema.FIELDS["steps"]  # declared once
    assert fields["seed"].min == schema.FIELDS["seed"].min and fields["seed"].help != schema.FIELDS["seed"].help
    assert {"frames", "fps", "motion", "zoom", "translate_z", "rotate_y", "seed_behavior", "cadence",
            "color_coherence", "video", "every_nth", "reuse_init", "gif", "prompts"} <= set(fields)
    assert fields["strength"].kind == fields["guidance_scale"].kind == "schedule"
    request = schema.validate_cinema({"zoom": 1.05, "gif": "yes", "strength": "0:(0.3), 10:(0.6)",
                                      "prompts": {"0": "a", "9": "b"}, "steps": "12"})
    assert (request.zoom, request.gif, request.steps, request.prompts) == ("1.05", True, 12, '{"0": "a", "9": "b"}')
    assert schema.allowed("zoom", fields).startswith("a number or a schedule")
    assert schema.allowed("gif", fields) == "true or false"
    defaults = schema.cinema_defaults(validate({"steps": 30, "scheduler": "DDIM", "strength": 0.9}))
    assert (defaults.steps, defaults.scheduler, defaults.strength) == (30, "DDIM", "0.45")


@pytest.mark.parametrize("values, field, words", [
    ({"zoom": "0:(1.0), 30:(1.05"}, "zoom", "character 13: '(' is never closed"),
    ({"strength": 1.5}, "strength", "from 0.0 to 1.0"),
    ({"motion": "4d"}, "motion", "'dream'"),
    ({"gif": "maybe"}, "gif", "true or false"),
    ({"frames": 0}, "frames", "from 1 to 10000"),
    ({"count": 2}, "count", "unknown field"),
    ({"motion": "video"}, "video", "required in video motion"),
    ({"video": "a.mp4"}, "video", "only used in video motion"),
    ({"motion": "dream", "init_image": "a.png"}, "init_image", "not used in dream motion"),
])
def test_bad_cinema_values_name_the_field(values, field, words):
    with pytest.raises(RequestError) as error:
        schema.validate_cinema(values)
    assert error.value.field == field and words in str(error.value), str(error.value)
