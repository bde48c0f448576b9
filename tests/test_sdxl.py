"""SDXL models as users bring them: LoRAs, embeddings and A1111 prompt syntax on an SDXL-architecture model
(two text encoders, pooled features, size conditioning) of random weights, where pictures do not matter but
their differences do."""
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from dreamworld import single_file
from dreamworld.errors import DreamWorldError
from dreamworld.settings import Settings
from dreamworld.world import DreamWorld

from .conftest import PROJECT_DIR, pixels

SIZE = dict(width=64, height=64, steps=2, seed=1, model="tiny-sdxl", scheduler="Euler", precision="fp32")
LORA_KEYS = {  # kohya's SDXL names (SGM blocks, lora_te1_/lora_te2_), as SDXL LoRAs from Civitai have them
    "lora_unet_input_blocks_3_1_transformer_blocks_0_attn2_to_k": (64, 64),
    "lora_unet_input_blocks_3_1_transformer_blocks_0_attn1_to_q": (64, 64),
    **{f"lora_te{n}_text_model_encoder_layers_0_self_attn_{p}_proj": (32, 32)
       for n in (1, 2) for p in ("q", "k", "v", "out")},
}


def tiny_sdxl(folder):
    """An SDXL pipeline at the size of diffusers' own SDXL tests, with the real SDXL tokenizers."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
    torch.manual_seed(0)
    configs = single_file.config_dir("sdxl")
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64, norm_num_groups=1)
    vae = AutoencoderKL(block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        sample_size=64)
    text = dict(bos_token_id=49406, eos_token_id=49407, hidden_size=32, intermediate_size=37, num_attention_heads=4,
                num_hidden_layers=3, vocab_size=49408, projection_dim=32, hidden_act="gelu")
    pipe = StableDiffusionXLPipeline(
        vae=vae, unet=unet, scheduler=EulerDiscreteScheduler.from_pretrained(configs, subfolder="scheduler"),
        text_encoder=CLIPTextModel(CLIPTextConfig(**text, pad_token_id=49407)),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**text, pad_token_id=0)),
        tokenizer=CLIPTokenizer.from_pretrained(configs, subfolder="tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(configs, subfolder="tokenizer_2"))
    pipe.save_pretrained(folder, safe_serialization=True)
    return pipe


def xl_controlnet(unet_folder, folder):
    """An SDXL ControlNet made from the tiny UNet (diffusers' from_unet), its zero convolutions given random
    weights so that it acts."""
    from diffusers import ControlNetModel, UNet2DConditionModel
    net = ControlNetModel.from_unet(UNet2DConditionModel.from_pretrained(unet_folder),
                                    conditioning_embedding_out_channels=(16, 32))  # the tiny VAE scales by 2
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for block in [*net.controlnet_down_blocks, net.controlnet_mid_block]:
            block.weight.copy_(torch.randn(block.weight.shape, generator=generator) * 0.2)
    net.save_pretrained(folder, safe_serialization=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdxl")
    models = root / "models"
    tiny_sdxl(models / "Stable-diffusion" / "tiny-sdxl")
    (models / "Lora").mkdir()
    (models / "embeddings").mkdir()
    generator = torch.Generator().manual_seed(2)
    lora = {}
    for key, (width_in, width_out) in LORA_KEYS.items():
        lora[f"{key}.lora_down.weight"] = torch.randn(4, width_in, generator=generator) * 0.5
        lora[f"{key}.lora_up.weight"] = torch.randn(width_out, 4, generator=generator) * 0.5
        lora[f"{key}.alpha"] = torch.tensor(4.0)
    save_file(lora, models / "Lora" / "xl.safetensors", metadata={"ss_base_model_version": "sdxl_base_v1-0"})
    save_file({"clip_l": torch.randn(2, 32, generator=generator), "clip_g": torch.randn(2, 32, generator=generator)},
              models / "embeddings" / "xlword.safetensors")
    shutil.copy(PROJECT_DIR / "models" / "Lora" / "outline.safetensors", models / "Lora")
    shutil.copy(PROJECT_DIR / "models" / "embeddings" / "dwsun.safetensors", models / "embeddings")
    xl_controlnet(models / "Stable-diffusion" / "tiny-sdxl" / "unet", models / "ControlNet" / "xl-edges")
    (root / "creations").mkdir()
    return DreamWorld(settings=Settings(), models_dir=models, creations_dir=root / "creations")


def draw(world, prompt, **fields):
    result = world.create(prompt=prompt, **{**SIZE, **fields})
    return pixels(result.paths[0]), result.parameters[0]


def test_an_sdxl_lora_changes_the_picture_weight_0_is_none_and_a_switch_reloads_nothing(world, caplog):
    plain, _ = draw(world, "a red circle")
    caplog.set_level("INFO", logger="dreamworld")
    caplog.clear()
    lora, text = draw(world, "a red circle <lora:xl:1>")
    half, _ = draw(world, "a red circle <lora:xl:0.5>")
    off, _ = draw(world, "a red circle <lora:xl:0>")
    assert not np.array_equal(lora, plain) and not np.array_equal(half, lora)
    assert np.array_equal(off, plain)
    assert 'Lora hashes: "xl: ' in text and "<lora:xl:1>" in text
    assert not [r for r in caplog.records if r.getMessage().startswith("compile:")]


def test_an_sd_lora_or_embedding_is_refused_on_an_sdxl_model_by_name(world):
    with pytest.raises(DreamWorldError, match="outline"):
        world.create(prompt="a red circle <lora:outline:1>", **SIZE)
    with pytest.raises(DreamWorldError, match="dwsun"):
        world.create(prompt="a dwsun", **SIZE)


def test_an_sdxl_embedding_is_used_by_its_word_and_recorded(world):
    plain, _ = draw(world, "a red circle")
    word, text = draw(world, "a red xlword circle")
    assert not np.array_equal(word, plain)
    assert 'TI hashes: "xlword: ' in text


def test_a1111_prompt_syntax_and_long_prompts_on_sdxl(world):
    plain, _ = draw(world, "a red circle")
    assert np.array_equal(draw(world, "a (red:1.0) circle")[0], plain)
    assert not np.array_equal(draw(world, "a (red:1.5) circle")[0], plain)
    assert not np.array_equal(draw(world, "a red BREAK circle")[0], plain)
    long = ", ".join(["a red circle on a blue background"] * 12)  # about 96 tokens
    tail_changed = long + ", green"
    assert not np.array_equal(draw(world, long)[0], draw(world, tail_changed)[0])


def test_a_plain_prompt_gives_the_features_of_diffusers_own_sdxl_encoding(world):
    from dreamworld.backends import torch_text
    backend = world.compile(world.request(**SIZE, prompt="x"))
    pipe = backend._pipes["txt2img"]
    embeddings = {"clip_l": {}, "clip_g": {}}
    for negative in ("ugly", ""):
        ours = torch_text.sdxl_conditioning(pipe, [("a red circle", 1.0)], negative, 1, embeddings)
        with torch.inference_mode():
            theirs = pipe.encode_prompt("a red circle", negative_prompt=negative or None, device="cpu")
        names = ["prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"]
        mine = [ours.context[1:], ours.context[:1], ours.pooled[1:], ours.pooled[:1]]
        for name, got, expected in zip(names, mine, theirs):
            torch.testing.assert_close(torch.from_numpy(got), expected.cpu(), atol=1e-5, rtol=1e-4,
                                       msg=lambda m: f"{name} ({negative!r}): {m}")


def test_sdxl_pictures_are_those_of_diffusers_own_sdxl_pipeline(world):
    """SDXL runs through the stages (pooled features and size conditioning added to each UNet call): a
    plain prompt gives diffusers' StableDiffusionXLPipeline's pixels."""
    from diffusers import StableDiffusionXLPipeline

    from dreamworld.backends import samplers
    ours, _ = draw(world, "a red circle", negative_prompt="ugly", guidance_scale=5, width=64, height=96)
    pipe = StableDiffusionXLPipeline.from_pretrained(world.model_dirs[0] / "Stable-diffusion" / "tiny-sdxl")
    pipe.scheduler = samplers.make("Euler", pipe.scheduler.config, 1)
    theirs = pipe("a red circle", negative_prompt="ugly", guidance_scale=5, num_inference_steps=2, width=64,
                  height=96, generator=torch.Generator("cpu").manual_seed(1)).images[0]
    assert np.abs(ours.astype(int) - np.asarray(theirs).astype(int)).max() <= 1


def test_sdxl_by_parts_gives_generates_pixels_and_keeps_the_pooled_embeddings(world, tmp_path):
    import tifffile
    fields = dict(prompt="a red circle", negative_prompt="ugly", model="tiny-sdxl", precision="fp32")
    text = world.parts.text(tmp_path / "xl", **fields)
    with tifffile.TiffFile(text) as tif:
        assert [s.shape for s in tif.series] == [(2, 77, 64), (2, 32)]  # per token (clip_l + clip_g), pooled
    noise = world.parts.noise(tmp_path / "xl", seed=1, width=64, height=64, model="tiny-sdxl", precision="fp32")
    state = world.parts.diffuse(noise, text, tmp_path / "xl", steps=2, scheduler="Euler", precision="fp32")
    png, _ = world.parts.decode(state, tmp_path / "xl", precision="fp32")
    plain, _ = draw(world, "a red circle", negative_prompt="ugly")
    assert np.array_equal(pixels(png), plain)


def test_an_sd_text_file_is_refused_by_an_sdxl_model_in_one_sentence(world, tmp_path):
    from dreamworld.parts.tiff import PartsError
    sd_text = tmp_path / "sd_text.tiff"
    import tifffile
    tifffile.imwrite(sd_text, np.zeros((2, 77, 768), np.float32))  # StableDiffusion-By-Parts' layout
    noise = world.parts.noise(tmp_path / "xl", seed=1, width=64, height=64, model="tiny-sdxl")
    with pytest.raises(PartsError, match="768-wide"):
        world.parts.diffuse(noise, sd_text, tmp_path / "out", steps=2, model="tiny-sdxl")
    assert not (tmp_path / "out_state2.tiff").exists()


def test_an_sdxl_controlnet_guides_an_sdxl_model(world, tmp_path):
    from PIL import Image
    square = np.zeros((64, 64, 3), np.uint8)
    square[16:48, 8:40] = 255
    Image.fromarray(square).save(tmp_path / "square.png")
    unit = dict(model="xl-edges", image=str(tmp_path / "square.png"))
    plain, _ = draw(world, "a red circle")
    guided, text = draw(world, "a red circle", controlnet=[unit])
    off, _ = draw(world, "a red circle", controlnet=[{**unit, "weight": 0}])
    assert not np.array_equal(guided, plain) and np.array_equal(off, plain)
    assert 'ControlNet 0: "Module: none, Model: xl-edges' in text


def test_sdxl_img2img_inpaint_ngms_and_the_latent_hires_fix(world, tmp_path):
    from PIL import Image
    plain, _ = draw(world, "a red circle")
    Image.fromarray(plain.astype(np.uint8)).save(tmp_path / "in.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255  # repaint the right half
    Image.fromarray(mask).save(tmp_path / "mask.png")
    changed, _ = draw(world, "a blue square", mode="img2img", init_image=str(tmp_path / "in.png"), strength=0.6)
    assert changed.shape == plain.shape and not np.array_equal(changed, plain)
    painted, _ = draw(world, "a blue square", mode="inpaint", init_image=str(tmp_path / "in.png"),
                      mask=str(tmp_path / "mask.png"), mask_blur=0, strength=1.0)
    assert np.array_equal(painted[:, :28], plain[:, :28]) and not np.array_equal(painted[:, 36:], plain[:, 36:])
    assert not np.array_equal(draw(world, "a red circle", ngms=5, steps=4)[0], draw(world, "a red circle", steps=4)[0])
    hires, text = draw(world, "a red circle", hires_scale=1.5, hires_upscaler="Latent", hires_denoising=0.5)
    assert hires.shape == (96, 96, 3) and "Hires upscaler: Latent" in text
