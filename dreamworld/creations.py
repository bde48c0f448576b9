"""Saving creations and reading their metadata back.

A creation is `<creations>/<YYYY-MM-DD>/<NNNNN>-<slug>.<png|jpg|webp>` with a `.txt`
beside it holding the A1111 `parameters` text. The image embeds:

- PNG: a `parameters` text chunk (tEXt, or iTXt when not Latin-1) and a `dreamworld`
  iTXt chunk with the complete request as JSON;
- JPEG and WebP: EXIF UserComment (piexif, "unicode" encoding, as A1111 writes it)
  with the parameters, and EXIF ImageDescription (0th IFD) with the same JSON,
  ASCII-escaped because that EXIF field is ASCII.

The JSON is the request's fields plus `dreamworld_version`; init_image and mask are
paths, relative to the creations folder, of copies stored once in `inputs/` under
their content hash.
"""
from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import re
import tempfile
import threading
import unicodedata
from contextlib import contextmanager
from pathlib import Path

import piexif
import piexif.helper
from PIL import Image, ImageOps, PngImagePlugin

from . import __version__, files
from .errors import CreationError, RequestError
from .infotext import format_parameters, parse_parameters, request_from_parameters
from .schema import FIELDS, Request

MAX_SIDE = 8192
JPEG_QUALITY = 95
JPEG_EXIF_LIMIT = 65533  # bytes of a JPEG APP1 segment's content
JPEG_EXIF_MARGIN = 2048  # for what check_fits() cannot know before the model is loaded (its name)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
INPUTS = "inputs"

INPUT_FIELDS = tuple(name for name, s in FIELDS.items() if s.kind == "image")  # stored in inputs/
_NUMBERED = re.compile(r"^\.?(\d{5,})-")
_STORED = re.compile(r"^inputs/[0-9a-f]{16}\.[a-z0-9]{1,5}$")  # a stored input: inputs/<content hash>.<ext>
_save_lock = threading.Lock()


# ----- files ------------------------------------------------------------------------
@contextmanager
def saving(where: Path):
    """Report a failure to write files in `where` (a full disk...) as one sentence."""
    try:
        yield
    except OSError as e:
        raise CreationError(f"cannot save in {where}: {files.reason(e)}") from None


def check_folder(creations_dir) -> Path:
    """Make the creations folder if it is missing and check that files can be written in it: called before
    anything is generated, so that a run never fails only when it is saved."""
    folder = Path(creations_dir)
    if folder.exists() and not folder.is_dir():
        raise CreationError(f"the creations folder {folder} is a file, not a folder; choose another creations folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as e:
        raise CreationError(f"the creations folder {folder} cannot be used: {files.reason(e)}") from None
    return folder


def _slug(text: str, limit: int = 40) -> str:
    ascii_text = unicodedata.normalize("NFKD", text[:limit]).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:limit].strip("-")


def _next_number(folder: Path) -> int:
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _NUMBERED.match(p.name))]
    return max(numbers, default=0) + 1


def _is_inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _stored_name(path: Path, creations_dir: Path) -> str | None:
    """`inputs/<hash>.<ext>` if `path` is an input already stored in creations_dir, else None."""
    if not path.is_file() or not _is_inside(path, creations_dir / INPUTS):
        return None
    name = path.resolve().relative_to(creations_dir.resolve()).as_posix()
    return name if _STORED.match(name) else None


def open_image(path) -> Image.Image:
    """Open an untrusted image file: checked, size-capped, upright, loaded, RGB (RGBA if it has alpha)."""
    path = Path(path)
    try:
        with Image.open(path) as probe:
            width, height = probe.size
            probe.verify()
        if max(width, height) > MAX_SIDE:
            raise CreationError(f"image {path.name!r} is {width}x{height} pixels, larger than the "
                                f"{MAX_SIDE} pixels a side allowed")
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
    except CreationError:
        raise
    except Image.DecompressionBombError:
        raise CreationError(f"image {path.name!r} has too many pixels to open safely") from None
    except FileNotFoundError:
        raise CreationError(f"cannot read {path.name!r} as an image: the file does not exist") from None
    except Image.UnidentifiedImageError:
        raise CreationError(f"cannot read {path.name!r} as an image: it is not an image file "
                            "in a format Pillow knows") from None
    except Exception:
        raise CreationError(f"cannot read {path.name!r} as an image: the file is damaged or unreadable") from None
    alpha = "A" in image.getbands() or "transparency" in image.info
    return image.convert("RGBA" if alpha else "RGB")


def store_input(image_or_path, creations_dir) -> str:
    """Keep an input image in <creations>/inputs/ (once per content) and return its path relative to creations_dir.

    An input already stored there is returned relative, without copying; any other image (a creation
    used as an input included) is copied, so that metadata only ever names stored inputs.
    """
    creations_dir = Path(creations_dir)
    image = image_or_path
    if not isinstance(image, Image.Image):
        path = Path(image_or_path)
        if not path.is_absolute() and (creations_dir / path).is_file():
            path = creations_dir / path
        stored = _stored_name(path, creations_dir)
        if stored:
            return stored
        image = open_image(path)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    target = creations_dir / INPUTS / f"{hashlib.sha256(data).hexdigest()[:16]}.png"
    if not target.exists():
        with saving(target.parent):
            target.parent.mkdir(parents=True, exist_ok=True)
            files.write_atomic(target, data)
    return target.relative_to(creations_dir).as_posix()


def _exif(parameters: str, record: dict) -> bytes:
    return piexif.dump({
        "0th": {piexif.ImageIFD.ImageDescription: json.dumps(record).encode("ascii")},
        "Exif": {piexif.ExifIFD.UserComment: piexif.helper.UserComment.dump(parameters, encoding="unicode")},
    })


def check_fits(request: Request) -> None:
    """Refuse, before anything is generated, a request whose metadata its file format cannot hold: a JPEG's
    EXIF segment holds 64 KiB, and the prompts are in it twice (the parameters text, UTF-16, and the JSON).
    The model's name and hash are not known yet: a margin is kept for them."""
    if request.format != "jpg":
        return
    record = {name: value for name, value in request.to_dict().items() if name in FIELDS}
    record["dreamworld_version"] = __version__
    for name in INPUT_FIELDS:
        if record[name] is not None:
            record[name] = f"{INPUTS}/0123456789abcdef.png"
    longest = request.replace(seed=2**32 - 1, width=9999, height=9999)
    parameters = format_parameters(longest, {"Model hash": "0123456789", "Version": f"dreamworld {__version__}"})
    if len(_exif(parameters, record)) > JPEG_EXIF_LIMIT - JPEG_EXIF_MARGIN:
        length = len(request.prompt) + len(request.negative_prompt)
        raise RequestError("prompt", f"prompt is too long to embed in a JPEG file's metadata ({length} characters "
                                     "with the negative prompt); use format png or webp, or a shorter prompt")


def encoder(image: Image.Image, fmt: str, parameters: str, record: dict):
    """A function that writes `image` with its embedded metadata to an open file."""
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", parameters)
        info.add_itxt("dreamworld", json.dumps(record, ensure_ascii=False))
        return lambda f: image.save(f, format="PNG", pnginfo=info)
    exif = _exif(parameters, record)
    if fmt == "jpg":
        if len(exif) > JPEG_EXIF_LIMIT:
            raise CreationError("the prompt is too long to embed in a JPEG file; save as png or webp")
        rgb = image if image.mode in ("RGB", "L") else image.convert("RGB")
        return lambda f: rgb.save(f, format="JPEG", quality=JPEG_QUALITY, exif=exif)
    return lambda f: image.save(f, format="WEBP", quality=JPEG_QUALITY, exif=exif)


def request_record(request: Request, creations_dir: Path, extra: dict | None = None) -> dict:
    record = {name: value for name, value in request.to_dict().items() if name in FIELDS}
    for name in INPUT_FIELDS:
        if record[name] is not None:
            record[name] = store_input(record[name], creations_dir)
    record["dreamworld_version"] = __version__
    record.update(extra or {})
    return record


def save_creation(image, request: Request, *, parameters: str, creations_dir, index_hint: str = "") -> Path:
    """Save an image, its metadata and its .txt atomically; return the image path.

    `index_hint` is optional extra text for the file name after the prompt slug (e.g. "frame-7").
    """
    creations_dir = Path(creations_dir)
    slug = "-".join(filter(None, (_slug(request.prompt), _slug(index_hint)))) or "image"
    return save_record(image, request_record(request, creations_dir), request.format, parameters=parameters,
                       creations_dir=creations_dir, slug=slug)


def save_record(image, record: dict, fmt: str, *, parameters: str, creations_dir, slug: str) -> Path:
    """Save an image with our metadata `record` as the next creation of today, named `slug`."""
    write_image = encoder(image, fmt, parameters, record)
    folder = Path(creations_dir) / datetime.date.today().isoformat()
    with _save_lock, saving(folder):
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{_next_number(folder):05d}-{slug or 'image'}.{fmt}"
        write_with_text(path, write_image, parameters)
    return path


def write_with_text(path: Path, write_image, parameters: str) -> None:
    """Write an image and the .txt of its parameters beside it, each atomically; neither is left alone."""
    text_path = path.with_suffix(".txt")
    files.write_atomic(text_path, parameters.encode("utf-8"))
    try:
        files.write_atomic(path, save=write_image)
    except BaseException:
        text_path.unlink(missing_ok=True)
        raise


def save_image_at(image, request: Request, *, parameters: str, path, creations_dir, extra: dict) -> Path:
    """Save an image with its metadata (the request plus `extra`, e.g. {"parts": ...}) and its .txt at
    `path` (a PNG), atomically; return the path."""
    path = Path(path)
    record = request_record(request.replace(format="png"), Path(creations_dir), extra)
    with saving(path.parent):
        write_with_text(path, encoder(image, "png", parameters, record), parameters)
    return path


# ----- cinema runs ----------------------------------------------------------------------
RUN_SETTINGS = "cinema.json"
FRAME = re.compile(r"^frame_(\d{5,})\.png$")


def frame_name(index: int) -> str:
    return f"frame_{index:05d}.png"


def new_run_folder(creations_dir, prompt: str) -> Path:
    """Make and return an empty `<creations>/<date>/<NNNNN>-<slug>/` folder for a cinema run."""
    folder = Path(creations_dir) / datetime.date.today().isoformat()
    with _save_lock, saving(folder):
        folder.mkdir(parents=True, exist_ok=True)
        run = folder / f"{_next_number(folder):05d}-{_slug(prompt) or 'cinema'}"
        run.mkdir()
    return run


def store_file(path, creations_dir) -> str:
    """Keep a copy of an input file (a video) in <creations>/inputs/ under its content hash; return its
    path relative to creations_dir. A file already stored there is returned relative, uncopied."""
    creations_dir, path = Path(creations_dir), Path(path)
    if not path.is_absolute() and (creations_dir / path).is_file():
        path = creations_dir / path
    stored = _stored_name(path, creations_dir)
    if stored:
        return stored
    try:
        data = path.read_bytes()
    except OSError:
        raise CreationError(f"cannot read {path.name!r}: the file does not exist or is unreadable") from None
    target = creations_dir / INPUTS / f"{hashlib.sha256(data).hexdigest()[:16]}{path.suffix.lower()}"
    if not target.exists():
        with saving(target.parent):
            target.parent.mkdir(parents=True, exist_ok=True)
            files.write_atomic(target, data)
    return target.relative_to(creations_dir).as_posix()


def _record(text) -> dict | None:
    try:
        record = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) and "dreamworld_version" in record else None


def read_creation(path) -> dict:
    """{"parameters": text or None, "request": our JSON dict or None} embedded in an image file."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            info = dict(image.info)
    except Exception as e:
        reason = "the file does not exist" if isinstance(e, FileNotFoundError) else \
            "it is not an image file or it is damaged"
        raise CreationError(f"cannot read {path.name!r} as an image: {reason}") from None
    parameters, request = info.get("parameters"), _record(info.get("dreamworld"))
    raw = info.get("exif") or b""
    if raw[:4] == b"Exif" or raw[:2] in (b"II", b"MM"):  # piexif.load treats anything else as a file name
        try:
            exif = piexif.load(raw)
        except Exception:
            exif = {}
        comment = exif.get("Exif", {}).get(piexif.ExifIFD.UserComment)
        if comment and parameters is None:
            try:
                parameters = piexif.helper.UserComment.load(comment)
            except ValueError:
                parameters = comment.decode("utf-8", errors="ignore")
        if request is None:
            request = _record(exif.get("0th", {}).get(piexif.ImageIFD.ImageDescription))
    return {"parameters": str(parameters) if parameters else None, "request": request}


def stored_inputs(fields: dict, names, creations_dir, source: str) -> dict:
    """`fields` with the stored inputs it names as full paths.

    The file the fields came from is untrusted: it may name only inputs stored in the creations folder
    (`inputs/<content hash>.<ext>`, as store_input and store_file record them), never a path of its own
    choosing, which could lead to any file the user can read."""
    for name in names:
        value = fields.get(name)
        if not value:
            continue
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        path = Path(creations_dir) / value if creations_dir is not None and isinstance(value, str) else None
        if path is None or not _STORED.match(value) or not _is_inside(path, Path(creations_dir) / INPUTS):
            raise CreationError(f"{source!r} names the {name} {shown}, which is not an input stored in the "
                                f"creations folder's {INPUTS}/; only those are read back")
        if not path.is_file():
            raise CreationError(f"{source!r} names the {name} {shown}, which is not in the creations folder "
                                f"{creations_dir}")
        fields[name] = str(path)
    return fields


def request_from_file(path, creations_dir=None) -> dict:
    """The Request fields to re-run the creation in `path` (count 1, stored inputs as absolute paths).

    Inputs are read back only from creations_dir's inputs/ (see stored_inputs)."""
    path = Path(path)
    data = read_creation(path)
    if data["request"] is not None and "cinema" in data["request"]:
        run = data["request"]["cinema"]
        raise CreationError(f"{path.name!r} is frame {run.get('frame')} of the cinema run {run.get('run')!r}; "
                            f"re-run the whole run with: app.py cinema --from {path.parent / RUN_SETTINGS}")
    if data["request"] is not None:
        fields = {k: v for k, v in data["request"].items() if k in FIELDS}
        fields.update(count=1, seeds=[])  # this image alone, at its own seed
        for unit in fields.get("controlnet") or ():  # a ControlNet unit's own control image
            if isinstance(unit, dict) and unit.get("image"):
                stored_inputs(unit, ["image"], creations_dir, path.name)
        return stored_inputs(fields, INPUT_FIELDS, creations_dir, path.name)
    if data["parameters"]:
        return request_from_parameters(parse_parameters(data["parameters"]))
    raise CreationError(f"{path.name!r} holds no generation parameters")


def list_creations(creations_dir) -> list[Path]:
    """Image files under creations_dir, newest first, without stored inputs, temp files and the frames
    of cinema runs after their first."""
    root = Path(creations_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
             and (parts := p.relative_to(root).parts)[0] != INPUTS
             and not any(part.startswith(".") for part in parts)
             and not ((m := FRAME.match(p.name)) and int(m.group(1)))]  # a cinema run shows its first frame
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, str(p)), reverse=True)
