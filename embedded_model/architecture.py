"""The architecture of DreamWorld's embedded model, and how a pipeline folder of it is saved.

    python -m embedded_model.architecture OUT_DIR   # the same architecture with random weights (seed 0)

Same layout and interfaces as Stable Diffusion 1.x (CLIP text encoder with the real CLIP
tokenizer, 4-channel latents, 8x VAE, epsilon-prediction UNet, PNDM scheduler with the SD 1.x
schedule), but small enough to run on a CPU in well under a second at its native 128x128.

The shipped weights in `models/Stable-diffusion/dreamworld-tiny` are trained by
`python -m embedded_model.train` (see docs/embedded-model.md); both that script and `build()`
here write their folder with `save_pipeline()`. Building random weights twice gives
byte-identical files.
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
    block_out_channels=(64, 128, 192), norm_num_groups=16,
    # attention at 8x8 and 4x4 (and the 4x4 middle); plain ResNet blocks at 16x16 keep it fast
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=128, attention_head_dim=4,  # (diffusers' name for the number of heads)
)
VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
    # 32 channels at full resolution (4 per GroupNorm group): with 16, flat object colours were lost
    block_out_channels=(32, 64, 64, 64), norm_num_groups=8,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    sample_size=128, scaling_factor=0.18215,
)
TEXT = dict(
    vocab_size=49408, hidden_size=128, intermediate_size=512, projection_dim=128,
    num_hidden_layers=4, num_attention_heads=4, max_position_embeddings=77,
    hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
)
# The SD 1.x noise schedule (training and inference use it; the app swaps samplers over it).
SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                prediction_type="epsilon")
SCHEDULER = dict(**SCHEDULE, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1)


def new_parts():
    """A fresh (unet, vae, text_encoder) of the embedded architecture, each seeded with SEED."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    def seeded(make):
        torch.manual_seed(SEED)  # each part is independent of the others' construction order
        return make()

    return (seeded(lambda: UNet2DConditionModel(**UNET)), seeded(lambda: AutoencoderKL(**VAE)),
            seeded(lambda: CLIPTextModel(CLIPTextConfig(**TEXT))))


def save_pipeline(out_dir, unet, vae, text_encoder, dtype: torch.dtype | None = None) -> Path:
    """Write an SD 1.x diffusers folder (safetensors; PNDM scheduler; the CLIP tokenizer files)
    from the three models; dtype (e.g. torch.float16) converts the saved weights."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from safetensors.torch import load_file, save_file
    from transformers import CLIPTokenizer

    from dreamworld.tokenizer import write_clip_tokenizer

    out = Path(out_dir)
    tokenizer_dir = write_clip_tokenizer(out / "tokenizer")
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir), unet=unet,
        scheduler=PNDMScheduler(**SCHEDULER),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    if dtype is not None:
        pipe = pipe.to(dtype=dtype)
    pipe.save_pretrained(out, safe_serialization=True)
    # transformers 5 saves a from-scratch CLIPTextModel without the "text_model." key prefix that
    # SD 1.x text encoders (and transformers 4) have; write the classic keys (5 loads both).
    te_file = out / "text_encoder" / "model.safetensors"
    tensors = load_file(te_file)
    save_file({k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in tensors.items()},
              te_file, metadata={"format": "pt"})
    # transformers 5 saves only tokenizer.json plus a config with load-time keys (is_local, ...);
    # keep the classic SD 1.x files (vocab.json, merges.txt) that every loader reads instead.
    shutil.rmtree(tokenizer_dir)
    write_clip_tokenizer(tokenizer_dir)
    return out


def build(out_dir) -> Path:
    """The embedded architecture with random weights (fixed by SEED), saved as a pipeline folder."""
    unet, vae, text_encoder = new_parts()
    return save_pipeline(out_dir, unet, vae, text_encoder)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        sys.exit("usage: python -m embedded_model.architecture OUT_DIR   (random weights; the shipped model is "
                 "trained by python -m embedded_model.train)")
    if Path(argv[0]).resolve() == DEFAULT_OUT.resolve():
        sys.exit(f"refusing to overwrite the trained embedded model at {DEFAULT_OUT} with random weights")
    out = build(argv[0])
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
