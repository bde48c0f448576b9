"""Check the edge ControlNet: does a control image put the object where its shape is?

    python -m embedded_model.evaluate_controlnet [--controlnet models/ControlNet/control_dreamworld_edges] [--n 12]

For held-out scenes (the first object's colour/shape/background triple never seen in training), the
prompt names the object and the background but no position; the control image is the Canny edge map
of the same scene drawn at a random position (DreamWorld's own generation path, Euler a, guidance 7). The object mask of each picture (pixels unlike the
background, shapes.object_mask) is compared with the control scene's object by IoU, with the ControlNet
(weight 1) and without it (the same prompt and seed). Prints the mean IoUs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from . import shapes
from .train_controlnet import ROOT


def scenes(n: int, seed: int = 123):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = shapes.sample_scene(rng, "heldout", objects=1, full=True)
        o = s.objects[0]
        caption = f"a {o.size} {o.colour} {o.shape} on {'an' if s.background[0] in 'aeiou' else 'a'} {s.background} background"
        out.append((s, caption))
    return out


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--controlnet", default=str(ROOT / "models" / "ControlNet" / "control_dreamworld_edges"))
    p.add_argument("--n", type=int, default=12)
    p.add_argument("--steps", type=int, default=20)
    a = p.parse_args(argv)
    import tempfile
    import shutil
    from dreamworld import DreamWorld
    from dreamworld.settings import Settings
    tmp = Path(tempfile.mkdtemp(prefix="dreamworld-eval-cn-"))
    (tmp / "models" / "ControlNet").mkdir(parents=True)
    shutil.copytree(a.controlnet, tmp / "models" / "ControlNet" / "under-test")
    world = DreamWorld(settings=Settings(), models_dir=tmp / "models", creations_dir=tmp / "creations")
    with_cn, without = [], []
    for k, (scene, caption) in enumerate(scenes(a.n)):
        target = shapes.object_mask(shapes.render_pil([scene])[0], scene.background)
        shapes.render_pil([scene])[0].save(tmp / "control.png")
        unit = {"preprocessor": "canny", "model": "under-test", "image": str(tmp / "control.png")}
        common = dict(prompt=caption, seed=k, steps=a.steps, width=128, height=128)
        img_cn = world.create(**common, controlnet=[unit]).images[0]
        img = world.create(**common).images[0]
        for image, store in ((img_cn, with_cn), (img, without)):
            m = shapes.object_mask(image, scene.background)
            store.append((m & target).sum() / max(1, (m | target).sum()))
        print(f"{caption!r} at {scene.objects[0].position}: IoU with {with_cn[-1]:.2f}, without {without[-1]:.2f}",
              flush=True)
    print(f"mean IoU with ControlNet {np.mean(with_cn):.3f}, without {np.mean(without):.3f} (n={a.n})")


if __name__ == "__main__":
    main()
