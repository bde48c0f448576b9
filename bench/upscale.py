"""Hires fix and upscalers against their baselines, in one process, on the embedded model.

    python bench/upscale.py [--size 64] [--steps 10] [--repeats 3] [--backend torch]

Prints: generate with hires fix (2x, Latent and dreamworld-2x, hires steps = steps) against plain generate
at the same first-pass size; the shipped ESRGAN on a 512x512 image against Lanczos, and in 192-pixel
tiles against one pass. Each figure is the best of --repeats runs, after one warm-up.
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

from PIL import Image  # noqa: E402

from dreamworld import DreamWorld, upscalers  # noqa: E402
from dreamworld.settings import Settings  # noqa: E402


def best(run, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backend", default="torch")
    args = p.parse_args()
    world = DreamWorld(settings=Settings(), creations_dir=tempfile.mkdtemp(prefix="dreamworld-bench-up-"))
    base = dict(prompt="a red circle on a blue background", seed=1, steps=args.steps, width=args.size,
                height=args.size, backend=args.backend)
    plain = best(lambda: world.create(**base), args.repeats)
    print(f"generate {args.size}px, {args.steps} steps: {plain:.3f} s (1.00)")
    for upscaler in ("Latent", "dreamworld-2x"):
        t = best(lambda: world.create(**base, hires_scale=2, hires_upscaler=upscaler), args.repeats)
        print(f"  + hires fix 2x ({upscaler}): {t:.3f} s ({t / plain:.2f}x)")
    picture = world.create(**base).images[0].resize((512, 512), Image.LANCZOS)
    lanczos = best(lambda: upscalers.upscale(picture, 2, "Lanczos", world.model_dirs), args.repeats)
    model = upscalers.load(upscalers.models.find_model(world.model_dirs, "dreamworld-2x", "esrgan"))
    tensor = upscalers._to_tensor(picture)
    one = best(lambda: upscalers.run_tiled(model, tensor, tile=10_000), args.repeats)
    tiled = best(lambda: upscalers.run_tiled(model, tensor), args.repeats)
    print(f"upscale 512px 2x, Lanczos: {lanczos:.3f} s (1.00); dreamworld-2x in one pass: {one:.3f} s "
          f"({one / lanczos:.0f}x); in 192px tiles: {tiled:.3f} s ({tiled / one:.2f}x the one pass)")


if __name__ == "__main__":
    main()
