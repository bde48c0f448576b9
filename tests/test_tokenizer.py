import pytest

from dreamworld.tokenizer import clip_merges, clip_vocab, write_clip_tokenizer

CAT = [49406, 320, 1125, 539, 320, 2368, 49407]
SHAPES = [49406, 320, 736, 7117, 525, 320, 1746, 5994, 49407]  # a red circle on a blue background


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return write_clip_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def test_vocab_shape():
    vocab = clip_vocab()
    assert len(vocab) == 49408 and len(clip_merges()) == 48894
    assert sorted(vocab.values()) == list(range(49408))
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    assert vocab["cat</w>"] == 2368


def test_files(tokenizer_dir):
    names = {p.name for p in tokenizer_dir.iterdir()}
    assert names == {"vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"}
    assert (tokenizer_dir / "merges.txt").read_text(encoding="utf-8").startswith("#version: 0.2\n")


@pytest.mark.parametrize("cls", ["CLIPTokenizer", "CLIPTokenizerFast", "AutoTokenizer"])
def test_ids(tokenizer_dir, cls):
    import transformers

    tok = getattr(transformers, cls).from_pretrained(tokenizer_dir)
    assert tok.model_max_length == 77 and len(tok) == 49408
    assert tok("a photo of a cat").input_ids == CAT
    assert tok("A  Photo of a CAT").input_ids == CAT
    assert tok("a red circle on a blue background").input_ids == SHAPES
    padded = tok("a photo of a cat", padding="max_length", max_length=77).input_ids
    assert padded == CAT + [49407] * 70
    assert tok.decode(CAT, skip_special_tokens=True) == "a photo of a cat"
