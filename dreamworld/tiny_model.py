"""Build DreamWorld's embedded default model: a tiny SD-1.x-shaped diffusers pipeline.

    python -m dreamworld.tiny_model [OUT_DIR]   # default models/Stable-diffusion/dreamworld-tiny

Same layout and interfaces as Stable Diffusion 1.x (CLIP text encoder with the real CLIP
tokenizer, 4-channel latents, 8x VAE, epsilon-prediction UNet, PNDM scheduler), but small
enough to run on a CPU in seconds at its native 128x128. The weights are random, fixed by
the seed: building twice gives byte-identical files.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "models" / "Stable-diffusion" / "dreamworld-tiny"
SEED = 0

UNET = dict(
    sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
    block_out_channels=(32, 64), norm_num_groups=8,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=64, attention_head_dim=8,
)
VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
    block_out_channels=(16, 32, 32, 32), norm_num_groups=8,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    sample_size=128, scaling_factor=0.18215,
)
TEXT = dict(
    vocab_size=49408, hidden_size=64, intermediate_size=128, projection_dim=64,
    num_hidden_layers=4, num_attention_heads=4, max_position_embeddings=77,
    hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
)
SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
)


def build(out_dir=DEFAULT_OUT) -> Path:
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from safetensors.torch import load_file, save_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from .tokenizer import write_clip_tokenizer

    def seeded(make):
        torch.manual_seed(SEED)  # each part is independent of the others' construction order
        return make()

    unet = seeded(lambda: UNet2DConditionModel(**UNET))
    vae = seeded(lambda: AutoencoderKL(**VAE))
    text_encoder = seeded(lambda: CLIPTextModel(CLIPTextConfig(**TEXT)))
    out = Path(out_dir)
    tokenizer_dir = write_clip_tokenizer(out / "tokenizer")
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir), unet=unet,
        scheduler=PNDMScheduler(**SCHEDULER),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    # transformers 5 saves a from-scratch CLIPTextModel without the "text_model." key prefix that
    # SD 1.x text encoders (and transformers 4) have; write the classic keys (5 loads both).
    te_file = out / "text_encoder" / "model.safetensors"
    save_file({f"text_model.{k}": v for k, v in load_file(te_file).items()}, te_file, metadata={"format": "pt"})
    # transformers 5 saves only tokenizer.json plus a config with load-time keys (is_local, ...);
    # keep the classic SD 1.x files (vocab.json, merges.txt) that every loader reads instead.
    shutil.rmtree(tokenizer_dir)
    write_clip_tokenizer(tokenizer_dir)
    return out


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    out = build(argv[0] if argv else DEFAULT_OUT)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
