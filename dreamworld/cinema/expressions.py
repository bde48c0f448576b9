"""Arithmetic expressions of a frame (t) and the last frame (max_f), for schedules.

Expressions are parsed with Python's `ast` and evaluated by walking the tree with a whitelist of numbers,
the names t, max_f, pi, e and tau, arithmetic, comparisons, `a if c else b` and the math functions in
FUNCTIONS: nothing is ever passed to `eval`. Every problem is a ScheduleError (a RequestError) naming the
field and the character position of the problem. An expression is at most MAX_EXPRESSION characters and
MAX_DEPTH operations deep (the tree is walked recursively).
"""
from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass
from typing import Callable

from ..errors import RequestError

VARIABLES = ("t", "max_f")
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
    compiler = _Compiler(field_name, text, offset, source.replace("\n", " ").replace("\r", " ").replace("\t", " "),
                         variables)
    return Expression(source, offset, compiler.compile(), frozenset(compiler.names))


class _Compiler:
    """Turns an expression's syntax tree into nested closures, refusing (with its position) anything that is
    not arithmetic on numbers, the variables, the constants and FUNCTIONS."""

    def __init__(self, field_name: str, text: str, offset: int, flat: str, variables):
        self.field, self.text, self.offset, self.flat, self.variables = field_name, text, offset, flat, variables
        self.encoded = flat.encode("utf-8")
        self.names: set[str] = set()

    def compile(self) -> Evaluator:
        try:
            tree = ast.parse(self.flat, mode="eval")
        except (RecursionError, MemoryError):
            raise ScheduleError(self.field, self.text, self.offset, f"the expression nests more than {MAX_DEPTH} "
                                                                    "operations inside one another; simplify it") from None
        except SyntaxError as e:
            where = (e.offset or 0) - 1 if e.offset else len(self.flat)
            if e.msg.startswith("invalid") and e.msg.endswith("literal"):
                where += 1  # Python points at the last digit; the problem is the character after it
            raise ScheduleError(self.field, self.text, self.offset + max(0, min(where, len(self.flat))),
                                e.msg) from None
        deep = _too_deep(tree.body)
        if deep is not None:
            self.fail(deep, f"the expression nests more than {MAX_DEPTH} operations inside one another; simplify "
                            "it or split it into keyframes")
        return self.build(tree.body)

    def position(self, node) -> int:  # ast columns count UTF-8 bytes; report characters
        return self._characters(getattr(node, "col_offset", 0))

    def _characters(self, byte_offset: int) -> int:
        return len(self.encoded[:byte_offset].decode("utf-8", errors="ignore"))

    def fail(self, node, problem):
        raise ScheduleError(self.field, self.text, self.offset + self.position(node), problem)

    def build(self, node) -> Evaluator:
        method = getattr(self, "_" + type(node).__name__.lower(), None)
        return method(node) if method else self._refuse(node)

    def _constant(self, node) -> Evaluator:
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            self.fail(node, f"{node.value!r} is not a number")
        value = float(node.value)
        return lambda v: value

    def _name(self, node) -> Evaluator:
        name = node.id
        if name in self.variables:
            self.names.add(name)
            return lambda v: float(v[name])
        if name in CONSTANTS:
            value = CONSTANTS[name]
            return lambda v: value
        known = ", ".join(list(self.variables) + list(CONSTANTS))
        self.fail(node, f"unknown name {name!r}; use {known} or a function such as sin(t)")

    def _binop(self, node) -> Evaluator:
        if type(node.op) not in _BINARY:
            return self._refuse(node)
        left, right, op = self.build(node.left), self.build(node.right), _BINARY[type(node.op)]
        symbol = _SYMBOLS[type(node.op)]
        between = self.encoded[node.left.end_col_offset:node.right.col_offset]  # the operator's own place
        at = self.position(node) if symbol.encode() not in between else \
            self._characters(node.left.end_col_offset + between.index(symbol.encode()))

        def binary(v):
            a, b = left(v), right(v)
            try:
                return float(op(a, b))
            except ZeroDivisionError:
                raise _EvalError(at, f"division by zero in '{symbol}'{_where(v)}") from None
            except (OverflowError, ValueError) as e:
                raise _EvalError(at, f"'{symbol}' cannot be computed ({e}){_where(v)}") from None
        return binary

    def _unaryop(self, node) -> Evaluator:
        if type(node.op) not in _UNARY:
            return self._refuse(node)
        operand, op = self.build(node.operand), _UNARY[type(node.op)]
        return lambda v: op(operand(v))

    def _compare(self, node) -> Evaluator:
        if not all(type(o) in _COMPARE for o in node.ops):
            return self._refuse(node)
        parts = [self.build(node.left)] + [self.build(c) for c in node.comparators]
        ops = [_COMPARE[type(o)] for o in node.ops]

        def compare(v):
            values = [p(v) for p in parts]
            return float(all(op(a, b) for op, a, b in zip(ops, values, values[1:])))
        return compare

    def _ifexp(self, node) -> Evaluator:
        test, body, orelse = self.build(node.test), self.build(node.body), self.build(node.orelse)
        return lambda v: body(v) if test(v) else orelse(v)

    def _call(self, node) -> Evaluator:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            called = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            self.fail(node, f"unknown function {called!r}; known: {', '.join(FUNCTIONS)}")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            self.fail(node, f"{node.func.id}() takes plain arguments only")
        function, fewest, most = FUNCTIONS[node.func.id]
        if not fewest <= len(node.args) <= most:
            wanted = str(fewest) if fewest == most else f"{fewest} to {most}"
            self.fail(node, f"{node.func.id}() takes {wanted} argument{'s' if most > 1 else ''}, got {len(node.args)}")
        args, at, name = [self.build(a) for a in node.args], self.position(node), node.func.id

        def call(v):
            try:
                return float(function(*(a(v) for a in args)))
            except (ValueError, OverflowError, ZeroDivisionError) as e:
                raise _EvalError(at, f"{name}() cannot be computed ({e}){_where(v)}") from None
        return call

    def _refuse(self, node):
        if isinstance(node, ast.Tuple) and node.elts:
            raise ScheduleError(self.field, self.text, self.offset + self._characters(node.elts[0].end_col_offset),
                                "unexpected ','; keyframes look like 0:(1.0), 30:(1.5)")
        kind = type(node).__name__
        symbol = {"BoolOp": "'and'/'or'", "Attribute": "attribute access", "Subscript": "indexing",
                  "Lambda": "lambda", "Tuple": "a tuple", "List": "a list", "Dict": "a dict",
                  "NamedExpr": "':='", "JoinedStr": "a string"}.get(kind)
        if isinstance(node, (ast.BinOp, ast.UnaryOp)):
            symbol = f"the operator {type(node.op).__name__}"
        self.fail(node, f"{symbol or kind} is not allowed in a schedule")


def _too_deep(root: ast.AST):
    """The first expression node nested deeper than MAX_DEPTH (found without recursing), or None."""
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return node
        stack.extend((child, depth + isinstance(child, ast.expr)) for child in ast.iter_child_nodes(node))
    return None
