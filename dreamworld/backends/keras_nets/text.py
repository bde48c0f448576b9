"""SD's CLIP text encoder (transformers' CLIPTextModel configs) in Keras, from keras-cv's CLIP layers."""
from __future__ import annotations

import numpy as np
from keras import layers, ops
from keras_cv.src.models.stable_diffusion.text_encoder import CLIPEmbedding, CLIPEncoderLayer, quick_gelu

from .blocks import ConfigError, Net, Registry, exact_gelu


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

    def call(self, ids, skip: int = 1, vectors=None, where=None):
        """`vectors` (N, length, width) replace the token vectors where `where` (N, length) is true
        (textual-inversion embeddings)."""
        positions = ops.expand_dims(ops.arange(self.length, dtype="int32"), 0)
        positions = ops.repeat(positions, ops.shape(ids)[0], axis=0)
        if vectors is None:
            x = self.embedding([ids, positions])
        else:  # CLIPEmbedding's sum, with the token vectors replaced
            tokens = self.embedding.token_embedding(ids)
            tokens = ops.where(ops.expand_dims(where, -1), ops.cast(vectors, tokens.dtype), tokens)
            x = tokens + self.embedding.position_embedding(positions)
        for layer in self.encoder_layers[:len(self.encoder_layers) - (skip - 1)]:
            x = layer(x)
        return self.final_norm(x)

    def build_for(self):
        self(np.zeros((1, self.length), np.int32))
