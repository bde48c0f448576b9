"""Train the textual-inversion embedding shipped as models/embeddings/dwsun.safetensors.

A new word for the embedded model: `dwsun`, a large yellow disc high in a blue sky (a large yellow circle at
the top of a blue background). Only the word's own input vectors (4 of them, where its tokens would be) are
trained; the model stays as it is. The diffusion loss is the embedded model's (epsilon prediction, min-SNR-5
weighting) on rendered scenes of the concept (position and size jittered as the dataset does), with the
word alone or in a few phrasings as the caption:

    nice -n 10 python -m embedded_model.train_embedding --out models/embeddings/dwsun.safetensors

It is saved as A1111 saves a .safetensors embedding (`emb_params`, shape (vectors, 128)). About 10 minutes on
one shared CPU core. At the end it prints what the word draws (background and object colour, position) for
a few seeds, read back by embedded_model.shapes.measure.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from embedded_model import shapes
from embedded_model.train_lora import SNR_GAMMA, load_parts

ROOT = Path(__file__).resolve().parent.parent
WORD = "dwsun"
TEMPLATES = ("{}", "{}", "a picture of {}", "{} at the top", "a {}")
VECTORS = 4


def scenes(n: int, rng) -> list[shapes.Scene]:
    out = []
    for _ in range(n):
        x, y, r = shapes._place(rng, "top", "large")
        out.append(shapes.Scene("blue", [shapes.Obj("circle", "yellow", "large", "top", x, y, r)]))
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m embedded_model.train_embedding", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "models" / "embeddings" / f"{WORD}.safetensors"))
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def main(argv=None) -> None:
    from safetensors.torch import save_file
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    unet, vae, text_encoder, tokenizer, schedule = load_parts()
    for m in (unet, vae, text_encoder):
        m.requires_grad_(False)
    table = text_encoder.get_input_embeddings().weight
    # start from the mean token vector (plus a little noise): the word means nothing yet
    vectors = torch.nn.Parameter(table.mean(0, keepdim=True).repeat(VECTORS, 1) + 0.01 * torch.randn(VECTORS, table.shape[1]))
    opt = torch.optim.AdamW([vectors], lr=a.lr, weight_decay=0.0)
    placeholder = tokenizer.pad_token_id
    alphas = schedule.alphas_cumprod
    with torch.no_grad():
        pool = []
        for _ in range(8):
            x = shapes.render(scenes(64, rng), 128) * 2 - 1
            pool.append(vae.encode(x).latent_dist.mean * vae.config.scaling_factor)
        pool = torch.cat(pool)

    def captions(n):
        ids, masks = [], []
        for _ in range(n):
            before, after = TEMPLATES[rng.integers(len(TEMPLATES))].split("{}")
            pre = tokenizer(before.strip(), add_special_tokens=False).input_ids if before.strip() else []
            post = tokenizer(after.strip(), add_special_tokens=False).input_ids if after.strip() else []
            row = [tokenizer.bos_token_id, *pre, *([placeholder] * VECTORS), *post, tokenizer.eos_token_id]
            mask = [False] * (1 + len(pre)) + [True] * VECTORS + [False] * (len(post) + 1)
            ids.append(row + [tokenizer.pad_token_id] * (77 - len(row)))
            masks.append(mask + [False] * (77 - len(mask)))
        return torch.tensor(ids), torch.tensor(masks)

    def encode(ids, mask):
        def hook(module, inputs, output):
            output = output.clone()
            output[mask] = vectors.repeat(len(ids), 1).to(output.dtype)
            return output
        handle = text_encoder.get_input_embeddings().register_forward_hook(hook)
        try:
            return text_encoder(ids)[0]
        finally:
            handle.remove()

    started = time.time()
    losses = []
    for step in range(a.steps):
        lr = a.lr * min(1.0, (step + 1) / 20)
        for g in opt.param_groups:
            g["lr"] = lr
        z = pool[torch.randint(len(pool), (a.batch,))]
        ids, mask = captions(a.batch)
        context = encode(ids, mask)
        noise = torch.randn_like(z)
        t = torch.randint(0, len(alphas), (a.batch,))
        ab = alphas[t].view(-1, 1, 1, 1)
        pred = unet(ab.sqrt() * z + (1 - ab).sqrt() * noise, t, context).sample
        snr = (ab / (1 - ab)).view(-1)
        loss = ((snr.clamp(max=SNR_GAMMA) / snr) * ((pred - noise) ** 2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if (step + 1) % 25 == 0:
            print(f"step {step + 1}/{a.steps} loss {np.mean(losses):.4f} ({time.time() - started:.0f} s)", file=sys.stderr)
            losses.clear()
            out = Path(a.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            save_file({"emb_params": vectors.detach().clone().contiguous()}, out.with_suffix(".tmp"),
                      metadata={"name": WORD, "step": str(step + 1), "sd_checkpoint_name": "dreamworld-tiny"})
            os.chmod(out.with_suffix(".tmp"), 0o644)
            os.replace(out.with_suffix(".tmp"), out)
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
