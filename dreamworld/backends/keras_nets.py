"""Stable Diffusion's networks in Keras 3, built from a diffusers model's own configs.

keras-cv's `TextEncoder`, `DiffusionModel`, `ImageEncoder` and `Decoder` are fixed to the full SD 1.x
sizes, use a tanh approximation of GELU and one GroupNorm epsilon everywhere, so they cannot hold
other models (such as DreamWorld's embedded one) nor give diffusers' pixels. The same networks are
built here with any config of diffusers' `UNet2DConditionModel`, `AutoencoderKL` and transformers'
`CLIPTextModel` (SD 1.x and 2.x), from keras-cv's own layers where they fit (`CLIPEmbedding`,
`CLIPEncoderLayer`) and Keras layers elsewhere, channels last.

Every layer that holds weights is registered under its diffusers / transformers module path
(`down_blocks.0.attentions.0.proj_in`), so `load_state_dict` can pour a PyTorch state dict in and
check that every tensor found a home and every weight was set.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops
from keras_cv.src.models.stable_diffusion.text_encoder import CLIPEmbedding, CLIPEncoderLayer, quick_gelu


class ConfigError(ValueError):
    """The model uses a feature these networks do not build."""


def exact_gelu(x):
    return ops.gelu(x, approximate=False)


def silu(x):
    # keras.ops.silu is tf.nn.silu, a tf.custom_gradient: each trace of it registers a gradient in a
    # process-wide table that keeps the whole traced graph alive, so every model load would leak one.
    return x * ops.sigmoid(x)


class Registry:
    """Creates the weight-holding layers and remembers them by module path."""

    def __init__(self, dtype=None):
        self.dtype = dtype
        self.layers: dict[str, keras.layers.Layer] = {}

    def add(self, path: str, layer):
        self.layers[path] = layer
        return layer

    def conv(self, path, filters, kernel=3, strides=1, padding=None):
        padding = kernel // 2 if padding is None else padding
        return self.add(path, Conv(filters, kernel, padding, strides, dtype=self.dtype, name=_name(path)))

    def dense(self, path, units, bias=True):
        return self.add(path, layers.Dense(units, use_bias=bias, kernel_initializer="zeros", dtype=self.dtype,
                                           name=_name(path)))

    def group_norm(self, path, groups, eps):
        return self.add(path, layers.GroupNormalization(groups=groups, epsilon=eps, dtype=self.dtype,
                                                        name=_name(path)))

    def layer_norm(self, path, eps=1e-5):
        return self.add(path, layers.LayerNormalization(epsilon=eps, dtype=self.dtype, name=_name(path)))


def _name(path: str) -> str:
    return path.replace(".", "_")


# ----- shared blocks ------------------------------------------------------------------------
class Conv(layers.Layer):
    """A zero-padded convolution, as PyTorch's Conv2d(padding=...) (keras-cv's PaddedConv2D, but with the
    dtype policy reaching the convolution, so that it follows mixed precision)."""

    def __init__(self, filters, kernel, padding, strides, dtype=None, **kwargs):
        super().__init__(dtype=dtype, **kwargs)
        self.pad = layers.ZeroPadding2D(padding, dtype=dtype)
        self.conv = layers.Conv2D(filters, kernel, strides=strides, kernel_initializer="zeros", dtype=dtype)

    def call(self, x):
        return self.conv(self.pad(x))


class Block(layers.Layer):
    """A layer made of registered layers. Declared built, so that Keras builds the parts on the first
    real call instead of tracing the block symbolically (which costs seconds for a whole UNet)."""

    def build(self, *shapes, **named_shapes):
        self.built = True


class Net(keras.Model):
    """A whole network, built like a Block on its first call (build_for)."""

    def build(self, *shapes, **named_shapes):
        self.built = True


class ResnetBlock(Block):
    """diffusers' ResnetBlock2D (default time-embedding norm), optional time embedding."""

    def __init__(self, reg: Registry, path: str, channels_in: int, channels: int, groups: int, eps: float,
                 temb: bool, **kwargs):
        super().__init__(dtype=reg.dtype, **kwargs)
        self.norm1 = reg.group_norm(f"{path}.norm1", groups, eps)
        self.conv1 = reg.conv(f"{path}.conv1", channels)
        self.time_emb_proj = reg.dense(f"{path}.time_emb_proj", channels) if temb else None
        self.norm2 = reg.group_norm(f"{path}.norm2", groups, eps)
        self.conv2 = reg.conv(f"{path}.conv2", channels)
        self.conv_shortcut = reg.conv(f"{path}.conv_shortcut", channels, 1) if channels_in != channels else None

    def call(self, x, temb=None):
        h = self.conv1(silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            h = h + self.time_emb_proj(silu(temb))[:, None, None, :]
        h = self.conv2(silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class Attention(Block):
    """Multi-head (cross-)attention on (batch, tokens, channels): diffusers' Attention."""

    def __init__(self, reg: Registry, path: str, heads: int, dim_head: int, out_dim: int, bias: bool, **kwargs):
        super().__init__(dtype=reg.dtype, **kwargs)
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.to_q = reg.dense(f"{path}.to_q", inner, bias)
        self.to_k = reg.dense(f"{path}.to_k", inner, bias)
        self.to_v = reg.dense(f"{path}.to_v", inner, bias)
        self.to_out = reg.dense(f"{path}.to_out.0", out_dim)

    def _split(self, x):
        shape = ops.shape(x)
        x = ops.reshape(x, (shape[0], shape[1], self.heads, self.dim_head))
        return ops.transpose(x, (0, 2, 1, 3))

    def call(self, x, context=None):
        context = x if context is None else context
        q, k, v = self._split(self.to_q(x)), self._split(self.to_k(context)), self._split(self.to_v(context))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (self.dim_head ** -0.5)
        out = ops.matmul(ops.softmax(scores, axis=-1), v)
        shape = ops.shape(out)
        out = ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (shape[0], shape[2], self.heads * self.dim_head))
        return self.to_out(out)


def _tokens(x):
    """(b, h, w, c) -> (b, h*w, c) and the shape to go back."""
    shape = ops.shape(x)
    return ops.reshape(x, (shape[0], shape[1] * shape[2], shape[3])), shape


class TransformerBlock(Block):
    """diffusers' BasicTransformerBlock: self-attention, cross-attention, GEGLU feed-forward."""

    def __init__(self, reg: Registry, path: str, dim: int, heads: int, context_dim: int, bias: bool, **kwargs):
        super().__init__(dtype=reg.dtype, **kwargs)
        self.norm1 = reg.layer_norm(f"{path}.norm1")
        self.attn1 = Attention(reg, f"{path}.attn1", heads, dim // heads, dim, bias)
        self.norm2 = reg.layer_norm(f"{path}.norm2")
        self.attn2 = Attention(reg, f"{path}.attn2", heads, dim // heads, dim, bias)
        self.norm3 = reg.layer_norm(f"{path}.norm3")
        self.inner = dim * 4
        self.ff_in = reg.dense(f"{path}.ff.net.0.proj", self.inner * 2)
        self.ff_out = reg.dense(f"{path}.ff.net.2", dim)

    def call(self, x, context):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        h = self.ff_in(self.norm3(x))
        h = h[..., :self.inner] * exact_gelu(h[..., self.inner:])
        return self.ff_out(h) + x


class Transformer2D(Block):
    """diffusers' Transformer2DModel on continuous inputs (the UNet's attention blocks)."""

    def __init__(self, reg: Registry, path: str, channels: int, heads: int, context_dim: int, groups: int,
                 linear: bool, depth: int, bias: bool, **kwargs):
        super().__init__(dtype=reg.dtype, **kwargs)
        self.linear = linear
        self.norm = reg.group_norm(f"{path}.norm", groups, 1e-6)
        project = (lambda p: reg.dense(p, channels)) if linear else (lambda p: reg.conv(p, channels, 1))
        self.proj_in = project(f"{path}.proj_in")
        self.blocks = [TransformerBlock(reg, f"{path}.transformer_blocks.{i}", channels, heads, context_dim, bias)
                       for i in range(depth)]
        self.proj_out = project(f"{path}.proj_out")

    def call(self, x, context):
        h = self.norm(x)
        if self.linear:
            h, shape = _tokens(h)
            h = self.proj_in(h)
        else:
            h, shape = _tokens(self.proj_in(h))
        for block in self.blocks:
            h = block(h, context)
        if self.linear:
            h = ops.reshape(self.proj_out(h), shape)
        else:
            h = self.proj_out(ops.reshape(h, shape))
        return h + x


class Upsample(Block):
    def __init__(self, reg: Registry, path: str, channels: int, **kwargs):
        super().__init__(dtype=reg.dtype, **kwargs)
        self.up = layers.UpSampling2D(2, interpolation="nearest", dtype=reg.dtype)
        self.conv = reg.conv(f"{path}.conv", channels)

    def call(self, x):
        return self.conv(self.up(x))


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


# ----- the autoencoder ----------------------------------------------------------------------
class VaeAttention(Block):
    """The single-head attention in the middle of the VAE (diffusers' Attention with group norm)."""

    def __init__(self, reg: Registry, path: str, channels: int, groups: int, **kwargs):
        super().__init__(dtype=reg.dtype, **kwargs)
        self.norm = reg.group_norm(f"{path}.group_norm", groups, 1e-6)
        self.attn = Attention(reg, path, 1, channels, channels, bias=True)

    def call(self, x):
        h, shape = _tokens(self.norm(x))
        return ops.reshape(self.attn(h), shape) + x


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
        x = self.post_quant(latents) if self.post_quant is not None else latents
        x = self.mid(self.conv_in(x))
        for resnets, up in self.blocks:
            for resnet in resnets:
                x = resnet(x)
            if up is not None:
                x = up(x)
        return self.conv_out(silu(self.norm_out(x)))

    def build_for(self, size=8):
        self(np.zeros((1, size, size, self.config_["latent_channels"]), np.float32))


# ----- the text encoder ---------------------------------------------------------------------
ACTIVATIONS = {"quick_gelu": quick_gelu, "gelu": exact_gelu}


class TextEncoder(Net):
    """transformers' CLIPTextModel from keras-cv's CLIP layers: token ids -> the hidden states of a layer
    (`skip` layers before the last; 1 = the last), through the final layer norm as A1111's clip skip does."""

    def __init__(self, config: dict, dtype=None, **kwargs):
        super().__init__(dtype=dtype, **kwargs)
        c = self.config_ = {k: v for k, v in config.items() if not k.startswith("_")}
        width, layers_n, heads = c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"]
        if c["hidden_act"] not in ACTIVATIONS:
            raise ConfigError(f"its text encoder uses the activation {c['hidden_act']!r}")
        self.length = c["max_position_embeddings"]
        reg = self.registry = Registry(dtype)
        self.embedding = CLIPEmbedding(c["vocab_size"], width, self.length, dtype=dtype)
        self.embedding.built = True
        reg.add("embeddings.token_embedding", self.embedding.token_embedding)
        reg.add("embeddings.position_embedding", self.embedding.position_embedding)
        self.encoder_layers = []
        for i in range(layers_n):
            layer = CLIPEncoderLayer(width, heads, activation=ACTIVATIONS[c["hidden_act"]], dtype=dtype)
            if c["intermediate_size"] != 4 * width:  # keras-cv's layer assumes CLIP's 4x MLP
                layer.fc1 = layers.Dense(c["intermediate_size"], dtype=dtype)
            path = f"encoder.layers.{i}"
            for name, sub in (("layer_norm1", layer.layer_norm1), ("layer_norm2", layer.layer_norm2),
                              ("mlp.fc1", layer.fc1), ("mlp.fc2", layer.fc2),
                              ("self_attn.q_proj", layer.clip_attn.q_proj), ("self_attn.k_proj", layer.clip_attn.k_proj),
                              ("self_attn.v_proj", layer.clip_attn.v_proj),
                              ("self_attn.out_proj", layer.clip_attn.out_proj)):
                reg.add(f"{path}.{name}", sub)
            layer.built = True  # its parts build on the first call, as a Block's do
            self.encoder_layers.append(layer)
        self.final_norm = reg.layer_norm("final_layer_norm", c.get("layer_norm_eps", 1e-5))
        for sub in reg.layers.values():
            if isinstance(sub, layers.LayerNormalization):
                sub.epsilon = c.get("layer_norm_eps", 1e-5)

    def call(self, ids, skip: int = 1):
        positions = ops.expand_dims(ops.arange(self.length, dtype="int32"), 0)
        x = self.embedding([ids, ops.repeat(positions, ops.shape(ids)[0], axis=0)])
        for layer in self.encoder_layers[:len(self.encoder_layers) - (skip - 1)]:
            x = layer(x)
        return self.final_norm(x)

    def build_for(self):
        self(np.zeros((1, self.length), np.int32))


# ----- weights --------------------------------------------------------------------------------
def _keras_arrays(layer, name: str, value: np.ndarray) -> tuple[int, np.ndarray]:
    """(index in layer.weights, array) of a PyTorch parameter `name` (weight / bias) of a leaf layer."""
    if isinstance(layer, Conv):
        if name == "weight":
            value = value.reshape(value.shape[0], -1, 1, 1) if value.ndim == 2 else value  # linear as 1x1 conv
            return 0, value.transpose(2, 3, 1, 0)
        return 1, value
    if isinstance(layer, layers.Dense):
        if name == "weight":
            return 0, (value[:, :, 0, 0] if value.ndim == 4 else value).T
        return 1, value
    if isinstance(layer, (layers.GroupNormalization, layers.LayerNormalization)):
        return (0 if name == "weight" else 1), value
    if isinstance(layer, layers.Embedding):
        return 0, value
    raise TypeError(f"no weight conversion for {type(layer).__name__}")


def load_state_dict(model, state: dict, prefix: str = "") -> None:
    """Set every weight of `model` (built) from a PyTorch state dict of numpy arrays; the dict's keys
    may carry `prefix`. Raises ValueError naming what is missing, left over or mis-shaped."""
    registry: Registry = model.registry
    pending = {path: [None] * len(layer.weights) for path, layer in registry.layers.items()}
    leftover = []
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        path, _, param = key[len(prefix):].rpartition(".")
        layer = registry.layers.get(path)
        if layer is None:
            if param not in ("weight", "bias") or "position_ids" in key:
                continue  # buffers
            leftover.append(key)
            continue
        index, array = _keras_arrays(layer, param, np.asarray(value, dtype=np.float32))
        if tuple(layer.weights[index].shape) != array.shape:
            raise ValueError(f"{key}: shape {value.shape} does not fit {layer.weights[index].shape}")
        pending[path][index] = array
    if leftover:
        raise ValueError(f"{len(leftover)} tensors have no layer, such as {leftover[0]}")
    missing = [f"{p}[{i}]" for p, arrays in pending.items() for i, a in enumerate(arrays) if a is None]
    if missing:
        raise ValueError(f"{len(missing)} weights were not in the state dict, such as {missing[0]}")
    for path, arrays in pending.items():
        registry.layers[path].set_weights(arrays)
