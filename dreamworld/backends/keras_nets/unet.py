"""SD's UNet (diffusers' UNet2DConditionModel configs) in Keras."""
from __future__ import annotations

import numpy as np
from keras import ops

from .blocks import ConfigError, Net, Registry, ResnetBlock, Transformer2D, Upsample, silu


# ----- the UNet -----------------------------------------------------------------------------
UNET_DEFAULTS = dict(
    layers_per_block=2, norm_num_groups=32, norm_eps=1e-5, attention_head_dim=8, num_attention_heads=None,
    use_linear_projection=False, transformer_layers_per_block=1, flip_sin_to_cos=True, freq_shift=0,
    mid_block_type="UNetMidBlock2DCrossAttn", center_input_sample=False, class_embed_type=None,
    addition_embed_type=None, time_cond_proj_dim=None, encoder_hid_dim=None, conv_in_kernel=3,
    conv_out_kernel=3, resnet_time_scale_shift="default", only_cross_attention=False,
    dual_cross_attention=False, time_embedding_type="positional", attention_type="default",
    reverse_transformer_layers_per_block=None, upcast_attention=False, num_class_embeds=None,
)


def _per_block(value, n):
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def check_unet_config(config: dict) -> dict:
    """The config with defaults filled in; ConfigError names what these networks do not build."""
    c = {**UNET_DEFAULTS, **{k: v for k, v in config.items() if not k.startswith("_")}}
    unsupported = {
        "addition_embed_type": None, "class_embed_type": None, "time_cond_proj_dim": None, "encoder_hid_dim": None,
        "num_class_embeds": None, "center_input_sample": False, "resnet_time_scale_shift": "default",
        "only_cross_attention": False, "dual_cross_attention": False, "time_embedding_type": "positional",
        "attention_type": "default", "mid_block_type": "UNetMidBlock2DCrossAttn", "conv_in_kernel": 3,
        "conv_out_kernel": 3, "reverse_transformer_layers_per_block": None,
    }
    for key, plain in unsupported.items():
        if c[key] != plain and not (key == "only_cross_attention" and not any(_per_block(c[key], 1))):
            raise ConfigError(f"its UNet uses {key}={c[key]!r}, which the TensorFlow backend does not build "
                              "(SD 1.x and 2.x models only; SDXL and others run on backend 'torch')")
    if any(d not in ("CrossAttnDownBlock2D", "DownBlock2D") for d in c["down_block_types"]) or \
            any(u not in ("CrossAttnUpBlock2D", "UpBlock2D") for u in c["up_block_types"]):
        raise ConfigError("its UNet has blocks other than SD's (CrossAttn)Down/UpBlock2D")
    if any(n != 1 for n in _per_block(c["transformer_layers_per_block"], len(c["down_block_types"]))):
        raise ConfigError("its UNet has several transformer layers per block (an SDXL-style UNet)")
    return c


class UNet(Net):
    """UNet2DConditionModel: (latents NHWC, time-step projection (b, c0), context (b, tokens, d)) -> noise."""

    def __init__(self, config: dict, dtype=None, **kwargs):
        super().__init__(dtype=dtype, **kwargs)
        c = self.config_ = check_unet_config(config)
        reg = self.registry = Registry(dtype)
        channels = list(c["block_out_channels"])
        n = len(channels)
        heads = _per_block(c["num_attention_heads"] or c["attention_head_dim"], n)
        groups, eps, ctx = c["norm_num_groups"], c["norm_eps"], c["cross_attention_dim"]
        per_block, linear = c["layers_per_block"], c["use_linear_projection"]
        bias = False  # SD's attention projections have no bias (diffusers' attention_bias default)

        def attention(path, ch, h):
            return Transformer2D(reg, path, ch, h, ctx, groups, linear, 1, bias)

        self.temb_1 = reg.dense("time_embedding.linear_1", channels[0] * 4)
        self.temb_2 = reg.dense("time_embedding.linear_2", channels[0] * 4)
        self.conv_in = reg.conv("conv_in", channels[0])
        self.down = []
        ch_in = channels[0]
        for i, kind in enumerate(c["down_block_types"]):
            ch, path = channels[i], f"down_blocks.{i}"
            resnets, attns = [], []
            for j in range(per_block):
                resnets.append(ResnetBlock(reg, f"{path}.resnets.{j}", ch_in if j == 0 else ch, ch, groups, eps, True))
                attns.append(attention(f"{path}.attentions.{j}", ch, heads[i]) if kind.startswith("CrossAttn") else None)
            down = reg.conv(f"{path}.downsamplers.0.conv", ch, 3, strides=2, padding=1) if i < n - 1 else None
            self.down.append((resnets, attns, down))
            ch_in = ch
        mid = "mid_block"
        self.mid = (ResnetBlock(reg, f"{mid}.resnets.0", channels[-1], channels[-1], groups, eps, True),
                    attention(f"{mid}.attentions.0", channels[-1], heads[-1]),
                    ResnetBlock(reg, f"{mid}.resnets.1", channels[-1], channels[-1], groups, eps, True))
        self.up = []
        reversed_channels, reversed_heads = channels[::-1], heads[::-1]
        prev = channels[-1]
        for i, kind in enumerate(c["up_block_types"]):
            ch, path = reversed_channels[i], f"up_blocks.{i}"
            skip_channels = reversed_channels[min(i + 1, n - 1)]
            resnets, attns = [], []
            for j in range(per_block + 1):
                skip = ch if j < per_block else skip_channels
                resnets.append(ResnetBlock(reg, f"{path}.resnets.{j}", (prev if j == 0 else ch) + skip, ch,
                                           groups, eps, True))
                attns.append(attention(f"{path}.attentions.{j}", ch, reversed_heads[i])
                             if kind.startswith("CrossAttn") else None)
            up = Upsample(reg, f"{path}.upsamplers.0", ch) if i < n - 1 else None
            self.up.append((resnets, attns, up))
            prev = ch
        self.norm_out = reg.group_norm("conv_norm_out", groups, eps)
        self.conv_out = reg.conv("conv_out", c["out_channels"])

    def call(self, latents, t_proj, context):
        temb = self.temb_2(silu(self.temb_1(t_proj)))
        x = self.conv_in(latents)
        skips = [x]
        for resnets, attns, down in self.down:
            for resnet, attn in zip(resnets, attns):
                x = resnet(x, temb)
                if attn is not None:
                    x = attn(x, context)
                skips.append(x)
            if down is not None:
                x = down(x)
                skips.append(x)
        r0, a0, r1 = self.mid
        x = r1(a0(r0(x, temb), context), temb)
        for resnets, attns, up in self.up:
            for resnet, attn in zip(resnets, attns):
                x = resnet(ops.concatenate([x, skips.pop()], axis=-1), temb)
                if attn is not None:
                    x = attn(x, context)
            if up is not None:
                x = up(x)
        return self.conv_out(silu(self.norm_out(x)))

    def build_for(self, batch=1, size=16, tokens=77):
        c = self.config_
        self(np.zeros((batch, size, size, c["in_channels"]), np.float32),
             np.zeros((batch, c["block_out_channels"][0]), np.float32),
             np.zeros((batch, tokens, c["cross_attention_dim"]), np.float32))
