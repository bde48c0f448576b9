import json

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
