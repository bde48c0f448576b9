"""Each by-parts stage's time against `generate` as a whole, in one process, on the embedded model.

    python bench/parts.py [--size 128] [--steps 20] [--repeats 5] [--backend torch]

The model is loaded once first; each figure is the best of --repeats runs. A stage's time includes
reading and writing its TIFF files; generate's includes saving the PNG with its metadata.
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

from dreamworld import DreamWorld  # noqa: E402
from dreamworld.settings import Settings  # noqa: E402


def best(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--backend", default="torch")
    args = p.parse_args()
    out = Path(tempfile.mkdtemp(prefix="dreamworld-bench-parts-"))
    world = DreamWorld(settings=Settings(), creations_dir=out / "creations")
    common = dict(prompt="a red circle on a blue background", backend=args.backend)
    size = dict(width=args.size, height=args.size)
    world.create(**common, seed=1, steps=2, **size)  # load the model
    name = str(out / "bench")
    generate = best(lambda: world.create(**common, seed=5, steps=args.steps, **size), args.repeats)
    stages = {
        "text": lambda: world.parts.text(name, **common),
        "noise": lambda: world.parts.noise(name, seed=5, backend=args.backend, **size),
        "diffuse": lambda: world.parts.diffuse(f"{name}_state1.tiff", f"{name}_text.tiff", name,
                                               steps=args.steps, backend=args.backend),
        "decode": lambda: world.parts.decode(f"{name}_state2.tiff", name, backend=args.backend),
        "encode": lambda: world.parts.encode(f"{name}.png", name + "-back", backend=args.backend),
    }
    print(f"{args.backend}, {args.size}x{args.size}, {args.steps} steps, best of {args.repeats}")
    print(f"{'generate':8} {generate * 1000:8.1f} ms   1.00")
    chain = 0.0
    for stage, run in stages.items():
        seconds = best(run, args.repeats)
        chain += seconds if stage != "encode" else 0.0
        print(f"{stage:8} {seconds * 1000:8.1f} ms   {seconds / generate:.2f}")
    print(f"{'chain':8} {chain * 1000:8.1f} ms   {chain / generate:.2f}  (text + noise + diffuse + decode)")


if __name__ == "__main__":
    main()
