"""Train the embedded model's edge ControlNet on the procedural shapes dataset.

    python -m embedded_model.train_controlnet --out runs/controlnet [--steps N] [--resume]
        [--model-dir models/ControlNet/control_dreamworld_edges]

A diffusers `ControlNetModel.from_unet` copy of the embedded model's UNet encoder (the UNet, VAE
and text encoder stay frozen) learns to follow edge maps of the rendered scenes: half of them
OpenCV Canny edges with random thresholds (`dreamworld.preprocessors.canny_array`), half soft
Sobel edges (`soft_sobel_array`); so the shapes of the control image decide where objects are and
what outline they have, and the prompt decides their colours. The recipe is the UNet's
(`embedded_model.train`): epsilon prediction on the SD 1.x schedule, min-SNR-5 weighting, a
little offset noise, a pool of latents each drawn about four times, half the timesteps drawn from
the noisier half of the schedule (where the layout is decided); 20% of captions dropped to "" (the
control alone must place the objects), and a third of captions lose their position words (the
control, not the prompt, says where). EMA weights are exported.

The out folder holds `ckpt.pt` (every --checkpoint-every steps; `--resume` continues from it),
`loss.csv` and `train.json`; the diffusers folder (fp16 safetensors) is written to --model-dir
(default OUT/model) at every checkpoint and at the end.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from . import architecture, shapes
from .train import IMAGE_SIZE, OFFSET_NOISE, SNR_GAMMA, lr_at

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "models" / "Stable-diffusion" / "dreamworld-tiny"
STEPS = 1500
BATCH = 12
LR = 5e-4
WARMUP = 50
UNCOND_P = 0.2
NO_POSITION_P = 0.33
EMA_DECAY = 0.99
REUSE = 4
POOL = 6
REFILL_EVERY = 6
# the conditioning embedding (128x128 -> 16x16); smaller than diffusers' default (16, 32, 96, 256),
# which would cost more than the whole tiny UNet at this size
ZERO_LAYERS = ("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")
ZERO_LR_MULT = 5.0
HIGH_T_P = 0.5  # share of timesteps drawn from the noisier half, where the layout is decided
COND_CHANNELS = (8, 16, 32, 64)


def control_image(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An edge map (H, W, 3 uint8) of one rendered scene: Canny with random thresholds or soft Sobel."""
    from dreamworld.preprocessors import canny_array, soft_sobel_array
    if rng.random() < 0.5:
        low = int(rng.integers(50, 151))
        edges = canny_array(rgb, low, min(255, int(low * rng.uniform(1.8, 2.6))))
    else:
        edges = soft_sobel_array(rgb, sigma=float(rng.uniform(0.7, 1.5)))
    return np.repeat(edges[..., None], 3, axis=2)


def strip_position(scene: shapes.Scene, rng: np.random.Generator) -> str:
    """The scene's caption re-drawn without position words (the control says where)."""
    for o in scene.objects:
        o.named = frozenset(o.named - {"position"})
    parts = []
    for o in scene.objects:
        words = ([o.size] if "size" in o.named else []) + ([o.colour] if "colour" in o.named else []) + [o.shape]
        parts.append(("an " if words[0][0] in "aeiou" else "a ") + " ".join(words))
    bg = scene.background
    text = " and ".join(parts)
    return f"{text} on {'an' if bg[0] in 'aeiou' else 'a'} {bg} background" if rng.random() < 0.9 else text


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m embedded_model.train_controlnet", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--base", default=str(BASE), help="the base model (diffusers folder)")
    p.add_argument("--steps", type=int, default=STEPS)
    p.add_argument("--batch", type=int, default=BATCH)
    p.add_argument("--lr", type=float, default=LR)
    p.add_argument("--zero-lr-mult", type=float, default=ZERO_LR_MULT,
                   help="learning-rate multiple of the zero-initialised layers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--max-minutes", type=float, default=0)
    p.add_argument("--model-dir", default=None)
    return p.parse_args(argv)


class Run:
    def __init__(self, args):
        from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        if args.threads:
            torch.set_num_threads(args.threads)
        torch.manual_seed(args.seed)
        self.rng = np.random.default_rng(args.seed)
        base = Path(args.base)
        self.unet = UNet2DConditionModel.from_pretrained(base / "unet", torch_dtype=torch.float32).eval()
        self.vae = AutoencoderKL.from_pretrained(base / "vae", torch_dtype=torch.float32).eval()
        self.text_encoder = CLIPTextModel.from_pretrained(base / "text_encoder", torch_dtype=torch.float32).eval()
        self.tokenizer = CLIPTokenizer.from_pretrained(base / "tokenizer")
        for m in (self.unet, self.vae, self.text_encoder):
            m.requires_grad_(False)
        torch.manual_seed(args.seed)
        self.controlnet = ControlNetModel.from_unet(self.unet, conditioning_embedding_out_channels=COND_CHANNELS)
        self.controlnet.train()
        self.params = [p for p in self.controlnet.parameters()]
        # The zero-initialised layers (the zero convolutions and the conditioning embedding's last
        # convolution) learn ZERO_LR_MULT times faster: the control signal reaches the UNet only through
        # them, and at the base rate they grew too slowly for a short CPU run.
        zero = [p for n, p in self.controlnet.named_parameters() if n.startswith(ZERO_LAYERS)]
        ids = {id(p) for p in zero}
        self.groups = [(1.0, [p for p in self.params if id(p) not in ids]), (args.zero_lr_mult, zero)]
        self.opt = torch.optim.AdamW([{"params": ps, "lr": args.lr * m} for m, ps in self.groups],
                                     weight_decay=0.0)
        self.ema = [p.detach().clone() for p in self.params]
        self.alphas_cumprod = DDPMScheduler(**architecture.SCHEDULE).alphas_cumprod
        self.step = 0
        self.elapsed = 0.0
        self.log_rows: list[list] = []
        self.seconds = [0.0, 0]
        with torch.no_grad():
            self.empty_hidden = self.text_encoder(self.tokenize([""]))[0]
        n = POOL * args.batch
        s = architecture.UNET["sample_size"]
        self.pool_latents = torch.zeros(n, 4, s, s)
        self.pool_hidden = torch.zeros(n, self.tokenizer.model_max_length, architecture.TEXT["hidden_size"])
        self.pool_cond = torch.zeros(n, 3, IMAGE_SIZE, IMAGE_SIZE)
        self.pool_at = 0

    def tokenize(self, captions):
        return self.tokenizer(captions, padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids

    @torch.no_grad()
    def refill(self, n: int) -> None:
        done = 0
        while done < n:
            k = min(32, n - done)
            scenes = [shapes.sample_scene(self.rng, "train") for _ in range(k)]
            captions = []
            for sc in scenes:
                r = self.rng.random()
                captions.append("" if r < UNCOND_P else strip_position(sc, self.rng)
                                if r < UNCOND_P + NO_POSITION_P else sc.caption)
            x = shapes.render(scenes, IMAGE_SIZE)
            rgb = (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
            cond = torch.from_numpy(np.stack([control_image(a, self.rng) for a in rgb])).permute(0, 3, 1, 2).float() / 255
            z = self.vae.encode(x * 2 - 1).latent_dist.sample() * self.vae.config.scaling_factor
            hidden = self.text_encoder(self.tokenize(captions))[0]
            at = (self.pool_at + torch.arange(k)) % len(self.pool_latents)
            self.pool_latents[at], self.pool_hidden[at], self.pool_cond[at] = z, hidden, cond
            self.pool_at = (self.pool_at + k) % len(self.pool_latents)
            done += k

    def train_step(self) -> tuple[float, float]:
        a = self.args
        b = a.batch
        lr = lr_at(self.step, a.steps, a.lr, warmup=WARMUP)
        for g, (mult, _) in zip(self.opt.param_groups, self.groups):
            g["lr"] = lr * mult
        if self.step % REFILL_EVERY == 0:
            self.refill(REFILL_EVERY * b // REUSE)
        idx = torch.randint(len(self.pool_latents), (b,))
        latents, hidden, cond = self.pool_latents[idx], self.pool_hidden[idx], self.pool_cond[idx]
        noise = torch.randn_like(latents) + OFFSET_NOISE * torch.randn(b, latents.shape[1], 1, 1)
        n_t = len(self.alphas_cumprod)
        t = torch.where(torch.rand(b) < HIGH_T_P, torch.randint(n_t // 2, n_t, (b,)), torch.randint(0, n_t, (b,)))
        ab = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        noisy = ab.sqrt() * latents + (1 - ab).sqrt() * noise
        down, mid = self.controlnet(noisy, t, encoder_hidden_states=hidden, controlnet_cond=cond,
                                    return_dict=False)
        pred = self.unet(noisy, t, hidden, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid).sample
        snr = (ab / (1 - ab)).view(-1)
        weight = snr.clamp(max=SNR_GAMMA) / snr
        loss = (weight * ((pred - noise) ** 2).mean(dim=(1, 2, 3))).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        with torch.no_grad():
            decay = min(EMA_DECAY, (1 + self.step) / (10 + self.step))
            torch._foreach_lerp_(self.ema, [p.detach() for p in self.params], 1 - decay)
        return loss.item(), lr

    def flush_log(self) -> None:
        path = self.out / "loss.csv"
        new = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["step", "loss", "lr", "seconds"])
            w.writerows(self.log_rows)
        self.log_rows.clear()

    def save(self) -> None:
        self.flush_log()
        state = {"step": self.step, "args": vars(self.args), "controlnet": self.controlnet.state_dict(),
                 "opt": self.opt.state_dict(), "ema": self.ema, "numpy_rng": self.rng.bit_generator.state,
                 "torch_rng": torch.get_rng_state(), "elapsed": time.time() - self.t0, "seconds": self.seconds}
        tmp = self.out / "ckpt.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.out / "ckpt.pt")
        self.export()

    def load(self) -> None:
        state = torch.load(self.out / "ckpt.pt", map_location="cpu", weights_only=False)
        self.step = state["step"]
        self.controlnet.load_state_dict(state["controlnet"])
        try:
            self.opt.load_state_dict(state["opt"])
        except ValueError:  # a checkpoint of the first recipe (one parameter group): fresh optimizer state
            print("optimizer state restarted (parameter groups changed)", file=sys.stderr)
        self.ema = state["ema"]
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        self.elapsed = state["elapsed"]
        self.seconds = state.get("seconds", [0.0, 0])
        path = self.out / "loss.csv"
        if path.exists():
            rows = list(csv.reader(path.open()))
            keep = [r for r in rows[1:] if int(r[0]) <= self.step]
            with path.open("w", newline="") as f:
                csv.writer(f).writerows([rows[0]] + keep)

    def export(self) -> Path:
        from diffusers import ControlNetModel
        model_dir = Path(self.args.model_dir) if self.args.model_dir else self.out / "model"
        cn = ControlNetModel.from_config(self.controlnet.config)
        with torch.no_grad():
            for p, e in zip(cn.parameters(), self.ema):
                p.copy_(e)
        tmp = Path(tempfile.mkdtemp(dir=model_dir.parent if model_dir.parent.exists() else None))
        cn.to(torch.float16).save_pretrained(tmp, safe_serialization=True)
        model_dir.mkdir(parents=True, exist_ok=True)
        for f in tmp.iterdir():
            os.replace(f, model_dir / f.name)
        tmp.rmdir()
        (self.out / "train.json").write_text(json.dumps({
            "args": vars(self.args), "step": self.step, "training_seconds": time.time() - self.t0,
            "seconds_per_step": self.seconds[0] / self.seconds[1] if self.seconds[1] else None,
            "threads": torch.get_num_threads(), "model_dir": str(model_dir)}, indent=2) + "\n")
        return model_dir

    def run(self) -> None:
        a = self.args
        if a.resume and (self.out / "ckpt.pt").exists():
            self.load()
            print(f"resumed at step {self.step}", file=sys.stderr)
        elif (self.out / "loss.csv").exists():
            (self.out / "loss.csv").unlink()
        self.t0 = time.time() - self.elapsed
        session = time.time()
        self.interrupted = False

        def interrupt(signum, frame):
            self.interrupted = True

        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, interrupt)
        self.refill(len(self.pool_latents) - REFILL_EVERY * a.batch // REUSE)
        window = []
        n = 0
        while self.step < a.steps:
            started = time.time()
            loss, lr = self.train_step()
            n += 1
            if n > 3:
                self.seconds[0] += time.time() - started
                self.seconds[1] += 1
            if not math.isfinite(loss):
                raise SystemExit(f"loss is {loss} at step {self.step}")
            window.append(loss)
            self.step += 1
            if self.step % a.log_every == 0:
                self.log_rows.append([self.step, f"{sum(window) / len(window):.6f}", f"{lr:.3g}",
                                      f"{time.time() - self.t0:.1f}"])
                print(f"step {self.step} loss {sum(window) / len(window):.4f} "
                      f"{time.time() - self.t0:.0f}s", file=sys.stderr, flush=True)
                window = []
            if self.step % a.checkpoint_every == 0:
                self.save()
            if self.interrupted or (a.max_minutes and time.time() - session > a.max_minutes * 60):
                break
        self.save()
        print(f"stopped at step {self.step}", file=sys.stderr)


def main(argv=None) -> None:
    Run(parse_args(argv)).run()


if __name__ == "__main__":
    main()
