"""The pose preprocessor: an OpenPose body model from models/openpose, run by controlnet-aux's detector, its
skeletons drawn where the model finds them. No trained body model can be had offline: the network here is
OpenPose's at full size with random weights (what it finds does not matter), and the drawing is checked on
the keypoints a detector reports."""
import numpy as np
import pytest
import torch
from PIL import Image

from dreamworld import openpose, preprocessors
from dreamworld.errors import DreamWorldError


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A models folder with an OpenPose body model in lllyasviel's layout (keys without the block's name)."""
    body, _, _ = openpose._modules()
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("models")
    (root / "openpose").mkdir()
    state = {key.split(".", 1)[1]: value for key, value in body.bodypose_model().state_dict().items()}
    torch.save(state, root / "openpose" / "body_pose_model.pth")
    return root


def picture() -> Image.Image:
    return Image.fromarray(np.random.default_rng(1).integers(0, 255, (96, 128, 3), dtype=np.uint8))


def test_the_body_model_runs_and_gives_a_map_of_the_pictures_size(models):
    first = preprocessors.run("pose", picture(), models_dirs=[models])
    assert first.shape == (96, 128, 3) and first.dtype == np.float32 and 0 <= first.min() <= first.max() <= 1
    assert np.array_equal(first, preprocessors.run("pose", picture(), models_dirs=[models]))


def test_a_found_body_is_drawn_where_it_stands(models, monkeypatch):
    body, _, _ = openpose._modules()

    def found(self, bgr):  # what the detector reports: a neck and a right shoulder, in the detected picture's pixels
        height, width = bgr.shape[:2]
        candidate = np.array([[0.5 * width, 0.25 * height, 0.9, 0], [0.25 * width, 0.25 * height, 0.9, 1]])
        person = np.full(20, -1.0)
        person[1], person[2], person[18], person[19] = 0, 1, 1.8, 2  # COCO part 1 is the neck, 2 the right shoulder
        return candidate, person[None]

    monkeypatch.setattr(body.Body, "__call__", found)
    drawn = (preprocessors.run("pose", picture(), models_dirs=[models]) * 255).astype(int)
    assert drawn.shape == (96, 128, 3)
    limb = drawn[24, 36:60]  # on the segment from (32, 24) to (64, 24)
    assert (limb[:, 0] >= 150).all(), "the neck-to-shoulder limb (red, as OpenPose draws it) is missing"
    assert drawn[60:, :].max() == 0 and drawn[:, 90:].max() == 0, "something was drawn away from the body"


def test_pose_guides_a_generation_recorded_as_a1111s_controlnet_unit(world, models, monkeypatch):
    monkeypatch.setattr(world, "model_dirs", [*world.model_dirs, models])
    picture().save(models / "person.png")
    result = world.create(prompt="a red circle on a blue background", steps=2, width=64, height=64, seed=1,
                          controlnet=[{"model": "control_dreamworld_edges", "preprocessor": "pose",
                                       "image": str(models / "person.png"), "weight": 0.8}])
    assert 'ControlNet 0: "Module: pose, Model: control_dreamworld_edges' in result.parameters[0]


def test_weights_of_another_network_are_one_sentence(tmp_path):
    (tmp_path / "openpose").mkdir()
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "openpose" / "body_pose_model.pth")
    with pytest.raises(DreamWorldError) as e:
        preprocessors.run("pose", picture(), models_dirs=[tmp_path])
    assert str(e.value).startswith("body_pose_model.pth is not an OpenPose body model (")
    assert "\n" not in str(e.value)
