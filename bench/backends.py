"""The same request on both backends in one process: time per denoising step and peak memory.

    python bench/backends.py [--steps 20] [--size 128]            # the embedded model
    python bench/backends.py --sd15 [--steps 4] [--size 512]      # a full-size SD 1.5 network, random weights
    python bench/backends.py --switches 10                        # memory over torch <-> tensorflow switches

Each configuration (backend, precision, XLA) is loaded, warmed up with one image, then timed on a
second one: "s/step" is the median time between two step callbacks (UNet with guidance and the
sampler step), "image s" the whole second image (text encoding, the steps, VAE decoding). "peak MB"
is the highest resident memory seen while loading and generating, less the memory before loading.
Ratios are against torch fp32, run first in the same process. With --sd15, a diffusers folder of
SD 1.5's full-size UNet, VAE and text encoder with random fp16 weights is written to a temporary
models folder (the compute is the same as with real weights; the pictures mean nothing).
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DREAMWORLD_CACHE", tempfile.mkdtemp(prefix="dreamworld-bench-cache-"))

from dreamworld import DreamWorld  # noqa: E402
from dreamworld.settings import BUILTIN_MODELS, Settings  # noqa: E402

CONFIGS = [("torch", "fp32", False), ("torch", "bf16", False), ("tensorflow", "fp32", False),
           ("tensorflow", "bf16", False), ("tensorflow", "fp32", True), ("tensorflow", "bf16", True)]


class PeakMemory:
    """The highest RSS of this process while the block runs, sampled every 10 ms."""

    def __enter__(self):
        self.process = psutil.Process()
        self.start = self.peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.01)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def mb(self) -> float:
        return (self.peak - self.start) / 2**20


def sd15_models_dir() -> Path:
    """A models folder holding SD 1.5's networks at full size with random weights (diffusers folder, fp16)."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from dreamworld import single_file
    folder = single_file.config_dir("sd15")
    root = Path(tempfile.mkdtemp(prefix="dreamworld-bench-models-"))
    torch.manual_seed(0)
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_config(AutoencoderKL.load_config(folder, subfolder="vae")),
        text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(folder, subfolder="text_encoder")),
        tokenizer=CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer"),
        unet=UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder, subfolder="unet")),
        scheduler=PNDMScheduler.from_pretrained(folder, subfolder="scheduler"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(root / "Stable-diffusion" / "sd15-random", safe_serialization=True)
    del pipe
    gc.collect()
    return root


def measure(world: DreamWorld, backend: str, precision: str, jit: bool, fields: dict) -> dict:
    fields = dict(fields, backend=backend, precision=precision, jit=jit, device="cpu", seed=1)
    world.release()
    gc.collect()
    with PeakMemory() as memory:
        started = time.perf_counter()
        world.compile(world.request(**fields))
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        world.create(**fields)  # warm-up: traces (and with XLA compiles) the graphs
        first = time.perf_counter() - started
        stamps = []
        started = time.perf_counter()
        result = world.create(on_progress=lambda progress: stamps.append(time.perf_counter()), **fields)
        total = time.perf_counter() - started
    world.release()
    return {"load": loaded, "first": first, "step": float(np.median(np.diff(stamps))), "image": total,
            "peak": memory.mb, "pixels": np.asarray(result.images[0], np.int16)}


def compare(world: DreamWorld, fields: dict, label: str) -> None:
    print(f"\n{label}: {fields['width']}x{fields['height']}, {fields['steps']} steps, {fields['scheduler']}, "
          f"guidance {fields['guidance_scale']:g}, {os.cpu_count()} CPUs")
    print(f"{'backend':10} {'precision':9} {'XLA':3} {'load s':>7} {'first s':>8} {'s/step':>7} {'image s':>8} "
          f"{'speed x':>7} {'peak MB':>8} {'max px diff':>11}")
    started = time.perf_counter()  # the first TensorFlow load converts the weights; the rows read the cache
    world.compile(world.request(**dict(fields, backend="tensorflow", device="cpu")))
    world.release()
    print(f"(TensorFlow's first load, converting and caching the weights: {time.perf_counter() - started:.1f} s)")
    baseline = None
    for backend, precision, jit in CONFIGS:
        r = measure(world, backend, precision, jit, fields)
        baseline = baseline or r
        diff = np.abs(r["pixels"] - baseline["pixels"]).max()
        print(f"{backend:10} {precision:9} {'on' if jit else 'off':3} {r['load']:7.1f} {r['first']:8.1f} "
              f"{r['step']:7.3f} {r['image']:8.2f} {baseline['step'] / r['step']:7.2f} {r['peak']:8.0f} "
              f"{diff:11d}", flush=True)


def switches(world: DreamWorld, n: int) -> None:
    print(f"\nResident memory after each torch -> tensorflow round trip ({n}), embedded model, 64x64, 2 steps:")
    process = psutil.Process()
    for i in range(n):
        for backend in ("torch", "tensorflow"):
            world.create(prompt="a red square", seed=1, backend=backend, steps=2, width=64, height=64)
        gc.collect()
        print(f"  {i + 1:2d}: {process.memory_info().rss / 2**20:7.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sd15", action="store_true", help="a full-size SD 1.5 network (random weights)")
    parser.add_argument("--steps", type=int, default=None, help="steps per image (default 20; --sd15: 4)")
    parser.add_argument("--size", type=int, default=None, help="image side (default 128; --sd15: 512)")
    parser.add_argument("--switches", type=int, default=0, help="only measure memory over N engine switches")
    args = parser.parse_args()
    creations = tempfile.mkdtemp(prefix="dreamworld-bench-creations-")
    if args.switches:
        switches(DreamWorld(settings=Settings(), models_dir=BUILTIN_MODELS, creations_dir=creations), args.switches)
        return
    models = sd15_models_dir() if args.sd15 else BUILTIN_MODELS
    world = DreamWorld(settings=Settings(), models_dir=models, creations_dir=creations)
    size = args.size or (512 if args.sd15 else 128)
    fields = dict(prompt="a large red circle on the left on a blue background", negative_prompt="green",
                  steps=args.steps or (4 if args.sd15 else 20), width=size, height=size, scheduler="Euler a",
                  guidance_scale=7.0, model="sd15-random" if args.sd15 else "dreamworld-tiny")
    compare(world, fields, "SD 1.5-shaped, random weights" if args.sd15 else "embedded model")


if __name__ == "__main__":
    main()
