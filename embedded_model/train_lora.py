"""Train the outline LoRA shipped as models/Lora/outline.safetensors.

The embedded model draws filled shapes only. This trains a PEFT LoRA on its UNet (the attention and
feed-forward linear layers of every transformer block) on the same scenes and captions drawn as outlines
(a stroke inside each shape's edge, from the shapes' own signed distance functions), so that with the LoRA
the model draws the outline of what the prompt names and without it what it always drew:

    nice -n 10 python -m embedded_model.train_lora --out runs/lora-outline --save models/Lora/outline.safetensors

The text encoder stays frozen (its features are computed once per caption). Latents come from the model's
own VAE, computed once for a pool of scenes. The LoRA is saved in kohya-ss / A1111's format (`lora_unet_*`
with `.lora_down`, `.lora_up` and `.alpha`, fp16) through diffusers' PEFT-to-kohya conversion; the run
folder keeps `ckpt.pt` (every --checkpoint-every steps; `--resume` continues) and `loss.csv`.
At the end it prints how filled the shapes are (`outline_fill`, 1: filled, near 0: an outline) without
and with the LoRA on a few seeds, through diffusers' own `load_lora_weights` of the saved file.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from embedded_model import shapes

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "Stable-diffusion" / "dreamworld-tiny"
SIZE = 128
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2"]
STROKE = 0.22  # outline width, as a fraction of the shape's circumradius
MIN_STROKE = 3.0  # pixels at SIZE
UNCOND_P = 0.1
SNR_GAMMA = 5.0


# ----- the data ---------------------------------------------------------------------------------------
def render_outlines(scenes: list[shapes.Scene], size: int = SIZE) -> torch.Tensor:
    """The scenes (N, 3, size, size) in [0, 1] with every object drawn as its outline: the band of
    shapes.shape_sdf within a stroke's width inside the edge, anti-aliased as shapes.render does."""
    ar = torch.arange(size, dtype=torch.float32) + 0.5
    out = []
    for scene in scenes:
        image = torch.tensor(shapes.PALETTE[scene.background], dtype=torch.float32).view(3, 1, 1) / 255
        image = image.expand(3, size, size).clone()
        for o in scene.objects:
            px = (ar.view(1, -1) / size - o.x) / o.r
            py = (ar.view(-1, 1) / size - o.y) / o.r
            sdf = shapes.shape_sdf(o.shape, px.expand(size, size), py.expand(size, size)) * o.r * size
            stroke = max(MIN_STROKE, STROKE * o.r * size)
            alpha = (0.5 - ((sdf + stroke / 2).abs() - stroke / 2)).clamp(0, 1)
            colour = torch.tensor(shapes.PALETTE[o.colour], dtype=torch.float32).view(3, 1, 1) / 255
            image = image * (1 - alpha) + colour * alpha
        out.append(image)
    return torch.stack(out)


def outline_fill(image) -> float | None:
    """How filled the largest object of a picture is: the share of object pixels in the middle third of
    its bounding box (1 for a filled square or circle, near 0 for an outline); None if no object."""
    mask = shapes.object_mask(image)
    if mask.sum() < 20:
        return None
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    h, w = y1 - y0, x1 - x0
    middle = mask[y0 + h // 3:y1 - h // 3, x0 + w // 3:x1 - w // 3]
    return float(middle.mean()) if middle.size else None


# ----- training ---------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m embedded_model.train_lora", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="run folder: checkpoint and loss log")
    p.add_argument("--save", default=str(ROOT / "models" / "Lora" / "outline.safetensors"),
                   help="the kohya-format LoRA file to write")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--pool", type=int, default=1024, help="scenes whose latents are computed once")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: best on a shared 2-core machine)")
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--eval-seeds", type=int, default=4)
    return p.parse_args(argv)


def load_parts():
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer
    unet = UNet2DConditionModel.from_pretrained(MODEL / "unet", torch_dtype=torch.float32)
    vae = AutoencoderKL.from_pretrained(MODEL / "vae", torch_dtype=torch.float32)
    text_encoder = CLIPTextModel.from_pretrained(MODEL / "text_encoder", torch_dtype=torch.float32)
    tokenizer = CLIPTokenizer.from_pretrained(MODEL / "tokenizer")
    schedule = DDPMScheduler.from_pretrained(MODEL / "scheduler")
    return unet, vae, text_encoder, tokenizer, schedule


@torch.no_grad()
def make_pool(n: int, rng, vae, text_encoder, tokenizer):
    latents, hidden = [], []
    for start in range(0, n, 64):
        scenes = [shapes.sample_scene(rng, "train") for _ in range(min(64, n - start))]
        x = render_outlines(scenes) * 2 - 1
        latents.append(vae.encode(x).latent_dist.mean * vae.config.scaling_factor)
        ids = tokenizer([s.caption for s in scenes], padding="max_length", max_length=77, truncation=True,
                        return_tensors="pt").input_ids
        hidden.append(text_encoder(ids)[0])
    empty = text_encoder(tokenizer([""], padding="max_length", max_length=77, return_tensors="pt").input_ids)[0]
    return torch.cat(latents), torch.cat(hidden), empty


def save_kohya(unet, path: Path, rank: int) -> None:
    """The UNet's LoRA as kohya-ss / A1111 write it, through diffusers' own conversion."""
    from diffusers.utils import convert_state_dict_to_kohya
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file
    peft_state = {f"unet.{k}": v for k, v in get_peft_model_state_dict(unet).items()}
    kohya = convert_state_dict_to_kohya(peft_state)
    kohya = {k: (v.float() if k.endswith(".alpha") else v.to(torch.float16)).contiguous() for k, v in kohya.items()}
    metadata = {"ss_network_module": "networks.lora", "ss_network_dim": str(rank), "ss_network_alpha": str(rank),
                "ss_base_model_version": "sd_v1", "ss_output_name": path.stem,
                "dreamworld_base_model": "dreamworld-tiny"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(kohya, tmp, metadata=metadata)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def evaluate(lora_file: Path, seeds: int) -> None:
    """Fill of 'a large red square on a blue background' and '... yellow circle ...' without and with the
    LoRA, loaded from the saved file by diffusers."""
    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(MODEL, torch_dtype=torch.float32, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    prompts = ["a large red square on a blue background", "a large yellow circle on a black background"]

    def fills():
        out = []
        for prompt in prompts:
            for seed in range(seeds):
                image = pipe(prompt, num_inference_steps=20, guidance_scale=7,
                             generator=torch.Generator().manual_seed(seed)).images[0]
                out.append(outline_fill(image))
        return out

    before = fills()
    pipe.load_lora_weights(str(lora_file), adapter_name="outline")
    after = fills()
    print("fill without the LoRA:", [None if f is None else round(f, 2) for f in before])
    print("fill with the LoRA:   ", [None if f is None else round(f, 2) for f in after])


def main(argv=None) -> None:
    a = parse_args(argv)
    from peft import LoraConfig
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    unet, vae, text_encoder, tokenizer, schedule = load_parts()
    for m in (unet, vae, text_encoder):
        m.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=a.rank, lora_alpha=a.rank, init_lora_weights="gaussian", target_modules=TARGETS))
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    t0 = time.time()
    latents, hidden, empty = make_pool(a.pool, rng, vae, text_encoder, tokenizer)
    print(f"pool of {len(latents)} outline scenes in {time.time() - t0:.0f} s", file=sys.stderr)
    alphas = schedule.alphas_cumprod
    step = 0
    if a.resume and (out / "ckpt.pt").exists():
        state = torch.load(out / "ckpt.pt", weights_only=True)
        for p, saved in zip(params, state["params"]):
            p.data.copy_(saved)
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed at step {step}", file=sys.stderr)
    log = (out / "loss.csv").open("a", newline="")
    writer = csv.writer(log)
    losses = []
    started = time.time()
    while step < a.steps:
        lr = a.lr * min(1.0, (step + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * step / a.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(len(latents), (a.batch,))
        z, context = latents[idx], hidden[idx].clone()
        drop = torch.rand(a.batch) < UNCOND_P
        context[drop] = empty
        noise = torch.randn_like(z)
        t = torch.randint(0, len(alphas), (a.batch,))
        ab = alphas[t].view(-1, 1, 1, 1)
        noisy = ab.sqrt() * z + (1 - ab).sqrt() * noise
        pred = unet(noisy, t, context).sample
        snr = (ab / (1 - ab)).view(-1)
        loss = ((snr.clamp(max=SNR_GAMMA) / snr) * ((pred - noise) ** 2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append(loss.item())
        if step % 25 == 0:
            writer.writerow([step, f"{np.mean(losses):.5f}", f"{lr:.3g}", f"{time.time() - started:.0f}"])
            log.flush()
            print(f"step {step}/{a.steps} loss {np.mean(losses):.4f} ({time.time() - started:.0f} s)", file=sys.stderr)
            losses.clear()
        if step % a.checkpoint_every == 0 or step == a.steps:
            torch.save({"params": [p.detach().clone() for p in params], "opt": opt.state_dict(), "step": step,
                        "torch_rng": torch.get_rng_state()}, out / "ckpt.tmp")
            os.replace(out / "ckpt.tmp", out / "ckpt.pt")
            save_kohya(unet, Path(a.save), a.rank)
    log.close()
    save_kohya(unet, Path(a.save), a.rank)
    print(f"wrote {a.save} ({Path(a.save).stat().st_size // 1024} KiB)", file=sys.stderr)
    if a.eval_seeds:
        evaluate(Path(a.save), a.eval_seeds)


if __name__ == "__main__":
    main()
