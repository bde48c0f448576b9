"""A cinema run's folder: its frames (each with its metadata) and its settings file, which re-runs it."""
from __future__ import annotations

import json
from pathlib import Path

from .. import __version__, creations, schema
from ..creations import FRAME, RUN_SETTINGS, frame_name
from ..schema import Request


def saved_frames(run_dir) -> dict[int, Path]:
    """The frames saved in a run folder, by index."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return {}
    return {int(m.group(1)): p for p in run_dir.iterdir() if (m := FRAME.match(p.name))}


def save_frame(image, request: Request, *, parameters: str, run_dir, index: int, creations_dir,
               cinema: dict) -> Path:
    """Save frame `index` of a cinema run as `<run_dir>/frame_NNNNN.png` with its .txt, atomically.

    The embedded JSON is the frame's request plus `cinema` (run name, frame index, ...)."""
    run_dir = Path(run_dir)
    record = creations.request_record(request, Path(creations_dir), {"cinema": {"run": run_dir.name, "frame": index,
                                                                          **cinema}})
    path = run_dir / frame_name(index)
    write_image = creations.encoder(image, "png", parameters, record)
    with creations.saving(run_dir):
        creations.write_with_text(path, write_image, parameters)
    return path


def record(request, creations_dir) -> dict:
    """The run settings file's content; inputs are stored in creations/inputs and named relative to it."""
    fields = request.to_dict()
    if fields["init_image"] is not None:
        fields["init_image"] = creations.store_input(fields["init_image"], creations_dir)
    if fields["video"] is not None:
        fields["video"] = creations.store_file(fields["video"], creations_dir)
    fields["controlnet"] = [{**u, "image": creations.store_input(u["image"], creations_dir)} if u.get("image") else u
                            for u in fields.get("controlnet") or ()]
    return {"dreamworld_version": __version__, "cinema": fields}


def settings_file(path) -> Path:
    """The run settings file for a run folder, its settings file or any frame of it."""
    path = Path(path)
    if path.is_dir():
        path = path / RUN_SETTINGS
    elif path.suffix.lower() != ".json":
        data = creations.read_creation(path)["request"] or {}
        if "cinema" not in data:
            raise creations.CreationError(f"{path.name!r} is not a frame of a cinema run")
        path = path.parent / RUN_SETTINGS
    if not path.is_file():
        raise creations.CreationError(f"{path.parent.name!r} holds no {RUN_SETTINGS}: it is not a cinema run folder")
    return path


def load_settings(path, creations_dir=None) -> dict:
    """The CinemaRequest fields saved for a run (its folder, settings file or a frame), inputs as full paths
    (read back only from creations_dir's inputs/, see creations.stored_inputs)."""
    path = settings_file(path)
    unreadable = creations.CreationError(f"{path.name!r} in {path.parent.name!r} is not a readable cinema "
                                         "settings file")
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))["cinema"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        raise unreadable from None
    if not isinstance(fields, dict):
        raise unreadable
    fields = {k: v for k, v in fields.items() if k in schema.CINEMA_FIELDS}
    inputs = [n for n, s in schema.CINEMA_FIELDS.items() if s.kind in ("image", "video")]
    return creations.stored_inputs(fields, inputs, creations_dir, path.name)
