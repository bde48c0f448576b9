"""ControlNet units and sketch (painted) inpainting on the embedded model, with the shipped edge ControlNet
models/ControlNet/control_dreamworld_edges (embedded_model/train_controlnet.py)."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image, ImageDraw

from dreamworld import creations, preprocessors
from dreamworld.errors import DreamWorldError
from dreamworld.schema import RequestError
from dreamworld.settings import PROJECT_DIR
from embedded_model import shapes

from .conftest import files_in, pixels

EDGES = "control_dreamworld_edges"
SIZE = dict(width=128, height=128)
STEPS = 10


def scenes(n: int, seed: int = 7):
    """Held-out one-object scenes (their colour/shape/background triple never seen in training) and a
    prompt that names the object and the background but not where the object is."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = shapes.sample_scene(rng, "heldout", objects=1, full=True)
        o = s.objects[0]
        article = "an" if s.background[0] in "aeiou" else "a"
        out.append((s, f"a {o.size} {o.colour} {o.shape} on {article} {s.background} background"))
    return out


def iou(image, scene) -> float:
    target = shapes.object_mask(shapes.render_pil([scene])[0], scene.background)
    found = shapes.object_mask(image, scene.background)
    return float((found & target).sum() / max(1, (found | target).sum()))


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    """Four held-out scenes, each saved as a picture to guide with."""
    folder = tmp_path_factory.mktemp("controls")
    out = []
    for k, (scene, prompt) in enumerate(scenes(4)):
        path = folder / f"scene{k}.png"
        shapes.render_pil([scene])[0].save(path)
        out.append((scene, prompt, path))
    return out


def make(world, prompt, seed, units=(), **fields):
    return world.create(prompt=prompt, seed=seed, steps=STEPS, controlnet=list(units), **SIZE, **fields)


def unit(path, **fields) -> dict:
    return {"preprocessor": "canny", "model": EDGES, "image": str(path), **fields}


# ----- preprocessors ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["canny", "soft-sobel", "soft"])
def test_edge_previews_are_deterministic_and_the_pictures_size(world, held, name):
    _, _, path = held[0]
    first = world.preview_control(name, str(path), width=96, height=64)
    again = world.preview_control(name, str(path), width=96, height=64)
    assert first.size == (96, 64) and np.array_equal(pixels(first), pixels(again))
    edges = pixels(first)[..., 0] > 127
    assert 0.005 < edges.mean() < 0.3  # an outline, not a blank or a filled picture
    # the edges lie on the object's outline: none far inside the flat background corners
    assert not edges[:6, :6].any() and not edges[-6:, -6:].any()


def test_canny_thresholds_change_what_is_kept():
    image = Image.new("RGB", (64, 64), (120, 120, 120))
    ImageDraw.Draw(image).rectangle((8, 8, 30, 30), fill=(135, 120, 120))  # a faint square
    ImageDraw.Draw(image).rectangle((36, 36, 56, 56), fill=(250, 250, 250))  # a strong one
    low = preprocessors.run("canny", image, threshold_a=10, threshold_b=30)
    high = preprocessors.run("canny", image, threshold_a=100, threshold_b=200)
    assert low[:32, :32].max() == 1.0 and high[:32, :32].max() == 0.0 and high[32:, 32:].max() == 1.0


def test_image_preprocessors_pass_the_picture_and_inpaint_marks_the_mask():
    image = Image.new("RGB", (32, 32), (10, 200, 30))
    assert np.allclose(preprocessors.run("qr", image), np.asarray(image) / 255.0)
    mask = Image.new("L", (32, 32), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 15, 31), fill=255)
    out = preprocessors.run("inpaint", image, mask=mask)
    assert (out[:, :16] == -1).all() and np.allclose(out[:, 16:], np.asarray(image)[:, 16:] / 255.0)


def test_depth_without_a_depth_model_is_one_sentence_naming_the_folder(world, held):
    with pytest.raises(DreamWorldError, match=r"depth preprocessor needs a depth model .* in .*/depth"):
        world.preview_control("depth", str(held[0][2]))


# ----- guiding the embedded model -----------------------------------------------------------------
@pytest.fixture(scope="module")
def placements(world, held):
    """IoU of the object with the control scene's object: with the ControlNet (end 1 and end 0.3) and
    without it, for each held-out scene at two seeds."""
    rows = []
    for scene, prompt, path in held:
        for seed in (1, 2):
            plain = make(world, prompt, seed).images[0]
            guided = make(world, prompt, seed, [unit(path)]).images[0]
            early = make(world, prompt, seed, [unit(path, end=0.3)]).images[0]
            rows.append((iou(guided, scene), iou(early, scene), iou(plain, scene)))
    return np.array(rows)


def test_a_control_shape_puts_the_object_where_the_prompt_does_not_say(placements):
    guided, _, plain = placements.mean(axis=0)
    assert guided > 0.5 and guided > plain + 0.2, placements
    assert (placements[:, 0] > placements[:, 2]).mean() >= 0.75, placements


def test_a_unit_ending_at_0_3_follows_less_than_one_ending_at_1(placements):
    guided, early, _ = placements.mean(axis=0)
    assert early < guided - 0.05, placements


def test_weight_0_gives_the_pixels_of_no_controlnet(world, held):
    scene, prompt, path = held[1]
    plain = make(world, prompt, 3).images[0]
    off = make(world, prompt, 3, [unit(path, weight=0)]).images[0]
    assert np.array_equal(pixels(plain), pixels(off))


def test_two_units_combine(world, tmp_path):
    """One unit draws a circle's outline on the left, the other a square's on the right: together both."""
    left = shapes.scene_from("blue", ("circle", "red", "large", "left"))
    right = shapes.scene_from("blue", ("square", "red", "large", "right"))
    paths = []
    for name, scene in (("left", left), ("right", right)):
        paths.append(tmp_path / f"{name}.png")
        shapes.render_pil([scene])[0].save(paths[-1])
    prompt = "a red circle and a red square on a blue background"
    both_scene = shapes.scene_from("blue", ("circle", "red", "large", "left"), ("square", "red", "large", "right"))
    score = {}
    for name, units in (("left", [unit(paths[0])]), ("right", [unit(paths[1])]),
                        ("both", [unit(paths[0]), unit(paths[1])])):
        score[name] = np.mean([iou(make(world, prompt, s, units).images[0], both_scene) for s in (1, 2)])
    assert score["both"] > max(score["left"], score["right"]) + 0.05, score


def test_metadata_stores_the_control_image_and_from_reruns_the_same_pixels(world, held):
    scene, prompt, path = held[2]
    result = make(world, prompt, 5, [unit(path, weight=0.8)])
    data = creations.read_creation(result.paths[0])
    assert ('ControlNet 0: "Module: canny, Model: control_dreamworld_edges [' in data["parameters"]
            and ', Weight: 0.8, Resize Mode: Just Resize' in data["parameters"])
    [recorded] = data["request"]["controlnet"]
    assert recorded["image"].startswith("inputs/") and (world.creations_dir / recorded["image"]).is_file()
    again = world.create(**creations.request_from_file(result.paths[0], world.creations_dir))
    assert np.array_equal(pixels(result.paths[0]), pixels(again.paths[0]))


def test_the_unit_takes_the_input_image_when_it_has_none(world, held):
    scene, prompt, path = held[3]
    result = world.create(prompt=prompt, seed=1, steps=STEPS, mode="img2img", init_image=str(path), strength=1.0,
                          controlnet=[{"preprocessor": "canny", "model": EDGES}], **SIZE)
    assert iou(result.images[0], scene) > 0.4


def test_a_control_image_of_another_size_is_resized_and_said(world, held, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dreamworld")
    scene, prompt, path = held[0]
    small = tmp_path / "small.png"
    Image.open(path).resize((64, 64)).save(small)
    make(world, prompt, 1, [unit(small)])
    assert "ControlNet unit 0: control image 64x64 resized to 128x128" in caplog.text


def test_a_controlnet_of_another_family_is_refused_by_name(world, tmp_path):
    import json
    folder = PROJECT_DIR / "dreamworld" / "model_configs" / "controlnet-sd15" / "config.json"
    models = world.models_dir / "ControlNet" / "sd15-canny"
    models.mkdir(parents=True, exist_ok=True)
    (models / "config.json").write_text(json.dumps(json.loads(folder.read_text())))
    before = files_in(world.creations_dir)
    with pytest.raises(DreamWorldError, match=r"ControlNet 'sd15-canny' is for SD 1.x models and cannot guide "
                                              r"'dreamworld-tiny'"):
        make(world, "a red circle", 1, [{"preprocessor": "canny", "model": "sd15-canny"}], mode="img2img",
             init_image=Image.new("RGB", (128, 128)))
    assert files_in(world.creations_dir) == before


def test_unknown_controlnet_model_is_one_sentence(world):
    with pytest.raises(RequestError, match=r"ControlNet unit 0: controlnet 'nope' was not found; available: .*"
                                           r"control_dreamworld_edges"):
        make(world, "x", 1, [{"preprocessor": "canny", "model": "nope"}], mode="img2img",
             init_image=Image.new("RGB", (128, 128)))


def test_tensorflow_refuses_units_in_one_sentence(world, held):
    with pytest.raises(RequestError, match=r"^backend 'tensorflow' cannot do ControlNet; remove the ControlNet "
                                           r"units or use backend 'torch'$"):
        world.create(prompt="x", backend="tensorflow", controlnet=[unit(held[0][2])], steps=2, width=64, height=64)


# ----- sketch (painted) inpainting ------------------------------------------------------------------
def test_painted_inpainting_changes_only_where_the_paint_differs_and_keeps_its_colour(world, tmp_path):
    init = shapes.render_pil([shapes.scene_from("blue", ("square", "yellow", "small", "right"))])[0]
    painted = init.copy()
    ImageDraw.Draw(painted).ellipse((14, 44, 54, 84), fill=shapes.PALETTE["red"])  # a red blob on the left
    init.save(tmp_path / "init.png")
    painted.save(tmp_path / "painted.png")
    result = world.create(prompt="a red circle and a small yellow square on a blue background", mode="inpaint",
                          init_image=str(tmp_path / "init.png"), painted=str(tmp_path / "painted.png"),
                          strength=0.6, mask_blur=2, compose_blur=0, seed=3, steps=STEPS, **SIZE)
    out, before = pixels(result.images[0]), pixels(init)
    mask = np.abs(pixels(painted) - before).max(axis=2) > 12
    assert np.abs(out - before)[~mask].max() <= 2  # elsewhere the input, within 2 levels
    assert np.abs(out - before)[mask].mean() > 40  # the painted part was repainted
    red = np.array(shapes.PALETTE["red"])
    assert np.linalg.norm(out[mask].mean(axis=0) - red) < 60  # ... in the paint's colour
    record = creations.read_creation(result.paths[0])["request"]
    assert record["painted"].startswith("inputs/") and record["mask"] is None
    again = world.create(**creations.request_from_file(result.paths[0], world.creations_dir))
    assert np.array_equal(pixels(result.paths[0]), pixels(again.paths[0]))


def test_a_painted_image_equal_to_the_input_is_one_sentence(world, tmp_path):
    init = Image.new("RGB", (128, 128), (30, 80, 220))
    with pytest.raises(RequestError, match="painted does not differ from init_image anywhere"):
        world.create(prompt="x", mode="inpaint", init_image=init, painted=init.copy(), steps=2, **SIZE)


def test_a_video_run_takes_each_frames_control_from_that_source_frame(world, tmp_path):
    """A line drawing of a circle moving left to right (white on black): each frame, repainted at strength 1,
    is a red circle on blue where its source frame's circle is with a unit that has no image of its own
    (canny of the frame), and not without it."""
    from dreamworld.cinema import runs, video
    moving = [shapes.scene_from("blue", ("circle", "red", "large", where)) for where in ("left", "center", "right")]
    drawings = [(preprocessors.run("canny", shapes.render_pil([s])[0]) * 255).astype(np.uint8) for s in moving]
    clip = video.write_mp4(drawings, tmp_path / "in.mp4", fps=8)
    fields = dict(motion="video", video=str(clip), prompt="a red circle on a blue background", steps=STEPS,
                  strength=1.0, seed=1, color_coherence="none")
    guided = world.animate(**fields, controlnet=[{"preprocessor": "canny", "model": EDGES}])
    plain = world.animate(**fields)
    follows = [iou(Image.open(f), s) for f, s in zip(guided.frames, moving)]
    free = [iou(Image.open(f), s) for f, s in zip(plain.frames, moving)]
    assert np.mean(follows) > np.mean(free) + 0.2 and min(follows) > 0.3, (follows, free)
    assert 'ControlNet 0: "Module: canny, Model: control_dreamworld_edges [' in \
        creations.read_creation(guided.frames[1])["parameters"]
    assert runs.load_settings(guided.settings, world.creations_dir)["controlnet"][0]["model"] == EDGES


def test_the_hires_pass_is_guided_by_the_units_made_at_its_size(world, held, monkeypatch):
    from dreamworld.backends.torch_backend import TorchBackend
    sizes = []
    predict = TorchBackend.predict_noise

    def watched(self, latents, t, context, control=(), control_input=None):
        if control:
            sizes.append(tuple(control[0][1].shape[-2:]))  # the control image the ControlNet sees
        return predict(self, latents, t, context, control=control, control_input=control_input)

    monkeypatch.setattr(TorchBackend, "predict_noise", watched)
    scene, prompt, path = held[0]
    result = world.create(prompt=prompt, seed=3, steps=4, controlnet=[unit(path)], width=64, height=64,
                          hires_scale=2, hires_steps=5, hires_denoising=0.6)
    assert sizes == [(64, 64)] * 4 + [(128, 128)] * 3  # 5 hires steps at denoising 0.6: the last 3
    assert 'ControlNet 0: "Module: canny' in result.parameters[0] and "Hires upscale: 2" in result.parameters[0]
