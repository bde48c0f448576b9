"""settings.json: the user's preferences. Loaded and validated at start, saved atomically.

A file that was read and found invalid is reported, moved aside as a backup and replaced by
defaults in memory; it is never silently overwritten. A settings path that cannot be read (a folder,
no permission), or a file the user named that does not exist, is an error instead.

The models and creations folders must be folders of the user's own: never the filesystem root,
a system location or a folder holding the home folder (the creations folder is served by the GUI).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import files, schema
from .errors import SettingsError

log = logging.getLogger("dreamworld")

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_PATH = PROJECT_DIR / "settings.json"
BUILTIN_MODELS = PROJECT_DIR / "models"
DEFAULT_MODEL = "dreamworld-tiny"


FOLDERS = ("models_dir", "creations_dir")
# Refused with everything below them.
SYSTEM_TREES = ("/etc", "/proc", "/sys", "/dev", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr",
                "/boot", "/run", "/var/run", "/var/log", "/snap")
# Refused themselves: they hold other users' or other programs' files; a folder of one's own below is fine.
SHARED_ROOTS = ("/home", "/root", "/tmp", "/var", "/var/tmp", "/mnt", "/media", "/opt", "/srv")


def _forms(paths) -> set[Path]:
    """Each path as written and with its links resolved (/bin may be /usr/bin, /etc /private/etc)."""
    return {Path(p) for p in paths} | {Path(p).resolve() for p in paths}


def check_folder(name: str, folder: str | os.PathLike) -> Path:
    """The folder setting `name` as a resolved path, if it is a folder of the user's own that exists or
    can be made; else SettingsError (one sentence naming the setting)."""
    try:
        path = Path(folder).resolve()
        existing = next(p for p in (path, *path.parents) if p.exists())
    except (OSError, ValueError) as e:  # a NUL byte, a name too long, a loop of links
        raise SettingsError(f"{name}: {str(folder)!r} is not a usable folder path ({e})") from None
    try:
        home = Path.home().resolve()
    except (RuntimeError, KeyError):
        home = None
    system = path.parent == path or any(path == top or path.is_relative_to(top) for top in _forms(SYSTEM_TREES))
    if system or path in _forms(SHARED_ROOTS) or (home is not None and home.is_relative_to(path)):
        raise SettingsError(f"{name}: {path} is a system or shared folder; choose a folder of your own")
    if not existing.is_dir():
        raise SettingsError(f"{name}: {existing} is not a folder" if existing == path
                            else f"{name}: {path} cannot be made, as {existing} is a file")
    return path


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


def check(data: dict, base: Path | None = None) -> Settings:
    """Validate a settings dict; raise SettingsError naming the bad key.

    `base`: the folder relative folder settings are relative to (the settings file's)."""
    if not isinstance(data, dict):
        raise SettingsError("settings must be a JSON object")
    known = {"models_dir", "creations_dir", "defaults", "limits"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]!r}; known settings: {', '.join(sorted(known))}")
    settings = Settings(**data)
    for name in FOLDERS:
        if not isinstance(getattr(settings, name), str) or not getattr(settings, name):
            raise SettingsError(f"{name} must be a folder path")
        check_folder(name, (base or PROJECT_DIR) / getattr(settings, name))
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


def load(path: str | os.PathLike | None = None, required: bool = False) -> Settings:
    """The settings in `path` (default: settings.json). A missing file gives defaults, unless `required`
    (a file the user named), when it is an error."""
    path = Path(path) if path else DEFAULT_PATH
    if not path.exists():
        if required:
            raise SettingsError(f"settings: {path} does not exist")
        settings = Settings()
    else:
        try:
            raw = path.read_bytes()
        except OSError as e:  # a folder, no permission: not a file found invalid, so it is left alone
            what = "is a folder, not a settings file" if path.is_dir() else f"could not be read ({e.strerror or e})"
            raise SettingsError(f"settings: {path} {what}") from None
        try:
            settings = check(json.loads(raw.decode("utf-8")), base=path.parent)
        except (ValueError, SettingsError, TypeError) as e:  # JSON and Unicode errors are ValueErrors
            backup = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
            try:
                os.replace(path, backup)
                kept = f"it was moved to {backup.name}"
            except OSError as failed:  # a read-only filesystem: report and go on without the backup
                kept = f"it could not be moved aside ({failed.strerror or failed})"
            settings = Settings()
            settings.problem = f"{path} could not be used ({e}); {kept} and defaults are in use"
            log.warning(settings.problem)
    settings.path = path
    return settings


def save(settings: Settings, path: str | os.PathLike | None = None) -> Path:
    """Validate and write settings atomically (temp file + rename)."""
    path = Path(path or settings.path or DEFAULT_PATH)
    data = settings.to_json()
    check(data, base=path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(path, data)
    settings.path = path
    return path
