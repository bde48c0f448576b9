"""Hostile and unlucky input, one table: each case must end in one sentence (exit 2 on the command
line), with nothing half-written in the creations folder and nothing read from where it must not be.

New surfaces (the HTTP API, LoRA and ControlNet files, TIFF states) add their rows to CASES.
A case is (id, argv after `app.py`, files to make first, words the one-line error must hold).
`files` maps a name (a path under the case's folder) to bytes or a callable(tmp_path) -> bytes; `{tmp}` in argv
is the case's folder.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from PIL import Image, PngImagePlugin

from dreamworld.settings import PROJECT_DIR

from .conftest import files_in


# ----- issue 19 (b): untrusted files, schedules, saving, sizes -------------------------------------
def _png(record: dict | None = None) -> bytes:
    buffer, info = io.BytesIO(), PngImagePlugin.PngInfo()
    if record is not None:
        info.add_itxt("dreamworld", json.dumps({**record, "dreamworld_version": "0"}))
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _tampered_creation(tmp) -> bytes:
    """{tmp}/x.png whose JSON names {tmp}/private.png by a path relative to the file's grandparent folder."""
    return _png({"prompt": "x", "mode": "img2img", "init_image": f"{tmp.name}/private.png", "steps": 2,
                 "width": 64, "height": 64})


def _tampered_run(tmp) -> bytes:
    """A cinema.json whose init_image is a private file's absolute path."""
    fields = {"prompt": "x", "init_image": str(tmp / "private.png"), "frames": 2, "steps": 2, "width": 64,
              "height": 64}
    return json.dumps({"dreamworld_version": "0", "cinema": fields}).encode()


class _Armed:
    """Unpickling this runs code (it would print to stderr, failing the one-line check)."""

    def __reduce__(self):
        return exec, ("import sys; sys.stderr.write('the pickled code ran\\n')",)


def _raw_pickle(tmp) -> bytes:
    """A plain pickle (protocol 4), not torch.save's format: torch warns about its protocol as it refuses it."""
    import pickle
    return pickle.dumps({"state_dict": {}, "callbacks": _Armed()}, protocol=4)


def _armed_bin(tmp) -> bytes:
    import torch
    buffer = io.BytesIO()
    torch.save({"conv_in.weight": torch.zeros(1), "callbacks": _Armed()}, buffer)
    return buffer.getvalue()


MODELS = ["--models-dir", "{tmp}/models", "--steps", "1", "--width", "64", "--height", "64"]

ISSUE_19B = [
    ("from-image-names-a-private-file", ["generate", "--from", "{tmp}/x.png"],
     {"private.png": _png(), "x.png": _tampered_creation}, "from: 'x.png' names the init_image"),
    ("cinema-from-names-a-private-file", ["cinema", "--from", "{tmp}/cinema.json"],
     {"private.png": _png(), "cinema.json": _tampered_run}, "from: 'cinema.json' names the init_image"),
    ("schedule-of-1000-terms", ["cinema", "--prompt", "x", "--zoom", "+".join(["0.001"] * 1000)], {},
     "zoom schedule has an error at character 1001: the expression is 5999 characters long"),
    ("schedule-of-chained-conditionals", ["cinema", "--prompt", "x", "--angle", "1 if t < 1 else " * 300 + "0"], {},
     "angle schedule has an error at character 1001: the expression is 4801 characters long"),
    ("schedule-nested-too-deep", ["cinema", "--prompt", "x", "--zoom=" + "-" * 150 + "1"], {},
     "zoom schedule has an error at character 101: the expression nests more than 100 operations"),
    ("cinema-creations-dir-is-a-file", ["cinema", "--prompt", "x", "--creations-dir", "{tmp}/file"], {"file": b"x"},
     "is not a folder"),
    ("raw-pickle-checkpoint", ["generate", "--prompt", "x", "--model", "raw", *MODELS],
     {"models/Stable-diffusion/raw.ckpt": _raw_pickle}, "error: raw.ckpt is not a readable PyTorch checkpoint"),
    ("raw-pickle-vae", ["generate", "--prompt", "x", "--vae", "raw", *MODELS],
     {"models/VAE/raw.ckpt": _raw_pickle}, "error: raw.ckpt is not a readable PyTorch checkpoint"),
    ("armed-bin-in-a-diffusers-folder", ["generate", "--prompt", "x", "--model", "armed", *MODELS],
     {"models/Stable-diffusion/armed/model_index.json": b"{}",
      "models/Stable-diffusion/armed/unet/diffusion_pytorch_model.bin": _armed_bin},
     "error: armed/unet/diffusion_pytorch_model.bin was refused: besides tensors it holds pickled Python objects"),
    ("jpeg-prompt-too-long", ["generate", "--prompt", "a fox " * 7000, "--format", "jpg"], {},
     "error: prompt is too long to embed in a JPEG file's metadata (42000 characters"),
]

ISSUE_16 = [
    ("api-auth-malformed", ["--api", "--api-auth", "nocolon"], {},
     "error: api-auth must look like user:password (several separated by commas)"),
    ("api-auth-empty-password", ["--api", "--api-auth", "user:"], {}, "error: api-auth must look like user:password"),
    ("api-auth-without-api", ["--api-auth", "user:pass"], {}, "error: api-auth needs --api"),
]

def _wide_png(tmp) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (1100, 8)).save(buffer, format="PNG")
    return buffer.getvalue()


ISSUE_14 = [
    ("upscale-unknown-upscaler", ["upscale", "{tmp}/x.png", "--upscaler", "R-ESRGAN 4x+"], {"x.png": _png()},
     "error: upscaler must be one of Lanczos, "),
    ("upscale-scale-out-of-range", ["upscale", "{tmp}/x.png", "--scale", "20"], {"x.png": _png()},
     "error: scale must be a number from 1 to 8, got '20'"),
    ("upscale-scale-not-a-number", ["upscale", "{tmp}/x.png", "--scale", "two"], {"x.png": _png()},
     "error: scale must be a number from 1 to 8, got 'two'"),
    ("upscale-too-large", ["upscale", "{tmp}/x.png", "--scale", "8"], {"x.png": _wide_png},
     "error: scale 8 makes 8800x64 pixels; each side must be at most 8192"),
    ("upscale-not-an-image", ["upscale", "{tmp}/x.png"], {"x.png": b"not an image"},
     "error: cannot read 'x.png' as an image: it is not an image file"),
    ("upscale-missing-file", ["upscale", "{tmp}/none.png"], {}, "error: cannot read 'none.png' as an image: the file "
                                                                 "does not exist"),
    ("upscale-armed-pth", ["upscale", "{tmp}/x.png", "--upscaler", "armed", "--models-dir", "{tmp}/models"],
     {"x.png": _png(), "models/ESRGAN/armed.pth": _armed_bin},
     "error: armed.pth was refused: besides tensors it holds pickled Python objects"),
    ("hires-too-large", ["generate", "--prompt", "x", "--steps", "2", "--width", "1024", "--height", "512",
                         "--hires-scale", "2.5"], {},
     "error: hires_scale 2.5 makes 2560x1280 pixels from 1024x512; each side must be at most 2048"),
    ("hires-unknown-upscaler", ["generate", "--prompt", "x", "--steps", "2", "--hires-scale", "2", "--hires-upscaler",
                                "4x-UltraSharp"], {}, "error: hires_upscaler must be one of Latent, Lanczos, "),
    ("hires-no-denoising-step", ["generate", "--prompt", "x", "--steps", "4", "--hires-scale", "2",
                                 "--hires-denoising", "0.1"], {},
     "error: hires_denoising 0.1 with 4 hires steps leaves no denoising step; it must be at least 0.25"),
    ("upscale-bad-device", ["upscale", "{tmp}/x.png", "--device", "tpu"], {"x.png": _png()}, "error: device "),
]

def _tiff_bomb(tmp) -> bytes:
    from .test_parts import tiff_bomb
    return tiff_bomb()


ISSUE_17 = [
    ("parts-tiff-declaring-40-gb", ["parts", "decode", "{tmp}/x_state2.tiff", "--out", "{tmp}/x"],
     {"x_state2.tiff": _tiff_bomb}, "error: state: 'x_state2.tiff' declares 100000 x 100000 values"),
    ("parts-text-not-a-tiff", ["parts", "diffuse", "{tmp}/x_state2.tiff", "{tmp}/x_text.tiff", "--out", "{tmp}/y"],
     {"x_state2.tiff": b"II*\x00", "x_text.tiff": b"II*\x00"}, "is not a TIFF file, or it is damaged"),
]


def _sd15_controlnet_config(tmp) -> bytes:
    return (PROJECT_DIR / "dreamworld" / "model_configs" / "controlnet-sd15" / "config.json").read_bytes()


CN = ["--steps", "2", "--mode", "img2img", "--init-image", "{tmp}/x.png"]
ISSUE_15 = [
    ("controlnet-unknown-model", ["generate", "--prompt", "x", "--controlnet", "canny:nope", *CN], {"x.png": _png()},
     "error: ControlNet unit 0: controlnet 'nope' was not found; available: "),
    ("controlnet-unknown-preprocessor", ["generate", "--prompt", "x", "--controlnet", "cany:control_dreamworld_edges",
                                         *CN], {"x.png": _png()},
     "error: controlnet: preprocessor must be one of 'none', 'canny', "),
    ("controlnet-corrupt-control-image", ["generate", "--prompt", "x", "--controlnet",
                                          "canny:control_dreamworld_edges:1:0:1:{tmp}/bad.png", *CN],
     {"x.png": _png(), "bad.png": b"not an image"}, "error: controlnet: cannot read 'bad.png' as an image"),
    ("controlnet-of-another-family", ["generate", "--prompt", "x", "--controlnet", "canny:sd15-canny",
                                      "--models-dir", "{tmp}/models", *CN],
     {"x.png": _png(), "models/ControlNet/sd15-canny/config.json": _sd15_controlnet_config},
     "error: ControlNet 'sd15-canny' is for SD 1.x models and cannot guide 'dreamworld-tiny', which is a custom"),
    ("controlnet-depth-without-a-depth-model", ["generate", "--prompt", "x", "--controlnet",
                                                "depth:control_dreamworld_edges", "--models-dir", "{tmp}/models", *CN],
     {"x.png": _png(), "models/Stable-diffusion/.keep": b""},
     "error: the depth preprocessor needs a depth model (a transformers DPT or Depth-Anything folder) in "),
    ("controlnet-on-tensorflow", ["generate", "--prompt", "x", "--backend", "tensorflow", "--controlnet",
                                  "canny:control_dreamworld_edges", *CN], {"x.png": _png()},
     "error: backend 'tensorflow' cannot do ControlNet; remove the ControlNet units or use backend 'torch'"),
    ("controlnet-without-a-control-image", ["generate", "--prompt", "x", "--steps", "2", "--controlnet",
                                            "canny:control_dreamworld_edges"], {},
     "error: ControlNet unit 0 has no control image: give it one"),
    ("painted-not-an-image", ["generate", "--prompt", "x", "--steps", "2", "--mode", "inpaint", "--init-image",
                              "{tmp}/x.png", "--painted", "{tmp}/bad.png"], {"x.png": _png(), "bad.png": b"junk"},
     "error: painted: cannot read 'bad.png' as an image"),
]


def _safetensors(tensors: dict, metadata: dict | None = None) -> bytes:
    import numpy as np
    from safetensors.numpy import save
    return save({k: np.zeros(shape, np.float16) for k, shape in tensors.items()}, metadata=metadata)


def _sdxl_lora(tmp) -> bytes:
    """A kohya SDXL LoRA (its second text encoder's tensors and SDXL's block names)."""
    return _safetensors({"lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": (4, 1280),
                         "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": (1280, 4),
                         "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": (4, 2048),
                         "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight": (640, 4)})


def _sd15_lora(tmp) -> bytes:
    """An SD 1.5 LoRA: its cross-attention takes 768-wide text features, the embedded model's 128."""
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
    return _safetensors({f"{key}.lora_down.weight": (4, 768), f"{key}.lora_up.weight": (128, 4), f"{key}.alpha": ()})


def _loha(tmp) -> bytes:
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    return _safetensors({f"{key}.hada_w1_a": (128, 4), f"{key}.hada_w1_b": (4, 128), f"{key}.alpha": ()})


def _armed_embedding(tmp) -> bytes:
    """An A1111 .pt embedding whose pickle would write the file `ran` beside it if it were unpickled."""
    import torch

    class Payload:
        def __reduce__(self):
            return exec, (f"open({str(tmp / 'ran')!r}, 'w').write('the pickled code ran')",)

    buffer = io.BytesIO()
    torch.save({"string_to_param": {"*": torch.zeros(2, 128)}, "name": "armed", "payload": Payload()}, buffer)
    return buffer.getvalue()


ISSUE_14_LORA = [
    ("lora-differs-between-frames", ["cinema", "--prompt", "x <lora:outline:0.5>", "--frames", "3", "--steps", "1",
                                     "--prompts", '{"0": "x <lora:outline:0.5>", "2": "a city"}'], {},
     "error: prompts: frame 2's <lora:...> tags differ from the run's (outline:0.5); a run uses one set of LoRAs"),
    ("lora-unknown", ["generate", "--prompt", "x <lora:nosuch:0.8>", *MODELS], {},
     "error: LoRA 'nosuch' was not found; available: outline"),
    ("lora-unknown-field", ["generate", "--prompt", "x", "--lora", "nosuch:0.5", *MODELS], {},
     "error: LoRA 'nosuch' was not found; available: outline"),
    ("lora-malformed-weight", ["generate", "--prompt", "a fox <lora:outline:abc>", *MODELS], {},
     "error: the prompt's <lora:outline:abc> has weight 'abc'; a LoRA's weight must be a number from -10 to 10"),
    ("lora-field-malformed-weight", ["generate", "--prompt", "x", "--lora", "outline:abc", *MODELS], {},
     "error: the weight of 'outline' in lora must be a number"),
    ("lora-corrupt-file", ["generate", "--prompt", "x <lora:broken>", *MODELS],
     {"models/Lora/broken.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{not json"},
     "error: LoRA 'broken' (broken.safetensors) is not a readable .safetensors file (damaged or truncated)"),
    ("lora-sdxl-on-sd1", ["generate", "--prompt", "x <lora:xl>", *MODELS], {"models/Lora/xl.safetensors": _sdxl_lora},
     "error: LoRA 'xl' (xl.safetensors) is made for SDXL models and cannot be used with SD 1.x/2.x model "
     "'dreamworld-tiny'"),
    ("lora-sd15-on-the-embedded-model", ["generate", "--prompt", "x <lora:sd15>", *MODELS],
     {"models/Lora/sd15.safetensors": _sd15_lora},
     "error: LoRA 'sd15' (sd15.safetensors) is made for a model whose text features are 768 wide"),
    ("lora-loha", ["generate", "--prompt", "x <lora:loha>", *MODELS], {"models/Lora/loha.safetensors": _loha},
     "error: LoRA 'loha' (loha.safetensors) is a LyCORIS LoHa file, which diffusers cannot load"),
    ("embedding-unknown", ["generate", "--prompt", "a embedding:nosuch fox", *MODELS], {},
     "error: embedding 'nosuch' was not found in models/embeddings; available: "),
    ("embedding-pickle-with-payload", ["generate", "--prompt", "an armed fox", *MODELS],
     {"models/embeddings/armed.pt": _armed_embedding},
     "error: embedding 'armed' (armed.pt) was refused: besides tensors it holds pickled Python objects"),
    ("embedding-corrupt", ["generate", "--prompt", "a broken fox", *MODELS],
     {"models/embeddings/broken.safetensors": b"garbage"},
     "error: embedding 'broken' (broken.safetensors) is not a readable .safetensors file"),
]

CASES = [
    # id, argv, files, words
    ("unknown-flag", ["generate", "--prompt", "x", "--stepz", "3"], {}, "unrecognized arguments: --stepz"),
    # issue 19: folders of one's own only; never the root or a system folder
    ("creations-dir-root", ["generate", "--prompt", "x", "--creations-dir", "/"], {},
     "error: creations_dir: / is a system or shared folder; choose a folder of your own"),
    ("models-dir-etc", ["generate", "--prompt", "x", "--models-dir", "/etc"], {}, "models_dir: /etc is a system"),
    ("creations-dir-a-file", ["generate", "--prompt", "x", "--creations-dir", "{tmp}/f"], {"f": b"x"},
     "/f is not a folder"),
    ("settings-a-folder", ["--settings", "{tmp}", "generate", "--prompt", "x"], {},
     "is a folder, not a settings file"),
    ("settings-missing", ["--settings", "{tmp}/nonexistent.json", "generate", "--prompt", "x"], {},
     "/nonexistent.json does not exist"),
    ("port-out-of-range", ["--port", "99999"], {}, "port must be from 1 to 65535, got 99999"),
    *ISSUE_19B,
    *ISSUE_16,
    *ISSUE_14,
    *ISSUE_17,
    *ISSUE_15,
    *ISSUE_14_LORA,
]


def _run(argv, tmp_path, creations_dir, timeout=300, env=None):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    command = [sys.executable, str(PROJECT_DIR / "app.py"), *argv]
    if "--creations-dir" not in argv:
        command += ["--creations-dir", str(creations_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=PROJECT_DIR, env=env)


@pytest.mark.parametrize("argv, files, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_is_one_sentence_and_writes_nothing(tmp_path, argv, files, words):
    creations_dir = tmp_path / "creations"
    creations_dir.mkdir()
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data(tmp_path) if callable(data) else data)
    run = _run(argv, tmp_path, creations_dir)
    assert run.returncode == 2, run.stderr
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert words in lines[0] and "Traceback" not in run.stderr
    assert files_in(creations_dir) == set()
    assert not (tmp_path / "ran").exists()  # no pickled payload ran
