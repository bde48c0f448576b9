"""Time per cinema frame and the share of it spent outside diffusion, per motion, in one process.

    python bench/cinema.py [--frames 24] [--size 128] [--steps 20] [--device auto] [--threads N]

Each run is timed end to end (planning, frames, saving, mp4 and GIF), in wall and CPU time; the
frame loop times its phases itself (CinemaResult.timings and .cpu_timings): diffusion is the
backend's generate call (text encoding, denoising, VAE); transform is moving frames, contrast,
noise and slerp; color is colour matching; save is writing PNG + metadata; encode is the mp4
(ffmpeg's CPU time included) and GIF. "outside" is everything but diffusion, as a share of the
run. CPU-time shares hold on a loaded machine, where wall-clock shares swing with the other load.
The baseline is a plain txt2img image at the same size and steps.
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
from dreamworld.cinema import render  # noqa: E402

PHASES = ("diffusion", "transform", "color", "save", "encode", "load")
RUNS = {
    "2d zoom": dict(motion="2d", zoom="0:(1.03)", angle="0:(0.5)"),
    "3d camera": dict(motion="3d", translate_z="0:(6)", rotate_y="0:(0.6)"),
    "2d cadence 3": dict(motion="2d", zoom="0:(1.03)", cadence=3),
    "dream": dict(motion="dream", prompts={"0": "a red circle on a blue background",
                                           "23": "a yellow star on a green background"}),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", default=",".join(RUNS), help="comma-separated: " + ", ".join(RUNS))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    world = DreamWorld(creations_dir=tempfile.mkdtemp(prefix="bench-cinema-"))
    common = dict(prompt="a red circle on a blue background", width=args.size, height=args.size, steps=args.steps,
                  seed=1, frames=args.frames, fps=12, gif=True, device=args.device)
    plain = dict(prompt=common["prompt"], width=args.size, height=args.size, steps=args.steps, device=args.device)
    world.create(seed=1, **plain)  # load and warm up
    started, cpu = time.perf_counter(), render.cpu_seconds()
    world.create(seed=2, count=3, **plain)
    per_image, cpu_per_image = (time.perf_counter() - started) / 3, (render.cpu_seconds() - cpu) / 3
    print(f"{args.size}x{args.size}, {args.steps} steps, {args.frames} frames, device {world.backend.device}; "
          f"plain txt2img: {per_image:.3f} s/image, {cpu_per_image:.3f} CPU s/image")
    print("shares of the run's CPU time (this process and ffmpeg), which the machine's other load hardly moves;")
    print("wall s/frame is what a user waits and does move with it")
    print(f"{'run':14} {'wall s/frame':>12} {'cpu s/frame':>11} {'x image':>7} {'diffusion':>9} {'transform':>9} {'color':>6} "
          f"{'save':>6} {'encode':>6} {'other':>6} {'outside':>7} {'outside (wall)':>14}")
    for name in args.runs.split(","):
        started, cpu = time.perf_counter(), render.cpu_seconds()
        result = world.animate(**common, **RUNS[name])
        total, total_cpu = time.perf_counter() - started, render.cpu_seconds() - cpu
        t = {phase: result.cpu_timings.get(phase, 0.0) for phase in PHASES}
        share = {phase: t[phase] / total_cpu for phase in PHASES}
        other = 1 - sum(share.values())
        outside_wall = 1 - result.timings.get("diffusion", 0.0) / total
        print(f"{name:14} {total / args.frames:12.3f} {total_cpu / args.frames:11.3f} "
              f"{total_cpu / args.frames / cpu_per_image:7.2f} {share['diffusion']:9.1%} "
              f"{share['transform']:9.1%} {share['color']:6.1%} {share['save']:6.1%} {share['encode']:6.1%} "
              f"{other:6.1%} {1 - share['diffusion']:7.1%} {outside_wall:14.1%}", flush=True)

if __name__ == "__main__":
    main()
