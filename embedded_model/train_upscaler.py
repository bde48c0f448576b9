"""Train the tiny 2x upscaler shipped as models/ESRGAN/dreamworld-2x.safetensors.

An ESRGAN (old-arch RRDBNet, the layout spandrel and A1111 load) with few blocks and features, started as
bilinear upscaling and trained (mean squared error, on 32-pixel crops) to undo a 2x PIL bicubic downscale of
the shapes dataset's pictures (embedded_model/shapes.py):

    python -m embedded_model.train_upscaler --out models/ESRGAN/dreamworld-2x.safetensors

takes about 13 minutes on two CPU cores and prints its PSNR against bicubic on held-out scenes as it goes
(44.1 dB against 36.3 at the end, for seed 0).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dreamworld.upscalers import _spandrel, run_tiled
from embedded_model import shapes

FEATURES, BLOCKS, SCALE, HR, CROP = 16, 1, 2, 64, 32
MARGIN = 8  # high-resolution pixels at a crop's edge left out of the loss: dreamworld.upscalers pads images


def pairs(count: int, seed: int, split: str = "train", size: int = HR):
    """(low, high) tensors: scenes drawn at `size`, and their PIL bicubic 2x downscales."""
    rng = np.random.default_rng(seed)
    scenes = [shapes.sample_scene(rng, split) for _ in range(count)]
    high = shapes.render_pil(scenes, size)
    low = [im.resize((size // SCALE, size // SCALE), Image.BICUBIC) for im in high]
    as_tensor = lambda ims: torch.from_numpy(np.stack([np.asarray(im, np.float32) / 255 for im in ims])).permute(0, 3, 1, 2)
    return as_tensor(low), as_tensor(high)


def crops(low, high, count: int):
    """`count` random aligned crops: CROP pixels a side of `high`, CROP / SCALE of `low`."""
    idx = torch.randint(0, len(low), (count,)).tolist()
    offsets = torch.randint(0, (HR - CROP) // SCALE + 1, (count, 2)).tolist()
    c = CROP // SCALE
    lo = torch.stack([low[i, :, y:y + c, x:x + c] for i, (y, x) in zip(idx, offsets)])
    hi = torch.stack([high[i, :, y * SCALE:y * SCALE + CROP, x * SCALE:x * SCALE + CROP] for i, (y, x) in zip(idx, offsets)])
    return lo, hi


def start_as_bilinear(net) -> None:
    """Begin at bilinear upscaling, so training learns only what improves on it: RGB passes through the
    first three features, the residual trunk adds almost nothing, and the convolution after the nearest
    upsampling averages neighbours with (1/4, 1/2, 1/4) weights each way. The other weights are small."""
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.05)
        kernel = torch.tensor([0.25, 0.5, 0.25])
        layers = dict(net.model.named_children())
        for i in range(3):
            layers["0"].weight[i, i, 1, 1] += 1
            layers["3"].weight[i, i] += kernel[:, None] * kernel[None, :]
            layers["5"].weight[i, i, 1, 1] += 1
            layers["7"].weight[i, i, 1, 1] += 1
        for name in ("0", "3", "5", "7"):
            layers[name].bias.zero_()


class _Described:
    """The network as run_tiled sees a spandrel model."""

    def __init__(self, net):
        self.net, self.scale = net, SCALE

    def __call__(self, x):
        return self.net(x)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / F.mse_loss(a.clamp(0, 1), b)))


def bicubic(low: torch.Tensor) -> torch.Tensor:
    ims = [Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for x in low]
    up = [im.resize((im.width * SCALE, im.height * SCALE), Image.BICUBIC) for im in ims]
    return torch.from_numpy(np.stack([np.asarray(im, np.float32) / 255 for im in up])).permute(0, 3, 1, 2)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="models/ESRGAN/dreamworld-2x.safetensors")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    ESRGAN = _spandrel().architectures.ESRGAN.ESRGAN
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=FEATURES, num_blocks=BLOCKS, scale=SCALE)
    low, high = pairs(2000, args.seed)
    test_low, test_high = pairs(16, 12345, "heldout", 128)
    start_as_bilinear(net)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    started = time.monotonic()
    for step in range(1, args.steps + 1):
        lo, hi = crops(low, high, args.batch)
        loss = F.mse_loss(net(lo)[:, :, MARGIN:-MARGIN, MARGIN:-MARGIN], hi[:, :, MARGIN:-MARGIN, MARGIN:-MARGIN])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == 1 or step == args.steps:
            with torch.no_grad():
                score = psnr(run_tiled(_Described(net), test_low), test_high)
            print(f"step {step} loss {loss.item():.4f} held-out PSNR {score:.2f} dB "
                  f"(bicubic {psnr(bicubic(test_low), test_high):.2f} dB) {time.monotonic() - started:.0f} s",
                  flush=True)
    from safetensors.torch import save_file
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, args.out,
              metadata={"architecture": "ESRGAN", "scale": str(SCALE), "trained_by": "embedded_model.train_upscaler"})
    print(args.out)


if __name__ == "__main__":
    main()
