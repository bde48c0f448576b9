"""A1111's negative guidance minimum sigma (NGMS): fewer UNet passes at low noise, nearly the same picture."""
import numpy as np
import pytest

from dreamworld.creations import read_creation

from .conftest import pixels


def psnr(a, b) -> float:
    return 10 * np.log10(255 ** 2 / max(((pixels(a) - pixels(b)) ** 2).mean(), 1e-9))


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_ngms_halves_the_negative_passes_at_low_noise_and_keeps_the_picture(world, monkeypatch, backend):
    fields = dict(prompt="a red circle on a blue background", seed=4, steps=20, width=64, height=64,
                  backend=backend)
    batches = []
    predict = type(world.compile(world.request(**fields))).predict_noise

    def counting(self, model_input, t, context):
        batches.append(len(model_input))
        return predict(self, model_input, t, context)

    monkeypatch.setattr(type(world.backend), "predict_noise", counting)
    plain = world.create(**fields)
    assert batches == [2] * 20
    batches.clear()
    skipping = world.create(ngms=1.0, **fields)
    assert batches.count(1) >= 3 and batches.count(2) >= 10, batches  # odd steps below sigma 1 only
    assert batches[:8] == [2] * 8  # high noise: always guided
    assert 0 < np.abs(pixels(skipping.images[0]) - pixels(plain.images[0])).max()
    assert psnr(skipping.images[0], plain.images[0]) > 25
    assert "NGMS: 1," in skipping.parameters[0] and "NGMS" not in plain.parameters[0]
    assert read_creation(skipping.paths[0])["request"]["ngms"] == 1.0
