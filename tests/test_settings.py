import errno
import json
import os
from pathlib import Path

import pytest

from dreamworld import settings as settings_module
from dreamworld.settings import Settings, SettingsError


def test_missing_file_gives_defaults_without_writing(tmp_path):
    path = tmp_path / "settings.json"
    settings = settings_module.load(path)
    assert settings.defaults["model"] == "dreamworld-tiny"
    assert not path.exists()


def test_shipped_settings_file_is_valid():
    settings = settings_module.load(settings_module.DEFAULT_PATH)
    assert settings.problem is None
    assert settings.models_path == settings_module.PROJECT_DIR / "models"


def test_save_then_load_round_trips_and_resolves_folders(tmp_path):
    path = tmp_path / "conf" / "settings.json"
    settings_module.save(Settings(models_dir="m", defaults={"steps": 12}, limits={"steps": {"max": 40}}), path)
    loaded = settings_module.load(path)
    assert loaded.defaults == {"steps": 12} and loaded.limits == {"steps": {"max": 40}}
    assert loaded.models_path == (tmp_path / "conf" / "m").resolve()
    assert [p.name for p in path.parent.iterdir()] == ["settings.json"]  # no temp file left


@pytest.mark.parametrize("content, words", [
    ("{not json", "Expecting property name"),
    (json.dumps({"defaults": {"steps": 0}}), "steps must be from 1 to 150"),
    (json.dumps({"colour": "blue"}), "unknown setting 'colour'"),
    (json.dumps({"limits": {"steps": {"max": 1000}}}), "limits.steps.max must be from 1 to 150"),
    (json.dumps({"defaults": "x"}), "defaults must be an object"),
    (json.dumps({"defaults": None}), "defaults must be an object"),
    (json.dumps({"defaults": {"steps": 100}, "limits": {"steps": {"max": 50}}}),
     "defaults: steps must be at most 50 (settings limit), got 100"),
])
def test_bad_file_is_reported_and_kept_as_backup(tmp_path, content, words):
    path = tmp_path / "settings.json"
    path.write_text(content)
    settings = settings_module.load(path)
    assert words in settings.problem
    assert settings == Settings()  # defaults in use
    backups = list(tmp_path.glob("settings.json.bad-*"))
    assert len(backups) == 1 and backups[0].read_text() == content
    assert not path.exists()  # never silently overwritten: the user's file is the backup


def test_save_refuses_invalid_settings_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "settings.json"
    settings_module.save(Settings(), path)
    before = path.read_text()
    with pytest.raises(SettingsError, match="defaults: width"):
        settings_module.save(Settings(defaults={"width": 65}), path)
    assert path.read_text() == before


@pytest.mark.parametrize("folder", ["/", "/etc", "/etc/ssl", "/proc", "/sys/kernel", "/dev", "/bin", "/usr/share",
                                    "/boot", "/root", "/home", "/tmp", "/var", "~HOME", "/tmp/../etc"])
def test_system_folders_are_refused_in_one_sentence(tmp_path, folder):
    folder = str(Path.home()) if folder == "~HOME" else folder
    with pytest.raises(SettingsError) as caught:
        settings_module.check_folder("creations_dir", folder)
    message = str(caught.value)
    assert message.startswith("creations_dir: ") and "choose a folder of your own" in message
    assert "\n" not in message and message.count(". ") == 0


def test_own_folders_are_accepted_whether_or_not_they_exist(tmp_path):
    assert settings_module.check_folder("creations_dir", tmp_path) == tmp_path.resolve()
    assert settings_module.check_folder("models_dir", tmp_path / "new" / "deeper") == (tmp_path / "new/deeper").resolve()
    (tmp_path / "file").write_text("x")
    with pytest.raises(SettingsError, match=r"^creations_dir: .*file is not a folder$"):
        settings_module.check_folder("creations_dir", tmp_path / "file")
    with pytest.raises(SettingsError, match=r"^models_dir: .* cannot be made, as .*file is a file$"):
        settings_module.check_folder("models_dir", tmp_path / "file" / "below")
    with pytest.raises(SettingsError, match=r"^models_dir: 'a\\x00b' is not a usable folder path"):
        settings_module.check_folder("models_dir", "a\0b")


def test_save_refuses_a_system_folder_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "settings.json"
    settings_module.save(Settings(), path)
    before = path.read_text()
    for name in ("creations_dir", "models_dir"):
        with pytest.raises(SettingsError, match=f"^{name}: / is a system"):
            settings_module.save(Settings(**{name: "/"}), path)
        with pytest.raises(SettingsError, match=f"^{name}: /etc is a system"):
            settings_module.save(Settings(**{name: "../../../../../../../../etc"}), path)
    assert path.read_text() == before


def test_a_file_naming_a_system_folder_is_set_aside_not_used(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"creations_dir": "/"}))
    settings = settings_module.load(path)
    assert "creations_dir: / is a system or shared folder" in settings.problem
    assert settings.creations_path == (tmp_path / "creations").resolve()


def test_a_bad_file_that_cannot_be_moved_aside_is_reported_and_defaults_used(tmp_path, monkeypatch, caplog):
    path = tmp_path / "settings.json"
    path.write_text("{not json")

    def read_only(src, dst):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(src))

    monkeypatch.setattr(settings_module.os, "replace", read_only)
    settings = settings_module.load(path)
    assert settings == Settings()
    assert settings.problem.endswith("it could not be moved aside (Read-only file system) and defaults are in use")
    assert path.read_text() == "{not json"  # left as it was
    assert [r.getMessage() for r in caplog.records] == [settings.problem]


def test_a_folder_or_unreadable_settings_path_is_an_error_and_left_alone(tmp_path, monkeypatch):
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(SettingsError, match=r"^settings: .*conf is a folder, not a settings file$"):
        settings_module.load(folder)
    assert [p.name for p in tmp_path.iterdir()] == ["conf"] and (folder / "keep.txt").read_text() == "mine"

    path = tmp_path / "settings.json"
    path.write_text("{}")

    def denied(self):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(SettingsError, match=r"^settings: .*settings.json could not be read \(Permission denied\)$"):
        settings_module.load(path)
    assert path.read_text() == "{}" and sorted(p.name for p in tmp_path.iterdir()) == ["conf", "settings.json"]


def test_a_missing_file_the_user_named_is_an_error(tmp_path):
    with pytest.raises(SettingsError, match=r"^settings: .*nonexistent.json does not exist$"):
        settings_module.load(tmp_path / "nonexistent.json", required=True)
    assert settings_module.load(tmp_path / "nonexistent.json") == Settings()  # unnamed: defaults
