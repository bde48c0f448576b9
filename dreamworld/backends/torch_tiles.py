"""Decoding a large latent in tiles with bounded memory and no seams (the torch backend's --tiled decode).

The decoder's start (post_quant_conv, conv_in and the mid block with its attention) runs on the whole
latent: it works at latent resolution and is small. The up blocks, which hold the memory, run tile by tile:
each tile carries PAD latent pixels of its neighbours, more than the up blocks' convolutions see, and only its
centre is kept, so the convolutions give the whole decode's values. GroupNorm is the one operation that sees
the whole picture: its statistics are summed over the tiles' centres and fed back, pass after pass (each
pass makes one more layer's statistics exact and the others closer: after PASSES of them the picture is
within a level or two of the whole decode, at about PASSES times its time).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

TILE, PAD, PASSES = 32, 12, 4  # latent pixels kept per tile, borrowed from each neighbour; statistics passes


def decode_tiled(vae, z: torch.Tensor) -> torch.Tensor:
    """The decoder's output of z (already divided by the scaling factor, on the VAE's device and dtype)."""
    decoder = vae.decoder
    with torch.inference_mode():
        if getattr(vae, "post_quant_conv", None) is not None:
            z = vae.post_quant_conv(z)
        middle = decoder.mid_block(decoder.conv_in(z), None).to(next(decoder.up_blocks.parameters()).dtype)
        norms = [m for m in list(decoder.up_blocks.modules()) + [decoder.conv_norm_out]
                 if isinstance(m, torch.nn.GroupNorm)]
        stats: dict = {}
        for _ in range(PASSES):
            out, sums = _pass(decoder, middle, norms, stats)
            stats = {m: _mean_var(*sums[m]) for m in norms if m in sums}
        return out


def _pass(decoder, middle, norms, stats):
    """One tiled run of the up path with GroupNorm statistics `stats` (none yet: each tile's own)."""
    _, _, h, w = middle.shape
    out, sums, box = None, {}, {}
    originals = {m: m.forward for m in norms}
    for m in norms:
        m.forward = _norm(m, stats.get(m), sums, box)
    try:
        for y, x, (y0, y1, x0, x1), keep in boxes(h, w):
            box.update(size=(y1 - y0, x1 - x0), keep=keep)
            tile = _up(decoder, middle[:, :, y0:y1, x0:x1])
            scale = tile.shape[2] // (y1 - y0)
            if out is None:
                out = torch.empty(1, tile.shape[1], h * scale, w * scale, dtype=tile.dtype, device=tile.device)
            top, bottom, left, right = (v * scale for v in keep)
            out[:, :, y * scale:y * scale + bottom - top, x * scale:x * scale + right - left] = \
                tile[:, :, top:bottom, left:right]
    finally:
        for m, forward in originals.items():
            m.forward = forward
    return out, sums


def boxes(h: int, w: int):
    """Each tile of an h x w latent: (y, x) of its kept part, (y0, y1, x0, x1) of what it runs on (with
    its neighbours' PAD), and (top, bottom, left, right) of the kept part within that."""
    for y in range(0, h, TILE):
        for x in range(0, w, TILE):
            y0, x0, y1, x1 = max(y - PAD, 0), max(x - PAD, 0), min(y + TILE + PAD, h), min(x + TILE + PAD, w)
            yield y, x, (y0, y1, x0, x1), (y - y0, min(y + TILE, h) - y0, x - x0, min(x + TILE, w) - x0)


def _up(decoder, sample):
    for block in decoder.up_blocks:
        sample = block(sample, None)
    return decoder.conv_out(decoder.conv_act(decoder.conv_norm_out(sample)))


def _norm(module, fixed, sums, box):
    """A GroupNorm forward that records the sums of its input over the tile's kept centre and normalises
    with the fixed (whole-picture) statistics where known."""
    groups, eps = module.num_groups, module.eps

    def forward(x):
        scale = x.shape[2] // box["size"][0]
        top, bottom, left, right = (v * scale for v in box["keep"])
        kept = x[:, :, top:bottom, left:right].double().reshape(groups, -1)
        total = sums.setdefault(module, [0.0, 0.0, 0])
        total[0] = total[0] + kept.sum(1)
        total[1] = total[1] + (kept * kept).sum(1)
        total[2] += kept.shape[1]
        if fixed is None:
            return F.group_norm(x, groups, module.weight, module.bias, eps)
        mean, var = fixed
        grouped = x.reshape(1, groups, -1)
        normed = ((grouped - mean.to(x.dtype)[None, :, None]) /
                  torch.sqrt(var.to(x.dtype)[None, :, None] + eps)).reshape(x.shape)
        return normed * module.weight[None, :, None, None] + module.bias[None, :, None, None]

    return forward


def _mean_var(total, squares, count):
    mean = total / count
    return mean.float(), (squares / count - mean * mean).clamp(min=0).float()
