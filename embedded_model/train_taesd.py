"""Train the tiny TAESD decoder shipped as models/VAE-approx/dreamworld-tiny (diffusers' AutoencoderTiny).

TAESD (madebyollin) is a small decoder distilled from a model's VAE: latents in, nearly the same picture
out at a fraction of the cost. This one is distilled from the embedded model's VAE decoder: scenes of the
shapes dataset are encoded (the posterior's mean, scaled, as the UNet makes latents) and the decoder learns
the VAE's own decode of them (mean absolute error):

    python -m embedded_model.train_taesd --out models/VAE-approx/dreamworld-tiny

prints its PSNR against the VAE's decode on held-out scenes as it goes. Only the decoder is trained and
used (live previews and the fast decode); the encoder is left as made.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from embedded_model import shapes

CHANNELS = (32, 32, 32, 32)
SIZE, CROP = 128, 8  # pixels of a scene; latent pixels of a training crop (64 pixels)


def tiny_autoencoder(latent_channels: int):
    from diffusers import AutoencoderTiny
    return AutoencoderTiny(encoder_block_out_channels=CHANNELS, decoder_block_out_channels=CHANNELS,
                           latent_channels=latent_channels, num_encoder_blocks=(1, 2, 2, 2),
                           num_decoder_blocks=(2, 2, 2, 1))


def pairs(vae, count: int, seed: int, split: str):
    """(scaled latents, the VAE's decode of them in [-1, 1]) of `count` scenes."""
    rng = np.random.default_rng(seed)
    images = shapes.render_pil([shapes.sample_scene(rng, split) for _ in range(count)], SIZE)
    x = torch.from_numpy(np.stack([np.asarray(im, np.float32) / 127.5 - 1 for im in images])).permute(0, 3, 1, 2)
    latents, decoded = [], []
    with torch.no_grad():
        for batch in x.split(32):
            z = vae.encode(batch).latent_dist.mean
            latents.append(z * vae.config.scaling_factor)
            decoded.append(vae.decode(z).sample.clamp(-1, 1))
    return torch.cat(latents), torch.cat(decoded)


def psnr(a, b) -> float:
    return float(10 * torch.log10(4 / ((a - b) ** 2).mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/Stable-diffusion/dreamworld-tiny")
    parser.add_argument("--out", default="models/VAE-approx/dreamworld-tiny")
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--scenes", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from diffusers import AutoencoderKL

    torch.manual_seed(args.seed)
    vae = AutoencoderKL.from_pretrained(Path(args.model) / "vae").eval()
    train_z, train_x = pairs(vae, args.scenes, args.seed, "train")
    held_z, held_x = pairs(vae, 64, args.seed + 1, "heldout")
    taesd = tiny_autoencoder(vae.config.latent_channels)
    decoder = taesd.decoder
    optimiser = torch.optim.AdamW(decoder.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=args.steps)
    started = time.time()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(train_z), (args.batch,))
        flip = torch.rand(()) < 0.5  # the scenes' mirror images are scenes too
        y0, x0 = (int(v) for v in torch.randint(0, train_z.shape[-1] - CROP + 1, (2,)))  # a fully convolutional net
        z = train_z[idx, :, y0:y0 + CROP, x0:x0 + CROP]
        x = train_x[idx, :, y0 * 8:(y0 + CROP) * 8, x0 * 8:(x0 + CROP) * 8]
        if flip:
            z, x = z.flip(-1), x.flip(-1)
        loss = (taesd.decode(z).sample - x).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 250 == 0 or step == args.steps:
            with torch.no_grad():
                held = psnr(taesd.decode(held_z).sample.clamp(-1, 1), held_x)
            print(f"step {step}: loss {loss.item():.4f}, held-out PSNR {held:.1f} dB against the VAE's decode "
                  f"({time.time() - started:.0f} s)", flush=True)
    taesd.save_pretrained(args.out, safe_serialization=True)
    config = Path(args.out) / "config.json"  # a key AutoencoderTiny saves but warns about when loading
    config.write_text(json.dumps({k: v for k, v in json.loads(config.read_text()).items()
                                  if k != "block_out_channels"}, indent=2, sort_keys=True) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
