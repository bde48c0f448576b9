"""settings.json: the user's preferences. Loaded and validated at start, saved atomically.

An unreadable or invalid file is reported, moved aside as a backup and replaced by
defaults in memory; it is never silently overwritten.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import schema

log = logging.getLogger("dreamworld")

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_PATH = PROJECT_DIR / "settings.json"
BUILTIN_MODELS = PROJECT_DIR / "models"
DEFAULT_MODEL = "dreamworld-tiny"


class SettingsError(ValueError):
    pass


@dataclass
class Settings:
    models_dir: str = "models"
    creations_dir: str = "creations"
    defaults: dict = field(default_factory=lambda: {"model": DEFAULT_MODEL})
    limits: dict = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False, repr=False)
    problem: str | None = field(default=None, compare=False, repr=False)

    def resolve(self, folder: str) -> Path:
        """A folder setting as an absolute path; relative ones are relative to settings.json."""
        base = self.path.parent if self.path else PROJECT_DIR
        return (base / folder).resolve()

    @property
    def models_path(self) -> Path:
        return self.resolve(self.models_dir)

    @property
    def creations_path(self) -> Path:
        return self.resolve(self.creations_dir)

    def default_request(self) -> schema.Request:
        return schema.validate(self.defaults)

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("path"), data.pop("problem")
        return data


def check(data: dict) -> Settings:
    """Validate a settings dict; raise SettingsError naming the bad key."""
    if not isinstance(data, dict):
        raise SettingsError("settings must be a JSON object")
    known = {"models_dir", "creations_dir", "defaults", "limits"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]!r}; known settings: {', '.join(sorted(known))}")
    settings = Settings(**data)
    for name in ("models_dir", "creations_dir"):
        if not isinstance(getattr(settings, name), str) or not getattr(settings, name):
            raise SettingsError(f"{name} must be a folder path")
    if not isinstance(settings.limits, dict):
        raise SettingsError("limits must be an object such as {\"steps\": {\"max\": 80}}")
    for name, limit in settings.limits.items():
        meta = schema.FIELDS.get(name)
        if meta is None or meta.max is None or meta.kind is not None:
            raise SettingsError(f"limits: {name!r} is not a numeric request field")
        top = limit.get("max") if isinstance(limit, dict) else None
        if not isinstance(top, (int, float)) or not meta.min <= top <= meta.max:
            raise SettingsError(f"limits.{name}.max must be from {meta.min} to {meta.max}")
    if not isinstance(settings.defaults, dict):
        raise SettingsError("defaults must be an object such as {\"steps\": 20}")
    try:
        schema.validate(settings.defaults, limits=settings.limits)
    except schema.RequestError as e:
        raise SettingsError(f"defaults: {e}") from None
    return settings


def load(path: str | os.PathLike | None = None) -> Settings:
    path = Path(path) if path else DEFAULT_PATH
    if not path.exists():
        settings = Settings()
    else:
        try:
            settings = check(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, SettingsError, TypeError) as e:  # JSON and Unicode errors are ValueErrors
            backup = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(path, backup)
            settings = Settings()
            settings.problem = f"{path} could not be used ({e}); it was moved to {backup.name} and defaults are in use"
            log.warning(settings.problem)
    settings.path = path
    return settings


def save(settings: Settings, path: str | os.PathLike | None = None) -> Path:
    """Validate and write settings atomically (temp file + rename)."""
    path = Path(path or settings.path or DEFAULT_PATH)
    data = settings.to_json()
    check(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    settings.path = path
    return path
