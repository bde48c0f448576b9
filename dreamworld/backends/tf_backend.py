"""The TensorFlow backend: Stable Diffusion on keras-cv / Keras 3, from the same model files as PyTorch.

A model is read by the same code as the torch backend's and its tensors cached as numpy files
(`tf_weights.py`), then poured into Keras networks built from its own configs (`keras_nets/`). The
loops are the stages shared with torch (`latents.py`): the same samplers and the same seeded CPU noise,
so that a request gives the torch backend's picture within rounding (docs/tensorflow.md).
"""
from __future__ import annotations

import gc
import logging
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _import_tensorflow_quietly():
    """TensorFlow's native libraries log banners to stderr as they load, past TF_CPP_MIN_LOG_LEVEL; the
    command line promises one line of stderr per error, so they load with stderr pointed away."""
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import tensorflow
        return tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


tf = _import_tensorflow_quietly()
tf.get_logger().setLevel("ERROR")  # not a warning per new image size ("triggered tf.function retracing")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers.image_processor import VaeImageProcessor  # noqa: E402
from diffusers.models.embeddings import get_timestep_embedding  # noqa: E402
from keras_cv.models.stable_diffusion import SimpleTokenizer  # noqa: E402
from PIL import Image  # noqa: E402

from .. import prompts  # noqa: E402
from ..schema import MODES  # noqa: E402
from . import LoadSpec, keras_nets, samplers, tf_tiles, tf_weights  # noqa: E402
from .base import BackendError, Capabilities, Job, auto_precision, out_of_memory, precisions_on  # noqa: E402
from .latents import LatentStages  # noqa: E402

log = logging.getLogger("dreamworld")

BPE = Path(__file__).resolve().parent.parent / "assets" / "bpe_simple_vocab_16e6.txt.gz"
POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
SIZE_MULTIPLE = 64  # three 2x downsamplings of 8x latents


def available_devices() -> tuple[str, ...]:
    return ("auto", "cpu") + (("cuda",) if tf.config.list_physical_devices("GPU") else ())


def supported_precisions(device: str) -> tuple[str, ...]:
    return ("fp32", "fp16", "bf16") if device == "cuda" else ("fp32", "bf16")


class TensorflowBackend(LatentStages):
    name = "tensorflow"

    @classmethod
    def capabilities(cls) -> Capabilities:
        return Capabilities(
            modes=MODES, schedulers=tuple(samplers.SCHEDULERS), devices=available_devices(),
            precisions=precisions_on(available_devices(), supported_precisions),
            size_multiple=SIZE_MULTIPLE, latent_walk=True, jit=True, parts=True, lora=True)  # SD 1.x and 2.x (SDXL runs on torch); bf16/fp16 are Keras mixed precision

    @classmethod
    def graph_key(cls, request) -> dict:
        # An XLA graph is compiled for one shape: a new size is a new graph.
        return {"width": request.width, "height": request.height} if request.jit else {}

    def __init__(self, spec: LoadSpec):
        model, vae, device, precision = spec.model, spec.vae, spec.device, spec.precision
        if keras.backend.backend() != "tensorflow":
            raise BackendError("the tensorflow backend needs KERAS_BACKEND=tensorflow, "
                               f"not {keras.backend.backend()!r}")
        if device == "auto":
            device = "cuda" if "cuda" in available_devices() else "cpu"
        self.device = device
        if self.device not in available_devices():
            raise BackendError(f"device {device!r} is not available to TensorFlow here; available: "
                               + ", ".join(available_devices()))
        self.precision = auto_precision(self.device) if precision == "auto" else precision
        if self.precision not in supported_precisions(self.device):
            raise BackendError(f"precision {precision!r} is not supported on {self.device} by TensorFlow; use one of "
                               + ", ".join(supported_precisions(self.device)))
        self.jit = spec.jit
        self.model_name = model.name
        self._model, self._vae = model, vae
        self._lora_keys: set[tuple[str, str]] = set()  # (part, key) of the weights LoRAs have changed
        self._deltas: dict[str, dict] = {}  # LoRA hash -> its deltas (loras.deltas)
        self._tf_device = "/GPU:0" if self.device == "cuda" else "/CPU:0"
        meta, states = tf_weights.read_converted(model, vae)
        policy = POLICIES[self.precision]
        try:
            with tf.device(self._tf_device):
                self.unet = keras_nets.UNet(meta["unet"], dtype=policy)
                self.encoder = keras_nets.VaeEncoder(meta["vae"], dtype=policy)
                self.decoder = keras_nets.VaeDecoder(meta["vae"], dtype=policy)
                self.text_encoder = keras_nets.TextEncoder(meta["text_encoder"])
                vae = states["vae"]
                parts = [(self.unet, states["unet"]), (self.encoder, tf_weights.part(vae, "encoder", "quant_conv")),
                         (self.decoder, tf_weights.part(vae, "decoder", "post_quant_conv")),
                         (self.text_encoder, states["text_encoder"])]
                for net, state in parts:
                    net.build_for()
                    keras_nets.load_state_dict(net, state)
        except keras_nets.ConfigError as e:
            raise BackendError(f"model {model.name!r} cannot run on backend 'tensorflow': {e}") from None
        except ValueError as e:
            raise BackendError(f"model {model.name!r} could not be loaded into TensorFlow: {e}") from None
        self.unet_config = self.unet.config_
        self.vae_config = self.decoder.config_
        self.scheduler_config = meta["scheduler"]
        self.scale = 2 ** (len(self.vae_config["block_out_channels"]) - 1)
        self.tokenizer = SimpleTokenizer(bpe_path=str(BPE))
        self.pad_id = meta["pad_id"]
        self.images = VaeImageProcessor(vae_scale_factor=self.scale)
        self.masks = VaeImageProcessor(vae_scale_factor=self.scale, do_normalize=False, do_binarize=True,
                                       do_convert_grayscale=True)
        self.inpainting_only = self.unet_config["in_channels"] == 9
        self._text_fns: dict[int, object] = {}
        self.recompile({})

    # ----- LoRAs: merged into the converted weights ------------------------------------------
    def set_loras(self, loras: tuple) -> bool:
        """Set every weight a LoRA changes (now or before) to base + sum(weight * delta): the weights of the
        loaded networks change in place, the graphs read them as they are. Each LoRA's deltas are computed
        once per model by diffusers (loras.deltas) and cached beside the converted weights, keyed by the
        model's and the LoRA file's hashes."""
        wanted = [(lora.weight, self._lora_deltas(lora)) for lora in loras]
        keys = self._lora_keys | {(part, key) for _, d in wanted for part, state in d.items() for key in state}
        base = self._base_arrays(keys)
        merged: dict[str, dict] = {}
        for part, key in keys:
            value = base[part][key].astype(np.float32)
            for weight, d in wanted:
                if key in d.get(part, {}):
                    value = value + np.float32(weight) * d[part][key]
            merged.setdefault(part, {})[key] = value
        nets = {"unet": self.unet, "text_encoder": self.text_encoder}
        try:
            with tf.device(self._tf_device):
                for part, state in merged.items():
                    keras_nets.set_tensors(nets[part], state)
        except ValueError as e:
            raise BackendError(f"the LoRAs {', '.join(l.name for l in loras)} do not fit model "
                               f"{self.model_name!r}: {e}") from None
        self._lora_keys = {(part, key) for _, d in wanted for part, state in d.items() for key in state}
        return True

    def _lora_deltas(self, lora) -> dict:
        if lora.hash not in self._deltas:
            self._deltas[lora.hash] = tf_weights.lora_deltas(self._model, self._vae, lora)
        return self._deltas[lora.hash]

    def _base_arrays(self, keys) -> dict[str, dict]:
        return tf_weights.base_arrays(self._model, self._vae, keys)

    # ----- graphs -------------------------------------------------------------------------
    def recompile(self, key: dict) -> None:
        """(Re)make the graphs; with jit, for the key's image size (None: the model's native size).

        Graphs are traced for each exact shape (never relaxed to unknown sizes, whose kernels may sum in
        another order), so that a request gives the same pixels whatever sizes the backend made before."""
        spec = None
        if self.jit:
            width, height = key.get("width") or self.native_size[0], key.get("height") or self.native_size[1]
            h, w = height // self.scale, width // self.scale
            spec = [tf.TensorSpec((None, h, w, self.unet_config["in_channels"]), tf.float32),
                    tf.TensorSpec((None, self.unet_config["block_out_channels"][0]), tf.float32),
                    tf.TensorSpec((None, None, self.unet_config["cross_attention_dim"]), tf.float32)]
        graph = dict(jit_compile=self.jit, autograph=False)
        self._unet_fn = tf.function(lambda x, t, c: self.unet(x, t, c), input_signature=spec, **graph)
        self._decode_fn = tf.function(lambda z: self.decoder(z), **graph)
        self._encode_fn = tf.function(lambda x: self.encoder(x), **graph)

    def _text_fn(self, skip: int):
        if skip not in self._text_fns:
            self._text_fns[skip] = tf.function(lambda ids: self.text_encoder(ids, skip=skip), autograph=False)
        return self._text_fns[skip]

    @property
    def native_size(self) -> tuple[int, int]:
        size = self.unet_config["sample_size"] * self.scale
        return size, size

    @property
    def clip_layers(self) -> int:
        return self.text_encoder.config_["num_hidden_layers"]

    # ----- pieces -------------------------------------------------------------------------
    def token_ids(self, text: str) -> np.ndarray:
        """CLIP token ids padded to the encoder's length, truncated as transformers' tokenizer does."""
        length = self.text_encoder.length
        ids = self.tokenizer.encode(text)
        if len(ids) > length:
            ids = ids[:length - 1] + [self.tokenizer.end_of_text]
        return np.array([ids + [self.pad_id] * (length - len(ids))], np.int32)

    def prompt_encoder(self, clip_skip: int = 1) -> prompts.TextEncoder:
        def encode(ids: np.ndarray) -> np.ndarray:
            with tf.device(self._tf_device):
                return self._text_fn(clip_skip)(tf.constant(ids.astype(np.int32))).numpy().astype(np.float32)

        def encode_with(ids: np.ndarray, vectors: np.ndarray, mask: np.ndarray) -> np.ndarray:
            with tf.device(self._tf_device):
                out = self.text_encoder(tf.constant(ids.astype(np.int32)), skip=clip_skip,
                                        vectors=tf.constant(vectors), where=tf.constant(mask))
            return tf.cast(out, tf.float32).numpy()

        return prompts.TextEncoder(tokenize=lambda text: self.tokenizer.encode(text)[1:-1], encode=encode,
                                   bos=self.tokenizer.start_of_text, eos=self.tokenizer.end_of_text, pad=self.pad_id,
                                   embeddings=self.embedding_vectors("sd"), encode_with=encode_with)

    def predict_noise(self, latents: torch.Tensor, t, context: np.ndarray) -> torch.Tensor:
        """The UNet on NCHW torch latents at time step t: NCHW torch noise, float32."""
        t_proj = get_timestep_embedding(torch.as_tensor(t).reshape(1).float().expand(latents.shape[0]),
                                        self.unet_config["block_out_channels"][0],
                                        flip_sin_to_cos=self.unet_config["flip_sin_to_cos"],
                                        downscale_freq_shift=self.unet_config["freq_shift"])
        with tf.device(self._tf_device):
            out = self._unet_fn(tf.constant(latents.permute(0, 2, 3, 1).numpy()), tf.constant(t_proj.numpy()),
                                tf.constant(context))
        return torch.from_numpy(np.ascontiguousarray(tf.cast(out, tf.float32).numpy().transpose(0, 3, 1, 2)))

    def encode(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Scaled latents sampled from the VAE posterior of an NCHW image in [-1, 1] (as diffusers does)."""
        with tf.device(self._tf_device):
            mean, logvar = self._encode_fn(tf.constant(image.permute(0, 2, 3, 1).numpy()))
        mean = torch.from_numpy(tf.cast(mean, tf.float32).numpy()).permute(0, 3, 1, 2)
        std = torch.exp(0.5 * torch.from_numpy(tf.cast(logvar, tf.float32).numpy()).permute(0, 3, 1, 2))
        sample = mean + std * torch.randn(mean.shape, generator=generator, dtype=torch.float32)
        return sample * self.vae_config["scaling_factor"]

    def encode_mean(self, image: torch.Tensor) -> torch.Tensor:
        """Scaled latents of the VAE posterior's mean of an NCHW image in [-1, 1] (no noise)."""
        with tf.device(self._tf_device):
            mean, _ = self._encode_fn(tf.constant(image.permute(0, 2, 3, 1).numpy()))
        return torch.from_numpy(tf.cast(mean, tf.float32).numpy()).permute(0, 3, 1, 2) * self.vae_config["scaling_factor"]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        with tf.device(self._tf_device):
            image = self._decode_fn(tf.constant(self._unscaled(latents)))
        return torch.from_numpy(tf.cast(image, tf.float32).numpy()).permute(0, 3, 1, 2)

    def decode_tiled(self, latents: torch.Tensor) -> torch.Tensor:
        with tf.device(self._tf_device):
            image = tf_tiles.decode_tiled(self.decoder, self._unscaled(latents))
        return torch.from_numpy(image).permute(0, 3, 1, 2)

    def _unscaled(self, latents: torch.Tensor) -> np.ndarray:
        """Latents as the decoder takes them: unscaled (and unshifted), NHWC."""
        z = latents / self.vae_config["scaling_factor"]
        if self.vae_config.get("shift_factor") is not None:
            z = z + self.vae_config["shift_factor"]
        return np.ascontiguousarray(z.permute(0, 2, 3, 1).numpy())

    def initial_noise(self, seed: int, width: int, height: int) -> np.ndarray:
        shape = (1, self.unet_config["out_channels"], height // self.scale, width // self.scale)
        return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed)).numpy()

    # ----- generating ---------------------------------------------------------------------
    def generate(self, job: Job) -> Image.Image:
        r = job.request
        if self.inpainting_only and r.mode != "inpaint":
            raise BackendError(f"model {self.model_name!r} is an inpainting model: it can only do mode inpaint, "
                               f"not {r.mode}")
        try:
            return super().generate(job)
        except (tf.errors.ResourceExhaustedError, MemoryError) as e:
            gc.collect()
            raise out_of_memory(self.device, r.width, r.height, e) from None

    def close(self) -> None:
        for name in ("unet", "encoder", "decoder", "text_encoder", "_unet_fn", "_decode_fn", "_encode_fn"):
            self.__dict__.pop(name, None)
        self._text_fns.clear()
        keras.backend.clear_session()
        gc.collect()
