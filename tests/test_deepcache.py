"""DeepCache (the `deepcache` field, torch): after each full UNet step, the next N steps run only the UNet's
outer blocks and reuse the deep features of that step."""
import numpy as np
import pytest

from dreamworld.creations import read_creation, request_from_file
from dreamworld.errors import RequestError

from .conftest import pixels

FIELDS = dict(prompt="a red circle on a blue background", seed=4, steps=12, width=64, height=64, backend="torch")


def deep_calls(world, monkeypatch, **fields) -> tuple[int, object]:
    """How many steps ran the UNet's middle block (the deepest features), and the result."""
    unet = world.compile(world.request(**FIELDS, **fields)).__dict__["_pipes"]["txt2img"].unet
    calls = []
    forward = unet.mid_block.forward
    monkeypatch.setattr(unet.mid_block, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    result = world.create(**FIELDS, **fields)
    monkeypatch.undo()
    return len(calls), result


def test_deepcache_runs_the_deep_blocks_on_one_step_in_n_plus_one(world, monkeypatch):
    full, plain = deep_calls(world, monkeypatch)
    cached, fast = deep_calls(world, monkeypatch, deepcache=2)
    assert (full, cached) == (12, 4)  # steps 0, 3, 6 and 9 run the whole UNet
    assert not np.array_equal(pixels(fast.images[0]), pixels(plain.images[0]))
    assert "DeepCache: 2," in fast.parameters[0] and "DeepCache" not in plain.parameters[0]
    again = world.create(**request_from_file(fast.paths[0], world.creations_dir))
    assert np.array_equal(pixels(again.images[0]), pixels(fast.images[0]))
    assert read_creation(fast.paths[0])["request"]["deepcache"] == 2
    off, _ = deep_calls(world, monkeypatch, deepcache=0)
    assert off == 12


def test_deepcache_with_ngms_runs_the_whole_unet_when_the_batch_changes(world, monkeypatch):
    calls, result = deep_calls(world, monkeypatch, deepcache=2, ngms=5.0)
    assert 4 < calls < 12 and result.images


def test_deepcache_is_refused_on_tensorflow_and_for_a_run_stopped_midway(world, tmp_path):
    with pytest.raises(RequestError) as e:
        world.create(**dict(FIELDS, deepcache=1, backend="tensorflow"))
    assert e.value.field == "deepcache" and "set deepcache to 0" in str(e.value)
    text = world.parts.text(tmp_path / "d", prompt=FIELDS["prompt"])
    noise = world.parts.noise(tmp_path / "d", seed=4, width=64, height=64)
    with pytest.raises(RequestError) as e:
        world.parts.diffuse(noise, text, tmp_path / "d", steps=12, to_step=5, deepcache=2)
    assert e.value.field == "deepcache"
    assert not (tmp_path / "d_state2.tiff").exists()
