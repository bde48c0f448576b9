"""A1111's prompt syntax and long prompts: weights, escapes, BREAK, 75-token chunks, on both backends."""
import numpy as np
import pytest

from dreamworld import creations, prompts
from dreamworld.backends import LoadSpec
from dreamworld.backends.torch_backend import TorchBackend
from dreamworld.models import find_model
from dreamworld.prompts import parse_attention

from .conftest import FAST, clip_reference, pixels
from .test_cli import app

SHORT = "a red circle on a blue background"
LONG = SHORT + " and" * 68 + " a green square on a yellow background" * 16 + " at last"  # 189 tokens


# ----- the parser, on A1111's documented examples ----------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.3 * 1.1 * 1.1), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
      (", sun, ", 1.1), ("sky", 1.1 ** 4), (".", 1.1)]),
    ("a (very beautiful:1.5) [cat] \\(escaped\\)",
     [("a ", 1.0), ("very beautiful", 1.5), (" ", 1.0), ("cat", 1 / 1.1), (" (escaped)", 1.0)]),
    ("((word))", [("word", 1.1 * 1.1)]),
    ("back\\\\slash [unclosed", [("back\\slash ", 1.0), ("unclosed", 1 / 1.1)]),
    ("closed) too] early:2)", [("closed) too] early:2)", 1.0)]),
    ("a cat BREAK a dog", [("a cat", 1.0), ("BREAK", -1.0), ("a dog", 1.0)]),
    ("", [("", 1.0)]),
])
def test_attention_syntax_is_read_as_a1111_reads_it(text, expected):
    got = parse_attention(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    np.testing.assert_allclose([w for _, w in got], [w for _, w in expected], rtol=1e-12)


# ----- chunks, on a tokenizer of one id per word -----------------------------------------
def word_encoder(width=4):
    vocab = {}

    def tokenize(text):
        return [vocab.setdefault(w, len(vocab) + 10) for w in text.replace(",", " , ").split()]

    def encode(ids):
        return np.repeat(ids[..., None].astype(np.float32), width, axis=-1) / 100 + 1

    return prompts.TextEncoder(tokenize, encode, bos=1, eos=2, pad=0)


def test_a_long_prompt_is_cut_into_chunks_of_75_tokens_at_a_comma_and_at_break():
    enc = word_encoder()
    chunks = prompts.chunks(" ".join(["w"] * 160), enc)
    assert [len(t) for t, _ in chunks] == [75, 75, 10]
    comma = " ".join(["w"] * 70) + " , " + " ".join(["w"] * 10)  # comma is token 71: the cut moves there
    assert [len(t) for t, _ in prompts.chunks(comma, enc)] == [71, 10]
    far = " ".join(["w"] * 40) + " , " + " ".join(["w"] * 40)  # comma 34 tokens back: no move
    assert [len(t) for t, _ in prompts.chunks(far, enc)] == [75, 6]
    assert [len(t) for t, _ in prompts.chunks("a b BREAK c", enc)] == [2, 1]


def test_prompt_and_negative_get_the_same_length_and_weights_keep_the_mean():
    enc = word_encoder()
    long, negative = prompts.embed_all([" ".join(["w"] * 100), "x"], enc)
    assert long.shape == negative.shape == (1, 154, 4)
    np.testing.assert_array_equal(negative[:, 77:], prompts.embed("", enc))
    plain, weighted = prompts.embed("a b c", enc), prompts.embed("a (b:1.5) c", enc)
    assert not np.allclose(plain, weighted)
    assert weighted.mean() == pytest.approx(plain.mean(), rel=1e-6)


# ----- on the embedded model -------------------------------------------------------------
def draw(world, prompt, **fields):
    return pixels(world.create(prompt=prompt, seed=3, **{**FAST, "steps": 3, **fields}).paths[0])


def test_a_prompt_past_75_tokens_is_not_cut(world):
    tokens = len(world.compile(world.request(prompt=LONG, **FAST)).prompt_encoder(1).tokenize(LONG))
    assert tokens == 189
    first_chunk = SHORT + " and" * 68
    assert not np.array_equal(draw(world, LONG), draw(world, first_chunk))


def test_a_weight_changes_the_picture_and_weight_one_does_not(world):
    plain = draw(world, "a red circle on a blue background")
    assert not np.array_equal(draw(world, "a (red:1.5) circle on a blue background"), plain)
    np.testing.assert_array_equal(draw(world, "a (red:1.0) circle on a blue background"), plain)


@pytest.fixture(scope="module")
def engines(models_dir):
    from dreamworld.backends.tf_backend import TensorflowBackend
    model = find_model(models_dir, "dreamworld-tiny")
    return TorchBackend(LoadSpec(model, None, "cpu", "fp32")), TensorflowBackend(LoadSpec(model, None, "cpu", "fp32"))


def test_a_plain_short_prompt_gives_the_encoders_own_embedding(engines):
    pipe = engines[0]._pipes["txt2img"]
    for skip in (1, 2):
        np.testing.assert_array_equal(engines[0].embed(SHORT, skip), clip_reference(pipe, SHORT, skip).numpy())


def test_torch_and_tensorflow_give_the_same_embedding_for_a_weighted_long_prompt(engines):
    text = "a ((red)) circle, [blue] background BREAK " + LONG.replace("green", "(green:1.3)")
    request = type("R", (), dict(prompt=text, negative_prompt="ugly", clip_skip=2))
    torch_emb, tf_emb = (e.encode_prompt(request) for e in engines)
    assert torch_emb.shape[:2] == (2, 77 * 4)
    np.testing.assert_allclose(tf_emb, torch_emb, atol=2e-5 * np.abs(torch_emb).max())


def test_the_command_line_takes_a_weighted_long_prompt(tmp_path):
    text = "a (red:1.4) circle BREAK on a [blue] background, \\(test\\) " + " and" * 80
    run = app("generate", "--prompt", text, "--seed", "2", "--steps", "2", "--width", "64", "--height", "64",
              creations_dir=tmp_path)
    assert run.returncode == 0, run.stderr
    (path,) = run.stdout.split()
    assert creations.read_creation(path)["parameters"].startswith(text)
