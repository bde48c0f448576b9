"""Single-file checkpoints (.safetensors / .ckpt) in models/Stable-diffusion: loaded offline through the
bundled configs, or refused with one sentence naming the file."""
import json
import os
import re

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders import single_file_utils as su
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

import app
from dreamworld import DreamWorld, single_file
from dreamworld.backends.base import BackendError, Job
from dreamworld.models import ModelError
from dreamworld.settings import Settings

from . import ldm_layout
from .conftest import TINY, files_in

FAMILIES = list(single_file.FAMILIES)


@pytest.fixture(scope="module", autouse=True)
def config_cache(tmp_path_factory):
    """The generated config folders go to a fresh cache, not the user's."""
    saved = single_file.CACHE_DIR
    single_file.CACHE_DIR = tmp_path_factory.mktemp("cache") / "configs"
    yield single_file.CACHE_DIR
    single_file.CACHE_DIR = saved


def meta_models(family: str) -> dict:
    """The family's diffusers models at full size on the meta device (no memory, no weights)."""
    folder = single_file.config_dir(family)
    with torch.device("meta"):
        models = {"unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder, subfolder="unet")),
                  "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(folder, subfolder="vae")),
                  "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(folder, subfolder="text_encoder"))}
        if (folder / "text_encoder_2").is_dir():
            models["text_encoder_2"] = CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(folder, subfolder="text_encoder_2"))
    return models


def shapes(state: dict) -> dict:
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.fixture
def dirs(tmp_path):
    (tmp_path / "models" / "Stable-diffusion").mkdir(parents=True)
    (tmp_path / "models" / "VAE").mkdir()
    (tmp_path / "creations").mkdir()
    return tmp_path


def make_world(dirs) -> DreamWorld:
    return DreamWorld(settings=Settings(), models_dir=dirs / "models", creations_dir=dirs / "creations")


def run_cli(dirs, capsys, *args) -> tuple[int, str, str]:
    (dirs / "settings.json").write_text("{}")  # a settings file the user names must exist
    code = app.main(["generate", "--prompt", "a fox", "--steps", "2", "--width", "64", "--height", "64",
                     "--settings", str(dirs / "settings.json"), "--models-dir", str(dirs / "models"),
                     "--creations-dir", str(dirs / "creations"), *args])
    out, err = capsys.readouterr()
    return code, out, err


# ----- the bundled configs ------------------------------------------------------------------------

def _ldm(unet: dict, scale_factor=0.18215, **params) -> dict:
    """An original LDM inference config (the parts diffusers reads)."""
    ddconfig = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128,
                    ch_mult=[1, 2, 4, 4], num_res_blocks=2, attn_resolutions=[], dropout=0.0)
    unet = {**dict(in_channels=4, out_channels=4, model_channels=320, num_res_blocks=2, use_spatial_transformer=True,
                   transformer_depth=1, legacy=False), **unet}
    return {"model": {"params": dict(linear_start=0.00085, linear_end=0.0120, timesteps=1000,
                                     scale_factor=scale_factor, unet_config={"params": unet},
                                     first_stage_config={"params": {"embed_dim": 4, "ddconfig": ddconfig}},
                                     **params)}}


# Transcribed from CompVis/stable-diffusion configs/stable-diffusion/v1-inference.yaml, runwayml/stable-diffusion
# .../v1-inpainting-inference.yaml, Stability-AI/stablediffusion .../v2-inference-v.yaml, v2-inference.yaml,
# v2-inpainting-inference.yaml and Stability-AI/generative-models configs/inference/sd_xl_base.yaml.
SD1_UNET = dict(attention_resolutions=[4, 2, 1], channel_mult=[1, 2, 4, 4], num_heads=8, context_dim=768)
SD2_UNET = dict(attention_resolutions=[4, 2, 1], channel_mult=[1, 2, 4, 4], num_head_channels=64,
                use_linear_in_transformer=True, context_dim=1024)
LDM_CONFIGS = {
    "sd15": _ldm(SD1_UNET),
    "sd15-inpainting": _ldm({**SD1_UNET, "in_channels": 9}),
    "sd21": _ldm(SD2_UNET, parameterization="v"),
    "sd2-base": _ldm(SD2_UNET),
    "sd2-inpainting": _ldm({**SD2_UNET, "in_channels": 9}),
    "sdxl": _ldm(dict(adm_in_channels=2816, num_classes="sequential", attention_resolutions=[4, 2],
                      channel_mult=[1, 2, 4], num_head_channels=64, use_linear_in_transformer=True,
                      transformer_depth=[1, 2, 10], context_dim=2048), scale_factor=0.13025),
}
NATIVE_SIZE = {"sd15": 512, "sd15-inpainting": 512, "sd21": 768, "sd2-base": 512, "sd2-inpainting": 512,
               "sdxl": 1024}
# (hidden size, layers, heads, MLP size, activation): OpenAI CLIP ViT-L/14; OpenCLIP ViT-H/14 without its
# last layer (SD 2 uses the penultimate one); OpenCLIP ViT-bigG/14.
CLIP_L, OPEN_CLIP_H, OPEN_CLIP_BIGG = (768, 12, 12, 3072, "quick_gelu"), (1024, 23, 16, 4096, "gelu"), \
    (1280, 32, 20, 5120, "gelu")
TEXT_ENCODERS = {"sd15": [CLIP_L], "sd15-inpainting": [CLIP_L], "sd21": [OPEN_CLIP_H], "sd2-base": [OPEN_CLIP_H],
                 "sd2-inpainting": [OPEN_CLIP_H], "sdxl": [CLIP_L, OPEN_CLIP_BIGG]}


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


@pytest.mark.parametrize("family", FAMILIES)
def test_configs_are_what_diffusers_derives_from_the_original_ldm_config(family):
    folder = single_file.config_dir(family)
    models = meta_models(family)
    layout = single_file._Shapes(shapes(ldm_layout.to_ldm(**models)))
    ldm = LDM_CONFIGS[family]
    size = NATIVE_SIZE[family]
    assert su.set_image_size(layout) == (768 if family == "sd2-base" else size)  # diffusers' own default

    unet = su.create_unet_diffusers_config_from_ldm(ldm, layout) | {"sample_size": size // 8}
    vae = su.create_vae_diffusers_config_from_ldm(ldm, layout) | {"sample_size": size}
    for expected, model in ((unet, models["unet"]), (vae, models["vae"])):
        for key, value in expected.items():
            assert _plain(model.config[key]) == _plain(value), (family, key)

    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    params = ldm["model"]["params"]
    assert (scheduler["beta_start"], scheduler["beta_end"], scheduler["num_train_timesteps"]) == (
        params["linear_start"], params["linear_end"], params["timesteps"])
    assert scheduler["prediction_type"] == ("v_prediction" if params.get("parameterization") == "v" else "epsilon")
    for key in ("beta_schedule", "set_alpha_to_one", "skip_prk_steps", "steps_offset", "timestep_spacing"):
        assert scheduler[key] == su.SCHEDULER_DEFAULT_CONFIG[key], (family, key)
    assert scheduler["clip_sample"] is False

    encoders = [models["text_encoder"], models.get("text_encoder_2")]
    for model, (hidden, layers, heads, mlp, act) in zip(encoders, TEXT_ENCODERS[family]):
        c = model.config
        assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size, c.hidden_act,
                c.vocab_size, c.max_position_embeddings) == (hidden, layers, heads, mlp, act, 49408, 77)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_detected_from_its_full_layout_and_the_layout_converts_back_exactly(family, tmp_path):
    models = meta_models(family)
    state = ldm_layout.to_ldm(**models)

    # The layout is exactly what diffusers' own key conversion turns into each model's weights.
    converted = {
        "unet": su.convert_ldm_unet_checkpoint(dict(state), dict(models["unet"].config)),
        "vae": su.convert_ldm_vae_checkpoint(dict(state), dict(models["vae"].config)),
    }
    if family == "sdxl":
        converted["text_encoder"] = su.convert_ldm_clip_checkpoint(state)
        converted["text_encoder_2"] = su.convert_open_clip_checkpoint(
            models["text_encoder_2"], state, prefix="conditioner.embedders.1.model.")
    elif family.startswith("sd2"):
        converted["text_encoder"] = su.convert_open_clip_checkpoint(models["text_encoder"], state)
    else:
        converted["text_encoder"] = su.convert_ldm_clip_checkpoint(state)
    for name, weights in converted.items():
        if not hasattr(models[name], "text_model") and name.startswith("text_encoder"):
            weights = {k.removeprefix("text_model."): v for k, v in weights.items()}  # transformers >= 5.6
        assert shapes(weights) == shapes(models[name].state_dict()), name

    # Detection from the keys and shapes alone; SD 2 512 and 768 differ only by the prediction type.
    assert single_file.detect_family(shapes(state), "epsilon" if family == "sd2-base" else None) == family
    if family == "sd2-base":
        assert single_file.detect_family(shapes(state)) == "sd21"

    # The same from a .ckpt file (meta tensors: the keys and shapes, no data), SD 2.0 base's global step.
    path = tmp_path / f"{family}.ckpt"
    torch.save({"state_dict": state, **({"global_step": 875000} if family == "sd2-base" else {})}, path)
    assert single_file.checkpoint_family(path) == family
    pipeline_class, kwargs = single_file.single_file_pipeline(path)
    assert pipeline_class.__name__ == single_file.FAMILIES[family].pipeline
    assert kwargs["local_files_only"] is True
    assert single_file.config_dir(family) == single_file.CACHE_DIR / family
    for folder, pad in single_file.FAMILIES[family].tokenizers.items():
        assert (single_file.CACHE_DIR / family / folder / "vocab.json").is_file()


def test_prediction_type_hints_of_sd2_files(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(1)}, plain)
    assert single_file.read_checkpoint(plain)[1] is None
    tagged = tmp_path / "tagged.safetensors"
    save_file({"w": torch.zeros(1)}, tagged, metadata={"modelspec.architecture": "stable-diffusion-v2-512"})
    assert single_file.read_checkpoint(tagged)[1] == "epsilon"
    (tmp_path / "plain.yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert single_file.read_checkpoint(plain)[1] == "v_prediction"
    (tmp_path / "plain.yaml").write_text("model:\n  params:\n    linear_start: 0.00085\n")
    assert single_file.read_checkpoint(plain)[1] == "epsilon"


def test_incomplete_foreign_and_unsupported_layouts_are_refused_with_a_reason():
    sd15 = shapes(ldm_layout.to_ldm(**meta_models("sd15")))
    cases = [
        ({}, "x is not a Stable Diffusion checkpoint: it holds no UNet weights"),
        ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320)}, "looks like a LoRA"),
        ({k.removeprefix("first_stage_model."): v for k, v in sd15.items() if k.startswith("first_stage_model.")},
         "looks like a VAE: those go in models/VAE"),
        ({k: v for k, v in sd15.items() if not k.startswith("first_stage_model.")}, r"x \(SD 1.x\) holds no VAE"),
        ({k: v for k, v in sd15.items() if not k.startswith("cond_stage_model.")},
         r"x \(SD 1.x\) does not hold the text encoder"),
        ({k: v for k, v in sd15.items() if ".output_blocks.11." not in k}, "a UNet of a layout DreamWorld does not"),
        ({**sd15, "conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias": (1280,)},
         "x is an SDXL refiner, which DreamWorld cannot load"),
        ({**sd15, "model.diffusion_model.input_blocks.10.0.skip_connection.bias": (1,)}, "x4 upscaler"),
    ]
    for layout, message in cases:
        with pytest.raises(ModelError, match=message):
            single_file.detect_family(layout, name="x")


# ----- refusing files -----------------------------------------------------------------------------

class Armed:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def test_a_ckpt_whose_unpickling_would_run_code_is_refused_and_never_run(dirs, capsys):
    marker = dirs / "pwned"
    evil = dirs / "models" / "Stable-diffusion" / "evil.ckpt"
    torch.save({"state_dict": {single_file.UNET_KEY: torch.zeros(320, 4, 3, 3)}, "callbacks": Armed(marker)}, evil)
    refused = r"evil.ckpt was refused: besides tensors it holds pickled Python objects \(exec\)"

    with pytest.raises(ModelError, match=refused):
        single_file.read_checkpoint(evil)
    with pytest.raises(BackendError, match=refused):
        make_world(dirs).create(prompt="a fox", model="evil", steps=2, width=64, height=64)
    code, out, err = run_cli(dirs, capsys, "--model", "evil")
    assert (code, out) == (2, "") and err.count("\n") == 1 and err.startswith("error: evil.ckpt was refused")
    vae = dirs / "models" / "VAE" / "evil-vae.ckpt"
    vae.write_bytes(evil.read_bytes())
    with pytest.raises(ModelError, match="evil-vae.ckpt was refused"):
        single_file.load_vae(vae, torch.float32)
    assert not marker.exists() and files_in(dirs / "creations") == set()

    torch.load(evil, weights_only=False)  # the control: the file really is armed
    assert marker.exists()


def _lora(path):
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320)}, path)


@pytest.mark.parametrize("name, make, message", [
    ("noise.safetensors", lambda p: p.write_bytes(os.urandom(4096)), "noise.safetensors is not a readable "
                                                                      r".safetensors file \("),
    ("pointer.safetensors", lambda p: p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\n"),
     "pointer.safetensors is not a readable .safetensors file \\(it is a Git LFS pointer"),
    ("empty.safetensors", lambda p: p.write_bytes(b""), "empty.safetensors is not a readable .safetensors file"),
    ("other.safetensors", lambda p: save_file({"weight": torch.zeros(4, 4)}, p),
     "other.safetensors is not a Stable Diffusion checkpoint: it holds no UNet weights$"),
    ("style.safetensors", _lora, r"style.safetensors is not a Stable Diffusion checkpoint: it holds no UNet weights "
                                 r"\(it looks like a LoRA: those go in models/Lora\)"),
    ("noise.ckpt", lambda p: p.write_bytes(os.urandom(4096)), "noise.ckpt is not a readable PyTorch checkpoint"),
])
def test_a_file_that_is_no_checkpoint_gets_one_sentence_naming_it(dirs, capsys, name, make, message):
    make(dirs / "models" / "Stable-diffusion" / name)
    model = name.rsplit(".", 1)[0]
    with pytest.raises(BackendError, match=message) as error:
        make_world(dirs).create(prompt="a fox", model=model, steps=2, width=64, height=64)
    assert "\n" not in str(error.value)
    code, out, err = run_cli(dirs, capsys, "--model", model)
    assert (code, out) == (2, "") and err.count("\n") == 1 and err.startswith(f"error: {name} ")
    assert "Traceback" not in err and files_in(dirs / "creations") == set()


def test_the_embedded_model_in_single_file_layout_is_refused_not_faked(dirs):
    """The embedded model is far smaller than SD 1.x: no bundled config fits it, so an export of it to the
    LDM layout is reported as an unknown layout rather than forced through the SD 1.5 config."""
    from diffusers import StableDiffusionPipeline

    tiny = StableDiffusionPipeline.from_pretrained(TINY, local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
    state = ldm_layout.to_ldm(tiny.unet, tiny.vae, tiny.text_encoder)
    save_file({k: v.contiguous() for k, v in state.items()}, dirs / "models" / "Stable-diffusion" / "tiny.safetensors")
    with pytest.raises(BackendError, match="tiny.safetensors has a UNet of a layout DreamWorld does not know"):
        make_world(dirs).create(prompt="a fox", model="tiny", steps=2, width=64, height=64)


def test_an_inpainting_model_refuses_other_modes_with_a_sentence():
    from dreamworld.backends.torch_backend import TorchBackend

    backend = TorchBackend.__new__(TorchBackend)  # only the mode check runs: no model is needed
    backend.inpainting_only, backend.model_name = True, "sd-inpainting"
    job = Job(DreamWorld(settings=Settings()).request(prompt="a fox", mode="txt2img"), seed=1)
    with pytest.raises(BackendError, match="model 'sd-inpainting' is an inpainting model: it can only do mode "
                                           "inpaint, not txt2img"):
        backend.generate(job)


# ----- loading real-shaped files ------------------------------------------------------------------

def random_weights(models: dict, seed: int = 0) -> dict:
    """Materialise meta models in fp16 with small random weights (distinct, so misplaced ones show)."""
    generator = torch.Generator().manual_seed(seed)
    for name, model in models.items():
        models[name] = model = model.to(torch.float16).to_empty(device="cpu")
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.02, generator=generator)
    return models


def assert_same_weights(loaded, original):
    loaded, original = loaded.state_dict(), original.state_dict()
    assert loaded.keys() == original.keys()
    different = [k for k, v in original.items() if not torch.equal(loaded[k].to(v.dtype), v)]
    assert different == []


def test_a_single_file_vae_in_models_vae_replaces_the_models_own(dirs):
    """An A1111-style VAE file (SD's VAE, no key prefix) with the embedded model, whose latents it shares."""
    vae = random_weights({"vae": meta_models("sd15")["vae"]})["vae"]
    save_file({k: v.contiguous() for k, v in ldm_layout.vae_to_ldm(vae, prefix="").items()},
              dirs / "models" / "VAE" / "sd-vae.safetensors")
    world = make_world(dirs)
    result = world.create(prompt="a red circle", vae="sd-vae", steps=2, width=64, height=64, seed=3,
                          precision="fp32")
    assert Image.open(result.paths[0]).size == (64, 64)
    loaded = world.backend._pipes["txt2img"].vae
    assert loaded.config.scaling_factor == 0.18215 and _plain(loaded.config.block_out_channels) == [128, 256, 512, 512]
    assert_same_weights(loaded, vae)

    incomplete = ldm_layout.vae_to_ldm(vae, prefix="")
    del incomplete["decoder.conv_out.bias"]
    save_file({k: v.contiguous() for k, v in incomplete.items()}, dirs / "models" / "VAE" / "cut.safetensors")
    with pytest.raises(BackendError, match="^cut.safetensors is not a complete VAE: some of its weights are missing$"):
        world.create(prompt="a red circle", vae="cut", steps=2, width=64, height=64, seed=3)


@pytest.fixture(scope="module")
def sd15():
    """SD 1.5's UNet, VAE and CLIP text encoder at full size with random fp16 weights (2.1 GB), and the
    single-file state dict of them, with the extra entries real SD 1.5 files carry."""
    models = random_weights(meta_models("sd15"))
    state = {k: v.contiguous() for k, v in ldm_layout.to_ldm(**models).items()}
    state["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    state["alphas_cumprod"] = torch.linspace(0.9991, 0.0047, 1000)
    assert len(state) == 1132 and state["model.diffusion_model.input_blocks.0.0.weight"].shape == (320, 4, 3, 3)
    assert state["first_stage_model.decoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
    assert state["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"].shape == (49408, 768)
    return models, state


@pytest.mark.slow
def test_an_sd15_safetensors_in_models_loads_offline_and_generates(dirs, sd15, monkeypatch):
    models, state = sd15
    path = dirs / "models" / "Stable-diffusion" / "sd15-random.safetensors"
    save_file(state, path, metadata={"format": "pt"})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    world = make_world(dirs)
    assert {m.name: m.format for m in world.list_models()}["sd15-random"] == "safetensors"

    result = world.create(prompt="a red fox in the snow", model="sd15-random", steps=2, width=64, height=64, seed=1,
                          backend="torch", precision="fp32")  # the weights compared as they are in the file
    [image_path] = result.paths
    image = np.asarray(Image.open(image_path))
    assert image.shape == (64, 64, 3) and image.max() > 0  # NaNs would come out black
    assert re.search(r"Model hash: [0-9a-f]{10}, Model: sd15-random,", result.parameters[0])

    backend = world.backend
    pipe = backend._pipes["txt2img"]
    assert type(pipe).__name__ == "StableDiffusionPipeline" and backend.native_size == (512, 512)
    assert pipe.scheduler.config.prediction_type == "epsilon" and pipe.tokenizer.pad_token == "<|endoftext|>"
    assert pipe.tokenizer("a red circle").input_ids == [49406, 320, 736, 7117, 49407]  # as test_tokenizer
    for name, model in models.items():
        assert_same_weights(getattr(pipe, name), model)


@pytest.mark.slow
def test_an_a1111_single_file_controlnet_guides_a_single_file_sd15_model(dirs, sd15, tmp_path):
    """control_v11p_sd15_*.safetensors as A1111 users have them (lllyasviel's layout, full size, random weights)
    loads offline with the family's config and guides an SD 1.5 single file; the weights are the file's."""
    from diffusers import ControlNetModel
    models, state = sd15
    save_file(state, dirs / "models" / "Stable-diffusion" / "sd15-random.safetensors", metadata={"format": "pt"})
    config = ControlNetModel.load_config(single_file.HERE / "controlnet-sd15")
    with torch.device("meta"):
        net = ControlNetModel.from_config(config)
    net = random_weights({"net": net}, seed=1)["net"]
    (dirs / "models" / "ControlNet").mkdir()
    path = dirs / "models" / "ControlNet" / "control_v11p_sd15_canny.safetensors"
    save_file({k: v.contiguous() for k, v in ldm_layout.controlnet_to_ldm(net).items()}, path)
    square = Image.new("RGB", (64, 64), "black")
    square.paste((255, 255, 255), (8, 16, 40, 48))
    square.save(tmp_path / "square.png")
    world = make_world(dirs)
    fields = dict(prompt="a red fox", model="sd15-random", steps=2, width=64, height=64, seed=1, precision="fp32",
                  backend="torch")  # (full size: OpenVINO would convert it for minutes)
    plain = world.create(**fields)
    guided = world.create(**fields, controlnet=[{"preprocessor": "canny", "model": "control_v11p_sd15_canny",
                                                 "image": str(tmp_path / "square.png")}])
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(guided.images[0]))
    assert 'ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [' in guided.parameters[0]
    assert_same_weights(world.backend._controlnets[path], net)


@pytest.mark.slow
def test_an_sd15_ckpt_loads_offline_without_running_pickled_code(dirs, sd15):
    models, state = sd15
    path = dirs / "models" / "Stable-diffusion" / "sd15-random.ckpt"
    torch.save({"state_dict": state, "global_step": 840000}, path)
    pipe = single_file.load_pipeline(path, torch.float16)
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    for name, model in models.items():
        assert_same_weights(getattr(pipe, name), model)


@pytest.mark.slow
def test_an_sd15_safetensors_runs_on_tensorflow_with_the_torch_pictures_and_is_cached(dirs, sd15, monkeypatch):
    from dreamworld.backends import weights

    models, state = sd15
    save_file(state, dirs / "models" / "Stable-diffusion" / "sd15-random.safetensors", metadata={"format": "pt"})
    monkeypatch.setenv("DREAMWORLD_CACHE", str(dirs / "cache"))
    world = make_world(dirs)
    fields = dict(prompt="a red fox in the snow", model="sd15-random", steps=2, width=64, height=64, seed=1)
    on_torch = np.asarray(world.create(backend="torch", **fields).images[0], np.int16)
    world.release()
    on_tf = np.asarray(world.create(backend="tensorflow", **fields).images[0], np.int16)
    assert world.backend.native_size == (512, 512) and world.backend.clip_layers == 12
    assert np.abs(on_tf - on_torch).max() <= 3

    world.release()  # the next load reads the converted cache, not the checkpoint
    monkeypatch.setattr(weights, "load_pipeline", lambda *a, **k: pytest.fail("the checkpoint was read again"))
    again = np.asarray(world.create(backend="tensorflow", **fields).images[0], np.int16)
    assert np.abs(again - on_tf).max() <= 1
    world.release()
