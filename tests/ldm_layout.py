"""Test helper: diffusers models -> one state dict in the original LDM / A1111 single-file layout.

The inverse of the key conversion diffusers applies in `from_single_file`
(diffusers.loaders.single_file_utils: convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint,
convert_ldm_clip_checkpoint, convert_open_clip_checkpoint), with the UNet and VAE block layout read
from the models' configs. test_single_file.py checks that it is exactly that inverse for every
family in dreamworld/model_configs (at full size, on the meta device) and uses it to write real-shaped
checkpoints. It works on meta tensors too, which is how the layouts are checked without memory.
"""
from __future__ import annotations

import torch

UNET_TOP = {"time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
            "add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2.",
            "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2."}
UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
               "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _unet_prefixes(config) -> list[tuple[str, str]]:
    """(diffusers prefix, LDM prefix) of every UNet block."""
    pairs = list(UNET_TOP.items())
    layers, last = config.layers_per_block, len(config.block_out_channels) - 1
    n = 1
    for i, kind in enumerate(config.down_block_types):
        for j in range(layers):
            pairs.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{n}.0."))
            if "CrossAttn" in kind:
                pairs.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{n}.1."))
            n += 1
        if i < last:
            pairs.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{n}.0.op."))
            n += 1
    pairs += [("mid_block.resnets.0.", "middle_block.0."), ("mid_block.attentions.0.", "middle_block.1."),
              ("mid_block.resnets.1.", "middle_block.2.")]
    n = 0
    for i, kind in enumerate(getattr(config, "up_block_types", ())):  # a ControlNet has none
        attention = "CrossAttn" in kind
        for j in range(layers + 1):
            pairs.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{n}.0."))
            if attention:
                pairs.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{n}.1."))
            n += 1
        if i < last:
            pairs.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{n - 1}.{2 if attention else 1}."))
    return pairs


def _rename(state: dict, prefixes, inner: dict, out_prefix: str) -> dict:
    out = {}
    for key, value in state.items():
        for hf, ldm in prefixes:
            if key.startswith(hf):
                rest = key[len(hf):]
                if "resnets." in hf:
                    head, _, tail = rest.partition(".")
                    rest = f"{inner.get(head, head)}.{tail}"
                out[out_prefix + ldm + rest] = value
                break
        else:
            out[out_prefix + key] = value
    return out


def unet_to_ldm(unet) -> dict:
    return _rename(unet.state_dict(), _unet_prefixes(unet.config), UNET_RESNET, "model.diffusion_model.")


def controlnet_to_ldm(net) -> dict:
    """A diffusers ControlNetModel in the A1111 / lllyasviel layout (control_v11p_sd15_*.safetensors): the
    UNet's encoder half, the hint encoder (input_hint_block: convolutions at 0, 2, ..., 14 between SiLUs) and
    the zero convolutions, under control_model. (diffusers' convert_controlnet_checkpoint, inverted)."""
    hint, zero = "controlnet_cond_embedding.", net.controlnet_down_blocks
    blocks = len(net.controlnet_cond_embedding.blocks)
    prefixes = [(f"{hint}conv_in.", "input_hint_block.0."),
                *((f"{hint}blocks.{k}.", f"input_hint_block.{2 * (k + 1)}.") for k in range(blocks)),
                (f"{hint}conv_out.", f"input_hint_block.{2 * (blocks + 1)}."),
                *((f"controlnet_down_blocks.{i}.", f"zero_convs.{i}.0.") for i in range(len(zero))),
                ("controlnet_mid_block.", "middle_block_out.0."), *_unet_prefixes(net.config)]
    return _rename(net.state_dict(), prefixes, UNET_RESNET, "control_model.")


def vae_to_ldm(vae, prefix: str = "first_stage_model.") -> dict:
    """The VAE under `prefix` (A1111's separate VAE files use no prefix)."""
    levels, layers = len(vae.config.block_out_channels), vae.config.layers_per_block
    pairs = [("encoder.conv_norm_out.", "encoder.norm_out."), ("decoder.conv_norm_out.", "decoder.norm_out.")]
    for i in range(levels):
        pairs += [(f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}.") for j in range(layers)]
        pairs += [(f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{levels - 1 - i}.block.{j}.")
                  for j in range(layers + 1)]
        pairs += [(f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."),
                  (f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{levels - 1 - i}.upsample.")]
    for part in ("encoder", "decoder"):
        pairs += [(f"{part}.mid_block.resnets.{j}.", f"{part}.mid.block_{j + 1}.") for j in range(2)]
        pairs += [(f"{part}.mid_block.attentions.0.{hf}.", f"{part}.mid.attn_1.{ldm}.")
                  for hf, ldm in VAE_ATTENTION.items()]
    state = _rename(vae.state_dict(), pairs, {"conv_shortcut": "nin_shortcut"}, prefix)
    for key, value in state.items():  # LDM's VAE attention uses 1x1 convolutions
        if ".mid.attn_1." in key and key.endswith("weight") and not key.endswith("norm.weight"):
            state[key] = value.reshape(*value.shape, 1, 1)
    return state


def _text_model_state(text_encoder) -> dict:
    # transformers >= 5.6 keeps CLIPTextModel's weights without the "text_model." level; the LDM layout has it
    return {k if k.startswith(("text_model.", "text_projection")) else f"text_model.{k}": v
            for k, v in text_encoder.state_dict().items()}


def clip_to_ldm(text_encoder, prefix: str) -> dict:
    """OpenAI CLIP (SD 1.x, SDXL's first encoder): the transformers layout under a prefix."""
    return {prefix + k: v for k, v in _text_model_state(text_encoder).items() if not k.endswith("position_ids")}


def open_clip_to_ldm(text_encoder, prefix: str) -> dict:
    """OpenCLIP (SD 2.x, SDXL's second encoder): fused qkv projections, open_clip names."""
    names = [("text_model.embeddings.token_embedding.weight", "token_embedding.weight"),
             ("text_model.embeddings.position_embedding.weight", "positional_embedding"),
             ("text_model.final_layer_norm.", "ln_final."), ("text_model.encoder.layers.", "transformer.resblocks."),
             (".layer_norm1.", ".ln_1."), (".layer_norm2.", ".ln_2."), (".mlp.fc1.", ".mlp.c_fc."),
             (".mlp.fc2.", ".mlp.c_proj."), (".self_attn.out_proj.", ".attn.out_proj.")]
    out, qkv = {}, {}
    for key, value in _text_model_state(text_encoder).items():
        if key.endswith("position_ids"):
            continue
        if key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T
            continue
        for hf, ldm in names:
            key = key.replace(hf, ldm)
        if ".self_attn." in key:  # q_proj/k_proj/v_proj .weight/.bias -> attn.in_proj_weight/_bias
            layer, proj, kind = key.rsplit(".", 2)
            qkv.setdefault(f"{layer.replace('.self_attn', '.attn')}.in_proj_{kind}", {})[proj] = value
            continue
        out[prefix + key] = value
    for key, parts in qkv.items():
        out[prefix + key] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]])
    return out


def to_ldm(unet, vae, text_encoder, text_encoder_2=None) -> dict:
    """A Stable Diffusion pipeline's models as one LDM-layout state dict (SD 1.x, 2.x, SDXL)."""
    state = {**unet_to_ldm(unet), **vae_to_ldm(vae)}
    if text_encoder_2 is not None:  # SDXL
        state.update(clip_to_ldm(text_encoder, "conditioner.embedders.0.transformer."))
        state.update(open_clip_to_ldm(text_encoder_2, "conditioner.embedders.1.model."))
    elif unet.config.cross_attention_dim == 1024:  # SD 2.x: OpenCLIP ViT-H
        state.update(open_clip_to_ldm(text_encoder, "cond_stage_model.model."))
    else:
        state.update(clip_to_ldm(text_encoder, "cond_stage_model.transformer."))
    return state
