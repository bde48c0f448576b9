"""Cinema: schedules, frame transforms, videos and runs on the embedded model."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dreamworld import creations, schema
from dreamworld.cinema import planning, preview, runs, schedules, transforms, video
from dreamworld.schema import RequestError

from .conftest import files_in, pixels


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


@pytest.mark.parametrize("text, position, words", [
    ("+".join(["0.001"] * 1000), 1000, "the expression is 5999 characters long, more than the 1000 allowed"),
    ("0:(1), 9:(" + "+".join(["t"] * 600) + ")", 1010, "the expression is 1199 characters long"),
    ("1 if t < 1 else " * 300 + "0", 1000, "the expression is 4801 characters long"),
    ("-" * 150 + "1", 100, "nests more than 100 operations inside one another"),
    ("0:(" + "sin(" * 120 + "t" + ")" * 120 + ")", 3 + 4 * 100, "nests more than 100 operations"),
    ("0:(1), " * 40000 + "1:(2)", 250_000, "the schedule is 280005 characters long, more than the 250000 allowed"),
])
def test_huge_or_deep_schedules_are_refused_before_python_recurses(text, position, words):
    """Issue 19: 1000 terms or a long chain of conditionals hit Python's RecursionError, which named no field."""
    with pytest.raises(schedules.ScheduleError) as error:
        schedules.parse(text, "zoom").values(10)
    assert error.value.field == "zoom" and error.value.position == position and words in str(error.value)
    assert str(error.value).startswith("zoom schedule has an error at character")
    # the limits are far from what a person writes
    assert schedules.parse("1 if t < 1 else " * 60 + "0", "x").values(2) == [1.0, 0.0]
    assert len(schedules.parse("".join(f"{i}:(1.0123), " for i in range(10000)), "x").values(3)) == 3


def test_deeply_nested_prompts_json_is_one_sentence():
    with pytest.raises(schedules.ScheduleError, match="prompts schedule has an error at character 1: the JSON nests"):
        schedules.parse_prompts("[" * 100_000, "prompts")


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


# ----- videos -----------------------------------------------------------------------------
def test_mp4_and_gif_read_back_with_their_frame_count_and_rate(tmp_path):
    frames = [np.full((48, 64, 3), i * 30, np.uint8) for i in range(7)]
    mp4 = video.write_mp4(frames, tmp_path / "clip.mp4", fps=12)
    assert video.read_info(mp4) == {"fps": 12.0, "frames": 7, "size": (64, 48)}
    assert video.read_info(video.write_mp4(frames, tmp_path / "ntsc.mp4", fps=29.97))["fps"] == pytest.approx(29.97)
    gif = video.write_gif(frames, tmp_path / "clip.gif", fps=10)
    assert video.read_info(gif) == {"fps": 10.0, "frames": 7, "size": (64, 48)}
    assert [int(f[0, 0, 0]) for _, f in video.read_frames(gif, every_nth=3)] == [0, 90, 180]
    assert [f.shape for _, f in video.read_frames(mp4, every_nth=2, limit=2)] == [(48, 64, 3)] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.gif", "clip.mp4", "ntsc.mp4"]  # no temp files
    with pytest.raises(video.VideoError, match="does not exist"):
        list(video.read_frames(tmp_path / "none.mp4"))
    with pytest.raises(video.VideoError, match="even width and height"):
        video.write_mp4([np.zeros((9, 9, 3), np.uint8)], tmp_path / "odd.mp4", fps=5)
    assert not (tmp_path / "odd.mp4").exists()


KILLED_WRITER = """
import os, sys, time
import numpy as np
sys.path.insert(0, sys.argv[2])
from dreamworld.cinema import video

def frames():
    for i in range(100000):
        if i == 3:  # ffmpeg runs: keep its stdin open in a forked sleeper, then die as `kill -9` does
            me = os.getpid()
            ffmpeg = [int(p) for p in os.listdir("/proc") if p.isdigit() and
                      open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1] == str(me)]
            sleeper = os.fork()
            if sleeper == 0:
                os.closerange(0, 3)
                time.sleep(60)
                os._exit(0)
            print(*ffmpeg, sleeper, flush=True)
            os.kill(me, 9)
        yield np.zeros((64, 64, 3), np.uint8)

video.write_mp4(frames(), sys.argv[1], 12)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_ffmpeg_dies_with_the_process_writing_the_video(tmp_path):
    """Issue 19: after `kill -9` of a run, ffmpeg went on writing its temp file beside the frames."""
    import os
    import signal
    import subprocess
    import time

    from dreamworld.settings import PROJECT_DIR

    with open(tmp_path / "pids", "w") as out:  # no pipes: ffmpeg would hold them open
        run = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "out.mp4"), str(PROJECT_DIR)],
                             stdout=out, stderr=subprocess.DEVNULL, timeout=120)
    *ffmpeg, sleeper = [int(pid) for pid in (tmp_path / "pids").read_text().split()]
    try:
        assert run.returncode == -signal.SIGKILL and len(ffmpeg) == 1

        def alive(pid):
            try:
                return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
            except FileNotFoundError:
                return False
        deadline = time.monotonic() + 10
        while alive(ffmpeg[0]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(ffmpeg[0]), "ffmpeg outlived the process that started it"
    finally:
        os.kill(sleeper, signal.SIGKILL)
        for pid in ffmpeg:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_the_mp4_is_h264_yuv420p():
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = video.write_mp4([np.zeros((64, 64, 3), np.uint8)] * 2, f"{folder}/a.mp4", fps=8)
        probe = subprocess.run([video.ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    assert "Video: h264" in probe.stderr and "yuv420p" in probe.stderr and "8 fps" in probe.stderr


# ----- planning ---------------------------------------------------------------------------
def test_seed_behaviours():
    assert planning.frame_seeds("iter", 10, 4) == [10, 11, 12, 13]
    assert planning.frame_seeds("fixed", 10, 3) == [10, 10, 10]
    assert planning.frame_seeds("ladder", 10, 6) == [10, 12, 11, 13, 12, 14]
    assert planning.frame_seeds("alternate", 10, 4) == [10, 11, 10, 11]
    assert planning.frame_seeds("schedule", 0, 3, [5.0, 5.4, 7.6]) == [5, 5, 8]
    random_seeds = planning.frame_seeds("random", 10, 4)
    assert random_seeds[0] == 10 and len(set(random_seeds)) == 4 and random_seeds == planning.frame_seeds("random", 10, 4)
    assert planning.frame_seeds("iter", 2**32 - 1, 2) == [2**32 - 1, 0]


def resolved(**fields):
    base = dict(prompt="x", width=64, height=64, seed=1, frames=6)
    return schema.validate_cinema({**base, **fields})


def test_plan_evaluates_every_frame_and_places_cadence_and_dream_anchors():
    plan = planning.plan(resolved(cadence=2, zoom="0:(1), 5:(1.5)", strength="0:(0.2), 5:(0.7)"))
    assert plan.diffused == [0, 2, 4, 5]
    assert [round(f.strength, 2) for f in plan.frames] == [0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert transforms.is_identity(plan.frames[0].motion) and plan.frames[5].motion[0, 0] == pytest.approx(1.5)
    dream = planning.plan(resolved(motion="dream", seed=7, prompts={"0": "a", "5": "b"}))
    assert dream.anchors == [(0, 7), (5, 8)] and [f.seed for f in dream.frames] == [7, 7, 7, 8, 8, 8]
    assert dream.frames[2].blend == ("a", "b", 0.4)
    scheduled = planning.plan(resolved(motion="dream", seed_behavior="schedule", seed_schedule="0:(3), 2:(9), 4:(1)"))
    assert scheduled.anchors == [(0, 3), (2, 9), (4, 1)]


def test_a_camera_turning_away_from_the_picture_is_refused_before_any_frame():
    assert planning.plan(resolved(motion="3d", rotate_y="5", frames=30))  # 5 degrees at a time, from each frame
    with pytest.raises(schema.RequestError, match="rotate_y turn the camera away from the picture by frame 15") as e:
        planning.plan(resolved(motion="3d", rotate_y="5", frames=30, init_image="in.png", reuse_init=True))
    assert e.value.field == "rotate_y"
    with pytest.raises(schema.RequestError, match="by frame 1 "):
        planning.plan(resolved(motion="3d", rotate_x="0:(0), 1:(-80)"))
    shown = preview.preview(resolved(motion="3d", rotate_y="5", frames=30))
    assert len(shown) == 15  # the preview stops where the moves add up past the view


def test_slerp_keeps_the_ends_exact_and_the_norm():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((1, 4, 8, 8), dtype=np.float32), rng.standard_normal((1, 4, 8, 8), dtype=np.float32)
    assert planning.slerp(a, b, 0) is a and planning.slerp(a, b, 1) is b
    middle = planning.slerp(a, b, 0.5)
    assert np.linalg.norm(middle) == pytest.approx((np.linalg.norm(a) + np.linalg.norm(b)) / 2, rel=0.05)


@pytest.mark.parametrize("fields, field, words", [
    (dict(zoom="0:(1.0), 3:(1.0z)"), "zoom", "zoom schedule has an error at character 16"),
    (dict(angle="0:(0), 2:(1/(t-3))"), "angle", "division by zero in '/' at frame 3"),
    (dict(strength="0:(0.5), 5:(1.5)"), "strength", "its schedule gives 1.1 at frame 3"),
    (dict(prompts='{"0": "a", "2": }'), "prompts", "not valid JSON"),
    (dict(motion="video"), "video", "video is required in video motion"),
    (dict(seed_behavior="schedule"), "seed_schedule", "required"),
    (dict(reuse_init=True), "reuse_init", "needs an init_image"),
    (dict(fps=0), "fps", "from 1.0 to 120.0"),
    (dict(mode="img2img"), "mode", "unknown field"),
])
def test_bad_cinema_requests_write_nothing(world, fields, field, words):
    before = files_in(world.creations_dir)
    with pytest.raises(RequestError) as error:
        world.animate(**{**FAST_CINEMA, **fields})
    assert error.value.field == field and words in str(error.value), str(error.value)
    assert files_in(world.creations_dir) == before


def test_preview_moves_the_input_without_diffusion(tmp_path):
    init = tmp_path / "init.png"
    Image.fromarray(noise_image(96, 64)).save(init)
    frames = preview.preview(schema.validate_cinema({"frames": 5, "zoom": 1.1, "init_image": str(init)}))
    assert len(frames) == 5 and frames[0].shape == (64, 96, 3)
    assert np.array_equal(frames[0], np.asarray(Image.open(init)))
    expected = transforms.warp(frames[0], np.linalg.matrix_power(transforms.matrix_2d(96, 64, zoom=1.1), 3))
    assert np.array_equal(frames[3], expected)
    pattern = preview.preview(schema.validate_cinema({"frames": 3, "motion": "3d", "rotate_z": 5}))
    assert pattern[0].shape == (128, 128, 3) and not np.array_equal(pattern[0], pattern[2])
    with pytest.raises(RequestError, match="no motion to preview"):
        preview.preview(schema.validate_cinema({"motion": "dream"}))


# ----- runs on the embedded model ---------------------------------------------------------
FAST_CINEMA = dict(prompt="a red circle", width=64, height=64, steps=2, strength=0.5, frames=4, fps=6, seed=21)


@pytest.fixture(scope="module")
def zoom_run(world):
    return world.animate(zoom="0:(1.1)", angle="0:(0), 3:(9)", gif=True, **FAST_CINEMA)


def test_a_short_run_saves_frames_with_metadata_an_mp4_and_a_gif(world, zoom_run):
    run = zoom_run
    assert not run.interrupted and run.made == [0, 1, 2, 3]
    assert run.run_dir.parent.parent == world.creations_dir and run.run_dir.name.endswith("-a-red-circle")
    assert [p.name for p in run.frames] == [f"frame_0000{i}.png" for i in range(4)]
    for i, path in enumerate(run.frames):
        data = creations.read_creation(path)
        assert data["request"]["cinema"]["run"] == run.run_dir.name and data["request"]["cinema"]["frame"] == i
        assert data["parameters"] == path.with_suffix(".txt").read_text()
        assert f"Seed: {21 + i}," in data["parameters"] and "Size: 64x64" in data["parameters"]
        assert data["request"]["mode"] == ("txt2img" if i == 0 else "img2img")
    assert "Denoising strength: 0.5" in creations.read_creation(run.frames[1])["parameters"]
    assert video.read_info(run.video) == {"fps": 6.0, "frames": 4, "size": (64, 64)}
    assert video.read_info(run.gif)["frames"] == 4
    assert run.paths == [run.gif, run.video]
    settings = json.loads(run.settings.read_text())["cinema"]
    assert settings["seed"] == 21 and settings["frames"] == 4 and settings["model"] == "dreamworld-tiny"
    assert set(run.timings) >= {"diffusion", "save", "encode", "color"}
    # the frames move: frame 1 is frame 0 zoomed, then diffused a little
    assert not np.array_equal(pixels(run.frames[0]), pixels(run.frames[1]))
    with pytest.raises(creations.CreationError, match="is frame 2 of the cinema run"):
        creations.request_from_file(run.frames[2])
    listed = creations.list_creations(world.creations_dir)
    assert run.frames[0] in listed and run.frames[1] not in listed  # a run shows once in the browser


def test_run_settings_cannot_reach_outside_the_creations_folder(world, tmp_path):
    outside = tmp_path / "run"
    outside.mkdir()
    settings = {"cinema": {"prompt": "x", "init_image": "../../../etc/hostname"}}
    (outside / runs.RUN_SETTINGS).write_text(json.dumps(settings))
    with pytest.raises(creations.CreationError, match="names the init_image '../../../etc/hostname', which is not"):
        runs.load_settings(outside, world.creations_dir)
    with pytest.raises(creations.CreationError, match="'run' is not a run in the creations folder"):
        world.resume_cinema(outside)


def test_resume_after_an_interrupt_continues_without_redoing_frames(world, zoom_run):
    def on_progress(progress):
        if progress.latest and progress.latest.endswith("frame_00001.png"):
            world.interrupt()

    first = world.animate(on_progress=on_progress, zoom="0:(1.1)", angle="0:(0), 3:(9)", gif=True, **FAST_CINEMA)
    assert first.interrupted and first.made == [0, 1] and first.video is None
    kept = {p.name: p.read_bytes() for p in first.frames}
    assert sorted(kept) == ["frame_00000.png", "frame_00001.png"]
    assert not list(first.run_dir.glob("*.mp4"))
    # issue 19: what a `kill -9` while the video was written leaves (ffmpeg went on writing its temp file)
    stale = first.run_dir / ".00001-x.tmp.mp4"
    stale.write_bytes(b"\0\0\0\x20ftypisom")
    seen = []
    resumed = world.resume_cinema(first.run_dir, on_progress=lambda p: seen.append(p.frame))
    assert not stale.exists()
    assert not resumed.interrupted and resumed.made == [2, 3] and min(seen) == 3
    assert {p.name: p.read_bytes() for p in resumed.frames[:2]} == kept
    # the same pixels as the run that was never interrupted
    for a, b in zip(resumed.frames, zoom_run.frames):
        assert np.array_equal(pixels(a), pixels(b)), a.name
    assert video.read_info(resumed.video)["frames"] == 4 and resumed.gif is not None
    again = world.resume_cinema(resumed.frames[0])  # a finished run: nothing is redone
    assert again.made == [] and again.video == resumed.video


def test_dream_ends_are_plain_generations_at_the_two_seeds(world):
    dream = world.animate(motion="dream", prompts={"0": "a red circle", "2": "a blue square"},
                          **{**FAST_CINEMA, "frames": 3, "seed": 5})
    assert dream.made == [0, 1, 2]
    # Euler a's fresh noise at each step would jump with the seed mid-walk: the walk uses Euler
    assert creations.read_creation(dream.frames[1])["request"]["scheduler"] == "Euler"
    start = world.create(prompt="a red circle", seed=5, steps=2, width=64, height=64, scheduler="Euler")
    end = world.create(prompt="a blue square", seed=6, steps=2, width=64, height=64, scheduler="Euler")
    assert np.array_equal(pixels(dream.frames[0]), pixels(start.paths[0]))
    assert np.array_equal(pixels(dream.frames[2]), pixels(end.paths[0]))
    middle = pixels(dream.frames[1])
    assert not np.array_equal(middle, pixels(start.paths[0])) and not np.array_equal(middle, pixels(end.paths[0]))
    walk = creations.read_creation(dream.frames[1])["request"]["cinema"]
    assert walk["seeds"] == [5, 6] and walk["walk"] == 0.5 and walk["prompt_blend"][1] == ["a blue square", 0.5]
    assert video.read_info(dream.video)["frames"] == 3


def test_the_noise_hook_reproduces_the_seed_s_own_generation(world):
    from dreamworld.backends.base import Job

    request = world.request(prompt="a star", seed=9, steps=2, width=64, height=64)
    backend = world.compile(request)
    request = world._resolve(request, backend)
    plain = backend.generate(Job(request, 9))
    hooked = backend.generate(Job(request, 9, noise=backend.initial_noise(9, 64, 64),
                                  prompt_blend=(("a star", 1.0), ("a moon", 0.0))))
    assert np.array_equal(pixels(plain), pixels(hooked))


def test_cadence_diffuses_every_nth_frame_and_blends_between(world):
    run = world.animate(cadence=2, zoom="1.05", **{**FAST_CINEMA, "frames": 4})
    assert run.made == [0, 2, 1, 3] and len(run.frames) == 4
    tween = creations.read_creation(run.frames[1])["request"]["cinema"]
    assert tween["tween"] == [0, 2, 0.5]
    assert "tween" not in creations.read_creation(run.frames[2])["request"]["cinema"]
    assert video.read_info(run.video)["frames"] == 4


def test_3d_motion_and_reuse_init(world, tmp_path):
    run = world.animate(motion="3d", translate_z=10, rotate_y=2, **{**FAST_CINEMA, "frames": 2})
    assert len(run.frames) == 2 and video.read_info(run.video)["frames"] == 2
    init = tmp_path / "init.png"
    Image.new("RGB", (80, 80), (20, 200, 40)).save(init)
    reused = world.animate(init_image=str(init), reuse_init=True, zoom=1.2, color_coherence="none",
                           **{**FAST_CINEMA, "frames": 2})
    data = creations.read_creation(reused.frames[0])["request"]
    assert data["mode"] == "img2img" and data["init_image"].startswith("inputs/")
    assert json.loads(reused.settings.read_text())["cinema"]["init_image"] == data["init_image"]


def test_video_input_styles_every_nth_frame_at_its_rate(world, tmp_path):
    source = [np.full((48, 64, 3), (i * 40, 80, 160), np.uint8) for i in range(6)]
    clip = video.write_mp4(source, tmp_path / "in.mp4", fps=10)
    run = world.animate(motion="video", video=str(clip), every_nth=2, prompt="paint", steps=2, strength=0.5,
                        seed=3, color_coherence="rgb")
    assert run.request.frames == 3 and run.request.fps == 5
    assert (run.request.width, run.request.height) == (128, 96)  # the video's shape at the model's size
    assert video.read_info(run.video) == {"fps": 5.0, "frames": 3, "size": (128, 96)}
    assert json.loads(run.settings.read_text())["cinema"]["video"].startswith("inputs/")


# ----- the command line -------------------------------------------------------------------
def cli(*args, creations_dir):
    from .test_cli import app
    return app("cinema", *args, creations_dir=creations_dir)


def test_cli_prints_the_video_last_and_from_re_runs_the_same_pixels(tmp_path):
    run = cli("--prompt", "a red circle", "--frames", "3", "--fps", "6", "--zoom", "0:(1.0), 2:(1.1)",
              "--translate-x", "0:(2)", "--steps", "2", "--strength", "0.5", "--width", "64", "--height", "64",
              "--seed", "4", "--gif", creations_dir=tmp_path)
    assert run.returncode == 0, run.stderr
    gif, mp4 = [Path(line) for line in run.stdout.splitlines()]
    assert gif.suffix == ".gif" and mp4.suffix == ".mp4" and mp4.parent == gif.parent
    assert video.read_info(mp4) == {"fps": 6.0, "frames": 3, "size": (64, 64)}
    again = cli("--from", str(mp4.parent), creations_dir=tmp_path)
    assert again.returncode == 0, again.stderr
    copy = Path(again.stdout.splitlines()[-1])
    assert copy.parent != mp4.parent
    for name in ("frame_00000.png", "frame_00002.png"):
        assert np.array_equal(pixels(mp4.parent / name), pixels(copy.parent / name))


def test_cli_dream_walk(tmp_path):
    run = cli("--motion", "dream", "--prompt", "a red circle", "--prompts", '{"2": "a blue star"}', "--frames", "3",
              "--steps", "2", "--width", "64", "--height", "64", "--seed", "8", creations_dir=tmp_path)
    assert run.returncode == 0, run.stderr
    [mp4] = [Path(line) for line in run.stdout.splitlines()]
    assert video.read_info(mp4)["frames"] == 3


@pytest.mark.parametrize("args, words", [
    (["--zoom", "0:(1.0), 30:(1.05"], "zoom schedule has an error at character 13: '(' is never closed"),
    (["--strength", "0:(0.5), 2:(t)"], "strength must be from 0.0 to 1.0 at every frame; its schedule gives 1.25 at frame 1"),
    (["--motion", "4d"], "motion must be one of"),
    (["--video", "clip.mp4"], "video is only used in video motion"),
    (["--from", "nowhere"], "from: "),
    (["--resume", "nowhere"], "resume: "),
])
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, words):
    run = cli("--prompt", "x", "--frames", "3", "--width", "64", "--height", "64", *args, creations_dir=tmp_path)
    assert run.returncode == 2 and run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1 and words in run.stderr, run.stderr
    assert files_in(tmp_path) == set()
