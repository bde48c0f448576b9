"""The PyTorch backend: diffusers pipelines sharing one loaded model."""
from __future__ import annotations

import gc
import logging

import numpy as np
import torch
from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import logging as diffusers_logging
from PIL import Image
from transformers.utils import logging as transformers_logging

from .. import loras as lora_files, prompts
from ..models import ModelError
from ..schema import MODES
from . import LoadSpec, samplers, torch_controlnet, torch_deepcache, torch_text, torch_tiles, weights
from .base import BackendError, Capabilities, Conditioning, Job, is_out_of_memory, out_of_memory, precisions_on
from .latents import LatentStages
from .torch_devices import available_devices, resolve_device, resolve_precision, supported_precisions

log = logging.getLogger("dreamworld")
diffusers_logging.disable_progress_bar()
transformers_logging.disable_progress_bar()

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PIPELINES = {"txt2img": AutoPipelineForText2Image, "img2img": AutoPipelineForImage2Image,
             "inpaint": AutoPipelineForInpainting}


class TorchBackend(LatentStages):
    name = "torch"

    @classmethod
    def capabilities(cls) -> Capabilities:
        return Capabilities(
            modes=MODES, schedulers=tuple(samplers.SCHEDULERS), devices=available_devices(),
            precisions=precisions_on(available_devices(), supported_precisions),
            size_multiple=8, latent_walk=True, parts=True, controlnet=True, lora=True, deepcache=True)

    def __init__(self, spec: LoadSpec):
        model, vae = spec.model, spec.vae
        self.device = resolve_device(spec.device)
        self.precision = resolve_precision(self.device, spec.precision)
        self.loop_device = self.device
        self.dtype = dtype = DTYPES[self.precision]  # the torch networks'
        try:
            pipe = weights.load_pipeline(model, dtype)
            if vae is not None:
                pipe.vae = weights.load_vae(vae, dtype, pipe)
        except ModelError as e:  # single files: already one sentence naming the file
            raise BackendError(str(e)) from None
        except (OSError, ValueError, KeyError, RuntimeError, EnvironmentError) as e:
            raise BackendError(f"model {model.name!r} could not be loaded from {model.path}: "
                               f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
        pipe.set_progress_bar_config(disable=True)
        self.model_name = model.name
        # An inpainting UNet (latents + mask + masked image in) serves only the inpaint mode.
        self.inpainting_only = pipe.unet.config.in_channels == 9
        self._pipes = {"txt2img": pipe.to(self.device)}
        self._adapters: list[str] = []  # PEFT adapters loaded (loras.LoraFile.adapter), least recently used first
        self._scheduler_config = dict(pipe.scheduler.config)
        self.sdxl = getattr(pipe, "text_encoder_2", None) is not None
        # what the stages (latents.py) work with
        self.scheduler_config, self.vae_config, self.unet_config = self._scheduler_config, pipe.vae.config, pipe.unet.config
        self.scale, self.images = pipe.vae_scale_factor, pipe.image_processor
        self.masks = VaeImageProcessor(vae_scale_factor=self.scale, do_normalize=False, do_binarize=True,
                                       do_convert_grayscale=True)
        self._controlnets: dict = {}  # path -> loaded ControlNetModel (kept while this model is loaded)

    # ----- LoRAs: PEFT adapters over the loaded weights -----------------------------------------------
    MAX_ADAPTERS = 8  # adapters kept loaded; the least recently used others are deleted

    def set_loras(self, loras: tuple) -> bool:
        """Load the LoRAs not yet loaded as adapters and activate exactly these with their weights (diffusers'
        set_adapters); none: the adapters are disabled. The base weights are never reloaded."""
        pipe = self._pipes["txt2img"]
        for lora in loras:
            if lora.adapter in self._adapters:
                self._adapters.remove(lora.adapter)
            else:
                lora_files.load_adapter(pipe, lora)
            self._adapters.append(lora.adapter)  # most recently used last
        if loras:
            pipe.enable_lora()
            pipe.set_adapters([lora.adapter for lora in loras], adapter_weights=[lora.weight for lora in loras])
        elif self._adapters:
            pipe.disable_lora()
        active = {lora.adapter for lora in loras}
        stale = [a for a in self._adapters[:-self.MAX_ADAPTERS] if a not in active]
        if stale:
            pipe.delete_adapters(stale)
            self._adapters = [a for a in self._adapters if a not in stale]
        return False

    @property
    def native_size(self) -> tuple[int, int]:
        pipe = self._pipes["txt2img"]
        size = pipe.unet.config.sample_size * pipe.vae_scale_factor
        return size, size

    @property
    def clip_layers(self) -> int:
        return self._pipes["txt2img"].text_encoder.config.num_hidden_layers

    def _pipe(self, mode: str):
        if mode not in self._pipes:
            self._pipes[mode] = PIPELINES[mode].from_pipe(self._pipes["txt2img"])
            self._pipes[mode].set_progress_bar_config(disable=True)
        return self._pipes[mode]

    @property
    def family(self) -> str:
        return "sdxl" if self.sdxl else "sd"

    def generate(self, job: Job) -> Image.Image:
        r = job.request
        if self.inpainting_only and r.mode != "inpaint":
            raise BackendError(f"model {self.model_name!r} is an inpainting model: it can only do mode inpaint, "
                               f"not {r.mode}")
        try:
            with torch.inference_mode():
                return super().generate(job)
        except (RuntimeError, MemoryError) as e:  # torch.OutOfMemoryError, or the CPU allocator's RuntimeError
            raise self._out_of_memory(e, r) from None

    def denoise(self, job: Job, context, latents=None, rng_state: bytes | None = None):
        with torch_deepcache.cached(self._pipes["txt2img"].unet, job.request.deepcache):
            return super().denoise(job, context, latents, rng_state)

    def _out_of_memory(self, error: BaseException, r) -> BackendError:
        """The one sentence for a failed allocation; any other error is raised as it is."""
        if not (isinstance(error, torch.OutOfMemoryError) or is_out_of_memory(error)):
            raise error
        self.free_cache()
        return out_of_memory(self.device, r.width, r.height, error)

    # ----- ControlNet (torch_controlnet.py) ------------------------------------------------------
    def controlnet(self, info):
        """The ControlNet of a models/ControlNet entry, loaded once and checked against this model's UNet."""
        if info.path not in self._controlnets:
            self._controlnets[info.path] = torch_controlnet.load(
                info, self._pipes["txt2img"].unet.config, self.model_name, self.dtype, self.device)
        return self._controlnets[info.path]

    def prepare_control(self, job: Job) -> list:
        return [(self.controlnet(u.model), torch_controlnet.control_tensor(u.image)) for u in job.control]

    def initial_noise(self, seed: int, width: int, height: int) -> np.ndarray:
        """The latent noise a txt2img generation with this seed starts from (drawn as diffusers does)."""
        pipe = self._pipes["txt2img"]
        shape = (1, pipe.unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
        return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed)).numpy()

    # ----- the stages' hooks (latents.py) ---------------------------------------------------------
    def encode_prompt(self, request, blend=None):
        if not self.sdxl:
            return super().encode_prompt(request, blend)
        embeddings = {key: self.embedding_vectors(key) for key in ("clip_l", "clip_g")}
        return torch_text.sdxl_conditioning(self._pipes["txt2img"], list(blend or [(request.prompt, 1.0)]),
                                            request.negative_prompt, request.clip_skip, embeddings)

    def prompt_encoder(self, clip_skip: int = 1) -> prompts.TextEncoder:
        if self.sdxl:
            raise BackendError(f"model {self.model_name!r} is an SDXL model: its prompts go through two text "
                               "encoders at once (encode_prompt)")
        pipe = self._pipes["txt2img"]
        return torch_text.clip_encoder(pipe.tokenizer, pipe.text_encoder,
                                       torch_text.sd_features(pipe.text_encoder, clip_skip), self.embedding_vectors("sd"))

    def predict_noise(self, latents: torch.Tensor, t, context, control=(), control_input=None) -> torch.Tensor:
        """The UNet's noise prediction; `control` ((ControlNet, control image, weight), ...) adds each
        ControlNet's residuals, scaled by its weight, to the UNet's (summed, as diffusers'
        MultiControlNetModel does), the ControlNets seeing `control_input` (4-channel latents).
        SDXL (a Conditioning): the pooled features and the size conditioning go to the UNet and ControlNets."""
        pipe, dtype = self._pipes["txt2img"], self.dtype
        sdxl = isinstance(context, Conditioning)
        hidden = torch.from_numpy(context.context if sdxl else context).to(self.device, dtype)
        extra = {"added_cond_kwargs": self._size_conditioning(context.pooled, latents.shape)} if sdxl else {}
        added = dict(extra)
        with torch.inference_mode():
            for net, cond, weight in control:
                x = (latents if control_input is None else control_input).to(self.device, dtype)
                cond = cond.to(self.device, dtype).expand(len(x), -1, -1, -1)
                down, mid = net(x, t, encoder_hidden_states=hidden, controlnet_cond=cond,
                                conditioning_scale=float(weight), return_dict=False, **added)
                if "down_block_additional_residuals" not in extra:
                    extra.update(down_block_additional_residuals=list(down), mid_block_additional_residual=mid)
                else:
                    extra["down_block_additional_residuals"] = [a + b for a, b in
                                                                zip(extra["down_block_additional_residuals"], down)]
                    extra["mid_block_additional_residual"] = extra["mid_block_additional_residual"] + mid
            out = pipe.unet(latents.to(self.device, dtype), t, return_dict=False, encoder_hidden_states=hidden,
                            **extra)[0]
        return out.float()

    def _size_conditioning(self, pooled: np.ndarray, shape) -> dict:
        """SDXL's added conditions: the pooled text features, and the picture's size as both its original
        size and its target, uncropped (diffusers' pipelines' defaults; A1111 does the same)."""
        height, width = shape[2] * self.scale, shape[3] * self.scale
        dtype = self.dtype
        sizes = torch.tensor([[height, width, 0, 0, height, width]], dtype=dtype).expand(shape[0], -1)
        return {"text_embeds": torch.from_numpy(pooled).to(self.device, dtype), "time_ids": sizes.to(self.device)}

    def encode(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Scaled latents sampled from the VAE posterior (as diffusers does, from the CPU generator)."""
        mean, std = self._posterior(image)
        sample = mean + std * torch.randn(mean.shape, generator=generator, dtype=torch.float32)
        return sample * self.vae_config["scaling_factor"]

    def encode_mean(self, image: torch.Tensor) -> torch.Tensor:
        return self._posterior(image)[0] * self.vae_config["scaling_factor"]

    def _posterior(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:

        def posterior(vae):
            dist = vae.encode(image.to(self.device, vae.dtype)).latent_dist
            return torch.stack([dist.mean, dist.std])

        with torch.inference_mode():
            mean, std = self._vae(posterior).float().cpu()
        return mean, std

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents / self.vae_config["scaling_factor"]
        with torch.inference_mode():
            return self._vae(lambda vae: vae.decode(z.to(self.device, vae.dtype), return_dict=False)[0]).float().cpu()

    def decode_tiled(self, latents: torch.Tensor) -> torch.Tensor:
        z = latents / self.vae_config["scaling_factor"]
        return self._vae(lambda vae: torch_tiles.decode_tiled(vae, z.to(self.device, vae.dtype))).float().cpu()

    def _vae(self, call):
        """call(vae); SD 1.5's VAE overflows in fp16 (NaN: a black image), so then it runs again in fp32 and
        stays fp32 for this model (A1111's most reported fp16 failure, handled as its --no-half-vae would)."""
        vae = self._pipes["txt2img"].vae
        out = call(vae)
        if vae.dtype == torch.float16 and not torch.isfinite(out).all():
            log.warning("the VAE of %s overflowed in fp16 (NaN); it runs in fp32 from now on", self.model_name)
            vae.to(torch.float32)
            out = call(vae)
        return out

    def close(self) -> None:
        self._pipes.clear()
        self._controlnets.clear()
        self.free_cache()

    @staticmethod
    def free_cache() -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
