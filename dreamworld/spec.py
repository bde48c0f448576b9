"""How a request field is declared and checked: one `Spec` per field, one generic validator.

A field is a dataclass field made by `spec(...)`; its Spec says everything the other parts derive from it:
its type, default and range (validation), help and label and group (CLI flags, GUI controls), the modes or
motions it applies to, its key in A1111's parameters text (metadata writer and reader) and its name in
A1111's HTTP API. Kinds beyond plain values:

    image, video    a file (a path; an image field also takes a PIL image)
    schedule        a number per frame (see schedules.py)
    prompts         prompts by frame
    list            several values of `type`, e.g. seeds "3,7,11"
    pairs           (name, weight) pairs, e.g. "outline:0.8,shade"; weights within min..max, 1 if left out
    units           records, each with the fields of the dataclass `unit`; "a:b:c" fills them in order
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from .cinema import schedules
from .errors import RequestError

LIST_KINDS = ("list", "pairs", "units")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0", "")


@dataclass(frozen=True)
class Spec:
    name: str
    type: type  # bool, int, float or str; of each element for list kinds
    default: Any
    help: str
    label: str = ""
    group: str = "main"
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    multiple_of: int | None = None
    key: bool = False  # a change reloads the backend
    kind: str | None = None
    modes: tuple[str, ...] | None = None  # the request modes it applies to (None: all)
    motions: tuple[str, ...] | None = None  # the cinema motions it applies to (None: all)
    infotext: str | None = None  # its key in A1111's parameters text
    infotext_skip: Any = None  # a value left out of that text (None and "" always are)
    infotext_when: str | None = None  # written only when this other field is not at its infotext_skip
    api: str | None = None  # its name in A1111's HTTP API, where that differs from the field's
    aliases: tuple[str, ...] = ()  # other names its command-line flag answers to (as A1111 calls it)
    models: str | None = None  # the kind of model in models/ whose names are its choices
    step: float | None = None  # the GUI's step
    unit: type | None = None  # kind "units": the dataclass of one unit

    @property
    def optional(self) -> bool:
        return self.default is None

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()


def spec(type_: type, default, *, help: str, **options) -> Any:
    """A dataclass field declared with its Spec (the name is filled in by `specs`)."""
    return field(default=default, metadata={"spec": Spec("", type_, default, help, **options)})


def specs(cls) -> dict[str, Spec]:
    """name -> Spec of a request dataclass, in declaration order."""
    return {f.name: dataclasses.replace(f.metadata["spec"], name=f.name) for f in dataclasses.fields(cls)}


def plain(value):
    """A request's value as JSON has it: lists for tuples, objects for units."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def allowed(s: Spec) -> str:
    """The allowed values of a field in words, for error and help messages."""
    if s.choices:
        return "one of " + ", ".join(repr(c) for c in s.choices)
    if s.type is bool:
        return "true or false"
    if s.kind == "schedule":
        words = "a number or a schedule such as '0:(1.0), 30:(1.05)'"
        return words + (f" with values from {s.min} to {s.max}" if s.min is not None else "")
    if s.kind == "prompts":
        return 'prompts by frame such as {"0": "a forest", "24": "a city"}'
    if s.kind == "list":
        return f"a list such as 3,7,11 of numbers {_range(s)}".strip()
    if s.kind == "pairs":
        return f"name:weight pairs such as outline:0.8,shade with weights {_range(s)}".strip()
    if s.kind == "units":
        return "units such as " + ":".join(s.unit.__dataclass_fields__) + ", or their JSON objects"
    return _range(s) or "text"


def _range(s: Spec) -> str:
    parts = [f"from {s.min} to {s.max}"] if s.min is not None else []
    if s.multiple_of:
        parts.append(f"a multiple of {s.multiple_of}")
    return " and ".join(parts)


# ----- one value --------------------------------------------------------------------------
def convert(s: Spec, value: Any) -> Any:
    """The field's value in its own type, or RequestError naming the field."""
    if s.kind in LIST_KINDS:
        return _convert_list(s, value)
    if s.type is bool:
        return _boolean(s, value)
    if value is None or (value == "" and s.optional):
        if s.optional:
            return None
        raise RequestError(s.name, f"{s.name} is required ({allowed(s)})")
    if s.kind in ("image", "video"):
        return _file(s, value)
    if s.kind == "schedule":
        return "" if value == "" and s.default == "" else schedules.check(value, s.name)
    if s.kind == "prompts":
        value = json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value
        schedules.parse_prompts(value, s.name, first="")
        return value
    if s.type is str:
        if not isinstance(value, str):
            raise RequestError(s.name, f"{s.name} must be text, got {value!r}")
        return value
    return _number(s, value)


def _boolean(s: Spec, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise RequestError(s.name, f"{s.name} must be true or false, got {value!r}")


def _file(s: Spec, value):
    """A file field's value: a path (text or path-like) or, for images, a PIL image."""
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if s.kind == "image" and hasattr(value, "getbands"):  # a PIL image
        return value
    shown = repr(value) if len(repr(value)) <= 40 else type(value).__name__
    what = "a file path or a PIL image" if s.kind == "image" else "a file path"
    raise RequestError(s.name, f"{s.name} must be {what}, got {shown}")


def _number(s: Spec, value, name: str | None = None):
    name = name or s.name
    words = _range(s) if s.kind in LIST_KINDS else allowed(s)  # a list's item: the range of one item
    if isinstance(value, bool):
        raise RequestError(s.name, f"{name} must be a number {words}, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RequestError(s.name, f"{name} must be a number {words}, got {value!r}") from None
    if not math.isfinite(number):
        raise RequestError(s.name, f"{name} must be a finite number {words}, got {value!r}")
    if s.type is int:
        if number != int(number):
            raise RequestError(s.name, f"{name} must be a whole number {words}, got {value!r}")
        return int(number)
    return number


def _items(value) -> list:
    """A list field's items from a list, or from text separated by commas (several flags: several texts)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = [value]
    if isinstance(value, dict):
        return list(value.items())
    if not isinstance(value, (list, tuple)):
        return [value]
    out = []
    for item in value:
        if isinstance(item, str) and not item.lstrip().startswith("{"):
            out += [part.strip() for part in item.split(",") if part.strip()]
        else:
            out.append(item)
    return out


def _convert_list(s: Spec, value) -> tuple:
    items = _items(value)
    if s.kind == "list":
        return tuple(_element(s, item) for item in items)
    if s.kind == "pairs":
        return tuple(_pair(s, item) for item in items)
    return tuple(_unit(s, item) for item in items)


def _element(s: Spec, item):
    if s.type is str:
        return str(item)
    number = _number(s, item, f"each of {s.name}")
    _check_range(s, number, f"each of {s.name}")
    return number


def _pair(s: Spec, item) -> tuple[str, float]:
    if isinstance(item, str):
        name, _, weight = item.rpartition(":") if ":" in item else (item, "", "1")
        item = (name.strip(), weight.strip() or "1")
    if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], str) or not item[0]:
        raise RequestError(s.name, f"{s.name} must be {allowed(s)}, got {item!r}")
    weight = _number(s, item[1], f"the weight of {item[0]!r} in {s.name}")
    _check_range(s, weight, f"the weight of {item[0]!r} in {s.name}")
    return item[0], weight


def _unit(s: Spec, item):
    fields = specs(s.unit)
    if isinstance(item, s.unit):
        item = plain(item)
    elif isinstance(item, str) and item.lstrip().startswith("{"):
        try:
            item = json.loads(item)
        except ValueError:
            raise RequestError(s.name, f"{s.name}: {item!r} is not a JSON object") from None
    elif isinstance(item, str):
        parts = item.split(":")
        if len(parts) > len(fields):
            raise RequestError(s.name, f"{s.name} must be {allowed(s)}, got {item!r}")
        item = dict(zip(fields, parts))
    if not isinstance(item, dict):
        raise RequestError(s.name, f"{s.name} must be {allowed(s)}, got {item!r}")
    try:
        return validate_fields(s.unit, fields, item)
    except RequestError as e:
        raise RequestError(s.name, f"{s.name}: {e}") from None


# ----- ranges -----------------------------------------------------------------------------
def _check_range(s: Spec, value, name: str | None = None) -> None:
    if s.min is not None and not (s.min <= value <= s.max):
        raise RequestError(s.name, f"{name or s.name} must be {_range(s)}, got {value!r}")


def check_range(s: Spec, value, frame: int | None = None) -> None:
    """Raise RequestError if a number is outside a field's range (`frame`: a schedule's value there)."""
    if frame is None:
        return _check(s, value)
    if s.min is not None and not (s.min <= value <= s.max):
        raise RequestError(s.name, f"{s.name} must be from {s.min} to {s.max} at every frame; "
                                   f"its schedule gives {value:g} at frame {frame}")


def _check(s: Spec, value) -> None:
    if value is None or s.kind in ("image", "video", "prompts") + LIST_KINDS or isinstance(value, bool):
        return
    if s.kind == "schedule":
        if value != "" and s.min is not None:
            schedule = schedules.parse(value, s.name)
            if schedule.is_constant:
                check_range(s, schedule.values(1)[0], frame=0)
        return
    if s.choices and value not in s.choices:
        raise RequestError(s.name, f"{s.name} must be {allowed(s)}, got {value!r}")
    if (s.min is not None and not (s.min <= value <= s.max)) or (s.multiple_of and value % s.multiple_of):
        raise RequestError(s.name, f"{s.name} must be {allowed(s)}, got {value!r}")


def validate_fields(cls, fields: dict[str, Spec], values: dict | None, base=None, limits: dict | None = None):
    """An instance of `cls` from `values` over `base` (default: cls()), each field converted and checked.

    `limits` may lower a field's maximum, e.g. {"steps": {"max": 80}} from settings.json."""
    values = dict(values or {})
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise RequestError(unknown[0], f"unknown field {unknown[0]!r}; known fields: {', '.join(fields)}")
    merged = plain(base) if base is not None else {n: s.default for n, s in fields.items()}
    merged.update(values)
    out = {}
    for name, s in fields.items():
        value = convert(s, merged[name])
        _check(s, value)
        limit = (limits or {}).get(name, {}).get("max")
        numeric = s.kind is None and s.type in (int, float)
        if limit is not None and numeric and value is not None and value > limit:
            raise RequestError(name, f"{name} must be at most {limit} (settings limit), got {value!r}")
        out[name] = value
    return cls(**out)
