"""The contract every registered backend keeps: a new engine passes this file before it lands."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dreamworld import backends, schema
from dreamworld.backends import LoadSpec
from dreamworld.backends.base import Interrupted, Job
from dreamworld.models import find_model
from dreamworld.schema import RequestError, validate

SIZE = {"width": 128, "height": 64}


@pytest.fixture(scope="module", params=backends.ENGINES)
def engine(request, models_dir):
    backend = backends.backend_class(request.param)(LoadSpec(find_model(models_dir, "dreamworld-tiny"), None,
                                                             "cpu", "fp32"))
    yield backend
    backend.close()


def job(engine, seed=3, **fields) -> Job:
    values = {"prompt": "a red circle on a blue background", "steps": 4, "backend": engine.name, **SIZE, **fields}
    return Job(validate(values), seed, **{k: v for k, v in fields.items() if k in ("init_image", "mask")})


def scene() -> Image.Image:
    y, x = np.mgrid[0:64, 0:128]
    return Image.fromarray(np.stack([x * 2, y * 4, np.full_like(x, 60)], axis=-1).astype(np.uint8))


def test_it_is_registered_under_its_own_name(engine):
    assert backends.backend_class(engine.name) is type(engine)


def test_the_same_job_gives_an_image_of_its_size_and_the_same_pixels_again(engine):
    first, second = engine.generate(job(engine)), engine.generate(job(engine))
    assert first.size == (128, 64) and first.mode == "RGB"
    assert np.array_equal(np.asarray(first), np.asarray(second))
    assert not np.array_equal(np.asarray(first), np.asarray(engine.generate(job(engine, seed=4))))


def test_every_declared_mode_and_sampler_makes_an_image(engine):
    caps = engine.capabilities()
    init, mask = scene(), Image.new("L", (128, 64), 0)
    mask.paste(255, (0, 0, 64, 64))
    inputs = {"txt2img": {}, "img2img": {"init_image": "in.png"}, "inpaint": {"init_image": "in.png", "mask": "m.png"}}
    for mode in caps.modes:
        j = job(engine, mode=mode, **inputs[mode])
        j = Job(j.request, j.seed, init if mode != "txt2img" else None, mask if mode == "inpaint" else None)
        image = engine.generate(j)
        assert image.size == (128, 64)
        if mode == "inpaint":  # the unmasked half is the input's
            assert np.array_equal(np.asarray(image)[:, 80:], np.asarray(init)[:, 80:])
    assert set(caps.schedulers) <= set(schema.SCHEDULERS)
    for scheduler in caps.schedulers:
        assert engine.generate(job(engine, scheduler=scheduler, steps=2)).size == (128, 64)


def test_progress_is_reported_per_step_and_a_stop_interrupts(engine):
    steps = []
    j = job(engine)
    engine.generate(Job(j.request, j.seed, on_step=lambda i, n: steps.append((i, n))))
    assert steps == [(i, 4) for i in range(1, 5)]
    with pytest.raises(Interrupted):
        engine.generate(Job(j.request, j.seed, should_stop=lambda: True))


def test_a_latent_walk_starts_from_the_seeds_own_noise(engine):
    if not engine.capabilities().latent_walk:
        pytest.skip("this backend declares no latent walks")
    noise = engine.initial_noise(3, 128, 64)
    plain, walked = engine.generate(job(engine)), engine.generate(Job(job(engine).request, 3, noise=noise))
    assert np.array_equal(np.asarray(plain), np.asarray(walked))


def test_the_model_facts_it_declares(engine):
    width, height = engine.native_size
    multiple = engine.capabilities().size_multiple
    assert width % multiple == 0 and height % multiple == 0
    assert 1 <= engine.clip_layers <= schema.FIELDS["clip_skip"].max


@pytest.mark.parametrize("name", backends.ENGINES)
def test_what_it_cannot_do_is_refused_naming_the_field(name):
    caps = backends.capabilities(name)
    for field in ("mode", "scheduler", "device", "precision"):
        outside = [v for v in schema.FIELDS[field].choices if v not in backends.field_choices(field, caps)]
        for value in outside:
            with pytest.raises(RequestError) as e:
                backends.check(validate({"backend": name, field: value, "init_image": "x", "mask": "y"}), caps)
            assert e.value.field == field and repr(name) in str(e.value)
    if caps.size_multiple > 8:
        with pytest.raises(RequestError) as e:
            backends.check(validate({"backend": name, "width": caps.size_multiple + 8}), caps)
        assert e.value.field == "width"
    for switch in backends.SWITCH_FIELDS:
        if not backends.serves(switch, caps):
            with pytest.raises(RequestError) as e:
                backends.check(validate({"backend": name, switch: True}), caps)
            assert e.value.field == switch
