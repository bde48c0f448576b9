"""A request's pictures made ready: the init image, mask and painted image opened, checked and sized, and its
ControlNet units checked (without loading anything) and prepared (controlnet.ControlInput)."""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from . import backends, controlnet, creations, models, preprocessors
from . import settings as settings_module
from .errors import RequestError
from .schema import Request

log = logging.getLogger("dreamworld")


def check_controlnet(request: Request, model_dirs, creations_dir: Path) -> None:
    """Refuse, in one sentence, units that cannot run: a backend without ControlNet, an unknown model, a
    ControlNet of another family than the model, an unreadable control image, a preprocessor whose
    model is missing, no control image at all. Reads configs and headers only."""
    backends.check(request, backends.capabilities(request.backend, request.device))
    unet = None
    for i, unit in enumerate(request.controlnet):
        try:
            info = models.find_model(model_dirs, unit.model, "controlnet")
            if unet is None:
                unet = unet_config(models.find_model(model_dirs, request.model or
                                                      settings_module.DEFAULT_MODEL))
            if unet is not None:
                controlnet.check_family(info, unet, request.model or settings_module.DEFAULT_MODEL)
        except models.ModelError as e:
            raise RequestError("controlnet", f"ControlNet unit {i}: {e}" if "not found" in str(e) else str(e)) \
                from None
        if unit.image is not None:
            open_image(unit.image, "controlnet", creations_dir)
        elif request.mode == "txt2img":
            raise RequestError("controlnet", f"ControlNet unit {i} has no control image: give it one "
                                             f"(its image field) or use an input image (img2img or inpaint)")
        if unit.preprocessor == "depth" and preprocessors.find_depth_model(model_dirs) is None:
            preprocessors.depth_map(None, model_dirs)  # raises the sentence naming the folder
        if unit.preprocessor == "pose":
            try:
                preprocessors.pose_map(None, model_dirs)
            except preprocessors.PreprocessorError:
                raise
            except Exception:  # noqa: BLE001 - found the model and the package: runs at generation
                pass


def open_inputs(request: Request, creations_dir: Path) -> tuple[Image.Image | None, ...]:
    """Open, check and size the init image and mask of img2img and inpaint requests: (the image to
    start from, the mask, the unpainted input). In sketch inpainting (`painted`) the painted image is
    the start, the mask (unless given) is where it differs from the input, and the result is pasted
    on the unpainted input; otherwise the third is None."""
    if request.mode == "txt2img":
        return None, None, None
    size = (request.width, request.height)
    init = open_image(request.init_image, "init_image", creations_dir).convert("RGB")
    init = init.resize(size, Image.LANCZOS) if init.size != size else init
    if request.mode != "inpaint":
        return init, None, None
    painted = None
    if request.painted is not None:
        painted = open_image(request.painted, "painted", creations_dir).convert("RGB")
        painted = painted.resize(size, Image.LANCZOS) if painted.size != size else painted
    if request.mask is None:
        mask = painted_mask(init, painted)
        if mask.getextrema() == (0, 0):
            raise RequestError("painted", "painted does not differ from init_image anywhere: paint over the "
                                          "parts to repaint")
    else:
        mask = open_image(request.mask, "mask", creations_dir)
        if mask.mode in ("RGBA", "LA") and mask.getchannel("A").getextrema() != (255, 255):
            mask = mask.getchannel("A")  # a painted layer: the strokes are what to repaint
        mask = mask.convert("L").resize(size, Image.NEAREST)
    return (painted, mask, init) if painted is not None else (init, mask, None)


def control_inputs(request: Request, backend, image: Image.Image | None, mask: Image.Image | None, model_dirs,
                   creations_dir: Path) -> tuple:
    """The request's ControlNet units made ready (controlnet.ControlInput): each model found and loaded
    (refused if of another family than the model), each control image opened (the unit's own, else
    the input image), resized to the picture and preprocessed."""
    if not request.controlnet:
        return ()
    size = (request.width, request.height)
    ready = []
    for i, unit in enumerate(request.controlnet):
        try:
            info = models.find_model(model_dirs, unit.model, "controlnet")
        except models.ModelError as e:
            raise RequestError("controlnet", f"ControlNet unit {i}: {e}") from None
        backend.controlnet(info)  # loaded (and its family checked) before any file is written
        if unit.image is not None:
            source = open_image(unit.image, "controlnet", creations_dir).convert("RGB")
        elif image is not None:
            source = image
        else:
            raise RequestError("controlnet", f"ControlNet unit {i} has no control image: give it one "
                                             f"(its image field) or use an input image (img2img or inpaint)")
        if source.size != size:
            log.info("ControlNet unit %d: control image %dx%d resized to %dx%d", i, *source.size, *size)
            source = source.resize(size, Image.LANCZOS)
        array = preprocessors.run(unit.preprocessor, source, threshold_a=unit.threshold_a,
                                  threshold_b=unit.threshold_b, mask=mask, models_dirs=model_dirs)
        ready.append(controlnet.ControlInput(info, array, unit.weight, unit.start, unit.end))
    return tuple(ready)


def preview_control(model_dirs, creations_dir: Path, preprocessor: str, image, width: int | None = None,
                    height: int | None = None, threshold_a: float | None = None, threshold_b: float | None = None,
                    mask=None) -> Image.Image:
    """A preprocessor's control image of `image` (a path or PIL image) as a picture (the GUI's preview)."""
    source = open_image(image, "controlnet", creations_dir).convert("RGB")
    if width and height and source.size != (width, height):
        source = source.resize((width, height), Image.LANCZOS)
    return preprocessors.to_pil(preprocessors.run(preprocessor, source, threshold_a=threshold_a,
                                                  threshold_b=threshold_b, mask=mask, models_dirs=model_dirs))


PAINT_THRESHOLD = 12  # a pixel whose channels all differ by at most this much from the input is unpainted


def painted_mask(init: Image.Image, painted: Image.Image) -> Image.Image:
    """Sketch inpainting's mask: white where the painted image differs from the input (any channel by more
    than PAINT_THRESHOLD levels, which leaves out resampling and JPEG noise)."""
    a = np.asarray(init.convert("RGB"), dtype=np.int16)
    b = np.asarray(painted.convert("RGB"), dtype=np.int16)
    return Image.fromarray(((np.abs(a - b).max(axis=2) > PAINT_THRESHOLD) * 255).astype(np.uint8), "L")


def controlnet_hashes(request, model_dirs) -> dict:
    """{ControlNet model name: short hash} of the request's units, for the parameters text."""
    return {u.model: models.find_model(model_dirs, u.model, "controlnet").hash[:8] for u in request.controlnet}


def store(request: Request, init_image, mask, original, folder: Path, creations_dir: Path) -> Request:
    """The request as a creation records it: its input pictures copied into `folder` (creations.store_input)
    and named relative to it, the unpainted input as init_image and the painted one as painted."""
    kept_mask = request_mask(request, mask)
    return request.replace(
        init_image=creations.store_input(original or init_image, folder) if init_image else None,
        mask=creations.store_input(kept_mask, folder) if kept_mask else None,
        painted=creations.store_input(init_image, folder) if original is not None else None,
        controlnet=tuple(u if u.image is None else dataclasses.replace(u, image=creations.store_input(
            open_image(u.image, "controlnet", creations_dir), folder)) for u in request.controlnet))


def request_mask(request: Request, mask):
    """The mask a creation records: the request's own (a painted request's is derived again when re-run)."""
    return mask if request.mask is not None else None


def depth_hook(model_dirs, request):
    """3D motion: the depth model in models/depth, when there is one (preprocessors.DepthHook)."""
    if getattr(request, "motion", None) != "3d":
        return None
    return preprocessors.depth_hook(model_dirs)


def unet_config(model) -> dict | None:
    """A model's UNet config without loading it (diffusers folder, or a single file's family config)."""
    try:
        if model.format == "diffusers":
            return json.loads((model.path / "unet" / "config.json").read_text())
        from . import single_file
        return json.loads((single_file.HERE / single_file.checkpoint_family(model.path) / "unet" / "config.json")
                          .read_text())
    except (OSError, ValueError):
        return None  # the backend says why when it loads the model


def open_image(value, field_name: str, creations_dir: Path) -> Image.Image:
    """A picture field's image (a PIL image, a path, or a path relative to creations/); unreadable: one sentence."""
    if isinstance(value, Image.Image):
        return value
    path = Path(value)
    if not path.is_absolute() and not path.exists() and (creations_dir / path).exists():
        path = creations_dir / path  # stored inputs are recorded relative to creations/
    try:
        return creations.open_image(path)
    except creations.CreationError as e:
        raise RequestError(field_name, f"{field_name}: {e}") from None
