"""The real CLIP BPE tokenizer, built from the vendored OpenAI CLIP vocabulary.

`write_clip_tokenizer(out_dir)` writes the files `transformers.CLIPTokenizer.from_pretrained`
reads (vocab.json, merges.txt, special_tokens_map.json, tokenizer_config.json). The
construction follows OpenAI CLIP's SimpleTokenizer, so the ids match
`openai/clip-vit-large-patch14` (the SD 1.x tokenizer): 49408 tokens.
"""
from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

BPE_PATH = Path(__file__).parent / "assets" / "bpe_simple_vocab_16e6.txt.gz"
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MODEL_MAX_LENGTH = 77


def bytes_to_unicode() -> dict[int, str]:
    """OpenAI's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


@lru_cache(maxsize=1)
def clip_merges() -> tuple[tuple[str, str], ...]:
    lines = gzip.open(BPE_PATH, "rt", encoding="utf-8").read().split("\n")
    return tuple(tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1])


@lru_cache(maxsize=1)
def clip_vocab() -> dict[str, int]:
    units = list(bytes_to_unicode().values())
    tokens = units + [u + "</w>" for u in units] + ["".join(m) for m in clip_merges()] + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}


def write_clip_tokenizer(out_dir, pad_token: str = EOS) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    def dump(name, obj, indent=2):
        (out / name).write_text(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")

    dump("vocab.json", clip_vocab(), indent=None)
    merges = "".join(f"{a} {b}\n" for a, b in clip_merges())
    (out / "merges.txt").write_text("#version: 0.2\n" + merges, encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}
    dump("special_tokens_map.json", special)
    dump("tokenizer_config.json", {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "do_lower_case": True,
        "errors": "replace",
        "clean_up_tokenization_spaces": True,
        "add_prefix_space": False,
        **special,
    })
    return out
