"""Measure how well the embedded model draws what its prompts say.

    python -m embedded_model.evaluate [--model DIR] [--n 200] [--steps 20] [--guidance 7]

Generates images for prompts of seen and of held-out (colour, shape, background) combinations
(`embedded_model.shapes.HELDOUT`; never in training) through the diffusers pipeline with the app's
samplers, and reads them back with simple pixel measurements (`embedded_model.shapes.measure`):
the background is the modal palette colour of the border, the object the pixels unlike it
(its modal colour, the nearest anchor to its centre, the best-fitting shape template, its size).
Prints a table of the share of prompts whose picture shows what they name, then two checks:
guidance scale 1 against 7 on the held-out prompts, and "a red circle" with and without the
negative prompt "red".
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import architecture, shapes

MEASURES = ("background", "colour", "position", "shape", "size")


def load(model_dir, device: str = "cpu", scheduler: str = "Euler a"):
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    from dreamworld.backends import samplers
    diffusers_logging.disable_progress_bar()
    pipe = StableDiffusionPipeline.from_pretrained(model_dir, dtype=torch.float32, local_files_only=True,
                                                   safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = samplers.make(scheduler, pipe.scheduler.config, 0)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def generate(pipe, prompts, seeds, *, steps=20, guidance=7.0, negative=None, size=None, batch=25):
    size = size or architecture.UNET["sample_size"] * 8
    images = []
    for i in range(0, len(prompts), batch):
        p, s = prompts[i:i + batch], seeds[i:i + batch]
        neg = None if negative is None else [negative] * len(p)
        with torch.inference_mode():
            out = pipe(p, negative_prompt=neg, num_inference_steps=steps, guidance_scale=guidance,
                       height=size, width=size, generator=[torch.Generator("cpu").manual_seed(x) for x in s])
        images += out.images
    return images


def rates(scenes, images) -> dict[str, tuple[int, int]]:
    """measure -> (met, asked) over the scenes."""
    totals: dict[str, list[int]] = {}
    for scene, image in zip(scenes, images):
        for k, ok in shapes.score(scene, image).items():
            t = totals.setdefault(k, [0, 0])
            t[0] += int(ok)
            t[1] += 1
    return {k: tuple(v) for k, v in totals.items()}


def autoencoder_round_trip(vae, n=100, seed=0, batch=25) -> dict:
    """Encode and decode n held-out one-object scenes; the measurements' rates on the round trip
    (the ceiling of what the UNet's pictures can score) and its mean error in levels of 255."""
    rng = np.random.default_rng(seed + 54321)
    scenes = [shapes.sample_scene(rng, "heldout", objects=1, full=True) for _ in range(n)]
    truth = shapes.render(scenes, architecture.VAE["sample_size"])
    with torch.inference_mode():
        decoded = torch.cat([vae.decode(vae.encode(truth[i:i + batch].to(vae.device) * 2 - 1).latent_dist.mode())
                             .sample.cpu() for i in range(0, n, batch)])
    decoded = ((decoded + 1) / 2).clamp(0, 1)
    return {"n": n, "mean_error": float((decoded - truth).abs().mean() * 255),
            "results": rates(scenes, shapes.to_pil(decoded))}


def adherence(r: dict) -> float:
    met = sum(v[0] for v in r.values())
    asked = sum(v[1] for v in r.values())
    return met / max(1, asked)


def red_share(images) -> float:
    """Mean share of pixels whose nearest palette colour is red."""
    red = shapes.COLOURS.index("red")
    return float(np.mean([(shapes.nearest_colours(np.asarray(im)) == red).mean() for im in images]))


def seconds_per_image(pipe, steps=20, repeats=3) -> float:
    generate(pipe, ["a red circle on a blue background"], [0], steps=2)
    best = float("inf")
    for i in range(repeats):
        started = time.perf_counter()
        generate(pipe, ["a small green star at the top on a white background"], [i], steps=steps)
        best = min(best, time.perf_counter() - started)
    return best


def grid(images, captions, path, columns=8):
    from PIL import Image, ImageDraw
    w, h = images[0].size
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * w, rows * (h + 24)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (im, text) in enumerate(zip(images, captions)):
        x, y = (i % columns) * w, (i // columns) * (h + 24)
        sheet.paste(im, (x, y))
        words, lines = text.split(), ["", ""]
        for word in words:  # two short lines of caption under each picture
            k = 0 if len(lines[0]) + len(word) < w // 6 else 1
            lines[k] += ("" if not lines[k] else " ") + word
        draw.text((x + 2, y + h + 1), lines[0], fill="black")
        draw.text((x + 2, y + h + 12), lines[1][: w // 6], fill="black")
    sheet.save(path)


def evaluate(pipe, n=200, steps=20, guidance=7.0, seed=0, batch=25, two_objects=True, grid_path=None,
             log=print) -> dict:
    rng = np.random.default_rng(seed + 12345)
    sets = {
        "seen, one object": [shapes.sample_scene(rng, "train", objects=1, full=True) for _ in range(n)],
        "held-out, one object": [shapes.sample_scene(rng, "heldout", objects=1, full=True) for _ in range(n)],
    }
    if two_objects:
        sets["seen, two objects"] = [shapes.sample_scene(rng, "train", objects=2, full=True) for _ in range(n // 2)]
        sets["held-out, two objects"] = [shapes.sample_scene(rng, "heldout", objects=2, full=True)
                                         for _ in range(n // 2)]
    results, images_of = {}, {}
    for name, scenes in sets.items():
        started = time.perf_counter()
        seeds = [seed + i for i in range(len(scenes))]
        images = generate(pipe, [s.caption for s in scenes], seeds, steps=steps, guidance=guidance, batch=batch)
        images_of[name] = images
        results[name] = rates(scenes, images)
        log(f"{name}: {len(scenes)} images in {time.perf_counter() - started:.0f} s")
    held = sets["held-out, one object"]
    if grid_path:
        grid(images_of["held-out, one object"][:32], [s.caption for s in held[:32]], grid_path)
    k = min(len(held), max(8, n // 2))
    seeds = [seed + i for i in range(k)]
    low = generate(pipe, [s.caption for s in held[:k]], seeds, steps=steps, guidance=1.0, batch=batch)
    guidance_check = {"prompts": k, "scale 1": adherence(rates(held[:k], low)),
                      f"scale {guidance:g}": adherence(rates(held[:k], images_of["held-out, one object"][:k]))}
    k = max(8, n // 4)
    seeds = [seed + 1000 + i for i in range(k)]
    plain = generate(pipe, ["a red circle"] * k, seeds, steps=steps, guidance=guidance, batch=batch)
    negated = generate(pipe, ["a red circle"] * k, seeds, steps=steps, guidance=guidance, negative="red", batch=batch)
    negative_check = {"prompts": k, "red_without": red_share(plain), "red_with_negative": red_share(negated)}
    return {"n": n, "steps": steps, "guidance": guidance, "results": results,
            "guidance_check": guidance_check, "negative_check": negative_check}


def table(report: dict) -> str:
    lines = ["| prompts | n | background | object colour | position | shape | size |",
             "|---|---|---|---|---|---|---|"]
    for name, r in report["results"].items():
        n = max(v[1] for v in r.values())
        cells = []
        for m in MEASURES:
            if m in r:
                met, asked = r[m]
                cells.append(f"{100 * met / asked:.0f}%" + ("" if m != "colour" or "two" not in name else " (both)"))
            else:
                cells.append("-")
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    g, neg = report["guidance_check"], report["negative_check"]
    scales = [k for k in g if k.startswith("scale")]
    lines += ["", f"Guidance ({g['prompts']} held-out prompts, share of named attributes shown): "
              + ", ".join(f"{k}: {100 * g[k]:.0f}%" for k in scales),
              f"Negative prompt ({neg['prompts']} seeds of \"a red circle\", share of red pixels): "
              f"without {100 * neg['red_without']:.1f}%, with negative \"red\" {100 * neg['red_with_negative']:.1f}%"]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m embedded_model.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(architecture.DEFAULT_OUT))
    p.add_argument("--n", type=int, default=200, help="prompts per set (two-object sets get half)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=7.0)
    p.add_argument("--scheduler", default="Euler a", help="an A1111 sampler name, as in the app")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-two", action="store_true", help="skip the two-object sets")
    p.add_argument("--json", help="also write the report as JSON here")
    p.add_argument("--grid", help="save a sheet of held-out pictures with their prompts here (PNG)")
    p.add_argument("--time", action="store_true", help="also time one image (batch 1, 20 steps) on the device")
    p.add_argument("--autoencoder", action="store_true",
                   help="only measure the autoencoder's round trip of rendered scenes (no generation)")
    a = p.parse_args(argv)
    if not (Path(a.model) / "model_index.json").is_file():
        p.error(f"--model: {a.model} is not a diffusers model folder (no model_index.json)")
    pipe = load(a.model, a.device, a.scheduler)
    if a.autoencoder:
        report = autoencoder_round_trip(pipe.vae, a.n, a.seed, a.batch)
        cells = ", ".join(f"{m} {100 * met / asked:.0f}%" for m, (met, asked) in report["results"].items())
        print(f"autoencoder round trip of {a.n} held-out scenes: mean error {report['mean_error']:.1f}/255; {cells}")
        if a.json:
            Path(a.json).write_text(json.dumps(report, indent=2) + "\n")
        return
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    report = evaluate(pipe, a.n, a.steps, a.guidance, a.seed, a.batch, not a.no_two, a.grid, log)
    report.update(model=a.model, scheduler=a.scheduler)
    if a.time:
        report["seconds_per_image"] = seconds_per_image(pipe, a.steps)
    print(f"model {a.model}, sampler {a.scheduler}, {a.steps} steps, guidance {a.guidance:g}\n")
    print(table(report))
    if "seconds_per_image" in report:
        print(f"\nOne {architecture.UNET['sample_size'] * 8}px image, {a.steps} steps, on {a.device}: "
              f"{report['seconds_per_image']:.2f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
