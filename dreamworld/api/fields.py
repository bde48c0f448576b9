"""Pictures in API bodies. ControlNet units come in DreamWorld's `controlnet` field or the A1111 ControlNet
extension's `alwayson_scripts: {"controlnet": {"args": [unit, ...]}}`; a unit's image, like every picture
field, is base64 and decoded here: the API never opens a path on the server (another user's creation, or
any picture the server can read)."""
from __future__ import annotations

import dataclasses
import re

from .. import schema, spec
from ..errors import RequestError
from . import images

FIELD = "controlnet"
# The extension's unit keys that are named otherwise here (model, weight, image, threshold_a/b are shared)
A1111_KEYS = {"module": "preprocessor", "guidance_start": "start", "guidance_end": "end", "input_image": "image"}
# The extension's preprocessor names for the ones DreamWorld has under another name
A1111_MODULES = {"depth_midas": "depth", "depth_anything": "depth", "depth_zoe": "depth", "openpose": "pose",
                 "openpose_full": "pose", "inpaint_only": "inpaint"}
MODEL_HASH = re.compile(r"\s*\[[0-9a-fA-F]{8,}\]$")  # "control_v11p_sd15_canny [d14c016b]"


def units(body) -> list | None:
    """The body's units (our field, then the extension's), images decoded; None when it sends none."""
    sent = list(body.controlnet or []) if "controlnet" in body.model_fields_set else []
    scripts = {k.lower(): v for k, v in (body.alwayson_scripts or {}).items()}
    script = scripts.get("controlnet")
    if script is not None:
        args = script.get("args") if isinstance(script, dict) else None
        if not isinstance(args, list):
            raise RequestError(FIELD, "alwayson_scripts.controlnet must be an object with a list `args` of units")
        sent += [_from_a1111(unit, i) for i, unit in enumerate(args) if _enabled(unit)]
    if not sent and "controlnet" not in body.model_fields_set:
        return None
    return decode_units(sent)


def decode_units(sent) -> list:
    return [_decoded(unit, i) for i, unit in enumerate(spec.convert(schema.FIELDS[FIELD], sent))]


def decode_fields(fields: dict, pictures: bool = True) -> dict:
    """Schema fields of a JSON body with their pictures decoded from base64 (image fields, unit images);
    a video field, which only a path can give, is refused, and so are pictures where `pictures` is False
    (a session's fields, kept as JSON: pictures go with each job)."""
    decoded = dict(fields)
    for name, value in fields.items():
        field = schema.FIELDS.get(name)
        if field is None or value is None or field.kind not in ("image", "video", "units"):
            continue
        if field.kind == "video":
            raise RequestError(name, f"{name} names a file on the server, which the HTTP API does not accept")
        if not pictures and field.kind == "image":
            raise RequestError(name, f"{name} is a picture, which a session's fields cannot hold; send it with "
                                     "each job")
        decoded[name] = images.decode(value, name) if field.kind == "image" else decode_units(value)
        if not pictures and any(unit.image is not None for unit in decoded[name]):
            raise RequestError(name, f"{name}: a unit's image is a picture, which a session's fields cannot "
                                     "hold; send it with each job")
    return decoded


def _enabled(unit) -> bool:
    return not isinstance(unit, dict) or unit.get("enabled", True) is not False


def _from_a1111(unit, index: int) -> dict:
    if not isinstance(unit, dict):
        raise RequestError(FIELD, f"ControlNet unit {index} of alwayson_scripts must be an object")
    ours = {A1111_KEYS.get(k, k): v for k, v in unit.items()}
    if isinstance(ours.get("image"), dict):  # older clients: {"image": base64, "mask": base64}
        ours["image"] = ours["image"].get("image")
    ours["preprocessor"] = A1111_MODULES.get(ours.get("preprocessor"), ours.get("preprocessor", "none"))
    ours["model"] = MODEL_HASH.sub("", str(ours.get("model") or ""))
    for key in ("threshold_a", "threshold_b"):
        if isinstance(ours.get(key), (int, float)) and ours[key] < 0:  # the extension's -1: the default
            ours[key] = None
    known = {f.name for f in dataclasses.fields(schema.FIELDS[FIELD].unit)}
    return {k: v for k, v in ours.items() if k in known and v is not None}


def _decoded(unit, index: int):
    if unit.image is None or not isinstance(unit.image, str):
        return unit
    try:
        return dataclasses.replace(unit, image=images.decode(unit.image, f"ControlNet unit {index} image"))
    except RequestError as e:
        raise RequestError(FIELD, str(e)) from None
