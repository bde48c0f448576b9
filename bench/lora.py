"""What switching LoRAs costs on each backend, on the embedded model with the shipped outline LoRA.

    python bench/lora.py [--backend torch|tensorflow|both] [--repeats 5] [--size 64] [--steps 4] [--threads N]

In one process per backend, after a warm-up: the time of an image with no change (the baseline), and of an
image right after each kind of LoRA change: LoRA on (first time: the file is read and, on TensorFlow, its
deltas computed and cached), weight changed, LoRA off, LoRA on again (second time). Each is the median of
--repeats images; the ratio is against the baseline. The switch's own cost is the difference.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DREAMWORLD_CACHE", tempfile.mkdtemp(prefix="dreamworld-bench-cache-"))

from dreamworld import DreamWorld  # noqa: E402
from dreamworld.settings import Settings  # noqa: E402


def timed(world, fields) -> float:
    started = time.perf_counter()
    world.create(**fields)
    return time.perf_counter() - started


def bench(backend: str, repeats: int, size: int, steps: int) -> None:
    compiles = []
    handler = logging.Handler()
    handler.emit = lambda record: compiles.append(record.getMessage()) if record.getMessage().startswith("compile:") else None
    logging.getLogger("dreamworld").addHandler(handler)
    logging.getLogger("dreamworld").setLevel(logging.INFO)
    base = dict(prompt="a large red square on a blue background", steps=steps, width=size, height=size,
                backend=backend, seed=1)
    world = DreamWorld(settings=Settings(), creations_dir=tempfile.mkdtemp(prefix="dreamworld-bench-"))
    timed(world, base)
    timed(world, base)
    baseline = statistics.median(timed(world, base) for _ in range(repeats))
    first = timed(world, {**base, "lora": ["outline:1"]})  # the file read (TensorFlow: deltas computed)
    kinds = {"weight changed": [], "LoRA off": [], "LoRA on again": []}
    compiles.clear()
    for i in range(repeats):
        kinds["weight changed"].append(timed(world, {**base, "lora": [f"outline:{0.5 + i / 100}"]}))
        kinds["LoRA off"].append(timed(world, base))
        kinds["LoRA on again"].append(timed(world, {**base, "lora": ["outline:1"]}))
    print(f"\n{backend}: {size}x{size}, {steps} steps; baseline (no change) {baseline * 1000:.0f} ms per image")
    print(f"  {'LoRA on, first time':24s} {first * 1000:8.0f} ms  x{first / baseline:.2f}  "
          f"(switch {max(0.0, first - baseline) * 1000:.0f} ms)")
    for name, times in kinds.items():
        t = statistics.median(times)
        print(f"  {name:24s} {t * 1000:8.0f} ms  x{t / baseline:.2f}  (switch {max(0.0, t - baseline) * 1000:.0f} ms)")
    print(f"  compile: lines over the {3 * repeats} switches: {len(compiles)}")
    world.release()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="both", choices=("torch", "tensorflow", "both"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's choice)")
    a = p.parse_args()
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    for backend in (("torch", "tensorflow") if a.backend == "both" else (a.backend,)):
        bench(backend, a.repeats, a.size, a.steps)


if __name__ == "__main__":
    main()
