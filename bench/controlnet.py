"""What ControlNet units cost per denoising step on the embedded model, in the same process.

    python bench/controlnet.py [--size 128] [--steps 20] [--images 3] [--threads 0]

Makes the same txt2img picture (Euler a, guidance 7) with no ControlNet, with one unit and with two units
of the shipped models/ControlNet/control_dreamworld_edges (canny of a drawn shape), each warmed up once,
then the best of --images runs; prints seconds per step and each as a ratio to no ControlNet. The
preprocessing (Canny) is included, as it is part of a request.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from dreamworld import DreamWorld  # noqa: E402
from dreamworld.settings import Settings  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--images", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    tmp = Path(tempfile.mkdtemp(prefix="dreamworld-bench-"))
    shape = Image.new("RGB", (a.size, a.size), "black")
    ImageDraw.Draw(shape).ellipse((a.size // 8, a.size // 4, a.size // 2, 3 * a.size // 4), fill="white")
    shape.save(tmp / "shape.png")
    world = DreamWorld(settings=Settings(), creations_dir=tmp / "creations")
    unit = {"preprocessor": "canny", "model": "control_dreamworld_edges", "image": str(tmp / "shape.png")}
    runs = {"no ControlNet": [], "one unit": [unit], "two units": [unit, {**unit, "weight": 0.5}]}
    per_step = {}
    for name, units in runs.items():
        make = lambda seed: world.create(prompt="a red circle on a blue background", seed=seed,  # noqa: E731
                                         steps=a.steps, width=a.size, height=a.size, controlnet=units)
        make(0)
        best = float("inf")
        for k in range(a.images):
            start = time.perf_counter()
            make(k + 1)
            best = min(best, time.perf_counter() - start)
        per_step[name] = best / a.steps
    base = per_step["no ControlNet"]
    print(f"{a.size}x{a.size}, {a.steps} steps, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, seconds in per_step.items():
        print(f"{name:14s} {seconds * 1000:7.1f} ms/step  {seconds / base:5.2f}x")


if __name__ == "__main__":
    main()
