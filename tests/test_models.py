import hashlib

import pytest

from dreamworld import models
from dreamworld.models import ModelError


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "models"
    for path in ("Stable-diffusion/alpha.safetensors", "Stable-diffusion/sub/beta.ckpt",
                 "Stable-diffusion/.hidden.safetensors", "Stable-diffusion/notes.txt",
                 "checkpoints/gamma.safetensors", "VAE/vae-ft.safetensors", "Lora/style.safetensors",
                 "Stable-diffusion/folder/unet/diffusion_pytorch_model.safetensors",
                 "Stable-diffusion/folder/text_encoder/model.safetensors"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(path.encode())
    (root / "Stable-diffusion/folder/model_index.json").write_text("{}")
    return root


def test_lists_files_and_diffusers_folders_of_each_kind(tree):
    found = {m.name: m.format for m in models.list_models(tree)}
    assert found == {"alpha": "safetensors", "beta": "ckpt", "folder": "diffusers", "gamma": "safetensors"}
    assert [m.name for m in models.list_models(tree, "vae")] == ["vae-ft"]
    assert [m.name for m in models.list_models(tree, "lora")] == ["style"]


def test_find_accepts_file_names_and_a1111_titles(tree):
    assert models.find_model(tree, "alpha.safetensors").name == "alpha"
    assert models.find_model(tree, "alpha [0123456789]").name == "alpha"
    with pytest.raises(ModelError, match="model 'delta' was not found; available: alpha, beta, folder, gamma"):
        models.find_model(tree, "delta")


def test_hash_is_a1111s_sha256_prefix_and_is_cached(tree):
    folder = models.find_model(tree, "folder")
    expected = hashlib.sha256(b"Stable-diffusion/folder/unet/diffusion_pytorch_model.safetensors").hexdigest()
    assert folder.hash == expected[:10]
    assert expected in (tree / ".hashes.json").read_text()
