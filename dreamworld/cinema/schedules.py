"""Deforum-style schedules: a number per frame from a constant, keyframes or an expression.

    "1.02"                               a constant
    "0:(1.0), 30:(1.05)"                 keyframes: linear between them, held after the last
                                         (and before the first)
    "0:(1+0.02*sin(2*pi*t/24))"          an expression of t (the frame index) and max_f (the
                                         last frame index) is evaluated at every frame from its
                                         keyframe up to the next one
    "1 + t/max_f"                        an expression on its own applies to every frame
    "max_f:(2)"                          keyframe frames may be expressions of max_f

Expressions are those of expressions.py. Every problem is reported as a ScheduleError (a RequestError)
naming the field and the character position of the problem; a schedule is at most MAX_SCHEDULE characters.

Prompts change by keyframe: {"0": "a forest", "24": "a city"} (a dict or its JSON text).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from .expressions import Expression, ScheduleError, compile_expression

MAX_SCHEDULE = 250_000  # characters of a whole schedule (a keyframe per frame for 10000 frames fits)


# ----- schedules ------------------------------------------------------------------------
@dataclass(frozen=True)
class Keyframe:
    frame: Expression  # of max_f
    value: Expression  # of t and max_f
    position: int  # where the keyframe starts in the text


class Schedule:
    """A parsed schedule. `values(frames)` gives one float per frame, or raises ScheduleError."""

    def __init__(self, field_name: str, text: str, keyframes: list[Keyframe]):
        self.field, self.text, self.keyframes = field_name, text, keyframes

    def __repr__(self) -> str:
        return f"Schedule({self.field!r}, {self.text!r})"

    @property
    def is_constant(self) -> bool:
        return len(self.keyframes) == 1 and not self.keyframes[0].value.names

    def frames(self, frames: int) -> list[tuple[int, Keyframe]]:
        """The keyframes with their frame numbers resolved for a run of `frames` frames, sorted."""
        max_f = max(0, frames - 1)
        resolved: dict[int, Keyframe] = {}
        for key in self.keyframes:
            number = key.frame(self.field, self.text, max_f=max_f)
            if number < 0 or number != int(number):
                raise ScheduleError(self.field, self.text, key.frame.offset,
                                    f"a keyframe's frame must be a whole number from 0, got {number:g}")
            if int(number) in resolved:
                raise ScheduleError(self.field, self.text, key.frame.offset,
                                    f"frame {int(number)} has two keyframes")
            resolved[int(number)] = key
        return sorted(resolved.items(), key=lambda item: item[0])

    def values(self, frames: int) -> list[float]:
        max_f = max(0, frames - 1)
        keys = self.frames(frames)

        def value(key: Keyframe, t: int) -> float:
            return key.value(self.field, self.text, t=t, max_f=max_f)

        out, k = [], 0
        for t in range(frames):
            while k + 1 < len(keys) and keys[k + 1][0] <= t:
                k += 1
            start, key = keys[k]
            if t < start:  # before the first keyframe: hold its value
                out.append(value(key, start))
            elif "t" in key.value.names:
                out.append(value(key, t))
            elif k + 1 < len(keys):
                end, following = keys[k + 1]
                a, b = value(key, start), value(following, end)
                out.append(a + (b - a) * (t - start) / (end - start))
            else:
                out.append(value(key, start))
        return out


def _closing(text: str, start: int, field_name: str) -> int:
    """The index of the ')' that closes the '(' at text[start]."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ScheduleError(field_name, text, start, "'(' is never closed")


def _top_level(text: str, start: int, stops: str) -> int:
    """The index of the first character of `stops` outside parentheses from `start`, or len(text)."""
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth == 0 and c in stops:
            return i
    return len(text)


def parse(value, field_name: str = "schedule") -> Schedule:
    """Parse a number, a keyframe string or an expression into a Schedule (raise ScheduleError)."""
    if isinstance(value, bool):
        raise ScheduleError(field_name, str(value), 0, "expected a number or a schedule, got a yes/no value")
    text = repr(float(value)) if isinstance(value, (int, float)) else value
    if not isinstance(text, str):
        raise ScheduleError(field_name, str(text), 0, "expected a number or a schedule string")
    if not text.strip():
        raise ScheduleError(field_name, text, 0, "the schedule is empty")
    if len(text) > MAX_SCHEDULE:
        raise ScheduleError(field_name, text, MAX_SCHEDULE, f"the schedule is {len(text)} characters long, more "
                                                            f"than the {MAX_SCHEDULE} allowed")
    if _top_level(text, 0, ":") == len(text):  # no keyframes: one expression for every frame
        zero = compile_expression(field_name, "0", 0, 1, ("max_f",))
        return Schedule(field_name, text, [Keyframe(zero, compile_expression(field_name, text, 0, len(text)), 0)])
    keyframes, i = [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            if not keyframes:
                raise ScheduleError(field_name, text, i, "expected a keyframe such as 0:(1.0)")
            break
        begin = i
        colon = _top_level(text, i, ":,")
        if colon == len(text) or text[colon] != ":":
            raise ScheduleError(field_name, text, colon if colon < len(text) else begin,
                                "expected ':' after the frame number (keyframes look like 0:(1.0), 30:(1.5))")
        frame = compile_expression(field_name, text, i, colon, ("max_f",))
        i = colon + 1
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text) and text[i] == "(":
            close = _closing(text, i, field_name)
            value_expr = compile_expression(field_name, text, i + 1, close)
            i = close + 1
        else:
            end = _top_level(text, i, ",")
            value_expr = compile_expression(field_name, text, i, end)
            i = end
        keyframes.append(Keyframe(frame, value_expr, begin))
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            break
        if text[i] != ",":
            raise ScheduleError(field_name, text, i, "expected ',' between keyframes")
        i += 1
    return Schedule(field_name, text, keyframes)


def check(value, field_name: str) -> str:
    """Validate a schedule's syntax and return its text (numbers become text)."""
    return parse(value, field_name).text


# ----- prompts --------------------------------------------------------------------------
class PromptSchedule:
    """Prompts by keyframe: the prompt of the latest keyframe holds; `blends` mixes towards the next."""

    def __init__(self, field_name: str, text: str, keyframes: list[tuple[Expression, str, int]],
                 first: str | None = None):
        self.field, self.text, self.keyframes, self.first = field_name, text, keyframes, first

    def frames(self, frames: int) -> list[tuple[int, str]]:
        """The (frame, prompt) keyframes for a run of `frames` frames, sorted."""
        max_f = max(0, frames - 1)
        resolved: dict[int, str] = {}
        for expr, prompt, position in self.keyframes:
            number = expr(self.field, self.text, max_f=max_f)
            if number < 0 or number != int(number):
                raise ScheduleError(self.field, self.text, position,
                                    f"a prompt keyframe's frame must be a whole number from 0, got {number:g}")
            if int(number) in resolved:
                raise ScheduleError(self.field, self.text, position, f"frame {int(number)} has two prompts")
            resolved[int(number)] = prompt
        if 0 not in resolved and self.first is not None:
            resolved[0] = self.first
        if not resolved:
            raise ScheduleError(self.field, self.text, 0, "no prompt is given")
        return sorted(resolved.items())

    def blends(self, frames: int) -> list[tuple[str, str, float]]:
        """Per frame (prompt, next prompt, weight of the next prompt from 0 to 1)."""
        keys = self.frames(frames)
        out, k = [], 0
        for t in range(frames):
            while k + 1 < len(keys) and keys[k + 1][0] <= t:
                k += 1
            start, prompt = keys[k]
            if t < start or k + 1 == len(keys):
                out.append((prompt, prompt, 0.0))
            else:
                end, following = keys[k + 1]
                out.append((prompt, following, (t - start) / (end - start)))
        return out

    def prompts(self, frames: int) -> list[str]:
        """The prompt in force at each frame (the latest keyframe's)."""
        return [a for a, _, _ in self.blends(frames)]


def parse_prompts(value, field_name: str = "prompts", first: str | None = None) -> PromptSchedule:
    """Parse {"0": "a forest", "24": "a city"} (a dict or its JSON text). Keys are frame numbers or
    expressions of max_f. `first` is frame 0's prompt where the keyframes give none."""
    if value is None:
        value = ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    data = {}
    if text.strip():
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ScheduleError(field_name, text, e.pos, f"not valid JSON: {e.msg}") from None
        except RecursionError:
            raise ScheduleError(field_name, text, 0, "the JSON nests too deeply; expected an object such as "
                                                     '{"0": "a forest", "24": "a city"}') from None
        if not isinstance(data, dict):
            raise ScheduleError(field_name, text, 0,
                                'expected an object such as {"0": "a forest", "24": "a city"}')
    keyframes, searched = [], 0
    for key, prompt in data.items():
        quoted = json.dumps(key, ensure_ascii=False)
        where = text.find(quoted, searched)
        if where < 0:
            where = 0
        else:
            searched = where + len(quoted)
        if not isinstance(prompt, str):
            raise ScheduleError(field_name, text, where, f"the prompt of keyframe {key!r} must be text")
        if text[where + 1:where + 1 + len(key)] == key:
            expr = compile_expression(field_name, text, where + 1, where + 1 + len(key), ("max_f",))
        else:  # an escaped key: positions are within the key
            expr = compile_expression(field_name, key, 0, len(key), ("max_f",))
        keyframes.append((expr, prompt, where))
    schedule = PromptSchedule(field_name, text, keyframes, first)
    if not keyframes and first is None:
        raise ScheduleError(field_name, text, 0, "no prompt is given")
    return schedule
