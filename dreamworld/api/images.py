"""Images in and out of the API: base64 (optionally a data: URI) to a checked PIL image, files to base64 PNG."""
from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path

import piexif
import piexif.helper
from PIL import Image, ImageOps, PngImagePlugin

from ..creations import MAX_SIDE
from ..errors import RequestError


def _bytes(text: str, field: str) -> bytes:
    if not isinstance(text, str) or not text:
        raise RequestError(field, f"{field} must be a base64-encoded image")
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        raise RequestError(field, f"{field} is not valid base64") from None


def decode(text: str, field: str) -> Image.Image:
    """The image a client sent in `field`, checked and size-capped, or RequestError naming the field."""
    data = _bytes(text, field)
    try:
        with Image.open(io.BytesIO(data)) as probe:
            size = probe.size
            probe.verify()
        if max(size) > MAX_SIDE:
            raise RequestError(field, f"{field} is {size[0]}x{size[1]} pixels, larger than the "
                                      f"{MAX_SIDE} pixels a side allowed")
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
    except RequestError:
        raise
    except Exception:
        raise RequestError(field, f"{field} is not an image in a format Pillow knows, or it is damaged") from None
    alpha = "A" in image.getbands() or "transparency" in image.info
    return image.convert("RGBA" if alpha else "RGB")


def png_text(image: Image.Image) -> dict:
    """The text chunks of a decoded image (A1111 keeps `parameters` there)."""
    return {k: v for k, v in image.info.items() if isinstance(v, str)}


def encode_png(image: Image.Image, parameters: str | None = None) -> str:
    """base64 PNG of an image, with `parameters` as its text chunk where given."""
    info = PngImagePlugin.PngInfo()
    if parameters:
        info.add_text("parameters", parameters)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def encode_file(path: Path, parameters: str) -> str:
    """base64 PNG of a saved creation: its own bytes when it is a PNG (its metadata already embedded)."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        return base64.b64encode(path.read_bytes()).decode("ascii")
    with Image.open(path) as image:
        return encode_png(image.convert("RGB"), parameters)


def read_parameters(text: str, field: str = "image") -> tuple[str | None, dict]:
    """The A1111 `parameters` text of a base64 image (PNG text chunk or EXIF UserComment) and its other
    text items."""
    data = _bytes(text, field)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            info = dict(image.info)
    except Exception:
        raise RequestError(field, f"{field} is not an image in a format Pillow knows, or it is damaged") from None
    parameters = info.pop("parameters", None)
    raw = info.pop("exif", b"") or b""
    if parameters is None and (raw[:4] == b"Exif" or raw[:2] in (b"II", b"MM")):
        parameters = _user_comment(raw)
    return (str(parameters) if parameters else None), {k: v for k, v in info.items() if isinstance(v, str)}


def _user_comment(raw: bytes) -> str | None:
    try:
        comment = piexif.load(raw).get("Exif", {}).get(piexif.ExifIFD.UserComment)
        return piexif.helper.UserComment.load(comment) if comment else None
    except Exception:
        return None
