"""SD's autoencoder (diffusers' AutoencoderKL configs) in Keras."""
from __future__ import annotations

import numpy as np
from keras import ops

from .blocks import Attention, Block, ConfigError, Net, Registry, ResnetBlock, Upsample, _tokens, silu


# ----- the autoencoder ----------------------------------------------------------------------
QUERY_CHUNK = 1024  # the middle attention of a latent of more than 1024 pixels (a 256x256 image) runs in chunks
class VaeAttention(Block):
    """The single-head attention in the middle of the VAE (diffusers' Attention with group norm)."""

    def __init__(self, reg: Registry, path: str, channels: int, groups: int, **kwargs):
        super().__init__(dtype=reg.dtype, **kwargs)
        self.norm = reg.group_norm(f"{path}.group_norm", groups, 1e-6)
        self.attn = Attention(reg, path, 1, channels, channels, bias=True)

    def call(self, x):
        h, shape = _tokens(self.norm(x))
        return ops.reshape(self.attn(h, query_chunk=QUERY_CHUNK), shape) + x


class VaeMid(Block):
    def __init__(self, reg: Registry, path: str, channels: int, groups: int, attention: bool, **kwargs):
        super().__init__(dtype=reg.dtype, **kwargs)
        self.r0 = ResnetBlock(reg, f"{path}.resnets.0", channels, channels, groups, 1e-6, False)
        self.attn = VaeAttention(reg, f"{path}.attentions.0", channels, groups) if attention else None
        self.r1 = ResnetBlock(reg, f"{path}.resnets.1", channels, channels, groups, 1e-6, False)

    def call(self, x):
        x = self.r0(x)
        return self.r1(self.attn(x) if self.attn is not None else x)


VAE_DEFAULTS = dict(layers_per_block=1, norm_num_groups=32, latent_channels=4, scaling_factor=0.18215,
                    shift_factor=None, use_quant_conv=True, use_post_quant_conv=True, mid_block_add_attention=True)


def check_vae_config(config: dict) -> dict:
    c = {**VAE_DEFAULTS, **{k: v for k, v in config.items() if not k.startswith("_")}}
    if any(d != "DownEncoderBlock2D" for d in c["down_block_types"]) or \
            any(u != "UpDecoderBlock2D" for u in c["up_block_types"]):
        raise ConfigError("its VAE has blocks other than AutoencoderKL's Down/UpEncoderBlock2D")
    return c


class VaeEncoder(Net):
    """AutoencoderKL's encoder and quant_conv: image NHWC in [-1, 1] -> (mean, log variance) NHWC."""

    def __init__(self, config: dict, dtype=None, **kwargs):
        super().__init__(dtype=dtype, **kwargs)
        c = self.config_ = check_vae_config(config)
        reg = self.registry = Registry(dtype)
        channels, groups = list(c["block_out_channels"]), c["norm_num_groups"]
        self.conv_in = reg.conv("encoder.conv_in", channels[0])
        self.blocks = []
        ch_in = channels[0]
        for i, ch in enumerate(channels):
            path = f"encoder.down_blocks.{i}"
            resnets = [ResnetBlock(reg, f"{path}.resnets.{j}", ch_in if j == 0 else ch, ch, groups, 1e-6, False)
                       for j in range(c["layers_per_block"])]
            down = (reg.conv(f"{path}.downsamplers.0.conv", ch, 3, strides=2, padding=((0, 1), (0, 1)))
                    if i < len(channels) - 1 else None)
            self.blocks.append((resnets, down))
            ch_in = ch
        self.mid = VaeMid(reg, "encoder.mid_block", channels[-1], groups, c["mid_block_add_attention"])
        self.norm_out = reg.group_norm("encoder.conv_norm_out", groups, 1e-6)
        self.conv_out = reg.conv("encoder.conv_out", 2 * c["latent_channels"])
        self.quant = reg.conv("quant_conv", 2 * c["latent_channels"], 1) if c["use_quant_conv"] else None

    def call(self, image):
        x = self.conv_in(image)
        for resnets, down in self.blocks:
            for resnet in resnets:
                x = resnet(x)
            if down is not None:
                x = down(x)
        x = self.conv_out(silu(self.norm_out(self.mid(x))))
        if self.quant is not None:
            x = self.quant(x)
        mean, logvar = ops.split(x, 2, axis=-1)
        return mean, ops.clip(logvar, -30.0, 20.0)

    def build_for(self, size=64):
        self(np.zeros((1, size, size, self.config_["in_channels"]), np.float32))


class VaeDecoder(Net):
    """post_quant_conv and AutoencoderKL's decoder: latents NHWC (unscaled) -> image NHWC in about [-1, 1]."""

    def __init__(self, config: dict, dtype=None, **kwargs):
        super().__init__(dtype=dtype, **kwargs)
        c = self.config_ = check_vae_config(config)
        reg = self.registry = Registry(dtype)
        channels, groups = list(c["block_out_channels"])[::-1], c["norm_num_groups"]
        self.post_quant = reg.conv("post_quant_conv", c["latent_channels"], 1) if c["use_post_quant_conv"] else None
        self.conv_in = reg.conv("decoder.conv_in", channels[0])
        self.mid = VaeMid(reg, "decoder.mid_block", channels[0], groups, c["mid_block_add_attention"])
        self.blocks = []
        ch_in = channels[0]
        for i, ch in enumerate(channels):
            path = f"decoder.up_blocks.{i}"
            resnets = [ResnetBlock(reg, f"{path}.resnets.{j}", ch_in if j == 0 else ch, ch, groups, 1e-6, False)
                       for j in range(c["layers_per_block"] + 1)]
            up = Upsample(reg, f"{path}.upsamplers.0", ch) if i < len(channels) - 1 else None
            self.blocks.append((resnets, up))
            ch_in = ch
        self.norm_out = reg.group_norm("decoder.conv_norm_out", groups, 1e-6)
        self.conv_out = reg.conv("decoder.conv_out", c["out_channels"])

    def call(self, latents):
        return self.up(self.start(latents))

    def start(self, latents):
        """post_quant_conv, conv_in and the mid block: the part at latent resolution."""
        x = self.post_quant(latents) if self.post_quant is not None else latents
        return self.mid(self.conv_in(x))

    def up(self, x):
        """The up blocks and the output: the part that holds the memory (tiled by tf_tiles.py)."""
        for resnets, up in self.blocks:
            for resnet in resnets:
                x = resnet(x)
            if up is not None:
                x = up(x)
        return self.conv_out(silu(self.norm_out(x)))

    def build_for(self, size=8):
        self(np.zeros((1, size, size, self.config_["latent_channels"]), np.float32))
