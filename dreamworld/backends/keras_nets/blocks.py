"""The building blocks of the Keras networks: the layer registry, shared blocks, and pouring a PyTorch
state dict into a built network."""
from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops


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

    def call(self, x, context=None, query_chunk=None):
        """`query_chunk`: attend that many queries at a time (the same result, in memory linear in the
        number of tokens instead of quadratic) when the token count is known and larger."""
        context = x if context is None else context
        k, v = self._split(self.to_k(context)), self._split(self.to_v(context))
        n = x.shape[1]
        if query_chunk and n is not None and n > query_chunk:
            return ops.concatenate([self._attend(x[:, i:i + query_chunk], k, v) for i in range(0, n, query_chunk)],
                                   axis=1)
        return self._attend(x, k, v)

    def _attend(self, x, k, v):
        q = self._split(self.to_q(x))
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


def set_tensors(model, state: dict) -> None:
    """Set some weights of a built model from PyTorch-named numpy arrays (e.g. LoRA-merged attention
    weights), leaving the others as they are; ValueError naming a key that has no layer or does not fit."""
    registry: Registry = model.registry
    for key, value in state.items():
        path, _, param = key.rpartition(".")
        layer = registry.layers.get(path)
        if layer is None:
            raise ValueError(f"{key} has no layer in this network")
        index, array = _keras_arrays(layer, param, np.asarray(value, dtype=np.float32))
        variable = layer.weights[index]
        if tuple(variable.shape) != array.shape:
            raise ValueError(f"{key}: shape {np.shape(value)} does not fit {variable.shape}")
        variable.assign(array.astype(variable.dtype))
