import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Converted weights and generated configs go to a fresh cache, never the user's.
os.environ["DREAMWORLD_CACHE"] = tempfile.mkdtemp(prefix="dreamworld-test-cache-")
atexit.register(shutil.rmtree, os.environ["DREAMWORLD_CACHE"], ignore_errors=True)  # GBs of conversions

from dreamworld import DreamWorld  # noqa: E402
from dreamworld.jobs import QUEUE_FILE  # noqa: E402
from dreamworld.settings import PROJECT_DIR, Settings  # noqa: E402

TINY = PROJECT_DIR / "models" / "Stable-diffusion" / "dreamworld-tiny"
FAST = dict(steps=4, width=64, height=64)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """A models folder holding the embedded model twice, under two names."""
    root = tmp_path_factory.mktemp("models")
    (root / "Stable-diffusion").mkdir()
    (root / "Stable-diffusion" / "dreamworld-tiny").symlink_to(TINY)
    shutil.copytree(TINY, root / "Stable-diffusion" / "tiny-copy")
    return root


@pytest.fixture(scope="session")
def world(models_dir, tmp_path_factory) -> DreamWorld:
    """One loaded world for the session (loading is the slow part)."""
    return DreamWorld(settings=Settings(), models_dir=models_dir,
                      creations_dir=tmp_path_factory.mktemp("creations"))


def pixels(path_or_image) -> np.ndarray:
    image = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def files_in(folder: Path) -> set[Path]:
    """The files in a folder, but for the queue's record (a failed job is rightly recorded there)."""
    return {p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith(QUEUE_FILE)}


# With two workers (`pytest -n 2 --dist loadfile`, pytest-xdist) the longest files start first, so that no
# long one is left to run alone at the end.
LONGEST_FIRST = ("test_gui.py", "test_tensorflow.py", "test_single_file.py", "test_cli.py", "test_parts.py",
                 "test_hostile.py", "test_world.py", "test_cinema.py", "test_pictures.py", "test_api.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)  # stable: the tests of a file keep their order


def clip_reference(pipe, text: str, clip_skip: int = 1):
    """The text encoder's own features of a short prompt, as diffusers computes them (padded to 77, the layer
    clip_skip from the end through the final norm): what DreamWorld's A1111 encoding must equal for it."""
    import torch
    ids = pipe.tokenizer(text, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids
    with torch.inference_mode():
        hidden = pipe.text_encoder(ids, output_hidden_states=True).hidden_states[-clip_skip]
        encoder = pipe.text_encoder
        return (getattr(encoder, "final_layer_norm", None) or encoder.text_model.final_layer_norm)(hidden)
