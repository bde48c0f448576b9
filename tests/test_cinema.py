"""Cinema: schedules, frame transforms, videos and runs on the embedded model."""
import math

import numpy as np
import pytest

from dreamworld import schedules
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
