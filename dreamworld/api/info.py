"""The A1111 routes that describe or tweak the server: options, model and sampler lists, png-info, extras."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body
from PIL import Image
from pydantic import BaseModel, ConfigDict

from .. import infotext, models as found, upscalers
from ..backends.samplers import NAMES
from ..creations import MAX_SIDE
from ..errors import RequestError
from ..world import DreamWorld
from . import images

# A1111 option -> the schema field whose default (in settings.json's defaults, for this process) it sets.
OPTIONS = {"sd_model_checkpoint": "model", "sd_vae": "vae", "CLIP_stop_at_last_layers": "clip_skip",
           "samples_format": "format"}
UPSCALERS = ("None", "Lanczos")


class PngInfoRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    image: str


class ExtrasSingleImageRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    image: str
    resize_mode: int = 0  # 0: by upscaling_resize; 1: to upscaling_resize_w x upscaling_resize_h
    upscaling_resize: float = 2.0
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaler_1: str = "None"
    upscaler_2: str = "None"


def options(world: DreamWorld) -> dict[str, Any]:
    r = world.request()
    return {"sd_model_checkpoint": r.model or world.settings.defaults.get("model", ""),
            "sd_vae": r.vae or "Automatic", "CLIP_stop_at_last_layers": r.clip_skip,
            "samples_format": r.format, "outdir_samples": str(world.creations_dir)}


def set_options(world: DreamWorld, body: dict[str, Any]) -> None:
    """Change the defaults the options name (validated first, all or none); other options are ignored."""
    changes = {OPTIONS[k]: v for k, v in body.items() if k in OPTIONS}
    if changes.get("vae") == "Automatic":
        changes["vae"] = ""
    if changes.get("model"):
        changes["model"] = found.find_model(world.model_dirs, str(changes["model"])).name
    world.request(**changes)  # RequestError names the field
    world.settings.defaults.update(changes)


def sd_models(world: DreamWorld) -> list[dict[str, Any]]:
    listed = []
    for m in world.list_models("checkpoint"):
        sha = found.file_sha256(m.weights_file)
        listed.append({"title": f"{m.name} [{sha[:10]}]", "model_name": m.name, "hash": sha[:10],
                       "sha256": sha, "filename": str(m.path), "config": None})
    return listed


def png_info(body: PngInfoRequest) -> dict[str, Any]:
    """A1111's /png-info: the parameters text, the image's other text items and the text parsed."""
    text, items = images.read_parameters(body.image)
    parsed: dict[str, Any] = {}
    if text:
        parsed = infotext.parse_parameters(text)
        parsed = {"Prompt": parsed.pop("prompt"), "Negative prompt": parsed.pop("negative_prompt"), **parsed}
        if "x" in str(parsed.get("Size", "")):
            parsed["Size-1"], parsed["Size-2"] = str(parsed["Size"]).split("x", 1)
    return {"info": text or "", "items": items, "parameters": parsed}


def extra_single_image(world: DreamWorld, body: ExtrasSingleImageRequest) -> dict[str, Any]:
    """Upscale with upscaler_1 (None: a Lanczos resize): by upscaling_resize, or to _w x _h with resize_mode 1.
    upscaler_2 (A1111 blends a second one in) may only be None or Lanczos."""
    if body.upscaler_2 not in UPSCALERS:
        raise RequestError("upscaler_2", f"upscaler_2 must be one of {', '.join(UPSCALERS)}, "
                                         f"got {body.upscaler_2!r}"[:200])
    name = "Lanczos" if body.upscaler_1 == "None" else upscalers.check(body.upscaler_1, world.model_dirs,
                                                                          "upscaler_1")
    image = images.decode(body.image, "image")
    if body.resize_mode == 1:
        size, field = (body.upscaling_resize_w, body.upscaling_resize_h), "upscaling_resize_w"
    else:
        size = (round(image.width * body.upscaling_resize), round(image.height * body.upscaling_resize))
        field = "upscaling_resize"
    if not (1 <= min(size) and max(size) <= MAX_SIDE):
        raise RequestError(field, f"{field} gives {size[0]}x{size[1]} pixels; each side must be from 1 to "
                                  f"{MAX_SIDE}")
    image = image.convert("RGB")
    if name == "Lanczos":
        result = image.resize(size, Image.LANCZOS)
    else:
        model = upscalers.load(found.find_model(world.model_dirs, name, "esrgan"))
        result = upscalers.with_model(image, model, size, upscalers.device_for(world.request().device))
    info = upscalers.postprocess_text(size[0] / image.width, name)
    return {"html_info": info, "image": images.encode_png(result)}


def upscaler_list(world: DreamWorld) -> list[dict[str, Any]]:
    """A1111's /upscalers: None, Lanczos, then each model in models/ESRGAN."""
    listed = [{"name": n, "model_name": None, "model_path": None, "model_url": None, "scale": 4} for n in UPSCALERS]
    for m in world.list_models("esrgan"):
        listed.append({"name": m.name, "model_name": "ESRGAN", "model_path": str(m.path), "model_url": None,
                       "scale": _scale(m)})
    return listed


def _scale(model: found.ModelInfo):
    try:
        return upscalers.load(model).scale
    except found.ModelError:
        return None


def add_routes(router: APIRouter, world: DreamWorld) -> None:
    router.add_api_route("/options", lambda: options(world), methods=["GET"], summary="Get options")

    def post_options(body: dict[str, Any] = Body(...)) -> None:
        set_options(world, body)
    router.add_api_route("/options", post_options, methods=["POST"], summary="Set options")
    router.add_api_route("/sd-models", lambda: sd_models(world), methods=["GET"], summary="Checkpoints")
    router.add_api_route("/samplers", lambda: [{"name": n, "aliases": [], "options": {}} for n in NAMES],
                         methods=["GET"], summary="Samplers")
    router.add_api_route("/schedulers", lambda: [{"name": "automatic", "label": "Automatic", "aliases": None,
                                                  "default_rho": -1, "need_inner_model": False}],
                         methods=["GET"], summary="Schedulers")
    router.add_api_route("/loras", lambda: [{"name": m.name, "alias": m.name, "path": str(m.path), "metadata": {}}
                                            for m in world.list_models("lora")], methods=["GET"], summary="LoRAs")
    router.add_api_route("/embeddings", lambda: embedding_list(world), methods=["GET"],
                         summary="Textual-inversion embeddings in models/embeddings")
    router.add_api_route("/upscalers", lambda: upscaler_list(world), methods=["GET"],
                         summary="Upscalers: Lanczos and the models in models/ESRGAN")
    router.add_api_route("/refresh-checkpoints", lambda: None, methods=["POST"],
                         summary="Refresh checkpoints (models/ is read at each request)")
    router.add_api_route("/png-info", png_info, methods=["POST"], summary="Read an image's parameters")
    def extras(body: ExtrasSingleImageRequest) -> dict[str, Any]:
        return extra_single_image(world, body)
    router.add_api_route("/extra-single-image", extras, methods=["POST"], summary="Upscale one image")


def embedding_list(world) -> dict:
    """A1111's /embeddings: the readable files of models/embeddings ("loaded"), the others ("skipped")."""
    from .. import embeddings
    from ..errors import ModelError
    loaded, skipped = {}, {}
    for m in world.list_models("embedding"):
        try:
            e = embeddings.load(m)
        except ModelError:
            skipped[m.name] = {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": None,
                               "vectors": None}
            continue
        first = next(iter(e.vectors.values()))
        loaded[m.name] = {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
                          "shape": int(first.shape[1]), "vectors": int(first.shape[0])}
    return {"loaded": loaded, "skipped": skipped}
