"""The embedded model's dataset and measurements, and its training script."""
import csv

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from embedded_model import architecture, shapes, train


def test_the_measurements_read_rendered_scenes_back():
    rng = np.random.default_rng(1)
    for split in ("train", "heldout"):
        scenes = [shapes.sample_scene(rng, split, objects=1, full=True) for _ in range(60)]
        for scene, image in zip(scenes, shapes.render_pil(scenes, 128)):
            assert all(shapes.score(scene, image).values()), (scene.caption, shapes.measure(image))


def test_a_picture_that_disagrees_with_its_caption_is_scored_wrong():
    scene = shapes.scene_from("blue", ("star", "red", "large", "left"))
    other = shapes.render_pil([shapes.scene_from("green", ("circle", "yellow", "small", "right"))], 128)[0]
    assert not any(shapes.score(scene, other).values())


def test_held_out_triples_never_appear_in_training_scenes():
    rng = np.random.default_rng(2)
    for _ in range(2000):
        scene = shapes.sample_scene(rng, "train")
        assert not scene.heldout
        assert all(o.colour != scene.background for o in scene.objects)
    held = [shapes.sample_scene(rng, "heldout", objects=1) for _ in range(50)]
    assert all(s.heldout for s in held)
    # every pair inside a held-out triple is still seen, so the held-out set measures generalisation
    pairs = {(c, s) for c, s, _ in shapes.HELDOUT} | {(c, b) for c, _, b in shapes.HELDOUT}
    seen = set()
    for _ in range(3000):
        scene = shapes.sample_scene(rng, "train", objects=1)
        o = scene.objects[0]
        seen |= {(o.colour, o.shape), (o.colour, scene.background)}
    assert pairs <= seen


def test_captions_vary_and_name_what_is_drawn():
    rng = np.random.default_rng(3)
    scenes = [shapes.sample_scene(rng, "train", objects=1) for _ in range(200)]
    assert len({s.caption for s in scenes}) > 190
    for s in scenes:
        o = s.objects[0]
        assert o.shape in s.caption
        assert ("colour" not in o.named) or o.colour in s.caption
        assert (not s.bg_named) or s.background in s.caption


def test_training_checkpoints_and_resumes_where_it_stopped(tmp_path):
    common = ["--out", str(tmp_path), "--batch", "4", "--vae-batch", "2", "--log-every", "1", "--fp32"]
    common += ["--vae-steps", "2", "--text-steps", "2", "--steps", "4"]
    train.main(common + ["--decoder-steps", "0", "--max-minutes", "0.0001"])
    rows = list(csv.DictReader((tmp_path / "loss.csv").open()))
    assert [(r["stage"], r["step"]) for r in rows] == [("vae", "1")]  # stopped after one step
    assert not (tmp_path / "model").exists()  # no model before the UNet trained

    train.main(common + ["--decoder-steps", "0", "--resume"])
    rows = list(csv.DictReader((tmp_path / "loss.csv").open()))
    assert [(r["stage"], int(r["step"])) for r in rows] == (
        [("vae", 1), ("vae", 2), ("text", 1), ("text", 2)] + [("unet", i) for i in range(1, 5)])
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    model = tmp_path / "model"
    assert (model / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (model / "tokenizer" / "vocab.json").is_file()
    seeded = {k.removeprefix("text_model."): v for k, v in architecture.new_parts()[2].state_dict().items()}
    shipped = {k.removeprefix("text_model."): v for k, v in load_file(model / "text_encoder" / "model.safetensors").items()}
    assert not torch.equal(shipped["final_layer_norm.weight"], seeded["final_layer_norm.weight"])  # the text stage's

    with pytest.raises(SystemExit, match="--train-text-encoder"):  # its weights would not match the checkpoint's
        train.main(common + ["--decoder-steps", "0", "--resume", "--train-text-encoder"])

    # stage 4 fine-tunes the decoder alone: the latents the UNet learnt stay the same
    before = load_file(model / "vae" / "diffusion_pytorch_model.safetensors")
    train.main(common + ["--decoder-steps", "3", "--resume"])
    rows = list(csv.DictReader((tmp_path / "loss.csv").open()))
    assert [(r["stage"], int(r["step"])) for r in rows[-3:]] == [("decoder", i) for i in range(1, 4)]
    after = load_file(model / "vae" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(("encoder.", "quant_conv.")))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))


@pytest.mark.parametrize("step, expected", [(0, 4e-4 / 200), (199, 4e-4), (5499, 4e-5)])
def test_learning_rate_warms_up_then_decays_to_a_tenth(step, expected):
    assert train.lr_at(step, 5500, 4e-4) == pytest.approx(expected, rel=1e-3)


def test_the_text_stage_asks_for_what_the_caption_names():
    scene = shapes.scene_from("blue", ("star", "yellow", "small", "left"))
    c, s, z, p = shapes.COLOURS, shapes.SHAPES, tuple(shapes.SIZES), tuple(shapes.POSITIONS)
    assert train.caption_targets(scene) == [c.index("blue"), 0, c.index("yellow"), s.index("star"),
                                                 z.index("small"), p.index("left")] + [-100] * 4
    scene.bg_named = False
    scene.objects[0].named = frozenset({"shape", "colour"})
    assert train.caption_targets(scene)[:6] == [-100, 0, c.index("yellow"), s.index("star"), -100, -100]
    assert len(train.caption_targets(scene)) == len(train.SLOTS)


class _Autoencoder:
    """An autoencoder stand-in: the identity, or one that forgets everything but the mean colour."""
    device = torch.device("cpu")

    def __init__(self, blur: bool):
        self.blur = blur

    def encode(self, x):
        from types import SimpleNamespace
        return SimpleNamespace(latent_dist=SimpleNamespace(mode=lambda: x))

    def decode(self, z):
        from types import SimpleNamespace
        return SimpleNamespace(sample=z.mean(dim=(2, 3), keepdim=True).expand_as(z) if self.blur else z)


def test_the_autoencoder_round_trip_scores_what_survives_it():
    from embedded_model.evaluate import autoencoder_round_trip
    exact = autoencoder_round_trip(_Autoencoder(blur=False), n=20)
    assert exact["mean_error"] < 0.5
    assert all(met == asked for met, asked in exact["results"].values())
    flat = autoencoder_round_trip(_Autoencoder(blur=True), n=20)
    assert flat["mean_error"] > 5
    assert flat["results"]["shape"][0] == 0 and flat["results"]["position"][0] == 0


def test_the_scripts_refuse_bad_arguments_by_name(tmp_path, capsys):
    from embedded_model import evaluate
    with pytest.raises(SystemExit):
        train.main(["--out", str(tmp_path), "--vae-steps", "-3"])
    assert "--vae-steps must be at least 0" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()
    with pytest.raises(SystemExit):
        evaluate.main(["--autoencoder", "--model", str(tmp_path / "nowhere")])
    assert "--model:" in capsys.readouterr().err
