"""DreamWorld: a local Stable Diffusion studio."""
import logging as _logging

__version__ = "0.1.0"

__all__ = ["DreamWorld", "__version__"]


def _not_the_torchvision_fallback(record: _logging.LogRecord) -> bool:
    """transformers warns, as its pipelines are imported, that image processors DreamWorld never uses
    (CLIP's, SigLIP's) fall back to PIL without torchvision: three lines of stderr on every run."""
    return "requires torchvision (not installed)" not in record.getMessage()


_logging.getLogger("transformers.utils.import_utils").addFilter(_not_the_torchvision_fallback)


def __getattr__(name):
    if name == "DreamWorld":
        from .world import DreamWorld
        return DreamWorld
    raise AttributeError(name)
