"""The samplers both backends use: diffusers schedulers under their AUTOMATIC1111 names.

The table is the one list of sampler names (the schema's choices come from it); diffusers is imported
only when a scheduler is made."""
from __future__ import annotations

# A1111 sampler name -> diffusers scheduler class name and config overrides.
SCHEDULERS = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "PNDM": ("PNDMScheduler", {"skip_prk_steps": True}),
}
NAMES = tuple(SCHEDULERS)
# Samplers that add fresh noise at every step, and the deterministic sampler of the same family that a
# dream walk uses instead: their per-step noise would jump with the seed mid-walk.
STOCHASTIC = {"Euler a": "Euler", "DPM++ SDE Karras": "DPM++ 2M Karras"}


def make(name: str, config: dict, seed: int):
    """A fresh scheduler of A1111 sampler `name` over a model's scheduler config; stochastic samplers
    that keep their own noise source (DPM++ SDE) are seeded with the image's seed."""
    import diffusers

    cls_name, overrides = SCHEDULERS[name]
    if cls_name == "DPMSolverSDEScheduler":
        overrides = {**overrides, "noise_sampler_seed": seed}
    return getattr(diffusers, cls_name).from_config(config, **overrides)
