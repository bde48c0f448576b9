"""The TensorFlow backend's --tiled decode: torch_tiles.py's method (the decoder's start on the whole latent,
the up blocks tile by tile with their neighbours' borders, GroupNorm statistics of the whole picture fed back
pass after pass) on the Keras decoder, NHWC. It runs eagerly, each GroupNormalization layer's call replaced
while it runs."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import layers

from .torch_tiles import PASSES, boxes


def decode_tiled(decoder, z: np.ndarray) -> np.ndarray:
    """The Keras VaeDecoder's output (NHWC float32) of z (NHWC, already divided by the scaling factor)."""
    middle = decoder.start(tf.constant(z))
    norms = [layer for path, layer in decoder.registry.layers.items() if isinstance(layer, layers.GroupNormalization)
             and (path.startswith("decoder.up_blocks.") or path == "decoder.conv_norm_out")]
    stats: dict = {}
    for _ in range(PASSES):
        out, sums = _pass(decoder, middle, norms, stats)
        stats = {id(n): _mean_var(*sums[id(n)]) for n in norms if id(n) in sums}
    return out


def _pass(decoder, middle, norms, stats):
    _, h, w, _ = middle.shape
    out, sums, box = None, {}, {}
    for norm in norms:
        norm.call = _norm(norm, stats.get(id(norm)), sums, box)
    try:
        for y, x, (y0, y1, x0, x1), keep in boxes(h, w):
            box.update(size=(y1 - y0, x1 - x0), keep=keep)
            tile = tf.cast(decoder.up(middle[:, y0:y1, x0:x1, :]), tf.float32).numpy()
            scale = tile.shape[1] // (y1 - y0)
            if out is None:
                out = np.empty((1, h * scale, w * scale, tile.shape[3]), np.float32)
            top, bottom, left, right = (v * scale for v in keep)
            out[:, y * scale:y * scale + bottom - top, x * scale:x * scale + right - left] = \
                tile[:, top:bottom, left:right]
    finally:
        for norm in norms:
            del norm.call  # the class's own call again
    return out, sums


def _norm(layer, fixed, sums, box):
    """A GroupNormalization call that records the sums of its input over the tile's kept centre and
    normalises with the fixed (whole-picture) statistics where known."""
    groups, eps = layer.groups, layer.epsilon
    plain = type(layer).call.__get__(layer)

    def call(x, *args, **kwargs):
        scale = x.shape[1] // box["size"][0]
        top, bottom, left, right = (v * scale for v in box["keep"])
        kept = tf.cast(x[:, top:bottom, left:right, :], tf.float64)
        kept = tf.reshape(kept, (-1, groups, x.shape[3] // groups))
        total = sums.setdefault(id(layer), [0.0, 0.0, 0])
        total[0] = total[0] + tf.reduce_sum(kept, axis=(0, 2)).numpy()
        total[1] = total[1] + tf.reduce_sum(kept * kept, axis=(0, 2)).numpy()
        total[2] += kept.shape[0] * kept.shape[2]
        if fixed is None:
            return plain(x, *args, **kwargs)
        mean, var = (tf.constant(v, x.dtype) for v in fixed)
        grouped = tf.reshape(x, (*x.shape[:3], groups, x.shape[3] // groups))
        normed = tf.reshape((grouped - mean[:, None]) / tf.sqrt(var[:, None] + eps), x.shape)
        return normed * tf.cast(layer.gamma, x.dtype) + tf.cast(layer.beta, x.dtype)

    return call


def _mean_var(total, squares, count):
    mean = total / count
    return mean.astype(np.float32), np.maximum(squares / count - mean * mean, 0).astype(np.float32)
