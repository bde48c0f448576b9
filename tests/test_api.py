"""The A1111 HTTP API (issue 16): request models derived from the schema."""
from dreamworld import schema
from dreamworld.api import models


def test_models_carry_every_schema_field_under_its_a1111_name():
    names = set(models.Txt2Img.model_fields)
    for spec in schema.FIELDS.values():
        if spec.name not in models.SKIPPED:
            assert (spec.api or spec.name) in names
    assert {"cfg_scale", "sampler_name", "n_iter", "batch_size"} <= names
    assert "init_images" in models.Img2Img.model_fields


def test_unknown_fields_ignored_and_a1111_fields_mapped():
    body = models.Txt2Img.model_validate({"prompt": "a cat", "cfg_scale": 5, "n_iter": 2, "batch_size": 3,
                                          "sampler_index": "Euler", "nonsense": 1, "seed": -1})
    values = models.to_values(body, "txt2img")
    assert values["count"] == 6 and values["scheduler"] == "Euler" and values["guidance_scale"] == 5 and values["prompt"] == "a cat"
    request = schema.validate({**values, "count": 2})
    assert request.guidance_scale == 5 and request.seed == -1
