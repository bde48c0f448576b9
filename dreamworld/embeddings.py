"""Textual-inversion embeddings from models/embeddings, used as A1111 uses them: by writing the file's name
in a prompt or negative prompt (ComfyUI's `embedding:name` names one explicitly, and an unknown one is an
error). Their vectors take the place of the word's token vectors before the text encoder (prompts.py places
them; each backend's encoder puts them in).

Files: A1111's `.pt` (`string_to_param` {"*": vectors}) and `.safetensors` (`emb_params`), diffusers'
`learned_embeds` ({token: vectors}), and SDXL's two-encoder files (`clip_l`, `clip_g`). Pickled files are read
with torch.load(weights_only=True) (single_file.load_pickle_safely): tensors and plain containers only, a
pickle that would run code is refused and nothing in it runs. `TI hashes` in the A1111 text are A1111's: the
sha256 of the whole file, first 12 hex digits.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import models
from .errors import ModelError, RequestError

KIND = "embedding"
_EXPLICIT = re.compile(r"\bembedding:([\w.\-]+)")


@dataclass(frozen=True)
class Embedding:
    name: str
    path: Path
    hash: str  # A1111's short hash (12 hex digits of the file's sha256)
    vectors: dict = field(compare=False, repr=False)  # "sd" (one encoder) or "clip_l"/"clip_g" -> (n, width)

    def for_encoder(self, encoder: str = "sd") -> np.ndarray | None:
        """The vectors for one text encoder: "sd" (SD 1.x/2.x), "clip_l" or "clip_g" (SDXL's)."""
        if encoder == "sd":
            return self.vectors.get("sd")
        return self.vectors.get(encoder)


def _as_vectors(value, what: str) -> np.ndarray:
    array = value.detach().float().cpu().numpy() if hasattr(value, "detach") else np.asarray(value, np.float32)
    array = array.reshape(1, -1) if array.ndim == 1 else array
    if array.ndim != 2 or not array.size or not np.isfinite(array).all():
        raise ModelError(f"{what} does not hold an embedding's vectors (a finite (vectors, width) array)")
    return array.astype(np.float32)


def read(path: Path, name: str) -> dict[str, np.ndarray]:
    """{"sd": vectors} or {"clip_l": ..., "clip_g": ...} of an embedding file; ModelError in one sentence."""
    path = Path(path)
    what = f"embedding {name!r} ({path.name})"
    if path.suffix.lower() == ".safetensors":
        from safetensors.numpy import load_file
        try:
            state = load_file(path)
        except Exception:  # safetensors raises its own error types for damaged files
            raise ModelError(f"{what} is not a readable .safetensors file (damaged or truncated)") from None
    else:
        from .single_file import load_pickle_safely
        try:
            state = load_pickle_safely(path, map_location="cpu", name=what)
        except ModelError as e:
            raise ModelError(str(e).replace("use a .safetensors version of the model",
                                            "use a .safetensors version of the embedding")) from None
    if not isinstance(state, dict):
        raise ModelError(f"{what} is not an embedding: it holds no named vectors")
    if "clip_l" in state or "clip_g" in state:
        return {k: _as_vectors(state[k], what) for k in ("clip_l", "clip_g") if k in state}
    if "string_to_param" in state and isinstance(state["string_to_param"], dict) and state["string_to_param"]:
        return {"sd": _as_vectors(next(iter(state["string_to_param"].values())), what)}
    if "emb_params" in state:
        return {"sd": _as_vectors(state["emb_params"], what)}
    tensors = [v for v in state.values() if hasattr(v, "shape")]
    if len(tensors) == 1:  # diffusers' learned_embeds: {token: vectors}
        return {"sd": _as_vectors(tensors[0], what)}
    raise ModelError(f"{what} is not an embedding: it has no emb_params, string_to_param or clip_l/clip_g vectors")


_cache: dict[tuple, dict] = {}
_lock = threading.Lock()


def load(info: models.ModelInfo) -> Embedding:
    stat = info.path.stat()
    key = (str(info.path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _lock:
        vectors = _cache.get(key)
    if vectors is None:
        vectors = read(info.path, info.name)
        with _lock:
            _cache[key] = vectors
    return Embedding(info.name, info.path, models.file_sha256(info.path)[:12], vectors)


def used(model_dirs, texts) -> tuple[Embedding, ...]:
    """The embeddings the texts use: every file name of models/embeddings written as a word, and every
    `embedding:name` (RequestError naming the prompt if there is no such file)."""
    available = {m.name: m for m in models.list_models(model_dirs, KIND)}
    names: list[str] = []
    for field_name, text in texts:
        for name in _EXPLICIT.findall(text or ""):
            name = name.removesuffix(".pt").removesuffix(".safetensors")
            if name not in available:
                shown = ", ".join(available) or "none"
                raise RequestError(field_name, f"embedding {name!r} was not found in models/embeddings; "
                                               f"available: {shown}")
            names.append(name)
        if available:
            names += [m.group(1) for m in words(available).finditer(text or "")]
    return tuple(load(available[n]) for n in dict.fromkeys(names))


def words(names) -> re.Pattern:
    """The pattern of embedding names as whole words (longest first)."""
    ordered = sorted(names, key=len, reverse=True)
    return re.compile(r"(?<![\w\-])(?:embedding:)?(" + "|".join(map(re.escape, ordered)) + r")(?![\w\-])")


def check(embeddings: tuple[Embedding, ...], model_name: str, family: str, width: int) -> None:
    """Refuse, naming the embedding, one made for another model family or text encoder width."""
    for e in embeddings:
        what = f"embedding {e.name!r} ({e.path.name})"
        if family == "sdxl":
            if "clip_l" not in e.vectors or "clip_g" not in e.vectors:
                raise ModelError(f"{what} is made for SD 1.x/2.x models (one text encoder); SDXL model "
                                 f"{model_name!r} needs one with clip_l and clip_g vectors")
            continue
        vectors = e.vectors.get("sd")
        if vectors is None:
            raise ModelError(f"{what} is made for SDXL models (clip_l and clip_g vectors) and cannot be used "
                             f"with model {model_name!r}")
        if vectors.shape[1] != width:
            raise ModelError(f"{what} has vectors {vectors.shape[1]} wide; model {model_name!r}'s text encoder "
                             f"takes {width}, so it is made for another model family")


def hashes_text(embeddings: tuple[Embedding, ...]) -> str | None:
    """The value of A1111's `TI hashes` key, or None without embeddings."""
    return ", ".join(f"{e.name}: {e.hash}" for e in embeddings) or None
