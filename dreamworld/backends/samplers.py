"""The samplers both backends use: diffusers schedulers under their AUTOMATIC1111 names."""
from __future__ import annotations

from diffusers import (
    DDIMScheduler, DPMSolverMultistepScheduler, DPMSolverSDEScheduler, EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler, HeunDiscreteScheduler, LMSDiscreteScheduler, PNDMScheduler, UniPCMultistepScheduler,
)

# A1111 sampler names -> diffusers scheduler class and config overrides.
SCHEDULERS = {
    "Euler": (EulerDiscreteScheduler, {}),
    "Euler a": (EulerAncestralDiscreteScheduler, {}),
    "DPM++ 2M": (DPMSolverMultistepScheduler, {}),
    "DPM++ 2M Karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
    "DPM++ SDE Karras": (DPMSolverSDEScheduler, {"use_karras_sigmas": True}),
    "DDIM": (DDIMScheduler, {}),
    "LMS": (LMSDiscreteScheduler, {}),
    "Heun": (HeunDiscreteScheduler, {}),
    "UniPC": (UniPCMultistepScheduler, {}),
    "PNDM": (PNDMScheduler, {"skip_prk_steps": True}),
}


def make(name: str, config: dict, seed: int):
    """A fresh scheduler of A1111 sampler `name` over a model's scheduler config; stochastic samplers
    that keep their own noise source (DPM++ SDE) are seeded with the image's seed."""
    cls, overrides = SCHEDULERS[name]
    if cls is DPMSolverSDEScheduler:
        overrides = {**overrides, "noise_sampler_seed": seed}
    return cls.from_config(config, **overrides)
