"""The GUI's web server as a client sees it, driven over HTTP with gradio_client (no browser).

What it serves: only the creations folder it was started with; never a folder a client names.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dreamworld.settings import PROJECT_DIR

gradio_client = pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402  (the gr.Error's text)

SAVE_DEFAULTS = (150, "torch", "dreamworld-tiny", "auto", "auto", "Euler a", 20, 7.0, 0, 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(tmp_path: Path, *args: str, timeout: float = 90):
    """Run `app.py --port P ARGS` until the block ends; yield (url, log path)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / f"server-{port}.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "GRADIO_TEMP_DIR": str(tmp_path / "gradio-tmp")}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(PROJECT_DIR / "app.py"), "--port", str(port), *args],
                                cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, f"app.py exited with {proc.returncode}:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except urllib.error.HTTPError:  # answering, if only to say "log in first"
                break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"app.py did not answer within {timeout} s:\n{log.read_text()}"
            time.sleep(0.3)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_a_client_cannot_make_the_gui_serve_the_filesystem(tmp_path):
    settings = tmp_path / "config" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps({"models_dir": str(PROJECT_DIR / "models")}))
    started, chosen = tmp_path / "creations", tmp_path / "chosen"
    for folder in (started, chosen):
        folder.mkdir()
        (folder / "probe.txt").write_text(folder.name)
    with serve(tmp_path, "--settings", str(settings), "--creations-dir", str(started)) as (url, log):
        client = gradio_client.Client(url, verbose=False)
        before = settings.read_text()
        for folder, name in (("/", "creations_dir"), ("/etc", "creations_dir")):
            with pytest.raises(AppError) as caught:
                client.predict("models", folder, *SAVE_DEFAULTS, api_name="/save")
            assert f"{name}: {folder} is a system or shared folder" in str(caught.value)
        with pytest.raises(AppError, match="models_dir: / is a system"):
            client.predict("/", str(started), *SAVE_DEFAULTS, api_name="/save")
        assert settings.read_text() == before
        assert get(url + "gradio_api/file=/etc/passwd")[0] in (403, 404)
        # A folder of one's own is saved, but not served before a restart.
        assert "Saved to" in client.predict(str(PROJECT_DIR / "models"), str(chosen), *SAVE_DEFAULTS,
                                            api_name="/save")
        assert json.loads(settings.read_text())["creations_dir"] == str(chosen)
        assert get(url + f"gradio_api/file={started}/probe.txt") == (200, b"creations")
        assert get(url + f"gradio_api/file={chosen}/probe.txt")[0] in (403, 404)
    with serve(tmp_path, "--settings", str(settings)) as (url, log):  # restarted on the saved folder
        assert get(url + f"gradio_api/file={chosen}/probe.txt") == (200, b"chosen")
        for path in ("/etc/passwd", f"{started}/probe.txt", str(settings)):
            assert get(url + f"gradio_api/file={path}")[0] in (403, 404), path


def test_a_settings_file_naming_the_root_is_not_served(tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"models_dir": str(PROJECT_DIR / "models"), "creations_dir": "/"}))
    with serve(tmp_path, "--settings", str(settings)) as (url, log):
        assert get(url + "gradio_api/file=/etc/passwd")[0] in (403, 404)
    warnings = [line for line in log.read_text().splitlines() if "creations_dir: / is a system" in line]
    assert len(warnings) == 1 and "defaults are in use" in warnings[0]


def test_with_auth_the_settings_and_files_need_a_login(tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"models_dir": str(PROJECT_DIR / "models")}))
    creations = tmp_path / "creations"
    creations.mkdir()
    (creations / "probe.txt").write_text("mine")
    with serve(tmp_path, "--settings", str(settings), "--creations-dir", str(creations), "--auth", "ann:s3cret") \
            as (url, log):
        before = settings.read_text()
        with pytest.raises(Exception):  # noqa: B017  (no config without a login: the client cannot even start)
            gradio_client.Client(url, verbose=False)
        body = json.dumps({"data": ["models", str(tmp_path / "elsewhere"), *SAVE_DEFAULTS]}).encode()
        for route in ("gradio_api/call/save", "gradio_api/run/save", "gradio_api/queue/join", "config"):
            request = urllib.request.Request(url + route, data=body, headers={"Content-Type": "application/json"},
                                             method="POST" if route != "config" else "GET")
            try:
                urllib.request.urlopen(request, timeout=10)
                status = 200
            except urllib.error.HTTPError as e:
                status = e.code
            assert status in (401, 403), route
        assert get(url + f"gradio_api/file={creations}/probe.txt")[0] in (401, 403)
        assert settings.read_text() == before

        client = gradio_client.Client(url, auth=("ann", "s3cret"), verbose=False)
        with pytest.raises(AppError, match="creations_dir: / is a system"):
            client.predict("models", "/", *SAVE_DEFAULTS, api_name="/save")
        assert "Saved to" in client.predict("models", str(tmp_path / "elsewhere"), *SAVE_DEFAULTS, api_name="/save")
        login = urllib.request.Request(url + "login", data=b"username=ann&password=s3cret", method="POST",
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(login, timeout=10) as response:
            cookies = "; ".join(c.split(";", 1)[0] for c in response.headers.get_all("Set-Cookie"))
        assert get(url + f"gradio_api/file={creations}/probe.txt", {"Cookie": cookies}) == (200, b"mine")
        assert get(url + "gradio_api/file=/etc/passwd", {"Cookie": cookies})[0] in (403, 404)


def component(config: dict, elem_id: str) -> dict:
    [props] = [c["props"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id]
    return props


def test_an_unknown_model_at_start_is_one_warning_and_the_gui_opens_on_the_default(tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"models_dir": str(PROJECT_DIR / "models")}))
    with serve(tmp_path, "--settings", str(settings), "--creations-dir", str(tmp_path / "out"),
               "--model", "nosuch") as (url, log):
        status, config = get(url + "config")
        assert status == 200
        config = json.loads(config)
        assert component(config, "field-model")["value"] == "dreamworld-tiny"
        assert component(config, "setting-model")["value"] == "dreamworld-tiny"
        shown = component(config, "status")["value"]
        assert "model 'nosuch' was not found" in shown and "using dreamworld-tiny instead" in shown
    text = log.read_text()
    [line] = [line for line in text.splitlines() if "nosuch" in line]
    assert line.startswith("WARNING dreamworld: model 'nosuch' was not found; available: ")
    assert line.endswith("; using dreamworld-tiny instead")
    assert "not in the list of choices" not in text and "Traceback" not in text


def test_a_port_in_use_is_one_sentence_and_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run([sys.executable, str(PROJECT_DIR / "app.py"), "--port", str(port),
                              "--creations-dir", str(tmp_path / "out")],
                             capture_output=True, text=True, timeout=120, cwd=PROJECT_DIR)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [f"error: port {port} is in use on 127.0.0.1; choose another with --port"]
    assert run.stdout == ""
