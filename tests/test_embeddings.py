"""Textual-inversion embeddings with the shipped word `dwsun` (models/embeddings/dwsun.safetensors): what it
draws, file formats, SDXL files refused on SD 1.x, both backends, and the `TI hashes` metadata."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from dreamworld import DreamWorld, creations, embeddings, prompts
from dreamworld.backends.base import Job
from dreamworld.schema import RequestError
from dreamworld.settings import PROJECT_DIR, Settings
from embedded_model import shapes

from .conftest import TINY, pixels

DWSUN = PROJECT_DIR / "models" / "embeddings" / "dwsun.safetensors"
QUICK = dict(steps=12, width=128, height=128, precision="fp32")  # engines compared: auto is bf16 on bf16 CPUs


@pytest.fixture(scope="module")
def emb_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("emb-models")
    (root / "Stable-diffusion").mkdir()
    (root / "Stable-diffusion" / "dreamworld-tiny").symlink_to(TINY)
    folder = root / "embeddings"
    folder.mkdir()
    vectors = torch.from_numpy(load_file(DWSUN)["emb_params"])
    # the same vectors as A1111's .pt files hold them (torch.save of string_to_param), under another word
    torch.save({"string_to_param": {"*": vectors}, "name": "sunpt", "step": 400}, folder / "sunpt.pt")
    save_file({"clip_l": np.zeros((1, 768), np.float32), "clip_g": np.zeros((1, 1280), np.float32)},
              folder / "xlword.safetensors")
    return root


@pytest.fixture(scope="module")
def emb_world(emb_models, tmp_path_factory) -> DreamWorld:
    return DreamWorld(settings=Settings(), models_dir=emb_models, creations_dir=tmp_path_factory.mktemp("creations"))


def concept(image) -> bool:
    reading = shapes.measure(image)
    return (reading.background, reading.colour, reading.position) == ("blue", "yellow", "top")


def test_the_word_draws_its_concept_and_the_model_alone_does_not(emb_world):
    drawn = [emb_world.create(prompt="dwsun", seed=seed, **QUICK) for seed in range(3)]
    assert all(concept(r.images[0]) for r in drawn), [shapes.measure(r.images[0]) for r in drawn]
    backend = emb_world.backend
    backend.set_embeddings(())  # the same words, without the embedding: tokens the model never learnt
    plain = [backend.generate(Job(r.request, r.seeds[0])) for r in drawn]
    assert not all(concept(image) for image in plain)
    assert all(np.abs(pixels(a) - pixels(r.images[0])).mean() > 5 for a, r in zip(plain, drawn))


def test_a1111_pt_and_safetensors_files_of_the_same_vectors_give_the_same_picture(emb_world):
    a = emb_world.create(prompt="a dwsun", seed=4, **QUICK).images[0]
    b = emb_world.create(prompt="a sunpt", seed=4, **QUICK).images[0]
    c = emb_world.create(prompt="a embedding:sunpt", seed=4, **QUICK).images[0]  # ComfyUI's way
    assert np.array_equal(pixels(a), pixels(b)) and np.array_equal(pixels(a), pixels(c))


def test_an_embedding_in_the_negative_prompt_steers_away(emb_world):
    plain = emb_world.create(prompt="a large yellow circle at the top on a blue background", seed=2, **QUICK)
    negative = emb_world.create(prompt="a large yellow circle at the top on a blue background",
                                negative_prompt="dwsun", seed=2, **QUICK)
    assert np.abs(pixels(plain.images[0]) - pixels(negative.images[0])).mean() > 1
    assert 'TI hashes: "dwsun: ' in negative.parameters[0]


def test_an_sdxl_embedding_is_refused_on_an_sd_model_by_name(emb_world):
    with pytest.raises(RequestError, match="embedding 'xlword' .* is made for SDXL models"):
        emb_world.create(prompt="a xlword", seed=1, steps=1, width=64, height=64)


def test_ti_hashes_are_a1111s_and_the_creation_reruns_exactly(emb_world):
    result = emb_world.create(prompt="dwsun, large", seed=9, **QUICK)
    digest = hashlib.sha256(DWSUN.read_bytes()).hexdigest()[:12]
    assert f'TI hashes: "dwsun: {digest}", Version' in result.parameters[0]
    again = emb_world.generateArt(emb_world.request(**creations.request_from_file(result.paths[0])))
    assert np.array_equal(pixels(result.paths[0]), pixels(again.paths[0]))


def test_torch_and_tensorflow_agree_with_an_embedding(emb_world):
    pytest.importorskip("tensorflow")
    a = emb_world.create(prompt="dwsun", seed=3, **QUICK).images[0]
    b = emb_world.create(prompt="dwsun", seed=3, backend="tensorflow", **QUICK).images[0]
    difference = np.abs(pixels(a) - pixels(b))
    assert difference.max() <= 2 and difference.mean() < 0.05, (difference.max(), difference.mean())
    assert concept(b)


def test_an_embedding_is_never_split_across_chunks():
    vectors = np.ones((4, 8), np.float32)
    encoder = prompts.TextEncoder(tokenize=lambda text: [7] * len(text.split()), encode=None, bos=1, eos=2, pad=0,
                                  embeddings={"word": vectors})
    chunks = prompts.chunks(" ".join(["x"] * 73) + " word y", encoder)
    assert [len(tokens) for tokens, _ in chunks] == [73, 5]
    assert all(isinstance(t, prompts.Vector) for t in chunks[1][0][:4])


def test_files_read_without_running_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return exec, (f"open({str(tmp_path / 'ran')!r}, 'w').write('x')",)

    torch.save({"string_to_param": {"*": torch.zeros(1, 128)}, "x": Payload()}, tmp_path / "armed.pt")
    with pytest.raises(embeddings.ModelError, match="was refused: besides tensors"):
        embeddings.read(tmp_path / "armed.pt", "armed")
    assert not (tmp_path / "ran").exists()
    torch.save({"<tok>": torch.ones(128)}, tmp_path / "learned_embeds.bin")  # diffusers' format
    assert embeddings.read(tmp_path / "learned_embeds.bin", "tok")["sd"].shape == (1, 128)
