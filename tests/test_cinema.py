"""Cinema: schedules, frame transforms, videos and runs on the embedded model."""
import math

import numpy as np
import pytest

from dreamworld import schedules, transforms
from dreamworld.schema import RequestError


# ----- schedules --------------------------------------------------------------------------
def test_constants_are_the_same_every_frame():
    assert schedules.parse(1.5, "zoom").values(3) == [1.5, 1.5, 1.5]
    assert schedules.parse(" 0.25 ", "zoom").values(2) == [0.25, 0.25]
    assert schedules.parse("0:(1.02)", "zoom").values(2) == [1.02, 1.02]
    assert schedules.parse("1.02", "zoom").is_constant


def test_keyframes_interpolate_linearly_and_hold_after_the_last():
    values = schedules.parse("0:(1.0), 30:(1.6)", "zoom").values(40)
    assert values[0] == 1.0 and values[15] == pytest.approx(1.3) and values[30] == pytest.approx(1.6)
    assert values[31:] == [pytest.approx(1.6)] * 9
    # unordered keys, held before the first, spaces and newlines, no parentheses
    assert schedules.parse(" 10 : (2),\n 5:(1) ", "angle").values(12)[:6] == [1, 1, 1, 1, 1, 1]
    assert schedules.parse("0: 0, 4: 8", "angle").values(5) == [0, 2, 4, 6, 8]
    # keyframe frames may be expressions of max_f (the last frame index)
    assert schedules.parse("0:(0), max_f:(10)", "angle").values(11) == pytest.approx(list(range(11)))


def test_expressions_of_t_and_max_f():
    values = schedules.parse("0:(1+0.02*sin(2*3.14*t/24))", "zoom").values(25)
    assert values == pytest.approx([1 + 0.02 * math.sin(2 * 3.14 * t / 24) for t in range(25)])
    assert schedules.parse("t/max_f", "x").values(5) == [0, 0.25, 0.5, 0.75, 1]
    # an expression holds from its keyframe to the next; numbers interpolate towards the next value
    assert schedules.parse("0:(t), 3:(10), 5:(t*t)", "x").values(7) == [0, 1, 2, 10, 10 + (25 - 10) / 2, 25, 36]
    functions = "abs(-1)+sqrt(4)+exp(0)+log(e)+min(1,2)+max(1,2)+floor(1.5)+ceil(1.5)+cos(0)+tan(0)+pi-pi"
    assert schedules.parse(functions, "x").values(1) == [1 + 2 + 1 + 1 + 1 + 2 + 1 + 2 + 1 + 0]
    assert schedules.parse("t%2 if t < 3 else -1", "x").values(5) == [0, 1, 0, -1, -1]
    assert schedules.parse("where(t > 1, 5, 6)", "x").values(3) == [6, 6, 5]


@pytest.mark.parametrize("text, position, words", [
    ("0:(1.0), 30:(1.05", 12, "'(' is never closed"),
    ("0:(1.0) 30:(2)", 8, "expected ',' between keyframes"),
    ("0:(1.0), 30:(z)", 13, "unknown name 'z'"),
    ("0:(1), 10:(sinn(t))", 11, "unknown function 'sinn'"),
    ("0:(__import__('os').system('x'))", 3, "unknown function "),
    ("0:(().__class__)", 3, "attribute access is not allowed"),
    ("0:(1), 5:(1/(t-7))", 11, "division by zero in '/' at frame 7"),
    ("0:(9**9**9)", 4, "cannot be computed"),
    ("0:(sqrt(-t))", 3, "sqrt() cannot be computed"),
    ("0:(1), 0:(2)", 7, "frame 0 has two keyframes"),
    ("0:(1), 2.5:(2)", 7, "whole number"),
    ("1, 2", 1, "unexpected ','; keyframes look like"),
    ("0:(1+)", 5, "invalid syntax"),
    ("0:()", 3, "expected a number"),
    ("", 0, "the schedule is empty"),
    ("0:('a')", 3, "'a' is not a number"),
    ("0:(max(1))*2", 10, "expected ',' between keyframes"),
])
def test_malformed_schedules_report_the_position(text, position, words):
    with pytest.raises(schedules.ScheduleError) as error:
        schedules.parse(text, "zoom").values(10)
    e = error.value
    assert isinstance(e, RequestError) and e.field == "zoom"
    assert e.position == position, str(e)
    assert words in str(e)
    assert str(e).startswith(f"zoom schedule has an error at character {position + 1}: ")


def test_positions_count_characters_not_bytes():
    with pytest.raises(schedules.ScheduleError) as error:
        schedules.parse("0:(1+ǅ)", "angle")
    assert error.value.position == 5


def test_prompt_keyframes_hold_and_blend():
    prompts = schedules.parse_prompts({"0": "a forest", "4": "a city"}, first="ignored")
    assert prompts.prompts(6) == ["a forest"] * 4 + ["a city"] * 2
    assert prompts.blends(6)[2] == ("a forest", "a city", 0.5)
    text = '{"3": "a city", "max_f": "the sea"}'
    prompts = schedules.parse_prompts(text, first="a forest")
    assert prompts.prompts(7) == ["a forest"] * 3 + ["a city"] * 3 + ["the sea"]
    assert schedules.parse_prompts("", first="only").prompts(2) == ["only", "only"]
    with pytest.raises(schedules.ScheduleError) as error:
        schedules.parse_prompts('{"0": "a", "x": "b"}').prompts(3)
    assert error.value.position == 12 and "unknown name 'x'" in str(error.value)
    with pytest.raises(schedules.ScheduleError) as error:
        schedules.parse_prompts('{"0": "a",}')
    assert error.value.position == 10 and "not valid JSON" in str(error.value)


# ----- transforms -------------------------------------------------------------------------
def marker(x, y, width=128, height=96):
    image = np.zeros((height, width, 3), np.uint8)
    image[y - 1:y + 2, x - 1:x + 2] = 255
    return image


def centroid(image):
    weights = image[..., 0].astype(float)
    weights[weights < 60] = 0
    ys, xs = np.nonzero(weights)
    w = weights[ys, xs]
    return (xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()


def noise_image(width=128, height=96, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_2d_identity_and_3d_identity_leave_the_frame_unchanged():
    image = noise_image()
    for border in transforms.BORDERS:
        assert np.array_equal(transforms.warp(image, transforms.matrix_2d(128, 96), border), image)
        assert np.array_equal(transforms.warp(image, transforms.matrix_3d(128, 96, fov=70), border), image)
    assert np.array_equal(transforms.matrix_3d(128, 96), np.eye(3))
    assert transforms.is_identity(transforms.matrix_2d(128, 96, center_x=0.1, center_y=0.9))


def test_2d_translation_and_rotation_move_a_marker_as_expected():
    moved = transforms.warp(marker(64, 40), transforms.matrix_2d(128, 96, translate_x=10, translate_y=-5))
    assert centroid(moved) == pytest.approx((74, 35), abs=0.05)
    # 90 degrees counter-clockwise about the centre (63.5, 47.5): above the centre goes to the left
    turned = transforms.warp(marker(64, 40), transforms.matrix_2d(128, 96, angle=90))
    assert centroid(turned) == pytest.approx((56, 47), abs=0.05)
    # about another centre: the centre's own pixel stays
    about = transforms.matrix_2d(100, 100, zoom=2, angle=30, center_x=0.25, center_y=0.75)
    assert about @ [0.25 * 99, 0.75 * 99, 1] == pytest.approx([0.25 * 99, 0.75 * 99, 1])


def test_zoom_enlarges_a_centred_square():
    image = np.zeros((96, 96, 3), np.uint8)
    image[38:58, 38:58] = 255  # 20 px square centred on (47.5, 47.5)
    zoomed = transforms.warp(image, transforms.matrix_2d(96, 96, zoom=1.5))
    ys, xs = np.nonzero(zoomed[..., 0] > 127)
    assert xs.max() - xs.min() + 1 == pytest.approx(30, abs=1) and ys.max() - ys.min() + 1 == pytest.approx(30, abs=1)
    assert (xs.min() + xs.max()) / 2 == pytest.approx(47.5, abs=0.5)
    shrunk = transforms.warp(image, transforms.matrix_2d(96, 96, zoom=0.5))
    assert (shrunk[..., 0] > 127).sum() == pytest.approx(100, abs=12)


def test_borders_fill_uncovered_areas():
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, -4:] = 200  # a bright right edge
    shift = transforms.matrix_2d(32, 32, translate_x=8)  # uncovers 8 columns on the left
    assert transforms.warp(image, shift, "replicate")[:, :8].max() == 0
    assert transforms.warp(image, shift, "wrap")[:, 4:8].min() == 200  # the right edge comes round
    assert transforms.warp(image, shift, "reflect")[:, :8].max() == 0


def test_3d_camera_moves_a_marker_as_documented():
    f = transforms.focal_length(128, 40)
    assert f == pytest.approx(64 / math.tan(math.radians(20)))
    x0, y0 = 64, 40
    cases = {
        "translate_x": (dict(translate_x=10), (x0 + f * 10 / 200, y0)),
        "translate_y": (dict(translate_y=10), (x0, y0 + f * 10 / 200)),
    }
    for name, (move, expected) in cases.items():
        assert centroid(transforms.warp(marker(x0, y0), transforms.matrix_3d(128, 96, **move))) == \
            pytest.approx(expected, abs=0.25), name
    cx, cy = 63.5, 47.5
    grown = centroid(transforms.warp(marker(90, 47), transforms.matrix_3d(128, 96, translate_z=20)))
    assert grown[0] == pytest.approx(cx + (90 - cx) / (1 - 20 / 200), abs=0.1)  # forward: the picture grows
    tilted = centroid(transforms.warp(marker(x0, y0), transforms.matrix_3d(128, 96, rotate_x=5)))
    assert tilted[1] > y0 + 10  # tilt up: the picture moves down
    panned = centroid(transforms.warp(marker(x0, y0), transforms.matrix_3d(128, 96, rotate_y=5)))
    assert panned[0] < x0 - 10  # pan right: the picture moves left
    rolled = transforms.warp(marker(90, 47), transforms.matrix_3d(128, 96, rotate_z=90))
    assert centroid(rolled) == pytest.approx(centroid(transforms.warp(marker(90, 47),
                                                                      transforms.matrix_2d(128, 96, angle=90))))


def test_motions_compose_into_one_matrix():
    a = transforms.matrix_2d(64, 64, zoom=1.1, angle=3)
    b = transforms.matrix_3d(64, 64, translate_x=4, rotate_y=2)
    image = marker(30, 30, 64, 64)
    assert centroid(transforms.warp(image, b @ a)) == pytest.approx(
        centroid(transforms.warp(transforms.warp(image, a), b)), abs=0.3)


def test_depth_warp_hook_agrees_with_the_plane_homography():
    image = marker(90, 47)
    move = dict(translate_x=5, translate_z=10, rotate_y=3, rotate_x=-2)
    plane = transforms.warp(image, transforms.matrix_3d(128, 96, **move))
    flat = transforms.warp_3d_depth(image, np.ones((96, 128)), **move)
    assert centroid(flat) == pytest.approx(centroid(plane), abs=0.05)
    rng = np.random.default_rng(1)
    still = noise_image()
    assert np.array_equal(transforms.warp_3d_depth(still, rng.uniform(1, 3, (96, 128))), still)
    # farther pixels move less when the camera slides sideways
    near = centroid(transforms.warp_3d_depth(marker(64, 40), np.ones((96, 128)), translate_x=10))
    far = centroid(transforms.warp_3d_depth(marker(64, 40), np.full((96, 128), 2.0), translate_x=10))
    assert near[0] - 64 == pytest.approx(2 * (far[0] - 64), abs=0.2)


@pytest.mark.parametrize("space", transforms.COLOR_SPACES)
def test_colour_matching_pulls_a_frame_to_the_reference_palette(space):
    rng = np.random.default_rng(3)
    reference = np.zeros((48, 48, 3), np.uint8)
    reference[..., 0] = rng.integers(150, 250, (48, 48))
    reference[..., 2] = rng.integers(0, 60, (48, 48))
    drifted = np.roll(reference, 5, axis=1)[..., [2, 1, 0]]  # the same picture with red and blue swapped
    matched = transforms.match_colors(drifted, reference, space)
    before = np.abs(drifted.mean((0, 1)) - reference.mean((0, 1))).sum()
    after = np.abs(matched.astype(float).mean((0, 1)) - reference.mean((0, 1))).sum()
    assert after < before / 4
    assert np.array_equal(transforms.match_colors(reference, reference, "rgb"), reference)


def test_noise_contrast_and_blend():
    grey = np.full((32, 32, 3), 128, np.uint8)
    noisy = transforms.add_noise(grey, 0.1, seed=5)
    assert np.array_equal(noisy, transforms.add_noise(grey, 0.1, seed=5))
    assert not np.array_equal(noisy, transforms.add_noise(grey, 0.1, seed=6))
    assert (noisy.astype(float) - 128).std() == pytest.approx(12.75, rel=0.1)
    assert transforms.add_noise(grey, 0, seed=1) is grey
    ramp = np.tile(np.arange(0, 256, 8, dtype=np.uint8)[None, :, None], (4, 1, 3))
    assert transforms.adjust_contrast(ramp, 1) is ramp
    stronger = transforms.adjust_contrast(ramp, 1.5)
    assert stronger.astype(float).std() > ramp.astype(float).std()
    assert transforms.adjust_contrast(np.full((2, 2, 3), 127, np.uint8), 3).max() <= 128
    black, white = np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 200, np.uint8)
    assert transforms.blend(black, white, 0.25)[0, 0, 0] == 50
    assert np.array_equal(transforms.blend(black, white, 0), black)
