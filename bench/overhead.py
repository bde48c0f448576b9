"""DreamWorld's warm overhead over the bare diffusers pipeline on the same device and precision, in one process,
and where DreamWorld's time goes.

    python bench/overhead.py [--device cpu|cuda] [--size 512] [--steps 20] [--repeats 3] [--embedded]

A full-size SD 1.5 network of random weights (bench/backends.py writes it), or with --embedded the embedded
model. Stock `StableDiffusionPipeline` runs in the precision DreamWorld's default picks on the device (Euler a,
guidance 7), then `world.create` with the defaults on the same request, saving the creation as the app does;
after a warm-up each is timed --repeats times, alternating, and the medians compared: the last line is
`overhead X.X%`. Then DreamWorld's stages timed alone: text encoding, the denoising loop, the VAE decode and the
picture, the rest of world.create (saving the creation...), and the TAESD decode that fast_decode uses instead
(a TAESD-size decoder of random weights with the full-size network).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DREAMWORLD_CACHE", tempfile.mkdtemp(prefix="dreamworld-bench-cache-"))

import torch  # noqa: E402
from backends import sd15_models_dir  # noqa: E402  (bench/backends.py)

from dreamworld import DreamWorld, taesd  # noqa: E402
from dreamworld.backends.base import Job  # noqa: E402
from dreamworld.backends.latents import _tensor  # noqa: E402
from dreamworld.backends.torch_backend import DTYPES  # noqa: E402
from dreamworld.settings import PROJECT_DIR, Settings  # noqa: E402

PROMPT = "a red circle on a blue background"


def seconds(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--embedded", action="store_true", help="the embedded model instead of SD 1.5's size")
    args = parser.parse_args()
    if args.embedded:
        models, name = PROJECT_DIR / "models", "dreamworld-tiny"
    else:
        models, name = sd15_models_dir(), "sd15-random"
        from diffusers import AutoencoderTiny
        AutoencoderTiny().save_pretrained(models / "VAE-approx" / "taesd")
    world = DreamWorld(settings=Settings(), models_dir=models, creations_dir=tempfile.mkdtemp())
    fields = dict(prompt=PROMPT, model=name, steps=args.steps, width=args.size, height=args.size, seed=1,
                  scheduler="Euler a", guidance_scale=7.0, device=args.device)
    request = world.request(**fields)
    backend = world.compile(request)

    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline
    folder = models / "Stable-diffusion" / name
    pipe = StableDiffusionPipeline.from_pretrained(folder, torch_dtype=DTYPES[backend.precision], local_files_only=True,
                                                   safety_checker=None, requires_safety_checker=False).to(args.device)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)

    def stock():
        with torch.inference_mode():
            pipe(PROMPT, num_inference_steps=args.steps, guidance_scale=7.0, width=args.size, height=args.size,
                 generator=torch.Generator("cpu").manual_seed(1))

    def ours():
        world.create(**fields)

    where = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"{name}, {args.size}x{args.size}, {args.steps} steps, Euler a, {backend.precision} on {where}; "
          f"median of {args.repeats} after a warm-up")
    stock(), ours()
    times = {"stock": [], "ours": []}
    for _ in range(args.repeats):
        times["stock"].append(seconds(stock))
        times["ours"].append(seconds(ours))
    base, mine = (statistics.median(times[k]) for k in ("stock", "ours"))

    torch.inference_mode().__enter__()  # as generate runs the stages
    job = Job(request, 1)
    context = backend.encode_prompt(request)
    latents, _ = backend.denoise(job, context)
    stages = [("text encoding", lambda: backend.encode_prompt(request)),
              ("denoising loop", lambda: backend.denoise(job, context)),
              ("VAE decode", lambda: backend.to_image(backend.decode_latents(latents)))]
    spent = 0.0
    for label, run in stages:
        run()
        spent += (took := statistics.median(seconds(run) for _ in range(args.repeats)))
        print(f"  {label:22s} {took:8.3f} s")
    print(f"  {'the rest (saving...)':22s} {mine - spent:8.3f} s")
    if tiny := taesd.find(world.model_dirs, backend.model_name, backend.family):
        def fast():
            taesd.decode(tiny, _tensor(latents), backend.device)
        fast()
        print(f"  {'TAESD decode instead':22s} {statistics.median(seconds(fast) for _ in range(args.repeats)):8.3f} s")
    print(f"stock diffusers {base:8.3f} s   DreamWorld {mine:8.3f} s")
    print(f"overhead {100 * (mine / base - 1):.1f}%")


if __name__ == "__main__":
    main()
