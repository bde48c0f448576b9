"""Live previews: pictures of the latents during a generation, which change nothing in the result."""
import numpy as np
from PIL import Image

from dreamworld import world as world_module

from .conftest import pixels


def psnr(a, b, size=8) -> float:
    """At the latents' own resolution (a preview has one pixel per latent pixel)."""
    a, b = (pixels(x.resize((size, size), Image.BOX)) for x in (a, b))
    return 10 * np.log10(255 ** 2 / max(((a - b) ** 2).mean(), 1e-9))


def test_previews_arrive_during_a_generation_and_leave_the_image_unchanged(world, monkeypatch):
    monkeypatch.setattr(world_module, "PREVIEW_INTERVAL", 0.0)  # every step
    fields = dict(prompt="a red circle on a blue background", seed=3, steps=8, width=64, height=64)
    shown = {}

    def on_progress(progress):
        if progress.preview is not None:
            shown[progress.step] = progress.preview.copy()
            assert progress.step == 1 or progress.eta >= 0  # from the pace of the steps so far

    with_previews = world.create(on_progress=on_progress, **fields)
    plain = world.create(**fields)
    assert (pixels(with_previews.images[0]) == pixels(plain.images[0])).all()
    assert sorted(shown) == list(range(1, 9)) and shown[8].size == (64, 64)
    final = plain.images[0]
    # from noise towards the picture: the last preview is much nearer the image than the first
    assert psnr(shown[8], final) > psnr(shown[1], final) + 3, (psnr(shown[1], final), psnr(shown[8], final))
    assert "about" in world.progress.describe() and "s left" in world.progress.describe()
