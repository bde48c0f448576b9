"""Train DreamWorld's embedded model from scratch on the procedural shapes dataset.

    python -m embedded_model.train --out runs/demo [--steps N] [--vae-steps M] [--device cpu|cuda] [--resume]

Stage 1 trains the AutoencoderKL (8x downsampling, 4 latent channels) on rendered scenes:
L1 + image-gradient L1 reconstruction in which object pixels weigh 10x, KL weight 1e-6 (SD's);
then its scaling factor is set to 1 / std of the latents. Stage 2 teaches the CLIP text encoder to
read captions (in the place of CLIP's pretraining): from the features of the tokens after the
caption's last word, linear heads name the background, the number of objects and each object's
colour, shape, size and position. Stage 3 trains the UNet on the latents, conditioned by that text
encoder kept frozen (--train-text-encoder trains it too): epsilon prediction on the SD 1.x
scaled_linear 1000-step schedule, min-SNR-5 loss weighting, a little offset noise, 10% of captions
dropped to "" for classifier-free guidance, EMA weights. Stage 4 fine-tunes the decoder alone on
the frozen encoder (SD's ft-MSE recipe), which leaves the UNet's latents valid. Scenes are drawn
and rendered on the fly (`embedded_model.shapes`); each latent is used about twice (a pool of fresh
latents, refilled every few steps). Held-out (colour, shape, background) triples never appear.

The out folder holds `ckpt.pt` (every --checkpoint-every steps and at the end; `--resume`
continues from it), `loss.csv` (stage, step, mean loss over the last --log-every steps, lr,
seconds), `train.json` (arguments and timings) and, at the end, `model/`: the diffusers folder
with the EMA weights (fp16) -- copy it over models/Stable-diffusion/dreamworld-tiny to ship it
(or pass --model-dir). The defaults are the recipe of the shipped weights: see
docs/embedded-model.md.
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

# The recipe of the shipped weights, about 2 hours on a 2-core CPU: see docs/embedded-model.md.
VAE_STEPS = 2500
STEPS = 5000
BATCH = 32
VAE_BATCH = 8
LR = 4e-4
VAE_LR = 4e-4
WARMUP = 200
IMAGE_SIZE = architecture.UNET["sample_size"] * 8
UNCOND_P = 0.1  # classifier-free guidance: share of captions replaced by ""
OFFSET_NOISE = 0.05
SNR_GAMMA = 5.0
EMA_DECAY = 0.999
REUSE = 2  # each rendered scene's latent is drawn about this many times
POOL = 8  # pool of latents, in batches
REFILL_EVERY = 8  # steps between pool refills
KL_WEIGHT = 1e-6
OBJECT_WEIGHT = 10.0  # object pixels weigh this much in the reconstruction L1
DECODER_STEPS = 500  # stage 4: the decoder alone, on the frozen encoder
DECODER_LR = 3e-4
TEXT_STEPS = 600  # the text encoder learns to read captions: each token after the last word names the scene
TEXT_BATCH = 64
TEXT_LR = 1e-3
STAGES = ("vae", "text", "unet", "decoder")
# What the text stage asks of a caption: the background, the number of objects, then each of two
# objects' colour, shape, size and position (a caption that does not name one leaves it out).
SLOTS = (len(shapes.COLOURS), 2) + (len(shapes.COLOURS), len(shapes.SHAPES), len(shapes.SIZES), len(shapes.POSITIONS)) * 2


def caption_targets(scene: shapes.Scene) -> list[int]:
    """The class index of each SLOTS entry the scene's caption names, -100 (ignored) for the rest."""
    targets = [shapes.COLOURS.index(scene.background) if scene.bg_named else -100, len(scene.objects) - 1]
    for k in range(2):
        o = scene.objects[k] if k < len(scene.objects) else None
        for attr, values in (("colour", shapes.COLOURS), ("shape", shapes.SHAPES), ("size", tuple(shapes.SIZES)),
                             ("position", tuple(shapes.POSITIONS))):
            named = o is not None and (attr == "shape" or attr in o.named)
            targets.append(values.index(getattr(o, attr)) if named else -100)
    return targets


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m embedded_model.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="run folder: checkpoint, loss log, final model")
    p.add_argument("--steps", type=int, default=STEPS, help=f"UNet steps (default {STEPS})")
    p.add_argument("--vae-steps", type=int, default=VAE_STEPS, help=f"autoencoder steps (default {VAE_STEPS})")
    p.add_argument("--text-steps", type=int, default=TEXT_STEPS,
                   help=f"text encoder steps, before the UNet (default {TEXT_STEPS})")
    p.add_argument("--decoder-steps", type=int, default=DECODER_STEPS,
                   help=f"decoder fine-tuning steps on the frozen encoder, after the UNet (default {DECODER_STEPS})")
    p.add_argument("--train-text-encoder", action="store_true",
                   help="train the text encoder with the UNet (default: frozen after its text stage)")
    p.add_argument("--batch", type=int, default=BATCH)
    p.add_argument("--vae-batch", type=int, default=VAE_BATCH)
    p.add_argument("--lr", type=float, default=LR)
    p.add_argument("--vae-lr", type=float, default=VAE_LR)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's choice)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--max-minutes", type=float, default=0,
                   help="stop (checkpoint, then write the model) after this much training time; 0: no limit")
    p.add_argument("--model-dir", default=None, help="where to write the diffusers folder (default OUT/model)")
    p.add_argument("--fp32", action="store_true", help="save the model in fp32 (default fp16)")
    a = p.parse_args(argv)
    for name in ("steps", "vae_steps", "text_steps", "decoder_steps", "batch", "vae_batch"):
        if getattr(a, name) < (1 if "batch" in name else 0):
            p.error(f"--{name.replace('_', '-')} must be at least {1 if 'batch' in name else 0}")
    return a


def lr_at(step: int, total: int, peak: float, warmup: int = WARMUP) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class Run:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        device = args.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if args.threads:
            torch.set_num_threads(args.threads)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        torch.manual_seed(args.seed)
        self.rng = np.random.default_rng(args.seed)
        self.unet, self.vae, self.text_encoder = architecture.new_parts()
        for m in (self.unet, self.vae, self.text_encoder):
            m.to(self.device)
        self.stage, self.step = "vae", 0
        self.vae_opt = torch.optim.AdamW(self.vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
        self.decoder_params = list(self.vae.decoder.parameters()) + list(self.vae.post_quant_conv.parameters())
        self.dec_opt = torch.optim.AdamW(self.decoder_params, lr=DECODER_LR, weight_decay=0.0)
        # Trained jointly from scratch, the text encoder collapsed every caption to nearly the same
        # features before the UNet learnt to read them; frozen at seeded weights, its causal attention
        # never tied "blue" to the "background" after it. So it first learns to read captions alone
        # (stage "text", in the place of CLIP's pretraining) and then stays frozen, as SD keeps CLIP.
        self.text_heads = torch.nn.Linear(architecture.TEXT["hidden_size"], sum(SLOTS)).to(self.device)
        self.text_opt = torch.optim.AdamW(list(self.text_encoder.parameters()) + list(self.text_heads.parameters()),
                                          lr=TEXT_LR, weight_decay=0.01)
        self.params = list(self.unet.parameters()) + (
            list(self.text_encoder.parameters()) if args.train_text_encoder else [])
        fused = {"fused": True} if self.device.type == "cuda" else {}
        self.opt = torch.optim.AdamW(self.params, lr=args.lr, weight_decay=0.0, **fused)
        self.ema = [p.detach().clone() for p in self.params]
        self.timing = {stage: [0.0, 0] for stage in STAGES}  # seconds, steps (after the first 5 of a session)
        self.log_rows: list[list] = []
        self.elapsed = 0.0  # training seconds before this session (resumed runs)
        from transformers import CLIPTokenizer
        from dreamworld.tokenizer import write_clip_tokenizer
        with tempfile.TemporaryDirectory() as tmp:
            self.tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(tmp))
        self.empty_ids = self.tokenize([""])[0]
        from diffusers import DDPMScheduler
        sched = DDPMScheduler(**architecture.SCHEDULE)
        self.alphas_cumprod = sched.alphas_cumprod.to(self.device)

    # ----- helpers ----------------------------------------------------------------------------
    def tokenize(self, captions: list[str]) -> torch.Tensor:
        return self.tokenizer(captions, padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids.to(self.device)

    def images(self, n: int) -> tuple[torch.Tensor, list[str]]:
        scenes = [shapes.sample_scene(self.rng, "train") for _ in range(n)]
        x = shapes.render(scenes, IMAGE_SIZE, self.device) * 2 - 1
        return x, [s.caption for s in scenes]

    def log(self, loss: float, lr: float) -> None:
        self.log_rows.append([self.stage, self.step, f"{loss:.6f}", f"{lr:.3g}", f"{time.time() - self.t0:.1f}"])

    def flush_log(self) -> None:
        path = self.out / "loss.csv"
        new = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["stage", "step", "loss", "lr", "seconds"])
            w.writerows(self.log_rows)
        self.log_rows.clear()

    # ----- checkpoints ------------------------------------------------------------------------
    def save(self) -> None:
        self.flush_log()
        state = {
            "stage": self.stage, "step": self.step, "args": vars(self.args),
            "vae": self.vae.state_dict(), "vae_opt": self.vae_opt.state_dict(), "dec_opt": self.dec_opt.state_dict(),
            "scaling_factor": self.vae.config.scaling_factor,
            "unet": self.unet.state_dict(), "text_encoder": self.text_encoder.state_dict(),
            "opt": self.opt.state_dict(), "ema": [e.cpu() for e in self.ema],
            "text_heads": self.text_heads.state_dict(), "text_opt": self.text_opt.state_dict(),
            "numpy_rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "timing": self.timing, "elapsed": time.time() - self.t0,
        }
        tmp = self.out / "ckpt.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.out / "ckpt.pt")

    def load(self) -> None:
        state = torch.load(self.out / "ckpt.pt", map_location=self.device, weights_only=False)
        trained = state["args"].get("train_text_encoder", True)  # the first recipe trained it
        if trained != self.args.train_text_encoder:
            raise SystemExit(f"{self.out / 'ckpt.pt'} was trained with{'' if trained else 'out'} "
                             "--train-text-encoder; resume it the same way")
        self.stage, self.step = state["stage"], state["step"]
        self.vae.load_state_dict(state["vae"])
        self.vae_opt.load_state_dict(state["vae_opt"])
        if "dec_opt" in state:
            self.dec_opt.load_state_dict(state["dec_opt"])
        self.vae.register_to_config(scaling_factor=state["scaling_factor"])
        self.unet.load_state_dict(state["unet"])
        self.text_encoder.load_state_dict(state["text_encoder"])
        if "text_heads" in state:
            self.text_heads.load_state_dict(state["text_heads"])
            self.text_opt.load_state_dict(state["text_opt"])
        self.opt.load_state_dict(state["opt"])
        self.ema = [e.to(self.device) for e in state["ema"]]
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.timing = {**self.timing, **state.get("timing", {})}
        self.elapsed = state.get("elapsed", 0.0)
        # the loss log keeps only what the checkpoint had seen
        path = self.out / "loss.csv"
        if path.exists():
            rows = list(csv.reader(path.open()))
            now = (STAGES.index(self.stage), self.step)
            keep = [r for r in rows[1:] if (STAGES.index(r[0]), int(r[1])) <= now]
            with path.open("w", newline="") as f:
                csv.writer(f).writerows([rows[0]] + keep)

    # ----- stage 1: the autoencoder -----------------------------------------------------------
    @staticmethod
    def reconstruction_loss(rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """L1 plus image-gradient L1, in which object pixels (unlike the corner's background) weigh
        OBJECT_WEIGHT, so that small objects are not drowned by the background."""
        obj = (x - x[..., :1, :1]).abs().sum(1, keepdim=True) > 0.02
        weight = 1 + (OBJECT_WEIGHT - 1) * obj.float()
        dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
        dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
        return ((rec - x).abs() * weight).mean() + (dx(rec) - dx(x)).abs().mean() + (dy(rec) - dy(x)).abs().mean()

    def vae_step(self) -> tuple[float, float]:
        a = self.args
        lr = lr_at(self.step, a.vae_steps, a.vae_lr, warmup=100)
        for g in self.vae_opt.param_groups:
            g["lr"] = lr
        x, _ = self.images(a.vae_batch)
        posterior = self.vae.encode(x).latent_dist
        rec = self.vae.decode(posterior.sample()).sample
        loss = (self.reconstruction_loss(rec, x)
                + KL_WEIGHT * posterior.kl().sum() / x[0].numel() / len(x))
        self.vae_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.vae_opt.step()
        return loss.item(), lr

    @torch.no_grad()
    def set_scaling_factor(self) -> None:
        zs = [self.vae.encode(self.images(64)[0]).latent_dist.sample() for _ in range(4)]
        std = torch.cat(zs).std().item()
        self.vae.register_to_config(scaling_factor=round(1.0 / std, 5))

    # ----- stage 2: the text encoder reads captions -------------------------------------------
    def text_step(self) -> tuple[float, float]:
        """Classify every caption's named attributes from each of its token features from the end
        token on (those see the whole caption, and the UNet attends to them)."""
        lr = lr_at(self.step, self.args.text_steps, TEXT_LR, warmup=100)
        for g in self.text_opt.param_groups:
            g["lr"] = lr
        scenes = [shapes.sample_scene(self.rng, "train") for _ in range(TEXT_BATCH)]
        ids = self.tokenize([s.caption for s in scenes])
        targets = torch.tensor([caption_targets(s) for s in scenes], device=self.device)
        features = self.text_encoder(ids)[0]
        after_end = torch.cumsum(ids == self.tokenizer.eos_token_id, dim=1) > 0
        logits = self.text_heads(features[after_end]).split(SLOTS, dim=-1)
        wanted = targets.repeat_interleave(after_end.sum(1), dim=0)
        loss = sum(torch.nn.functional.cross_entropy(lg, wanted[:, k], ignore_index=-100)
                   for k, lg in enumerate(logits) if (wanted[:, k] >= 0).any()) / len(SLOTS)
        self.text_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.text_opt.step()
        return loss.item(), lr

    # ----- stage 3: the UNet ------------------------------------------------------------------
    @torch.no_grad()
    def refill(self, n: int) -> None:
        """Put n fresh scenes (latents and caption ids) into the pool, over its oldest ones."""
        done = 0
        while done < n:
            k = min(64, n - done)
            x, captions = self.images(k)
            z = self.vae.encode(x).latent_dist.sample() * self.vae.config.scaling_factor
            at = (self.pool_at + torch.arange(k, device=self.device)) % len(self.pool_latents)
            self.pool_latents[at] = z
            self.pool_ids[at] = self.tokenize(captions)
            self.pool_at = (self.pool_at + k) % len(self.pool_latents)
            done += k

    def unet_step(self) -> tuple[float, float]:
        a = self.args
        b = a.batch
        lr = lr_at(self.step, a.steps, a.lr)
        for g in self.opt.param_groups:
            g["lr"] = lr
        if self.step % REFILL_EVERY == 0:
            self.refill(REFILL_EVERY * b // REUSE)
        idx = torch.randint(len(self.pool_latents), (b,), device=self.device)
        latents, ids = self.pool_latents[idx], self.pool_ids[idx].clone()
        drop = torch.rand(b, device=self.device) < UNCOND_P
        ids[drop] = self.empty_ids
        noise = torch.randn_like(latents) + OFFSET_NOISE * torch.randn(b, latents.shape[1], 1, 1, device=self.device)
        t = torch.randint(0, len(self.alphas_cumprod), (b,), device=self.device)
        ab = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        noisy = ab.sqrt() * latents + (1 - ab).sqrt() * noise
        with torch.set_grad_enabled(self.args.train_text_encoder):
            hidden = self.text_encoder(ids)[0]
        pred = self.unet(noisy, t, hidden).sample
        snr = (ab / (1 - ab)).view(-1)
        weight = snr.clamp(max=SNR_GAMMA) / snr  # min-SNR-gamma weighting for epsilon prediction
        loss = (weight * ((pred - noise) ** 2).mean(dim=(1, 2, 3))).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        with torch.no_grad():
            decay = min(EMA_DECAY, (1 + self.step) / (10 + self.step))
            torch._foreach_lerp_(self.ema, [p.detach() for p in self.params], 1 - decay)
        return loss.item(), lr

    # ----- stage 4: the decoder, on the frozen encoder ------------------------------------------
    def decoder_step(self) -> tuple[float, float]:
        """Fine-tune the decoder alone (SD's ft-MSE recipe): the latents, and so the UNet trained on
        them, stay valid, while colours and edges sharpen."""
        a = self.args
        lr = lr_at(self.step, a.decoder_steps, DECODER_LR, warmup=50)
        for g in self.dec_opt.param_groups:
            g["lr"] = lr
        x, _ = self.images(a.vae_batch)
        with torch.no_grad():
            z = self.vae.encode(x).latent_dist.sample()
        loss = self.reconstruction_loss(self.vae.decode(z).sample, x)
        self.dec_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.dec_opt.step()
        return loss.item(), lr

    # ----- the loop ---------------------------------------------------------------------------
    def run(self) -> Path:
        from tqdm import tqdm
        a = self.args
        if a.resume and (self.out / "ckpt.pt").exists():
            self.load()
            print(f"resumed from {self.out / 'ckpt.pt'}: stage {self.stage}, step {self.step}", file=sys.stderr)
        elif (self.out / "loss.csv").exists():
            (self.out / "loss.csv").unlink()
        self.t0 = time.time() - self.elapsed
        session_start = time.time()
        stopped = False
        self.interrupted = False

        def interrupt(signum, frame):  # Ctrl-C or SIGTERM: checkpoint after this step, then stop
            self.interrupted = True
            print("\nstopping after this step (checkpoint kept; --resume continues)", file=sys.stderr)

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, interrupt)
        stages = zip(STAGES, (a.vae_steps, a.text_steps, a.steps, a.decoder_steps),
                     (self.vae_step, self.text_step, self.unet_step, self.decoder_step))
        for stage, total, step_fn in stages:
            if STAGES.index(stage) < STAGES.index(self.stage):
                continue
            if stage != self.stage:  # the previous stage just ended
                if self.stage == "vae":
                    self.set_scaling_factor()
                self.stage, self.step = stage, 0
                self.save()
            if stage == "text":
                self.text_encoder.requires_grad_(True)
            if stage == "unet":
                self.text_encoder.requires_grad_(a.train_text_encoder)
                self.vae.requires_grad_(False)
                self.vae.eval()
                self.pool_latents = torch.zeros(POOL * a.batch, 4, architecture.UNET["sample_size"],
                                                architecture.UNET["sample_size"], device=self.device)
                self.pool_ids = torch.zeros(POOL * a.batch, self.tokenizer.model_max_length, dtype=torch.long,
                                            device=self.device)
                self.pool_at = 0
                self.refill(len(self.pool_latents) - REFILL_EVERY * a.batch // REUSE)
            if stage == "decoder":
                self.vae.requires_grad_(False)
                for p in self.decoder_params:
                    p.requires_grad_(True)
                self.vae.train()
            bar = tqdm(total=total, initial=self.step, desc=stage, dynamic_ncols=True, mininterval=2,
                       file=sys.stderr)
            window, session_steps = [], 0
            while self.step < total:
                started = time.time()
                loss, lr = step_fn()
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                session_steps += 1
                if session_steps > 5:
                    self.timing[stage][0] += time.time() - started
                    self.timing[stage][1] += 1
                window.append(loss)
                self.step += 1
                bar.update(1)
                if self.step % a.log_every == 0 or self.step == total:
                    mean = sum(window) / len(window)
                    self.log(mean, lr)
                    bar.set_postfix(loss=f"{mean:.4f}", refresh=False)
                    window = []
                if not math.isfinite(loss):
                    raise SystemExit(f"loss is {loss} at {stage} step {self.step}; stopping")
                if self.step % a.checkpoint_every == 0 and self.step < total:
                    self.save()
                if self.interrupted or (a.max_minutes and time.time() - session_start > a.max_minutes * 60):
                    stopped = True
                    break
            bar.close()
            if stopped:
                break
        self.save()
        model_dir = Path(a.model_dir) if a.model_dir else self.out / "model"
        if self.stage in ("unet", "decoder"):
            self.export(model_dir)
        self.write_report(model_dir, stopped)
        return model_dir

    def export(self, model_dir: Path) -> None:
        unet, vae, text_encoder = architecture.new_parts()
        text_encoder.load_state_dict({k: v.cpu() for k, v in self.text_encoder.state_dict().items()})
        with torch.no_grad():
            for p, e in zip(list(unet.parameters()) + list(text_encoder.parameters()), self.ema):
                p.copy_(e.cpu())
        vae.load_state_dict({k: v.cpu() for k, v in self.vae.state_dict().items()})
        vae.register_to_config(scaling_factor=self.vae.config.scaling_factor)
        architecture.save_pipeline(model_dir, unet, vae, text_encoder,
                                 dtype=None if self.args.fp32 else torch.float16)
        print(f"wrote {model_dir}", file=sys.stderr)

    def write_report(self, model_dir: Path, stopped: bool) -> None:
        per_step = {k: (s / n if n else None) for k, (s, n) in self.timing.items()}
        report = {
            "args": vars(self.args), "device": str(self.device),
            "device_name": torch.cuda.get_device_name() if self.device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(), "stage": self.stage, "step": self.step,
            "stopped_early": stopped, "seconds_per_step": per_step, "training_seconds": time.time() - self.t0,
            "scaling_factor": self.vae.config.scaling_factor, "model_dir": str(model_dir),
        }
        (self.out / "train.json").write_text(json.dumps(report, indent=2) + "\n")


def main(argv=None) -> None:
    Run(parse_args(argv)).run()


if __name__ == "__main__":
    main()
