"""The GUI in a real browser: headless Chromium drives `python app.py` as a user would.

Skipped when no Chromium is installed, unless DREAMWORLD_REQUIRE_BROWSER=1 (CI), which fails instead.
Set DREAMWORLD_SCREENSHOTS=DIR to keep a screenshot of each test's final page.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dreamworld.creations import read_creation
from dreamworld.settings import PROJECT_DIR, check

pytestmark = pytest.mark.browser

REQUIRE = os.environ.get("DREAMWORLD_REQUIRE_BROWSER") == "1"
CHROMIUM = next((path for path in ("/usr/bin/chromium", shutil.which("chromium"),
                                   shutil.which("chromium-browser")) if path and os.path.isfile(path)), None)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason}; DREAMWORLD_REQUIRE_BROWSER=1 requires the browser tests", pytrace=False)
    pytest.skip(f"{reason}; browser tests skipped", allow_module_level=True)


try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:
    _unavailable("the playwright package is not installed")
if CHROMIUM is None:
    _unavailable("no Chromium found at /usr/bin/chromium or as `chromium` on PATH")

FAST = {"width": 64, "height": 64, "steps": 4}
GENERATION_TIMEOUT = 60_000  # ms; the first generation also loads the model


# ----- the server and the browser ---------------------------------------------------
class Server:
    def __init__(self, root: Path):
        self.root = root
        self.creations = root / "creations"
        self.settings = root / "config" / "settings.json"
        self.log = root / "server.log"
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def files(self) -> set[Path]:
        return {p for p in self.creations.rglob("*") if p.is_file()} if self.creations.exists() else set()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running(Server(tmp_path_factory.mktemp("gui"))) as server:
        yield server


@contextlib.contextmanager
def running(server: Server, *args: str):
    """`app.py ARGS` serving `server`'s folders until the block ends."""
    server.settings.parent.mkdir()
    server.settings.write_text(json.dumps({"models_dir": str(PROJECT_DIR / "models"),
                                           "defaults": {"model": "dreamworld-tiny"}}))
    port = _free_port()
    server.url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "GRADIO_TEMP_DIR": str(server.root / "gradio-tmp")}
    with open(server.log, "wb") as log:
        server.proc = subprocess.Popen(
            [sys.executable, str(PROJECT_DIR / "app.py"), "--port", str(port),
             "--creations-dir", str(server.creations), "--settings", str(server.settings), *args],
            cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.proc.poll() is not None:
                pytest.fail(f"app.py exited with status {server.proc.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(server.url, timeout=2) as response:
                    if response.status == 200:
                        break
            except urllib.error.HTTPError:  # answering, if only to say "log in first"
                break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"app.py did not answer at {server.url} within 60 s:\n{server.log_tail()}")
            time.sleep(0.3)
        yield server
    finally:
        server.proc.terminate()
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server, request):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(20_000)
    page.goto(server.url)
    opened(page)
    yield page
    shots = os.environ.get("DREAMWORLD_SCREENSHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / f"{request.node.name}.png"), full_page=True)
    page.close()
    assert server.proc.poll() is None, f"the server died:\n{server.log_tail()}"


# ----- helpers ----------------------------------------------------------------------
def opened(page) -> None:
    """Wait until the page shows its current values (the header is filled in with them)."""
    page.locator("#generate").wait_for()
    expect(page.locator("#header")).to_contain_text("DreamWorld", timeout=30_000)


def fill(page, **values) -> None:
    """Type values into Create-tab fields, as a user would (sliders through their number box)."""
    for name, value in values.items():
        field = page.locator(f"#field-{name}")
        box = field.locator("textarea") if name in ("prompt", "negative_prompt") else \
            field.locator("input[type=number]")
        box.fill(str(value))
        box.press("Tab")


def generate(page, timeout: int = GENERATION_TIMEOUT) -> str:
    """Click Generate and wait until the status says what was saved; fail early on an error toast."""
    page.click("#generate")
    status, toast = page.locator("#status"), page.locator(".toast-body")
    saved = status.filter(has_text=re.compile(r"Saved \d+ image"))
    expect(saved.or_(toast).first).to_be_visible(timeout=timeout)
    assert toast.count() == 0, f"generation failed: {toast.first.inner_text()}"
    return status.inner_text()


def generate_one(page, server, timeout: int = GENERATION_TIMEOUT) -> Path:
    """Click Generate and wait for the one new image it saves (the status may still show the last run's
    "Saved"); fail early on an error toast."""
    before = server.files()
    page.click("#generate")
    toast = page.locator(".toast-body")
    deadline = time.monotonic() + timeout / 1000
    while not (made := new_images(server, before)) and time.monotonic() < deadline:
        assert toast.count() == 0, f"generation failed: {toast.first.inner_text()}"
        time.sleep(0.2)
    [image] = made
    return image


def load_creation(page, image: Path, prompt: str) -> None:
    """In the Creations tab, show `image`'s parameters, then load its settings into Create."""
    page.get_by_role("tab", name="Creations").click()
    page.locator("#refresh-creations").click()
    page.locator("#creations button.thumbnail-item", has=page.locator(f"img[src$='/{image.name}']")).click()
    expect(page.locator("#creation-info textarea")).to_have_value(re.compile("^" + re.escape(prompt) + "\n"))
    page.locator("#load-settings").click()
    expect(page.locator("#field-prompt textarea")).to_be_visible()
    expect(page.locator("#field-prompt textarea")).to_have_value(prompt)


def new_images(server, before: set[Path]) -> list[Path]:
    return sorted(p for p in server.files() - before if p.suffix == ".png" and "inputs" not in p.parts)


def png_text_chunks(data: bytes) -> dict[str, str]:
    """The tEXt/iTXt chunks of PNG bytes, read by hand (no re-encoding possible here)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    chunks, pos = {}, 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"tEXt":
            key, text = body.split(b"\0", 1)
            chunks[key.decode("latin-1")] = text.decode("latin-1")
        elif kind == b"iTXt":
            key, rest = body.split(b"\0", 1)
            compressed, rest = rest[0], rest[2:]
            _lang, _translated, text = rest.split(b"\0", 2)
            chunks[key.decode("latin-1")] = (zlib.decompress(text) if compressed else text).decode("utf-8")
        pos += 12 + length
    return chunks


def wait_until_stable(read, interval: float = 0.3, timeout: float = 10):
    """A value read twice in a row `interval` apart."""
    last, deadline = read(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(interval)
        value = read()
        if value == last:
            return value
        last = value
    raise AssertionError(f"still changing after {timeout} s: {last!r}")


def pattern(size: int = 128) -> Image.Image:
    """A smooth, everywhere-different test picture (flat colours would hide resampling)."""
    y, x = np.mgrid[0:size, 0:size]
    rgb = np.stack([x * 255 // (size - 1), y * 255 // (size - 1), (x + y) * 127 // (size - 1)], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


# ----- tests ------------------------------------------------------------------------
def test_txt2img_saves_and_serves_the_png_with_its_metadata(page, server):
    before = server.files()
    fill(page, prompt="a lighthouse at dusk", seed=1234, **FAST)
    assert "Saved 1 image(s) in 64x64" in generate(page)

    shown = page.locator("#results img").first
    expect(shown).to_be_visible()
    info = page.locator("#info textarea").input_value()
    assert info.startswith("a lighthouse at dusk") and "Seed: 1234" in info and "Size: 64x64" in info

    [image] = new_images(server, before)
    assert image.with_suffix(".txt").read_text() == info
    parameters = read_creation(image)["parameters"]
    assert parameters.startswith("a lighthouse at dusk\n") and "Seed: 1234" in parameters
    assert "Steps: 4," in parameters
    assert Image.open(image).size == (64, 64)

    response = page.request.get(shown.get_attribute("src"))
    assert response.ok
    served = response.body()
    assert served[:8] == b"\x89PNG\r\n\x1a\n", "Gradio re-encoded the creation it served"
    chunks = png_text_chunks(served)
    assert chunks.get("parameters") == parameters
    assert json.loads(chunks["dreamworld"])["seed"] == 1234


def test_a_seed_list_typed_in_the_gui_makes_one_image_per_seed(page, server):
    """A list field of the schema (seeds) gets its control with no GUI code of its own; its value flows into
    each image's metadata. Fields of other modes (denoising strength) are hidden in txt2img."""
    expect(page.locator("#field-strength")).to_be_hidden()
    fill(page, prompt="a seed list", **FAST)
    seeds = page.locator("#field-seeds textarea, #field-seeds input").first
    seeds.fill("3, 7")
    seeds.press("Tab")
    before = server.files()
    assert "Saved 2 image" in generate(page)
    made = sorted(new_images(server, before))
    records = [read_creation(p)["request"] for p in made]
    assert sorted(r["seed"] for r in records) == [3, 7] and all(r["seeds"] == [3, 7] for r in records)
    page.locator("#field-mode").get_by_label("img2img").check()
    expect(page.locator("#field-strength")).to_be_visible()


def test_progress_is_shown_and_interrupt_stops_a_long_generation(page, server):
    before = server.files()
    fill(page, prompt="a very slow picture", seed=5, width=512, height=512, steps=150)
    page.click("#generate")
    progress = page.locator("#results")
    expect(progress).to_contain_text(re.compile(r"step \d+ of 150"), timeout=GENERATION_TIMEOUT)
    time.sleep(1.0)  # it keeps running: still in progress a second later, far from done
    text = progress.inner_text()
    step = int(re.search(r"step (\d+) of 150", text).group(1))
    assert step < 140, f"150 steps at 512x512 should take much longer than this: {text!r}"
    expect(progress).to_contain_text(re.compile(r"s left"))  # an ETA
    expect(page.locator("#live-preview img")).to_be_visible()  # the picture so far, before the end
    assert "Saved" not in page.locator("#status").inner_text()

    started = time.monotonic()
    page.click("#interrupt")  # queue=False: must not wait behind the running generation
    expect(page.locator("#status")).to_contain_text("Interrupted", timeout=30_000)
    assert time.monotonic() - started < 30
    assert "saved 0 of 1" in page.locator("#status").inner_text()
    assert new_images(server, before) == []
    assert not any(p.name.endswith(".tmp") for p in server.files())


def test_bad_input_shows_an_error_and_the_server_stays_up(page, server):
    before = server.files()
    fill(page, prompt="an odd size", seed=3, width=65, height=64, steps=4)
    page.click("#generate")
    toast = page.locator(".toast-body").first
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("width")
    expect(toast).to_contain_text("multiple of 8")
    assert server.proc.poll() is None
    assert server.files() == before

    toast.locator(".toast-close").click()
    expect(page.locator(".toast-body")).to_have_count(0)
    fill(page, width=64)
    generate(page)
    assert len(new_images(server, before)) == 1


def test_img2img_uses_the_uploaded_image(page, server, tmp_path):
    init = tmp_path / "init.png"
    pattern(64).save(init)
    before = server.files()
    expect(page.locator("#init-image")).to_be_hidden()
    page.locator("#field-mode").get_by_label("img2img").check()
    expect(page.locator("#init-image")).to_be_visible()
    page.locator("#init-image input[type=file]").set_input_files(init)
    expect(page.locator("#init-image img")).to_be_visible()
    fill(page, prompt="a painting of this", seed=11, **FAST)
    generate(page)

    [image] = new_images(server, before)
    data = read_creation(image)
    assert "Denoising strength: 0.75" in data["parameters"]
    assert data["request"]["mode"] == "img2img"
    stored = server.creations / data["request"]["init_image"]
    assert stored.parent.name == "inputs"
    assert np.array_equal(pixels(stored), pixels(init)), "the init image was altered on the way"

    page.reload()  # a fresh page: txt2img, no init image
    load_creation(page, image, "a painting of this")
    expect(page.locator("#field-mode").get_by_label("img2img")).to_be_checked()
    expect(page.locator("#init-image img")).to_be_visible()  # the stored init image came back too


def paint_stroke(page, init: Path) -> str:
    """Choose inpaint mode, load `init` into the mask editor and paint a horizontal stroke across the upper
    left of the picture (x 24..64, y 34 in image pixels); return the editor's zoom text once fitted."""
    page.locator("#field-mode").get_by_label("inpaint").check()
    editor = page.locator("#inpaint-editor")
    expect(editor).to_be_visible()
    zoom_text = editor.locator(".zoom-number")
    empty_zoom = wait_until_stable(zoom_text.inner_text)
    editor.locator("input[type=file]").set_input_files(init)
    expect(editor.get_by_text("Upload an image")).to_be_hidden()
    expect(zoom_text).not_to_have_text(empty_zoom)  # the editor fits the loaded picture to its canvas
    fitted = wait_until_stable(zoom_text.inner_text)
    zoom = float(re.search(r"(\d+)%", fitted).group(1)) / 100
    expect(editor.get_by_role("button", name="Brush", exact=True)).to_be_visible()
    box = editor.locator("canvas").first.bounding_box()  # the picture is centred in the canvas
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    stroke = [(cx + dx * zoom, cy - 30 * zoom) for dx in (-40, -20, 0)]  # image pixels from the centre
    page.mouse.move(*stroke[0])
    page.mouse.down()
    for point in stroke[1:]:
        page.mouse.move(*point)
    page.mouse.up()
    return fitted


def test_inpaint_mask_is_painted_in_the_browser(page, server, tmp_path):
    init = tmp_path / "scene.png"
    pattern(128).save(init)
    before = server.files()
    fitted = paint_stroke(page, init)
    editor = page.locator("#inpaint-editor")
    zoom_text = editor.locator(".zoom-number")
    fill(page, prompt="a hole in the sky", seed=21, steps=4)  # native size 128x128, as the picture
    generate(page)

    [image] = new_images(server, before)
    request = read_creation(image)["request"]
    assert request["mode"] == "inpaint"
    mask = np.asarray(Image.open(server.creations / request["mask"]).convert("L"))
    assert mask.shape == (128, 128) and set(np.unique(mask)) <= {0, 255}
    # Distance of every pixel from the painted segment (x 24..64, y 34, in image pixels).
    y, x = np.mgrid[0:128, 0:128]
    distance = np.hypot(x - np.clip(x, 24, 64), y - 34)
    assert (mask[distance <= 2] == 255).all(), "the painted stroke is missing from the mask"
    assert (mask[distance > 40] == 0).all(), "the mask has white far from the stroke"
    far = distance > 40 + 4 * 4  # beyond the brush and the mask blur (4)
    assert np.array_equal(pixels(image)[far], pixels(init)[far]), "unpainted pixels changed"
    assert not np.array_equal(pixels(image)[distance <= 2], pixels(init)[distance <= 2])

    # Loaded back from Creations, the editor holds the same picture and mask: the same pixels again.
    page.reload()
    load_creation(page, image, "a hole in the sky")
    expect(page.locator("#field-mode").get_by_label("inpaint")).to_be_checked()
    expect(editor).to_be_visible()
    expect(editor.get_by_text("Upload an image")).to_be_hidden()
    expect(zoom_text).to_have_text(fitted)  # the same picture, fitted as before: it has loaded
    before = server.files()
    generate(page)
    [again] = new_images(server, before)
    again_request = read_creation(again)["request"]
    assert (again_request["init_image"], again_request["mask"]) == (request["init_image"], request["mask"])
    assert np.array_equal(pixels(again), pixels(image))


def test_creations_tab_loads_settings_back(page, server):
    before = server.files()
    fill(page, prompt="a creation to reload", seed=777, **FAST)
    generate(page)
    [image] = new_images(server, before)
    fill(page, prompt="something else", seed=1)

    load_creation(page, image, "a creation to reload")
    assert "Seed: 777" in page.locator("#creation-info textarea").input_value()
    expect(page.locator("#field-seed input")).to_have_value("777")
    expect(page.locator("#field-width input")).to_have_value("64")


def test_creations_tab_upscales_the_chosen_creation(page, server):
    before = server.files()
    fill(page, prompt="a creation to upscale", seed=778, **FAST)
    generate(page)
    [image] = new_images(server, before)
    page.get_by_role("tab", name="Creations").click()
    page.locator("#refresh-creations").click()
    page.locator("#creations button.thumbnail-item", has=page.locator(f"img[src$='/{image.name}']")).click()
    page.locator("#upscaler input").click()
    page.get_by_role("option", name="dreamworld-2x").click()
    page.locator("#upscale").click()
    expect(page.locator("#creation-info textarea")).to_have_value(
        re.compile("Postprocess upscale by: 2, Postprocess upscaler: dreamworld-2x$"))
    [made] = [p for p in new_images(server, before) if p != image]
    assert Image.open(made).size == (128, 128)


def test_settings_tab_saves_defaults_atomically(page, server):
    page.get_by_role("tab", name="Settings").click()
    steps = page.locator("#setting-steps input[type=number]")
    steps.fill("33")
    steps.press("Tab")
    page.locator("#save-settings").click()
    expect(page.locator("#settings-saved")).to_contain_text("Saved to", timeout=10_000)

    data = json.loads(server.settings.read_text())
    assert data["defaults"]["steps"] == 33
    assert data["models_dir"] == str(PROJECT_DIR / "models")
    check(data)  # what was written loads back
    assert [p.name for p in server.settings.parent.iterdir()] == ["settings.json"]


def choose(page, name: str, value: str) -> None:
    """Pick a value in a Create-tab dropdown."""
    page.locator(f"#field-{name} input").click()
    page.get_by_role("option", name=value, exact=True).click()


def test_switching_the_engine_reshapes_the_controls_and_generates_on_tensorflow(page, server, tmp_path):
    page.get_by_text("Advanced", exact=True).click()
    width = page.locator("#field-width input[type=number]")
    expect(page.locator("#field-backend")).to_be_visible()
    expect(page.locator("#field-jit")).to_be_hidden()  # torch declares no XLA
    expect(width).to_have_attribute("step", "8")

    choose(page, "backend", "tensorflow")
    expect(page.locator("#field-jit")).to_be_visible(timeout=60_000)  # the first look imports TensorFlow
    expect(width).to_have_attribute("step", "64")
    expect(page.locator("#field-width")).to_contain_text("a multiple of 64")

    before = server.files()
    fill(page, prompt="a yellow square on a purple background", seed=8, width=96, height=64, steps=3)
    page.click("#generate")
    toast = page.locator(".toast-body").first
    expect(toast).to_contain_text("width must be a multiple of 64 on backend 'tensorflow'")
    assert new_images(server, before) == []
    toast.locator(".toast-close").click()

    expect(toast).to_have_count(0)
    fill(page, width=64)
    image = generate_one(page, server, timeout=GENERATION_TIMEOUT * 2)  # the first use loads TensorFlow
    request = read_creation(image)["request"]
    assert request["backend"] == "tensorflow" and request["jit"] is False

    # img2img and inpaint on TensorFlow too, from the same page
    init = tmp_path / "init.png"
    pattern(128).save(init)
    page.locator("#field-mode").get_by_label("img2img").check()
    page.locator("#init-image input[type=file]").set_input_files(init)
    expect(page.locator("#init-image img")).to_be_visible()
    fill(page, prompt="a green star on a white background", seed=9, width=128, height=128)
    image = generate_one(page, server)
    request = read_creation(image)["request"]
    assert (request["backend"], request["mode"]) == ("tensorflow", "img2img")
    assert not np.array_equal(pixels(image), pixels(init))

    paint_stroke(page, init)
    image = generate_one(page, server)
    request = read_creation(image)["request"]
    assert (request["backend"], request["mode"]) == ("tensorflow", "inpaint")
    y, x = np.mgrid[0:128, 0:128]
    distance = np.hypot(x - np.clip(x, 24, 64), y - 34)
    far = distance > 40 + 4 * 4
    assert np.array_equal(pixels(image)[far], pixels(init)[far]), "unpainted pixels changed"
    assert not np.array_equal(pixels(image)[distance <= 2], pixels(init)[distance <= 2])

    choose(page, "backend", "torch")
    expect(page.locator("#field-jit")).to_be_hidden()
    expect(width).to_have_attribute("step", "8")


# ----- cinema -----------------------------------------------------------------------
def fill_cinema(page, **values) -> None:
    """Type values into Cinema-tab fields (text boxes, schedules and numbers)."""
    for name, value in values.items():
        box = page.locator(f"#cinema-{name}").locator("textarea, input[type=number]").first
        box.fill(str(value))
        box.press("Tab")


def open_cinema(page) -> None:
    page.get_by_role("tab", name="Cinema").click()
    for section in ("Schedules and coherence", "Seeds and prompts by frame", "Model and sampling"):
        page.get_by_text(section, exact=True).click()
    expect(page.locator("#cinema-steps")).to_be_visible()


def make_animation(page, server, frames: int) -> set[Path]:
    """Press Make animation, wait for the run to be saved and shown in the player; the files it made."""
    before = server.files()
    page.click("#cinema-generate")
    status, toast = page.locator("#cinema-status"), page.locator(".toast-body")
    expect(status.filter(has_text=f"Saved {frames} frames").or_(toast).first).to_be_visible(
        timeout=GENERATION_TIMEOUT * 2)
    assert toast.count() == 0, toast.first.inner_text()
    expect(page.locator("#cinema-player video")).to_be_visible()
    return server.files() - before


def test_cinema_tab_previews_the_motion_then_makes_a_video(page, server):
    open_cinema(page)
    fill_cinema(page, prompt="a zoom into a red circle", frames=3, fps=6, zoom="0:(1.1)", strength="0.5",
                steps=2, width=64, height=64, seed=12)
    page.click("#cinema-preview")
    expect(page.locator("#cinema-preview-image img")).to_be_visible()
    made = make_animation(page, server, frames=3)
    expect(page.locator("#cinema-latest img")).to_be_visible()
    [mp4] = [p for p in made if p.suffix == ".mp4"]
    assert sorted(p.name for p in made if p.name.startswith("frame_") and p.suffix == ".png") == \
        [f"frame_0000{i}.png" for i in range(3)]
    assert page.locator("#cinema-run textarea, #cinema-run input").first.input_value() == str(mp4.parent)


def test_cinema_interrupt_then_resume(page, server):
    open_cinema(page)
    fill_cinema(page, prompt="a long walk", frames=40, zoom="1.05", strength="0.5", steps=4, width=64,
                height=64, seed=3)
    before = server.files()
    page.click("#cinema-generate")
    expect(page.locator("#cinema-latest img")).to_be_visible(timeout=GENERATION_TIMEOUT)  # a frame is saved
    page.click("#cinema-interrupt")
    status = page.locator("#cinema-status")
    expect(status).to_contain_text("Interrupted", timeout=30_000)
    frames = {p: p.stat().st_mtime_ns for p in server.files() - before if p.name.startswith("frame_")
              and p.suffix == ".png"}
    assert 0 < len(frames) < 40 and not [p for p in server.files() - before if p.suffix == ".mp4"]
    page.click("#cinema-resume")
    expect(status).to_contain_text("Saved 40 frames", timeout=GENERATION_TIMEOUT * 6)
    assert {p: p.stat().st_mtime_ns for p in frames} == frames  # the saved frames were not made again
    assert len([p for p in server.files() - before if p.suffix == ".mp4"]) == 1


def test_cinema_tab_makes_a_dream_walk(page, server):
    open_cinema(page)
    page.locator("#cinema-motion").get_by_label("dream").check()
    expect(page.locator("#cinema-init-image")).to_be_hidden()  # a walk through noise: no input image
    fill_cinema(page, prompt="a red circle on a blue background",
                prompts='{"2": "a yellow star on a black background"}', frames=3, fps=6, steps=4, width=64,
                height=64, seed=12)
    made = make_animation(page, server, frames=3)
    [middle] = [p for p in made if p.name == "frame_00001.png"]
    walk = read_creation(middle)["request"]["cinema"]
    assert walk["seeds"] == [12, 13] and walk["walk"] == 0.5
    assert walk["prompt_blend"][1] == ["a yellow star on a black background", 0.5]
    assert len([p for p in made if p.suffix == ".mp4"]) == 1


def queue_one(page) -> int:
    """Click Queue in the Create tab; the job's number, from the status."""
    def number():
        found = re.search(r"Queued as job (\d+)", page.locator("#status").inner_text())
        return int(found.group(1)) if found else None

    before = number()
    page.click("#enqueue")
    deadline = time.monotonic() + 20
    while (job := number()) in (None, before):
        assert time.monotonic() < deadline, f"no new job number: {page.locator('#status').inner_text()!r}"
        time.sleep(0.1)
    return job


def job_row(page, job: int, status: str):
    return page.locator(f'#queue-jobs tr.job-{status}[data-job="{job}"]')


def test_jobs_queued_without_waiting_are_followed_cancelled_and_interrupted_in_the_queue_tab(page, server):
    fill(page, prompt="a queued slow picture", seed=3, width=128, height=128, steps=150, count=6)
    slow = queue_one(page)
    fill(page, prompt="queued behind", steps=4, width=64, height=64, count=1)
    behind, last = queue_one(page), queue_one(page)  # answered at once, while the slow one runs
    page.get_by_role("tab", name="Queue").click()
    expect(job_row(page, slow, "running")).to_be_visible(timeout=GENERATION_TIMEOUT)
    expect(job_row(page, behind, "pending")).to_be_visible()
    expect(page.locator("#queue-preview img")).to_be_visible(timeout=GENERATION_TIMEOUT)  # its first image
    page.locator("#queue-job input").fill(str(behind))
    page.click("#queue-cancel")
    expect(job_row(page, behind, "cancelled")).to_be_visible()
    page.locator("#queue-job input").fill(str(slow))
    page.click("#queue-interrupt")
    expect(job_row(page, slow, "interrupted")).to_be_visible(timeout=30_000)
    expect(job_row(page, last, "done")).to_be_visible(timeout=GENERATION_TIMEOUT)
    href = job_row(page, last, "done").locator("a").first.get_attribute("href")
    with urllib.request.urlopen(server.url.rstrip("/") + href) as response:
        assert response.read()[:8] == b"\x89PNG\r\n\x1a\n"
    page.locator("#queue-job input").fill(str(last))
    page.click("#queue-cancel")
    expect(page.locator("#queue-said")).to_contain_text(f"job {last} is done; only a pending or running job")


def test_with_auth_each_user_sees_only_their_own_jobs(browser, tmp_path):
    with running(Server(tmp_path), "--auth", "ann:a-pass,bob:b-pass") as server:
        pages = {}
        for user in ("ann", "bob"):
            page = pages[user] = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(20_000)
            page.goto(server.url)
            page.get_by_label("username").fill(user)
            page.get_by_label("password").fill(f"{user[0]}-pass")
            page.get_by_role("button", name="Login").click()
            opened(page)
        fill(pages["ann"], prompt="ann's picture", **FAST)
        job = queue_one(pages["ann"])
        for user, page in pages.items():
            page.get_by_role("tab", name="Queue").click()
        expect(pages["ann"].locator(f'#queue-jobs tr[data-job="{job}"]')).to_be_visible()
        expect(pages["bob"].locator("#queue-empty")).to_be_visible()
        pages["bob"].locator("#queue-job input").fill(str(job))
        pages["bob"].click("#queue-cancel")
        expect(pages["bob"].locator("#queue-said")).to_contain_text(f"there is no job {job} of yours")
        expect(job_row(pages["ann"], job, "done")).to_be_visible(timeout=GENERATION_TIMEOUT)


# ----- state that sticks, and the conveniences of A1111 (issue 20) ------------------------------------
def results(page):
    return page.locator("#results button.thumbnail-item")


def test_each_result_of_a_batch_shows_its_own_parameters_and_its_seed_is_reused(page, server):
    fill(page, prompt="a batch to browse", **FAST)
    seeds = page.locator("#field-seeds textarea, #field-seeds input").first
    seeds.fill("3, 7")
    seeds.press("Tab")
    before = server.files()
    generate(page)
    by_seed = {read_creation(p)["request"]["seed"]: p for p in new_images(server, before)}
    info = page.locator("#info textarea")
    expect(info).to_have_value(re.compile("Seed: 3,"))
    results(page).nth(1).click()
    expect(info).to_have_value(re.compile("Seed: 7,"))  # the image looked at, not the batch's first

    page.click("#reuse-seed")
    expect(page.locator("#field-seed input")).to_have_value("7")
    expect(seeds).to_have_value("")
    again = generate_one(page, server)
    assert (pixels(again) == pixels(by_seed[7])).all(), "the reused seed made another picture"

    page.click("#random-seed")
    expect(page.locator("#field-seed input")).to_have_value("-1")
    page.click("#send-img2img")
    expect(page.locator("#field-mode input[value=img2img]")).to_be_checked()
    expect(page.locator("#init-image img")).to_be_visible()
    fill(page, prompt="something else")
    page.click("#init-parameters")  # the image sent holds its parameters: offered, and used
    expect(page.locator("#field-prompt textarea")).to_have_value("a batch to browse")
    expect(page.locator("#field-mode input[value=img2img]")).to_be_checked()
    page.click("#send-cinema")
    expect(page.locator("#cinema-init-image img")).to_be_visible()
    page.get_by_role("tab", name="Create").click()
    page.click("#send-upscale")  # to the Creations tab, chosen there for Upscale
    expect(page.locator("#creation-info textarea")).to_have_value(re.compile("Seed: 7,"))


def test_ctrl_enter_generates_and_an_input_error_keeps_the_last_results(page, server):
    logged = len(server.log.read_text(errors="replace"))
    fill(page, prompt="made from the keyboard", seed=21, **FAST)
    before = server.files()
    page.locator("#field-prompt textarea").press("Control+Enter")
    expect(page.locator("#status")).to_contain_text("Saved 1 image", timeout=GENERATION_TIMEOUT)
    assert len(new_images(server, before)) == 1
    expect(results(page)).to_have_count(1)

    fill(page, width=4000)
    page.click("#generate")
    toast = page.locator(".toast-body").first
    expect(toast).to_contain_text("width")  # the schema's sentence naming the field, not Gradio's
    assert "greater than maximum" not in toast.inner_text()
    expect(page.locator("#status")).to_contain_text("Error: width")
    expect(results(page)).to_have_count(1)  # the last results stay
    said = server.log.read_text(errors="replace")[logged:]  # what this test made the server log
    assert "refused: width" in said and "Traceback" not in said
    fill(page, width=64, steps=100000)  # a slider's box: set to its maximum, and said beside it
    expect(page.locator("#field-steps .range-note")).to_have_text(
        "Steps: 100000 is above the maximum 150, so 150 is used")
    expect(page.locator("#field-steps input[type=number]")).to_have_value("150")
    fill(page, steps=4)
    expect(page.locator("#field-steps .range-note")).to_have_text("")


def test_a_reload_mid_generation_shows_the_running_job_which_interrupt_stops(page, server):
    fill(page, prompt="a picture across a reload", seed=5, width=512, height=512, steps=150)
    page.click("#generate")
    expect(page.locator("#results")).to_contain_text(re.compile(r"step \d+ of 150"), timeout=GENERATION_TIMEOUT)
    page.reload()
    opened(page)
    status = page.locator("#status")
    expect(status).to_contain_text(re.compile(r"Job \d+ is running \(image 1 of 1, step \d+ of 150, about \d+ s left"))
    fill(page, prompt="a picture behind it", seed=6, **FAST)
    page.click("#generate")
    expect(page.locator("#results")).to_contain_text("waiting for the job running now to finish")
    page.keyboard.press("Escape")  # as the Interrupt button: the running job stops, the one behind it runs
    expect(status).to_contain_text("Saved 1 image", timeout=GENERATION_TIMEOUT)


def test_png_info_reads_an_a1111_image_and_sends_its_parameters_to_create(page, tmp_path):
    from PIL.PngImagePlugin import PngInfo
    text = ("a castle on a hill\nNegative prompt: blurry\nSteps: 7, Sampler: DPM++ 2M Karras, CFG scale: 6, "
            "Seed: 4242, Size: 64x64, Model: dreamworld-tiny")
    meta = PngInfo()
    meta.add_text("parameters", text)
    made = tmp_path / "from-a1111.png"
    pattern(64).save(made, pnginfo=meta)
    page.get_by_role("tab", name="PNG Info").click()
    page.locator("#png-info-image input[type=file]").set_input_files(str(made))
    expect(page.locator("#png-info-text textarea")).to_have_value(text)
    page.click("#png-info-send")
    expect(page.locator("#field-prompt textarea")).to_have_value("a castle on a hill")
    expect(page.locator("#field-seed input")).to_have_value("4242")
    expect(page.locator("#field-steps input[type=number]")).to_have_value("7")
    expect(page.locator("#field-scheduler input")).to_have_value("DPM++ 2M Karras")


def test_saved_settings_show_in_create_and_after_a_reload(browser, tmp_path):
    with running(Server(tmp_path)) as server:  # its own server: the saved settings would change the others'
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(20_000)
        page.goto(server.url)
        opened(page)
        expect(page.locator("#header")).to_contain_text("dreamworld-tiny on auto (openvino)")
        page.get_by_role("tab", name="Settings").click()
        page.locator("#setting-scheduler input").click()
        page.get_by_role("option", name="DPM++ 2M Karras", exact=True).click()
        for selector, value in (("#setting-steps", "12"), ("#max-steps", "100")):
            box = page.locator(f"{selector} input[type=number]")
            box.fill(value)
            box.press("Tab")
        page.locator("#save-settings").click()
        expect(page.locator("#settings-saved")).to_contain_text("Saved to", timeout=10_000)
        steps = page.locator("#field-steps input[type=number]")
        expect(steps).to_have_value("12")  # Create follows the save
        expect(steps).to_have_attribute("max", "100")

        page.reload()
        opened(page)
        expect(page.locator("#field-scheduler input")).to_have_value("DPM++ 2M Karras")
        expect(steps).to_have_value("12")
        expect(steps).to_have_attribute("max", "100")
        page.get_by_role("tab", name="Settings").click()
        expect(page.locator("#setting-scheduler input")).to_have_value("DPM++ 2M Karras")
        expect(page.locator("#max-steps input[type=number]")).to_have_value("100")
        page.locator("#save-settings").click()  # saving again keeps what was saved
        expect(page.locator("#settings-saved")).to_contain_text("Saved to", timeout=10_000)
        saved = json.loads(server.settings.read_text())
        assert saved["defaults"]["scheduler"] == "DPM++ 2M Karras" and saved["defaults"]["steps"] == 12
        assert saved["limits"]["steps"]["max"] == 100
        page.close()


def test_creations_are_searched_deleted_restored_and_a_cinema_run_is_one_entry_loaded_into_cinema(page, server):
    from dreamworld import schema
    from dreamworld.cinema import runs
    fill(page, prompt="a findable zebra", seed=31, **FAST)
    image = generate_one(page, server)
    run = server.creations / "2026-01-01" / "00001-zebra-walk"
    run.mkdir(parents=True)
    walk = schema.validate_cinema({"prompt": "a zebra walk", "frames": 7, "zoom": "1.3", "width": 64, "height": 64})
    (run / "cinema.json").write_text(json.dumps(runs.record(walk, server.creations)))
    for i in range(2):
        pattern(64).save(run / f"frame_0000{i}.png")

    page.get_by_role("tab", name="Creations").click()
    search = page.locator("#creations-search textarea, #creations-search input").first
    search.fill("zebra")
    search.press("Enter")
    shown = page.locator("#creations button.thumbnail-item")
    expect(shown).to_have_count(2)  # the image, and the run once (not each frame)
    expect(page.locator("#creations")).to_contain_text("▶ 00001-zebra-walk")

    page.locator("#creations button.thumbnail-item", has=page.locator(f"img[src$='/{image.name}']")).click()
    expect(page.locator("#creation-info textarea")).to_have_value(re.compile("^a findable zebra\n"))
    thumbnail = page.locator("#creations button.thumbnail-item", has=page.locator(f"img[src$='/{image.name}']"))
    page.click("#delete-creation")
    expect(page.locator("#creation-info textarea")).to_have_value(re.compile("^Deleted"))
    expect(thumbnail).to_have_count(0)
    assert not image.exists() and not image.with_suffix(".txt").exists()
    page.click("#undo-delete")
    expect(thumbnail.first).to_be_attached()
    assert image.exists() and image.with_suffix(".txt").exists()

    page.locator("#creations button.thumbnail-item", has=page.locator("img[src$='/frame_00000.png']")).first.click()
    expect(page.locator("#creation-info textarea")).to_have_value(re.compile("^Cinema run 00001-zebra-walk: 2 frames"))
    page.click("#load-settings")
    expect(page.locator("#cinema-prompt textarea")).to_have_value("a zebra walk")
    expect(page.locator("#cinema-zoom textarea, #cinema-zoom input").first).to_have_value("1.3")

    page.get_by_role("tab", name="Creations").click()
    page.locator("#creations button.thumbnail-item", has=page.locator(f"img[src$='/{image.name}']")).first.click()
    page.click("#creation-send-inpaint")
    expect(page.locator("#field-mode input[value=inpaint]")).to_be_checked()
    expect(page.locator("#inpaint-editor canvas").first).to_be_visible()


def test_the_parts_tab_runs_the_stages_and_creations_names_the_parts(page, server, tmp_path):
    import tifffile
    page.get_by_role("tab", name="Parts").click()
    page.locator("#parts-name input").fill("fox")
    prompt = page.locator("#parts-text-prompt textarea")
    prompt.fill("a red circle on a blue background")
    page.click("#parts-write-text")
    said = page.locator("#parts-said")
    expect(said).to_contain_text("Wrote fox_text.tiff", timeout=GENERATION_TIMEOUT)
    for name, value in (("seed", "5"), ("width", "64"), ("height", "64")):
        box = page.locator(f"#parts-noise-{name} input[type=number]")
        box.fill(value)
        box.press("Tab")
    page.click("#parts-write-noise")
    expect(said).to_contain_text("Wrote fox_state1.tiff")
    steps = page.locator("#parts-diffuse-steps input[type=number]")
    steps.fill("4")
    steps.press("Tab")
    page.click("#parts-diffuse")  # the state and text files just written are chosen
    expect(said).to_contain_text("Wrote fox_state2.tiff", timeout=GENERATION_TIMEOUT)
    page.click("#parts-decode")
    expect(said).to_contain_text("Wrote fox.png, fox_decoded.tiff", timeout=GENERATION_TIMEOUT)
    expect(page.locator("#parts-picture img")).to_be_visible()
    made = server.creations / "parts" / "fox.png"
    record = read_creation(made)["request"]
    assert record["parts"] == {"noise": "fox_state1.tiff", "text": "fox_text.tiff", "state2": "fox_state2.tiff"}
    assert record["prompt"] == "a red circle on a blue background" and Image.open(made).size == (64, 64)

    page.get_by_role("tab", name="Creations").click()
    page.locator("#refresh-creations").click()
    page.locator("#creations button.thumbnail-item", has=page.locator("img[src$='/fox.png']")).first.click()
    expect(page.locator("#creation-info textarea")).to_have_value(
        re.compile("Made by parts from: noise fox_state1.tiff, text fox_text.tiff, state2 fox_state2.tiff$"))
    page.get_by_role("tab", name="Parts").click()  # a state made elsewhere (By-Parts' layout) is added and chosen
    by_parts = tmp_path / "walk_state1.tiff"
    tifffile.imwrite(by_parts, np.zeros((1, 4, 8, 8), np.float16), metadata={"shape": [1, 4, 8, 8]})
    page.locator("#parts-add input[type=file]").set_input_files(str(by_parts))
    expect(said).to_contain_text("Added walk_state1.tiff")
    expect(page.locator("#parts-state input")).to_have_value("walk_state1.tiff")
    assert (server.creations / "parts" / "walk_state1.tiff").read_bytes() == by_parts.read_bytes()


def test_controlnet_panel_previews_guides_and_hides_on_tensorflow(page, server, tmp_path):
    from PIL import ImageDraw
    control = tmp_path / "shape.png"
    shape = Image.new("RGB", (128, 128), "black")
    ImageDraw.Draw(shape).ellipse((12, 40, 60, 88), fill="white")
    shape.save(control)
    panel = page.locator("#controlnet-panel")
    expect(panel).to_be_visible()  # torch can do ControlNet
    panel.get_by_text("ControlNet", exact=True).first.click()
    page.locator("#cn0-image input[type=file]").set_input_files(control)
    expect(page.locator("#cn0-image img")).to_be_visible()
    page.locator("#cn0-preview-button").click()
    expect(page.locator("#cn0-preview img")).to_be_visible()  # the canny edges of the shape
    page.locator("#cn0-enabled input[type=checkbox]").check()
    before = server.files()
    fill(page, prompt="a red circle on a blue background", seed=4, width=128, height=128, steps=4)
    generate(page)
    [image] = new_images(server, before)
    data = read_creation(image)
    assert 'ControlNet 0: "Module: canny, Model: control_dreamworld_edges [' in data["parameters"]
    [unit] = data["request"]["controlnet"]
    assert unit["image"].startswith("inputs/") and unit["model"] == "control_dreamworld_edges"

    page.get_by_text("Advanced", exact=True).click()
    choose(page, "backend", "tensorflow")
    expect(panel).to_be_hidden(timeout=60_000)  # TensorFlow declares no ControlNet


def test_the_default_engine_is_auto_and_openvino_keeps_every_control(page, server):
    lora, panel = page.locator("#lora-pick"), page.locator("#controlnet-panel")
    page.get_by_text("Advanced", exact=True).click()
    expect(page.locator("#field-backend input")).to_have_value("auto")
    choose(page, "backend", "openvino")
    expect(page.locator("#field-width input[type=number]")).to_have_attribute("step", "8")
    expect(lora).to_be_visible()  # its steps with LoRAs or ControlNet run on torch's UNet
    expect(panel).to_be_visible()
    fill(page, prompt="a yellow square on a purple background", seed=8, width=96, height=64, steps=3)
    image = generate_one(page, server, timeout=GENERATION_TIMEOUT * 2)  # a first use converts the UNet
    assert read_creation(image)["request"]["backend"] == "openvino"
    assert Image.open(image).size == (96, 64)  # not a multiple of 64: torch's UNet took the steps
    choose(page, "backend", "auto")  # OpenVINO here: no GPU
    fill(page, width=64)
    image = generate_one(page, server, timeout=GENERATION_TIMEOUT * 2)
    assert read_creation(image)["request"]["backend"] == "auto"
    choose(page, "backend", "torch")


def test_the_cinema_tab_has_a_controlnet_panel_whose_units_guide_every_frame(page, server, tmp_path):
    from PIL import ImageDraw
    control = tmp_path / "shape.png"
    shape = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(shape).rectangle((8, 20, 36, 48), fill="white")
    shape.save(control)
    open_cinema(page)
    panel = page.locator("#cinema-controlnet-panel")
    expect(panel).to_be_visible()
    panel.get_by_text("ControlNet", exact=True).first.click()
    expect(page.locator("#cinema-cn0-image")).to_contain_text("each frame's input")
    page.locator("#cinema-cn0-image input[type=file]").set_input_files(control)
    expect(page.locator("#cinema-cn0-image img")).to_be_visible()
    page.locator("#cinema-cn0-enabled input[type=checkbox]").check()
    fill_cinema(page, prompt="a red circle on a blue background", frames=2, zoom="1.05", strength="0.5", steps=3,
                width=64, height=64, seed=6)
    made = make_animation(page, server, frames=2)
    frames = sorted(p for p in made if p.name.startswith("frame_") and p.suffix == ".png")
    assert len(frames) == 2
    for frame in frames:
        assert 'ControlNet 0: "Module: canny, Model: control_dreamworld_edges [' in read_creation(frame)["parameters"]
    [unit] = json.loads((frames[0].parent / "cinema.json").read_text())["cinema"]["controlnet"]
    assert unit["model"] == "control_dreamworld_edges" and unit["image"]


def test_the_lora_and_embedding_pickers_put_them_in_the_prompt_and_the_picture_uses_them(page, server):
    fill(page, prompt="a red circle on a blue background", seed=5, **FAST)
    page.locator("#lora-pick input").click()
    page.get_by_role("option", name="outline", exact=True).click()
    weight = page.locator("#lora-weight input[type=number]")
    weight.fill("0.8")
    weight.press("Tab")
    page.locator("#lora-add").click()
    prompt = page.locator("#field-prompt textarea")
    expect(prompt).to_have_value("a red circle on a blue background <lora:outline:0.8>")
    page.locator("#embedding-pick input").click()
    page.get_by_role("option", name="dwsun", exact=True).click()
    page.locator("#embedding-add").click()
    expect(prompt).to_have_value("a red circle on a blue background <lora:outline:0.8> dwsun")
    image = generate_one(page, server)
    parameters = read_creation(image)["parameters"]
    assert parameters.startswith("a red circle on a blue background <lora:outline:0.8> dwsun\n")
    assert 'Lora hashes: "outline: ' in parameters and 'TI hashes: "dwsun: ' in parameters
