"""Prompts into text features on torch, A1111's way (dreamworld/prompts.py: weights, BREAK, 75-token chunks,
embeddings' vectors) for SD 1.x/2.x's one CLIP and SDXL's two."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .. import prompts
from .base import Conditioning


def runner(encoder) -> Callable:
    """run(ids, vectors=None, mask=None, pick=None): the CLIP model's output (with its hidden states), or
    pick(output); where `mask` is set, an embedding's vectors replace the token vectors."""

    def run(ids: np.ndarray, vectors: np.ndarray | None = None, mask: np.ndarray | None = None, pick=None):
        table = encoder.get_input_embeddings()
        handle = None
        if vectors is not None:
            where = torch.from_numpy(mask).to(table.weight.device)
            put = torch.from_numpy(vectors).to(table.weight.device, table.weight.dtype)
            handle = table.register_forward_hook(lambda module, inputs, output: torch.where(where[..., None], put,
                                                                                              output))
        try:
            with torch.inference_mode():
                output = encoder(torch.from_numpy(ids).to(table.weight.device), output_hidden_states=True)
                return pick(output).float().cpu().numpy() if pick else output
        finally:
            if handle is not None:
                handle.remove()
    return run


def clip_encoder(tokenizer, encoder, features: Callable, embeddings: dict) -> prompts.TextEncoder:
    """prompts.TextEncoder over a transformers CLIP model; `features(output)` picks the hidden states a
    model conditions on from its output."""
    run = runner(encoder)
    return prompts.TextEncoder(
        tokenize=lambda words: tokenizer(words, add_special_tokens=False, verbose=False).input_ids,
        encode=lambda ids: run(ids, pick=features),
        bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id, pad=tokenizer.pad_token_id, embeddings=embeddings,
        encode_with=lambda ids, vectors, mask: run(ids, vectors, mask, pick=features))


def sd_features(encoder, clip_skip: int) -> Callable:
    """SD 1.x/2.x: the layer clip_skip from the end, through the final layer norm (A1111's clip skip)."""
    norm = getattr(encoder, "final_layer_norm", None) or encoder.text_model.final_layer_norm
    return lambda output: norm(output.hidden_states[-clip_skip])


def sdxl_features(clip_skip: int) -> Callable:
    """SDXL: the penultimate layer without the final norm (A1111 and diffusers), one more back per clip skip."""
    return lambda output: output.hidden_states[-(clip_skip + 1)]


def sdxl_conditioning(pipe, texts: list[str], negative: str, clip_skip: int, embeddings: dict) -> Conditioning:
    """SDXL's [negative, positive] features for the weighted mix of `texts` [(prompt, weight), ...] against
    `negative`, encoded as A1111 does SDXL: each encoder chunk by chunk with its weights, the two
    concatenated per token; the pooled features are clip_g's of the first chunk, unweighted. An empty
    negative prompt is zeros (diffusers' force_zeros_for_empty_prompt, as A1111)."""
    encoders = [clip_encoder(pipe.tokenizer, pipe.text_encoder, sdxl_features(clip_skip), embeddings["clip_l"]),
                clip_encoder(pipe.tokenizer_2, pipe.text_encoder_2, sdxl_features(clip_skip), embeddings["clip_g"])]
    words = [prompt for prompt, _ in texts] + [negative]
    features = np.concatenate([np.stack(prompts.embed_all(words, e)) for e in encoders], axis=-1)[:, 0]
    run = runner(pipe.text_encoder_2)
    pooled = np.stack([_pooled(text, encoders[1], run) for text in words])
    weights = np.array([w for _, w in texts] + [0.0], np.float32)
    prompt, prompt_pooled = np.tensordot(weights, features, 1), np.tensordot(weights, pooled, 1)
    if not negative and pipe.config.get("force_zeros_for_empty_prompt", True):
        features[-1], pooled[-1] = 0, 0
    rows = lambda negative, positive: np.ascontiguousarray(np.stack([negative, positive]), np.float32)  # noqa: E731
    return Conditioning(rows(features[-1], prompt), rows(pooled[-1], prompt_pooled))


def _pooled(text: str, encoder: prompts.TextEncoder, run: Callable) -> np.ndarray:
    """The projected pooled features of the text's first chunk (A1111 takes the first chunk's)."""
    tokens, _ = prompts.chunks(text, encoder)[0]
    return run(*prompts.chunk_ids(tokens, encoder), pick=lambda output: output.text_embeds[0])
