"""The failures a user is told about in one sentence (`str(error)`), never with a traceback.

Every module raises one of these for what a user can mend (a field, a file, a model, a setting); the
GUI, the CLI and the service catch USER_ERRORS and show the sentence. Anything else is a fault.
"""
from __future__ import annotations


class DreamWorldError(Exception):
    """A failure to report to the user as one sentence."""


class RequestError(DreamWorldError, ValueError):
    """A request field is invalid; `field` names it."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


class SettingsError(DreamWorldError, ValueError):
    """settings.json, or a folder named in it, cannot be used."""


class ModelError(DreamWorldError, ValueError):
    """A model is missing, of an unknown kind, or its file cannot be read safely."""


class CreationError(DreamWorldError):
    """A creation (or an input file) cannot be saved or read."""


class BackendError(DreamWorldError, RuntimeError):
    """A backend cannot load a model or serve a request (out of memory, a missing device...)."""


class VideoError(DreamWorldError):
    """A video cannot be read or written."""


USER_ERRORS: tuple[type[BaseException], ...] = (DreamWorldError,)
