"""Time per image and pixel agreement of every device/precision against CPU fp32, in one process.

    python bench/devices.py [--steps 20] [--size 128] [--images 5]

Prints, per device and precision: load time, seconds per image, the speed ratio against
CPU fp32 (the baseline, run first), and the largest pixel difference from the baseline's
image for the same seed (seeded noise is drawn on the CPU, so devices should agree;
half precisions drift further on the random-weight embedded model).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dreamworld import DreamWorld  # noqa: E402
from dreamworld.backends.torch_backend import available_devices, supported_precisions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", type=int, default=5)
    args = parser.parse_args()
    world = DreamWorld(creations_dir=tempfile.mkdtemp())
    request = dict(prompt="a large red circle on a blue background", steps=args.steps,
                   width=args.size, height=args.size)
    baseline = None
    print(f"{'device':6} {'precision':9} {'load s':>7} {'first s':>8} {'s/image':>8} {'speed x':>8} {'max px diff':>11} {'mean px diff':>12}")
    for device in [d for d in available_devices() if d != "auto"]:
        for precision in supported_precisions(device):
            started = time.perf_counter()
            world.compile(world.request(device=device, precision=precision, **request))
            loaded = time.perf_counter() - started
            started = time.perf_counter()
            first = world.create(device=device, precision=precision, seed=1, **request).images[0]
            first_s = time.perf_counter() - started
            started = time.perf_counter()
            world.create(device=device, precision=precision, seed=2, count=args.images, **request)
            per_image = (time.perf_counter() - started) / args.images
            pixels = np.asarray(first, dtype=np.int16)
            if baseline is None:
                baseline = (per_image, pixels)
            diff = np.abs(pixels - baseline[1])
            print(f"{device:6} {precision:9} {loaded:7.2f} {first_s:8.3f} {per_image:8.3f} "
                  f"{baseline[0] / per_image:8.2f} {diff.max():11d} {diff.mean():12.2f}", flush=True)


if __name__ == "__main__":
    main()
