"""DreamWorld's default settings against stock diffusers, in one process, on a full-size SD 1.5 network.

    python bench/speed.py [--steps 4] [--size 512] [--ngms 1.0] [--device cuda] [--rows openvino,deepcache]

The baseline is stock `diffusers.StableDiffusionPipeline` in fp32 on the CPU, fp16 on CUDA (Euler a,
guidance 7, the same steps and size, its own VAE decode), loaded from the same diffusers folder of SD 1.5's
networks with random weights (bench/backends.py writes it; the compute is that of real weights). Then
DreamWorld with its defaults (`backend=auto`, `precision=auto`: OpenVINO int8 on the CPU, its conversion and
quantization in the warm-up; torch fp16 on CUDA) on the same folder, then opt-in rows: NGMS, DeepCache (torch's
UNet), the TAESD fast decode, the torch backend (bf16 on a bf16 CPU), OpenVINO in bf16 (a TAESD-size decoder of random weights for time; its
fidelity is that of the embedded model's shipped TAESD).
Each row is the best of --repeats images after a warm-up, text encoding and decode included. The fidelity
of a row that changes pixels is its PSNR against the default's picture on the embedded model (20 steps,
128x128, over --prompts scenes); the default's and torch's are also given against torch fp32, with the
adherence scores (--adherence held-out prompts). The last line is
`speedup X.XX`: the default's time over stock's.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DREAMWORLD_CACHE", tempfile.mkdtemp(prefix="dreamworld-bench-cache-"))

from backends import sd15_models_dir  # noqa: E402  (bench/backends.py)
from parts import best as best_of  # noqa: E402  (bench/parts.py)

from dreamworld import DreamWorld  # noqa: E402
from dreamworld.settings import Settings  # noqa: E402

SCENES = ["a red circle on a blue background", "a yellow star on a black background",
          "two green squares on a white background", "a large purple ring on an orange background"]


def best(run, repeats: int) -> float:
    run()  # warm-up
    return best_of(run, repeats)


def stock(folder: Path, args, dtype) -> float:
    import torch
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(folder, torch_dtype=dtype, local_files_only=True,
                                                   safety_checker=None, requires_safety_checker=False)
    pipe.to(args.device)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)

    def run():
        pipe("a red circle on a blue background", num_inference_steps=args.steps, guidance_scale=7.0,
             width=args.size, height=args.size, generator=torch.Generator("cpu").manual_seed(1))

    with torch.inference_mode():
        seconds = best(run, args.repeats)
    del pipe
    return seconds


def psnr(a, b) -> float:
    a, b = (np.asarray(x.convert("RGB"), dtype=np.float64) for x in (a, b))
    return 10 * np.log10(255 ** 2 / max(((a - b) ** 2).mean(), 1e-9))


def fidelity(extra: dict, prompts: int, device: str, base: dict | None = None) -> float:
    """The mean PSNR, against the default's (or `base`'s), of pictures of the embedded model made with `extra`."""
    world = DreamWorld(settings=Settings(), creations_dir=tempfile.mkdtemp())
    values = []
    for i, prompt in enumerate(SCENES[:prompts]):
        fields = dict(prompt=prompt, seed=i, steps=20, width=128, height=128, device=device)
        values.append(psnr(world.create(**fields, **(base or {})).images[0],
                           world.create(**fields, **extra).images[0]))
    return float(np.mean(values))


def adherence(extra: dict, scenes: int, device: str) -> float:
    """The share (in points of 100) of what held-out prompts name (colour, shape, place, size, background) that
    the embedded model's pictures made with `extra` show (embedded_model/evaluate.py's measure)."""
    from embedded_model import evaluate, shapes
    rng = np.random.default_rng(12345)
    held = [shapes.sample_scene(rng, "heldout", objects=1, full=True) for _ in range(scenes)]
    world = DreamWorld(settings=Settings(), creations_dir=tempfile.mkdtemp())
    images = [world.create(prompt=s.caption, seed=i, steps=20, width=128, height=128, device=device,
                           **extra).images[0] for i, s in enumerate(held)]
    return 100 * evaluate.adherence(evaluate.rates(held, images))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--ngms", type=float, default=1.0, help="the opt-in NGMS row's sigma")
    parser.add_argument("--prompts", type=int, default=4, help="scenes of the fidelity figures")
    parser.add_argument("--adherence", type=int, default=40, help="held-out prompts of the adherence figures")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--rows", default="", help="only the opt-in rows whose label has one of these words "
                                                   "(comma-separated); stock and the default always run")
    args = parser.parse_args()
    import torch

    models = sd15_models_dir()
    folder = models / "Stable-diffusion" / "sd15-random"
    from diffusers import AutoencoderTiny
    AutoencoderTiny().save_pretrained(models / "VAE-approx" / "taesd")  # TAESD's size (time only), random weights
    where = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"SD 1.5 shape, random weights, {args.size}x{args.size}, {args.steps} steps, Euler a, guidance 7, "
          f"best of {args.repeats} after a warm-up (text encoding and decode included), on {where}")
    if args.device == "cuda":
        fp32 = stock(folder, args, torch.float32)
        print(f"{'stock diffusers fp32 (reference)':34s} {fp32:8.2f} s")
    baseline = stock(folder, args, torch.float16 if args.device == "cuda" else torch.float32)
    print(f"{'stock diffusers ' + ('fp16' if args.device == 'cuda' else 'fp32'):34s} {baseline:8.2f} s   1.00x")

    world = DreamWorld(settings=Settings(), models_dir=models, creations_dir=tempfile.mkdtemp())
    fields = dict(prompt="a red circle on a blue background", model="sd15-random", steps=args.steps,
                  width=args.size, height=args.size, seed=1, scheduler="Euler a", guidance_scale=7.0,
                  device=args.device)
    rows = [("DreamWorld default", {}), (f"DreamWorld ngms={args.ngms:g} (opt-in)", {"ngms": args.ngms}),
            ("DreamWorld deepcache=1 (opt-in)", {"deepcache": 1}),
            ("DreamWorld deepcache=2 (opt-in)", {"deepcache": 2}),
            (f"deepcache=2, ngms={args.ngms:g} (opt-in)", {"deepcache": 2, "ngms": args.ngms}),
            ("DreamWorld fast_decode (opt-in)", {"fast_decode": True}),
            ("deepcache=2, fast_decode (opt-in)", {"deepcache": 2, "fast_decode": True}),
            ("backend=torch (bf16 on a bf16 CPU)", {"backend": "torch"}),
            ("openvino precision=bf16 (opt-in)", {"backend": "openvino", "precision": "bf16"})]
    cpu_only = ("backend", "precision")  # OpenVINO's rows
    rows = [(label, extra) for label, extra in rows if not (args.device == "cuda" and set(cpu_only) & set(extra))
            and (not extra or not args.rows or any(word in label for word in args.rows.split(",")))]
    default = None
    for label, extra in rows:
        seconds = best(lambda: world.create(**fields, **extra), args.repeats)
        default = default or seconds
        said = f"   fidelity {fidelity(extra, args.prompts, args.device):.1f} dB PSNR vs default" if extra else ""
        print(f"{label:34s} {seconds:8.2f} s   {baseline / seconds:.2f}x{said}")
    reference = {"backend": "torch", "precision": "fp32"}
    torch_default = {"backend": "torch"}
    print(f"fidelity vs torch fp32 (mean PSNR): default {fidelity(reference, args.prompts, args.device):.1f} dB, "
          f"backend=torch {fidelity(torch_default, args.prompts, args.device, base=reference):.1f} dB; adherence: "
          f"torch fp32 {adherence(reference, args.adherence, args.device):.1f}, "
          f"default {adherence({}, args.adherence, args.device):.1f}, "
          f"backend=torch {adherence(torch_default, args.adherence, args.device):.1f}", flush=True)
    print(f"speedup {baseline / default:.2f}")


if __name__ == "__main__":
    main()
