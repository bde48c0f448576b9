"""Deforum-style schedules: a number per frame from a constant, keyframes or an expression.

    "1.02"                               a constant
    "0:(1.0), 30:(1.05)"                 keyframes: linear between them, held after the last
                                         (and before the first)
    "0:(1+0.02*sin(2*pi*t/24))"          an expression of t (the frame index) and max_f (the
                                         last frame index) is evaluated at every frame from its
                                         keyframe up to the next one
    "1 + t/max_f"                        an expression on its own applies to every frame
    "max_f:(2)"                          keyframe frames may be expressions of max_f

Expressions are parsed with Python's `ast` and evaluated by walking the tree with a whitelist
of numbers, the names t, max_f, pi, e and tau, arithmetic, comparisons, `a if c else b` and
the math functions in FUNCTIONS: nothing is ever passed to `eval`. Every problem is reported as
a ScheduleError (a RequestError) naming the field and the character position of the problem.
An expression is at most MAX_EXPRESSION characters and MAX_DEPTH operations deep (the tree is
walked recursively), a schedule at most MAX_SCHEDULE characters.

Prompts change by keyframe: {"0": "a forest", "24": "a city"} (a dict or its JSON text).
"""
from __future__ import annotations

import ast
import json
import math
import operator
from dataclasses import dataclass
from typing import Callable

from .errors import RequestError

VARIABLES = ("t", "max_f")
MAX_SCHEDULE = 250_000  # characters of a whole schedule (a keyframe per frame for 10000 frames fits)
MAX_EXPRESSION = 1000  # characters of one expression
MAX_DEPTH = 100  # operations inside one another in one expression
CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _sign(x):
    return float((x > 0) - (x < 0))


def _clamp(x, low, high):
    return min(max(x, low), high)


def _round(x, digits=0.0):
    return float(round(x, int(digits)))


# name: (function, fewest arguments, most arguments)
FUNCTIONS: dict[str, tuple[Callable, int, int]] = {
    "sin": (math.sin, 1, 1), "cos": (math.cos, 1, 1), "tan": (math.tan, 1, 1),
    "asin": (math.asin, 1, 1), "acos": (math.acos, 1, 1), "atan": (math.atan, 1, 1),
    "atan2": (math.atan2, 2, 2), "sinh": (math.sinh, 1, 1), "cosh": (math.cosh, 1, 1),
    "tanh": (math.tanh, 1, 1), "exp": (math.exp, 1, 1), "log": (math.log, 1, 2),
    "log10": (math.log10, 1, 1), "log2": (math.log2, 1, 1), "sqrt": (math.sqrt, 1, 1),
    "pow": (math.pow, 2, 2), "abs": (abs, 1, 1), "floor": (lambda x: float(math.floor(x)), 1, 1),
    "ceil": (lambda x: float(math.ceil(x)), 1, 1), "round": (_round, 1, 2),
    "min": (min, 1, 16), "max": (max, 1, 16), "hypot": (math.hypot, 1, 16),
    "fmod": (math.fmod, 2, 2), "degrees": (math.degrees, 1, 1), "radians": (math.radians, 1, 1),
    "sign": (_sign, 1, 1), "clamp": (_clamp, 3, 3),
    "where": (lambda c, a, b: a if c else b, 3, 3),
}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
           ast.Pow: math.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.Eq: operator.eq, ast.NotEq: operator.ne}
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
            ast.Pow: "**"}


class ScheduleError(RequestError):
    """A schedule cannot be parsed or evaluated. `position` is the 0-based character offset."""

    def __init__(self, field_name: str, text: str, position: int, problem: str):
        position = max(0, min(position, len(text)))
        self.text, self.position, self.problem = text, position, problem
        shown = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(field_name, f"{field_name} schedule has an error at character {position + 1}: "
                                     f"{problem} (in {shown!r})")

    @property
    def column(self) -> int:
        """The 1-based column of the problem, as editors count."""
        return self.position + 1


# ----- expressions ----------------------------------------------------------------------
Evaluator = Callable[[dict], float]


@dataclass(frozen=True)
class Expression:
    source: str
    offset: int  # where `source` starts in the schedule text
    evaluate: Evaluator
    names: frozenset  # variables it reads

    def __call__(self, field_name: str, text: str, **variables) -> float:
        try:
            value = self.evaluate(variables)
        except _EvalError as e:
            raise ScheduleError(field_name, text, self.offset + e.position, e.problem) from None
        if not math.isfinite(value):
            raise ScheduleError(field_name, text, self.offset,
                                f"the value is not a finite number{_where(variables)}")
        return value


class _EvalError(Exception):
    def __init__(self, position: int, problem: str):
        super().__init__(problem)
        self.position, self.problem = position, problem


def _where(variables: dict) -> str:
    return f" at frame {variables['t']}" if "t" in variables else ""


def compile_expression(field_name: str, text: str, start: int, end: int,
                       variables=VARIABLES) -> Expression:
    """Compile text[start:end] as an arithmetic expression of `variables`."""
    raw = text[start:end]
    stripped = raw.lstrip()
    offset = start + len(raw) - len(stripped)
    source = stripped.rstrip()
    if not source:
        raise ScheduleError(field_name, text, offset, "expected a number or an expression")
    if len(source) > MAX_EXPRESSION:
        raise ScheduleError(field_name, text, offset + MAX_EXPRESSION,
                            f"the expression is {len(source)} characters long, more than the {MAX_EXPRESSION} "
                            "allowed; split it into keyframes")
    flat = source.replace("\n", " ").replace("\r", " ").replace("\t", " ")
    try:
        tree = ast.parse(flat, mode="eval")
    except (RecursionError, MemoryError):
        raise ScheduleError(field_name, text, offset, f"the expression nests more than {MAX_DEPTH} operations "
                                                      "inside one another; simplify it") from None
    except SyntaxError as e:
        where = (e.offset or 0) - 1 if e.offset else len(source)
        if e.msg.startswith("invalid") and e.msg.endswith("literal"):
            where += 1  # Python points at the last digit; the problem is the character after it
        problem = e.msg if e.msg != "invalid syntax" else "invalid syntax"
        raise ScheduleError(field_name, text, offset + max(0, min(where, len(source))), problem) from None
    encoded = flat.encode("utf-8")

    def position(node) -> int:  # ast columns count UTF-8 bytes; report characters
        return len(encoded[:getattr(node, "col_offset", 0)].decode("utf-8", errors="ignore"))

    names: set[str] = set()

    def fail(node, problem):
        raise ScheduleError(field_name, text, offset + position(node), problem)

    def build(node) -> Evaluator:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                fail(node, f"{node.value!r} is not a number")
            value = float(node.value)
            return lambda v: value
        if isinstance(node, ast.Name):
            if node.id in variables:
                names.add(node.id)
                name = node.id
                return lambda v: float(v[name])
            if node.id in CONSTANTS:
                value = CONSTANTS[node.id]
                return lambda v: value
            known = ", ".join(list(variables) + list(CONSTANTS))
            fail(node, f"unknown name {node.id!r}; use {known} or a function such as sin(t)")
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right, op = build(node.left), build(node.right), _BINARY[type(node.op)]
            symbol = _SYMBOLS[type(node.op)]
            between = encoded[node.left.end_col_offset:node.right.col_offset]  # the operator's own place
            at = position(node) if symbol.encode() not in between else len(
                encoded[:node.left.end_col_offset + between.index(symbol.encode())].decode("utf-8", errors="ignore"))

            def binary(v):
                a, b = left(v), right(v)
                try:
                    return float(op(a, b))
                except ZeroDivisionError:
                    raise _EvalError(at, f"division by zero in '{symbol}'{_where(v)}") from None
                except (OverflowError, ValueError) as e:
                    raise _EvalError(at, f"'{symbol}' cannot be computed ({e}){_where(v)}") from None
            return binary
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            operand, op = build(node.operand), _UNARY[type(node.op)]
            return lambda v: op(operand(v))
        if isinstance(node, ast.Compare) and all(type(o) in _COMPARE for o in node.ops):
            parts = [build(node.left)] + [build(c) for c in node.comparators]
            ops = [_COMPARE[type(o)] for o in node.ops]

            def compare(v):
                values = [p(v) for p in parts]
                return float(all(op(a, b) for op, a, b in zip(ops, values, values[1:])))
            return compare
        if isinstance(node, ast.IfExp):
            test, body, orelse = build(node.test), build(node.body), build(node.orelse)
            return lambda v: body(v) if test(v) else orelse(v)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                called = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
                fail(node, f"unknown function {called!r}; known: {', '.join(FUNCTIONS)}")
            if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
                fail(node, f"{node.func.id}() takes plain arguments only")
            function, fewest, most = FUNCTIONS[node.func.id]
            if not fewest <= len(node.args) <= most:
                wanted = str(fewest) if fewest == most else f"{fewest} to {most}"
                fail(node, f"{node.func.id}() takes {wanted} argument{'s' if most > 1 else ''}, "
                           f"got {len(node.args)}")
            args, at, name = [build(a) for a in node.args], position(node), node.func.id

            def call(v):
                try:
                    return float(function(*(a(v) for a in args)))
                except (ValueError, OverflowError, ZeroDivisionError) as e:
                    raise _EvalError(at, f"{name}() cannot be computed ({e}){_where(v)}") from None
            return call
        if isinstance(node, ast.Tuple) and node.elts:
            raise ScheduleError(field_name, text, offset + len(encoded[:node.elts[0].end_col_offset].decode(
                "utf-8", errors="ignore")), "unexpected ','; keyframes look like 0:(1.0), 30:(1.5)")
        kind = type(node).__name__
        symbol = {"BoolOp": "'and'/'or'", "Attribute": "attribute access", "Subscript": "indexing",
                  "Lambda": "lambda", "Tuple": "a tuple", "List": "a list", "Dict": "a dict",
                  "NamedExpr": "':='", "JoinedStr": "a string"}.get(kind)
        if isinstance(node, (ast.BinOp, ast.UnaryOp)):
            symbol = f"the operator {type(node.op).__name__}"
        fail(node, f"{symbol or kind} is not allowed in a schedule")

    deep = _too_deep(tree.body)
    if deep is not None:
        fail(deep, f"the expression nests more than {MAX_DEPTH} operations inside one another; simplify it or "
                   "split it into keyframes")
    evaluate = build(tree.body)
    return Expression(source, offset, evaluate, frozenset(names))


def _too_deep(root: ast.AST):
    """The first expression node nested deeper than MAX_DEPTH (found without recursing), or None."""
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return node
        stack.extend((child, depth + isinstance(child, ast.expr)) for child in ast.iter_child_nodes(node))
    return None


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

    def at(self, t: int, frames: int) -> float:
        return self.values(max(frames, t + 1))[t]


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
