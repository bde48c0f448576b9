"""A1111's `parameters` text ("infotext"): written and read with one table, the schema's `infotext` keys.

    a red fox in the snow
    Negative prompt: blurry
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 512x512, Model hash: 0123456789, ...

A field declared with `infotext="Key"` is written as `Key: value` in INFOTEXT_ORDER (where its mode allows
it, and unless empty or its `infotext_skip` value) and read back into the same field. Fields that share a
key are joined with "x" ("Size: 512x768"). Facts that are not request fields (model hash, version, file
hashes) are passed in as `extra`.
"""
from __future__ import annotations

import json
import re

from . import controlnet, spec as specs
from .errors import RequestError
from .schema import FIELDS, INFOTEXT_ORDER, SCHEDULERS

# A1111's infotext grammar: `Key: value` pairs, a value either JSON-quoted or up to the next comma.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SAMPLER_ALIASES = {"PLMS": "PNDM"}
VERSION_KEY = "Version"


def _keys() -> dict[str, list[specs.Spec]]:
    keys: dict[str, list[specs.Spec]] = {}
    for s in FIELDS.values():
        if s.infotext and s.kind != "units":  # units: one `Key N` per unit (controlnet.infotext_pairs)
            keys.setdefault(s.infotext, []).append(s)
    return keys


KEYS = _keys()  # infotext key -> the fields written under it


def _quote(value) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",:\n") else text  # A1111's rule


def _text(value) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _applies(request, s: specs.Spec) -> bool:
    return s.modes is None or getattr(request, "mode", None) in s.modes


def _written(request, s: specs.Spec) -> bool:
    value = getattr(request, s.name, None)
    if s.infotext_when and not _written(request, FIELDS[s.infotext_when]):
        return False
    return _applies(request, s) and value not in (None, "", s.infotext_skip)


def _alternatives(fields: list[specs.Spec]) -> bool:
    """Fields sharing a key in different modes (strength, hires_denoising): one of them is written."""
    modes = [set(s.modes or ()) for s in fields]
    return len(fields) > 1 and all(modes) and sum(map(len, modes)) == len(set().union(*modes))


def format_parameters(request, extra: dict | None = None) -> str:
    """The A1111 `parameters` text of one image made by a resolved request (concrete seed and size).
    `extra` may hold "ControlNet hashes" ({ControlNet model name: short hash}) for the units' Model."""
    extra = dict(extra or {})
    pairs = {}
    for key, fields in KEYS.items():
        fields = [s for s in fields if _applies(request, s)] if _alternatives(fields) else fields
        if fields and all(_written(request, s) for s in fields):
            pairs[key] = "x".join(_text(getattr(request, s.name)) for s in fields)
    hashes = extra.pop("ControlNet hashes", None)  # said in the units' own keys, never alone
    if getattr(request, "controlnet", None):
        pairs.update(controlnet.infotext_pairs(request, hashes))
    pairs.update({k: v for k, v in (extra or {}).items() if v not in (None, "")})
    order = [k for k in INFOTEXT_ORDER if k in pairs] + [k for k in pairs if k not in INFOTEXT_ORDER]
    order = [k for k in order if k != VERSION_KEY] + ([VERSION_KEY] if VERSION_KEY in pairs else [])
    line = ", ".join(f"{k}: {_quote(pairs[k])}" for k in order)
    negative = f"\nNegative prompt: {request.negative_prompt}" if request.negative_prompt else ""
    return f"{request.prompt}{negative}\n{line}".strip()


def parse_parameters(text: str) -> dict:
    """Parse A1111 parameters text into prompt, negative_prompt and every `Key: value` as text.

    This reads text as A1111's own reader does (parse_generation_parameters in its
    modules/infotext_utils.py), so that a text means here what it means there: the last line holds the
    parameters only if at least three `Key: value` pairs are found in it (else it is prompt text);
    every line before, stripped, is prompt until one that starts with `Negative prompt:`, and negative
    prompt from there on; a value in double quotes is JSON-unquoted, and an empty value is left out.
    The format has no escape: a prompt of its own with a line starting `Negative prompt:` reads back,
    in A1111 and here, as a negative prompt from that line. DreamWorld's creations carry their request
    as JSON too, and are re-run from that (creations.request_from_file), exactly.
    """
    *lines, last = text.strip().split("\n")
    if len(_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    result = {"prompt": "\n".join(prompt), "negative_prompt": "\n".join(negative)}
    for key, value in _PARAM.findall(last):
        if not value:
            continue
        if value[0] == value[-1] == '"':
            try:
                value = json.loads(value)
            except ValueError:
                pass
        result[key] = value
    return result


def _sampler(params: dict) -> str | None:
    sampler = _SAMPLER_ALIASES.get(params.get("Sampler", ""), params.get("Sampler", ""))
    schedule = params.get("Schedule type", "")
    for name in (f"{sampler} {schedule}", sampler):
        if name in SCHEDULERS:
            return name
    return None


def request_from_parameters(params: dict) -> dict:
    """Map a parse_parameters() dict to Request field values; what cannot be read is left out."""
    fields = {name: params[name] for name in ("prompt", "negative_prompt") if name in params}
    for key, declared in KEYS.items():
        if key not in params:
            continue
        if _alternatives(declared):  # each reads the value: the request's mode picks the one that counts
            raw = [str(params[key])] * len(declared)
        else:
            raw = [_sampler(params)] if key == "Sampler" else str(params[key]).split("x", len(declared) - 1)
        if len(raw) != len(declared) or None in raw:
            continue
        try:
            values = {s.name: specs.convert(s, part.strip()) for s, part in zip(declared, raw)}
            for s, value in zip(declared, values.values()):
                specs.check_range(s, value)
        except RequestError:
            continue
        fields.update(values)
    units = controlnet.units_from_infotext(params)
    if units:
        fields["controlnet"] = units
    return fields
