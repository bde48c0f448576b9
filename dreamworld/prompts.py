"""A1111's prompt syntax and long prompts, shared by the backends (no torch or TensorFlow here).

`(word)` weighs a word 1.1, `((word))` 1.21, `[word]` 1/1.1, `(word:1.5)` 1.5; `\\(`, `\\)`, `\\[`, `\\]`
and `\\\\` are literal; unbalanced brackets close at the end of the prompt; `BREAK` starts a new chunk.
A prompt is cut into chunks of 75 tokens (a chunk ending within 20 tokens after a comma is cut at the
comma instead), each chunk is encoded as BOS + 75 tokens + EOS/padding = 77, each token's hidden state
is multiplied by its weight and the chunk rescaled to its unweighted mean, and the chunks are joined
along the token axis. A plain prompt of at most 75 tokens gives the encoder's own embedding unchanged.
`<lora:name:weight>` tags (A1111's extra networks) are taken out of the text before it is encoded.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

CHUNK = 75  # tokens of a chunk between BOS and EOS
COMMA_BACKTRACK = 20  # A1111's comma_padding_backtrack
BREAK = ("BREAK", -1.0)

_ATTENTION = re.compile(r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|   # escapes (and a lone backslash)
\(|\[|
:\s*([+-]?[.\d]+)\s*\)|        # the weight of a round bracket
\)|]|
[^\\()\[\]:]+|
:
""", re.X)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")  # A1111's re_extra_net
NETWORKS = ("lora",)  # the extra networks taken out of the text (the others stay text)


def extra_networks(text: str) -> list[tuple[str, str]]:
    """(kind, arguments) of each `<kind:arguments>` tag of a prompt, e.g. ("lora", "outline:0.8")."""
    return [(m.group(1), m.group(2)) for m in _EXTRA_NETWORK.finditer(text)]


def strip_networks(text: str) -> str:
    """The prompt without its `<lora:...>` tags: the text that is encoded."""
    return _EXTRA_NETWORK.sub(lambda m: "" if m.group(1) in NETWORKS else m.group(0), text)


@dataclass(frozen=True)
class TextEncoder:
    """A backend's text encoder: `tokenize(text)` gives ids without BOS/EOS, never truncated;
    `encode(ids)` maps a (1, 77) int array to float32 hidden states (1, 77, width)."""
    tokenize: Callable[[str], list]
    encode: Callable[[np.ndarray], np.ndarray]
    bos: int
    eos: int
    pad: int
    # Textual-inversion embeddings: word -> vectors (n, width) that replace the word's token vectors, and
    # `encode_with(ids, vectors (1, 77, width), mask (1, 77))`, the encoder with those token vectors put in.
    embeddings: dict = field(default_factory=dict)
    encode_with: Callable | None = None


class Vector:
    """One vector of an embedding, standing in a chunk where a token would."""

    def __init__(self, array: np.ndarray):
        self.array = array


def parse_attention(text: str) -> list[tuple[str, float]]:
    """(text, weight) runs of a prompt, as A1111's parse_prompt_attention; BREAK is ("BREAK", -1)."""
    res: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for run in res[start:]:
            run[1] *= factor

    for m in _ATTENTION.finditer(text):
        piece, weight = m.group(0), m.group(1)
        if piece.startswith("\\"):
            res.append([piece[1:], 1.0])
        elif piece == "(":
            round_open.append(len(res))
        elif piece == "[":
            square_open.append(len(res))
        elif weight is not None and round_open:
            multiply(round_open.pop(), _number(weight))
        elif piece == ")" and round_open:
            multiply(round_open.pop(), 1.1)
        elif piece == "]" and square_open:
            multiply(square_open.pop(), 1 / 1.1)
        else:
            for i, part in enumerate(_BREAK.split(piece)):
                if i > 0:
                    res.append(list(BREAK))
                res.append([part, 1.0])
    for start in round_open:
        multiply(start, 1.1)
    for start in square_open:
        multiply(start, 1 / 1.1)
    return _merge(res or [["", 1.0]])


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # e.g. "1.2.3": A1111 fails here; we keep the bracket's plain weight
        return 1.1


def _merge(res: list[list]) -> list[tuple[str, float]]:
    """Neighbouring runs of one weight as one run."""
    merged: list[list] = []
    for run in res:
        if merged and merged[-1][1] == run[1]:
            merged[-1][0] += run[0]
        else:
            merged.append(list(run))
    return [(text, weight) for text, weight in merged]


class _Chunker:
    """Tokens and weights cut into 75-token chunks as A1111's tokenize_line does."""

    def __init__(self, comma: int | None):
        self.comma = comma
        self.chunks: list[tuple[list, list]] = []
        self.tokens: list = []
        self.weights: list = []
        self.last_comma = -1

    def close(self) -> None:
        self.chunks.append((self.tokens, self.weights))
        self.tokens, self.weights, self.last_comma = [], [], -1

    def add(self, token: int, weight: float) -> None:
        if token == self.comma:
            self.last_comma = len(self.tokens)
        elif (len(self.tokens) == CHUNK and self.last_comma != -1
              and len(self.tokens) - self.last_comma <= COMMA_BACKTRACK):
            cut = self.last_comma + 1
            moved = self.tokens[cut:], self.weights[cut:]
            self.tokens, self.weights = self.tokens[:cut], self.weights[:cut]
            self.close()
            self.tokens, self.weights = list(moved[0]), list(moved[1])
        if len(self.tokens) == CHUNK:
            self.close()
        self.tokens.append(token)
        self.weights.append(weight)


def chunks(text: str, encoder: TextEncoder) -> list[tuple[list, list]]:
    """The prompt's chunks as (token ids, weights), each at most 75 long (BOS/EOS not added)."""
    commas = encoder.tokenize(",")
    chunker = _Chunker(commas[0] if len(commas) == 1 else None)
    pattern = _words(encoder.embeddings) if encoder.embeddings else None
    for piece, weight in parse_attention(strip_networks(text)):
        if (piece, weight) == BREAK:
            chunker.close()
            continue
        parts = pattern.split(piece) if pattern else [piece]
        for i, part in enumerate(parts):
            if i % 2 == 0:  # text between embeddings
                for token in encoder.tokenize(part):
                    chunker.add(token, weight)
                continue
            vectors = encoder.embeddings[part]
            if chunker.tokens and len(chunker.tokens) + len(vectors) > CHUNK:  # as A1111: never split one
                chunker.close()
            for vector in vectors:
                chunker.add(Vector(vector), weight)
    if chunker.tokens or not chunker.chunks:
        chunker.close()
    return chunker.chunks


def chunk_ids(tokens: list, encoder: TextEncoder) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """A chunk as the encoder takes it: ids (1, 77) with BOS, EOS and padding, and where it holds an
    embedding's vectors, those vectors (1, 77, width) and their mask (1, 77); else None, None."""
    ids = [encoder.pad if isinstance(t, Vector) else t for t in tokens]
    ids = np.array([[encoder.bos, *ids, encoder.eos] + [encoder.pad] * (CHUNK - len(tokens))], np.int64)
    if not any(isinstance(t, Vector) for t in tokens):
        return ids, None, None
    width = next(t.array.shape[-1] for t in tokens if isinstance(t, Vector))
    vectors = np.zeros((*ids.shape, width), np.float32)
    mask = np.zeros(ids.shape, bool)
    for i, t in enumerate(tokens):
        if isinstance(t, Vector):
            vectors[0, i + 1], mask[0, i + 1] = t.array, True
    return ids, vectors, mask


def encode_chunk(tokens: list, weights: list, encoder: TextEncoder) -> np.ndarray:
    """One chunk's weighted hidden states (1, 77, width), float32."""
    ids, vectors, mask = chunk_ids(tokens, encoder)
    z = encoder.encode(ids) if vectors is None else encoder.encode_with(ids, vectors, mask)
    z = np.asarray(z, np.float32)
    if all(w == 1.0 for w in weights):
        return z
    multipliers = np.array([1.0, *weights] + [1.0] * (CHUNK + 1 - len(weights)), np.float32)
    original_mean = z.mean()
    z = z * multipliers[None, :, None]
    return z * (original_mean / z.mean())


def _words(embeddings: dict) -> re.Pattern:
    """Embedding names as whole words (A1111 matches a file's name written in the prompt; ComfyUI's
    `embedding:name` too), captured so that re.split keeps them."""
    names = "|".join(map(re.escape, sorted(embeddings, key=len, reverse=True)))
    return re.compile(r"(?<![\w\-:])(?:embedding:)?(" + names + r")(?![\w\-])")


def embed_all(texts: list[str], encoder: TextEncoder) -> list[np.ndarray]:
    """Each text's embedding (1, 77 * chunks, width); all have the chunk count of the longest (the
    shorter ones end with empty chunks), so that prompt and negative prompt can be paired."""
    per_text = [chunks(text, encoder) for text in texts]
    count = max(len(c) for c in per_text)
    empty = None
    out = []
    for text_chunks in per_text:
        parts = [encode_chunk(tokens, weights, encoder) for tokens, weights in text_chunks]
        if len(parts) < count:
            empty = encode_chunk([], [], encoder) if empty is None else empty
            parts += [empty] * (count - len(parts))
        out.append(np.concatenate(parts, axis=1))
    return out


def embed(text: str, encoder: TextEncoder) -> np.ndarray:
    return embed_all([text], encoder)[0]
