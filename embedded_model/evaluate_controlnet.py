"""Check the edge ControlNet: does a control image put the object where its shape is?

    python -m embedded_model.evaluate_controlnet [--controlnet models/ControlNet/control_dreamworld_edges] [--n 12]

For held-out scenes (the first object's colour/shape/background triple never seen in training), the
prompt names the object and the background but no position; the control image is the Canny edge map
of the same scene drawn at a random position. The object mask of each picture (pixels unlike the
background, shapes.object_mask) is compared with the control scene's object by IoU, with the ControlNet
(weight 1) and without it (the same prompt and seed). Prints the mean IoUs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from . import shapes
from .train_controlnet import BASE, ROOT


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
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, StableDiffusionPipeline
    from dreamworld.preprocessors import canny_array
    base = StableDiffusionPipeline.from_pretrained(BASE, torch_dtype=torch.float32, safety_checker=None,
                                                   requires_safety_checker=False)
    base.set_progress_bar_config(disable=True)
    cn = ControlNetModel.from_pretrained(a.controlnet, torch_dtype=torch.float32)
    pipe = StableDiffusionControlNetPipeline.from_pipe(base, controlnet=cn)
    pipe.set_progress_bar_config(disable=True)
    with_cn, without = [], []
    for k, (scene, caption) in enumerate(scenes(a.n)):
        target = shapes.object_mask(shapes.render_pil([scene])[0], scene.background)
        edges = canny_array(np.asarray(shapes.render_pil([scene])[0]), 100, 200)
        from PIL import Image
        control = Image.fromarray(np.repeat(edges[..., None], 3, 2))
        g = lambda: torch.Generator().manual_seed(k)  # noqa: E731
        img_cn = pipe(caption, image=control, num_inference_steps=a.steps, height=128, width=128, generator=g()).images[0]
        img = base(caption, num_inference_steps=a.steps, height=128, width=128, generator=g()).images[0]
        for image, store in ((img_cn, with_cn), (img, without)):
            m = shapes.object_mask(image, scene.background)
            store.append((m & target).sum() / max(1, (m | target).sum()))
        print(f"{caption!r} at {scene.objects[0].position}: IoU with {with_cn[-1]:.2f}, without {without[-1]:.2f}",
              flush=True)
    print(f"mean IoU with ControlNet {np.mean(with_cn):.3f}, without {np.mean(without):.3f} (n={a.n})")


if __name__ == "__main__":
    main()
