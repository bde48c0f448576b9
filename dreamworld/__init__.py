"""DreamWorld: a local Stable Diffusion studio."""
__version__ = "0.1.0"

__all__ = ["DreamWorld", "__version__"]


def __getattr__(name):
    if name == "DreamWorld":
        from .world import DreamWorld
        return DreamWorld
    raise AttributeError(name)
