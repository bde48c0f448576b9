import errno
import io
import json
import re
import threading

import piexif
import piexif.helper
import pytest
from PIL import Image, PngImagePlugin

from dreamworld import __version__, creations, files, infotext
from dreamworld.cinema import runs
from dreamworld.creations import CreationError
from dreamworld.schema import Request, RequestError

NASTY_PROMPT = 'a fox, "quoted": yes,\nsecond line: with colon\n\u00e9t\u00e9 \U0001f98a'
NASTY_NEGATIVE = "blurry, low quality\nsecond: negative line"


def gradient(size=(16, 16), mode="RGB"):
    image = Image.new("RGB", size)
    image.putdata([(x * 16 % 256, y * 16 % 256, (x + y) * 8 % 256) for y in range(size[1]) for x in range(size[0])])
    return image.convert(mode)


def make_request(**changes):
    values = dict(prompt=NASTY_PROMPT, negative_prompt=NASTY_NEGATIVE, seed=1234, width=64, height=64,
                  steps=25, guidance_scale=7.5, scheduler="DPM++ 2M Karras", model="tiny-sd")
    values.update(changes)
    return Request(**values)


def params_for(request):
    return infotext.format_parameters(request, {"Model hash": "0123456789", "Version": f"dreamworld {__version__}"})


def save(request, tmp_path, image=None, **kwargs):
    text = params_for(request)
    path = creations.save_creation(image or gradient(), request, parameters=text, creations_dir=tmp_path, **kwargs)
    return path, text


def all_files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# ----- the parameters text ----------------------------------------------------------
def test_format_parameters_txt2img_layout():
    request = Request(prompt="a red fox in the snow", negative_prompt="blurry", seed=1234, width=512, height=512,
                      model="name")
    text = infotext.format_parameters(request, {"Model hash": "0123456789", "Version": "dreamworld 0.1.0"})
    assert text == ("a red fox in the snow\nNegative prompt: blurry\n"
                    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 512x512, "
                    "Model hash: 0123456789, Model: name, Version: dreamworld 0.1.0")


def test_format_parameters_inpaint_layout_without_negative_prompt():
    request = Request(mode="inpaint", prompt="a cat", init_image="in.png", mask="m.png", strength=0.75,
                      clip_skip=2, guidance_scale=7.5, mask_blur=4, width=512, height=768, seed=7, model="name")
    text = infotext.format_parameters(request, {"Model hash": "0123456789", "Version": "dreamworld 0.1.0"})
    assert text == ("a cat\n"
                    "Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 7, Size: 512x768, Model hash: 0123456789, "
                    "Model: name, Denoising strength: 0.75, Clip skip: 2, Mask blur: 4, Version: dreamworld 0.1.0")


def test_format_parameters_img2img_has_strength_but_no_mask_blur_or_clip_skip_1():
    request = Request(mode="img2img", prompt="p", init_image="in.png", strength=1.0, seed=1, width=64, height=64)
    text = infotext.format_parameters(request, {"Model hash": "", "Version": ""})
    assert text == "p\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64, Denoising strength: 1"


def test_values_with_commas_colons_and_quotes_are_json_quoted_and_parse_back():
    request = Request(prompt="p", vae='my "best", vae', seed=1, width=64, height=64, model="model, v2: final")
    text = infotext.format_parameters(request, {"Model hash": "abc", "Version": "dreamworld 0.1.0"})
    assert 'Model: "model, v2: final"' in text and 'VAE: "my \\"best\\", vae"' in text
    params = infotext.parse_parameters(text)
    assert params["Model"] == "model, v2: final" and params["VAE"] == 'my "best", vae'
    assert params["Version"] == "dreamworld 0.1.0" and params["Seed"] == "1"


A1111_TEXT = """masterpiece, (a knight:1.2), castle on a hill
  BREAK dramatic sky, <lora:add_detail:0.8>
Negative prompt: lowres, bad anatomy
worst quality, (blurry:1.3)
Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3170923581, Size: 512x768, \
Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, Clip skip: 2, Hires upscale: 2, \
Hires upscaler: R-ESRGAN 4x+, Lora hashes: "add_detail: 7c6bad76eb54, b: 5678", TI hashes: "easynegative: c74b4e810b03", \
Version: v1.10.1"""


def test_parse_a1111_infotext():
    params = infotext.parse_parameters(A1111_TEXT)
    assert params["prompt"] == "masterpiece, (a knight:1.2), castle on a hill\nBREAK dramatic sky, <lora:add_detail:0.8>"
    assert params["negative_prompt"] == "lowres, bad anatomy\nworst quality, (blurry:1.3)"
    assert params["Steps"] == "30" and params["Sampler"] == "DPM++ 2M" and params["Schedule type"] == "Karras"
    assert params["Size"] == "512x768" and params["Hires upscale"] == "2"
    assert params["Hires upscaler"] == "R-ESRGAN 4x+"
    assert params["Lora hashes"] == "add_detail: 7c6bad76eb54, b: 5678"
    assert params["TI hashes"] == "easynegative: c74b4e810b03"
    assert params["Version"] == "v1.10.1"


def test_request_from_a1111_parameters():
    fields = infotext.request_from_parameters(infotext.parse_parameters(A1111_TEXT))
    assert fields == {
        "prompt": "masterpiece, (a knight:1.2), castle on a hill\nBREAK dramatic sky, <lora:add_detail:0.8>",
        "negative_prompt": "lowres, bad anatomy\nworst quality, (blurry:1.3)",
        "steps": 30, "scheduler": "DPM++ 2M Karras", "guidance_scale": 6.5, "seed": 3170923581,
        "width": 512, "height": 768, "model": "v1-5-pruned-emaonly", "strength": 0.45, "clip_skip": 2,
        "hires_scale": 2.0, "hires_upscaler": "R-ESRGAN 4x+", "hires_denoising": 0.45,  # its hires fix
    }


@pytest.mark.parametrize("sampler, schedule, expected", [
    ("DPM++ 2M Karras", None, "DPM++ 2M Karras"),
    ("Euler a", "Automatic", "Euler a"),
    ("PLMS", None, "PNDM"),
    ("DPM++ 3M SDE", "Exponential", None),
])
def test_sampler_mapping(sampler, schedule, expected):
    text = f"p\nSteps: 20, Sampler: {sampler}, " + (f"Schedule type: {schedule}, " if schedule else "") + \
        "CFG scale: 7, Seed: 1, Size: 512x512"
    assert infotext.request_from_parameters(infotext.parse_parameters(text)).get("scheduler") == expected


@pytest.mark.parametrize("prompt, negative", [
    ("a fox\nSteps: 1, Sampler: Euler, CFG scale: 2", ""),  # parameters-looking lines inside a prompt
    ("line\nSteps: 1, Seed: 2, Size: 3x3", "neg\nSteps: 4, Seed: 5, Size: 6x6"),
    ('a "quoted", fox: yes\n\nafter a blank line', "x\n\ny"),
    ("", "only a negative prompt"),
    ("p", "Negative prompt: inside the negative prompt"),
    ("Size: 64x64, Seed: 1, Steps: 2", ""),  # the whole prompt looks like parameters, but is not the last line
])
def test_tricky_prompts_round_trip_through_the_parameters_text(prompt, negative):
    text = params_for(make_request(prompt=prompt, negative_prompt=negative))
    params = infotext.parse_parameters(text)
    assert (params["prompt"], params["negative_prompt"]) == (prompt, negative)
    assert params["Seed"] == "1234" and params["Size"] == "64x64"


@pytest.mark.parametrize("text, expected", [
    # the last line is parameters only if three `Key: value` pairs are found in it
    ("a fox\nSteps: 3, Seed: 4", {"prompt": "a fox\nSteps: 3, Seed: 4", "negative_prompt": ""}),
    ("a fox\nNegative prompt: b\nc\nSteps: 3, Seed: 4, Size: 5x6",
     {"prompt": "a fox", "negative_prompt": "b\nc", "Steps": "3", "Seed": "4", "Size": "5x6"}),
    # an empty value is left out (A1111 drops it), a value is not stripped past what the grammar takes
    ("p\nSteps: 3, Sampler: , Seed: 4, Size: 5x6", {"prompt": "p", "negative_prompt": "", "Steps": "3", "Seed": "4",
                                                   "Size": "5x6"}),
    ('p\nSteps: 3, Model: "a, b: c", Seed: "x\\"y"', {"prompt": "p", "negative_prompt": "", "Steps": "3",
                                                     "Model": "a, b: c", "Seed": 'x"y'}),
    # the format has no escape: a prompt's own `Negative prompt:` line starts the negative prompt, as in A1111
    ("a fox\nNegative prompt: of its own\nSteps: 3, Seed: 4, Size: 5x6",
     {"prompt": "a fox", "negative_prompt": "of its own", "Steps": "3", "Seed": "4", "Size": "5x6"}),
])
def test_parameters_text_is_read_as_a1111_reads_it(text, expected):
    assert infotext.parse_parameters(text) == expected


def test_a_prompt_the_text_cannot_hold_is_re_run_exactly_from_the_json(tmp_path):
    request = make_request(prompt="a fox\nNegative prompt: is part of the prompt", negative_prompt="")
    path, _ = save(request, tmp_path)
    assert creations.request_from_file(path, tmp_path)["prompt"] == request.prompt


def test_parse_text_without_parameters_line_is_all_prompt():
    params = infotext.parse_parameters("just a prompt, nothing: else")
    assert params == {"prompt": "just a prompt, nothing: else", "negative_prompt": ""}


# ----- saving and reading back ------------------------------------------------------
@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_round_trip(tmp_path, fmt):
    request = make_request(format=fmt)
    path, text = save(request, tmp_path)
    assert path.suffix == f".{fmt}" and path.parent.parent == tmp_path
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", path.parent.name)
    assert path.with_suffix(".txt").read_text(encoding="utf-8") == text

    data = creations.read_creation(path)
    assert data["parameters"] == text
    assert data["request"] == {**request.to_dict(), "dreamworld_version": __version__}
    assert creations.request_from_file(path, tmp_path) == {**request.to_dict(), "count": 1, "seeds": []}

    from_text = infotext.request_from_parameters(infotext.parse_parameters(data["parameters"]))
    assert from_text["negative_prompt"] == NASTY_NEGATIVE
    assert from_text["prompt"] == NASTY_PROMPT
    assert {k: from_text[k] for k in ("seed", "steps", "guidance_scale", "scheduler", "width", "height", "model")} \
        == {"seed": 1234, "steps": 25, "guidance_scale": 7.5, "scheduler": "DPM++ 2M Karras",
            "width": 64, "height": 64, "model": "tiny-sd"}


def test_png_uses_parameters_text_chunk_and_dreamworld_itxt(tmp_path):
    path, text = save(make_request(prompt="plain latin prompt", negative_prompt=""), tmp_path)
    with Image.open(path) as image:
        assert image.text["parameters"] == text
        assert json.loads(image.text["dreamworld"])["prompt"] == "plain latin prompt"
    assert b"tEXtparameters" in path.read_bytes() and b"iTXtdreamworld" in path.read_bytes()


def test_jpeg_exif_is_written_like_a1111(tmp_path):
    path, text = save(make_request(format="jpg"), tmp_path)
    exif = piexif.load(str(path))
    assert piexif.helper.UserComment.load(exif["Exif"][piexif.ExifIFD.UserComment]) == text
    assert json.loads(exif["0th"][piexif.ImageIFD.ImageDescription])["seed"] == 1234


def test_a1111_written_png_and_jpeg_are_read(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111_TEXT)
    gradient().save(tmp_path / "a.png", pnginfo=info)
    exif = piexif.dump({"Exif": {piexif.ExifIFD.UserComment: piexif.helper.UserComment.dump(A1111_TEXT, encoding="unicode")}})
    gradient().save(tmp_path / "a.jpg", quality=90, exif=exif)
    for name in ("a.png", "a.jpg"):
        assert creations.read_creation(tmp_path / name) == {"parameters": A1111_TEXT, "request": None}
        fields = creations.request_from_file(tmp_path / name)
        assert fields["seed"] == 3170923581 and fields["scheduler"] == "DPM++ 2M Karras"


def test_file_without_metadata(tmp_path):
    gradient().save(tmp_path / "plain.jpg")
    assert creations.read_creation(tmp_path / "plain.jpg") == {"parameters": None, "request": None}
    with pytest.raises(CreationError, match="'plain.jpg' holds no generation parameters"):
        creations.request_from_file(tmp_path / "plain.jpg")


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_read_creation_rejects_non_images(tmp_path, content):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(CreationError, match="cannot read 'bad.png' as an image"):
        creations.read_creation(tmp_path / "bad.png")


@pytest.mark.parametrize("prompt, name", [
    ("../../etc/passwd", "00001-etc-passwd.png"),
    ("\U0001f98a\U0001f525", "00001-image.png"),
    ("", "00001-image.png"),
    ("/abs\\..\\win:name*?<>|\0", "00001-abs-win-name.png"),
    ("Caf\u00e9 CR\u00c8ME  br\u00fbl\u00e9e!!! " * 5, "00001-cafe-creme-brulee-cafe-creme-brulee.png"),
])
def test_slugs_are_safe(tmp_path, prompt, name):
    path, _ = save(make_request(prompt=prompt), tmp_path)
    assert path.name == name
    assert path.parent.parent == tmp_path and path.exists()
    assert re.fullmatch(r"\d{5}-[a-z0-9-]+\.png", path.name)


def test_index_hint_is_slugged_into_the_name(tmp_path):
    path, _ = save(make_request(prompt="a fox"), tmp_path, index_hint="Frame 7/../x")
    assert path.name == "00001-a-fox-frame-7-x.png"


def test_numbering_increments_and_is_safe_across_threads(tmp_path):
    first, _ = save(make_request(prompt="a fox"), tmp_path)
    second, _ = save(make_request(prompt="a dog", format="jpg"), tmp_path)
    assert (first.name, second.name) == ("00001-a-fox.png", "00002-a-dog.jpg")
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(save(make_request(prompt="same"), tmp_path)[0]))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in paths) == [f"{n:05d}-same.png" for n in range(3, 9)]


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_failed_save_leaves_nothing_behind(tmp_path, monkeypatch, fmt):
    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(CreationError, match=r"^cannot save in .*: disk full$"):
        save(make_request(format=fmt), tmp_path)
    assert all_files(tmp_path) == []


def test_failed_rename_leaves_nothing_behind(tmp_path, monkeypatch):
    real_replace = creations.os.replace

    def replace(src, dst):
        if str(dst).endswith(".png"):
            raise OSError("no space")
        real_replace(src, dst)

    monkeypatch.setattr(creations.os, "replace", replace)
    with pytest.raises(CreationError, match="no space"):
        save(make_request(), tmp_path)
    assert all_files(tmp_path) == []


def test_too_long_prompt_for_jpeg_is_a_clear_error(tmp_path):
    with pytest.raises(CreationError, match="too long to embed in a JPEG"):
        save(make_request(prompt="word " * 8000, format="jpg"), tmp_path)
    assert all_files(tmp_path) == []


def test_list_creations_newest_first_without_inputs_or_temp_files(tmp_path):
    first, _ = save(make_request(prompt="one"), tmp_path)
    second, _ = save(make_request(prompt="two", mode="img2img", init_image=gradient(), format="webp"), tmp_path)
    (second.parent / ".00003-x.png.1-2.tmp").write_bytes(b"x")
    (second.parent / ".hidden.png").write_bytes(b"x")
    assert creations.list_creations(tmp_path) == [second, first]
    assert creations.list_creations(tmp_path / "missing") == []


# ----- input images -----------------------------------------------------------------
def test_inputs_are_stored_once_by_content_and_rerun_from_file(tmp_path):
    creations_dir = tmp_path / "creations"
    init, mask = gradient(), Image.new("L", (16, 16), 255)
    request = make_request(mode="inpaint", init_image=init, mask=mask, format="jpg")
    path, _ = save(request, creations_dir)
    again, _ = save(request.replace(init_image=gradient()), creations_dir)
    stored = sorted((creations_dir / "inputs").iterdir())
    assert len(stored) == 2 and all(re.fullmatch(r"[0-9a-f]{16}\.png", p.name) for p in stored)

    record = creations.read_creation(again)["request"]
    assert record["init_image"].startswith("inputs/") and record["mask"].startswith("inputs/")
    fields = creations.request_from_file(path, creations_dir)
    with pytest.raises(CreationError, match="names the init_image 'inputs/"):
        creations.request_from_file(path)  # no creations folder: the inputs are not read from beside the file
    assert fields["init_image"] == str(creations_dir / record["init_image"])
    with Image.open(fields["init_image"]) as image:
        assert list(image.getdata()) == list(init.getdata())
    with Image.open(fields["mask"]) as image:
        assert image.mode == "L" and image.getextrema() == (255, 255)


def test_store_input_from_a_path_outside_and_inside(tmp_path):
    creations_dir = tmp_path / "creations"
    outside = tmp_path / "upload.png"
    gradient().save(outside)
    first = creations.store_input(outside, creations_dir)
    assert first == creations.store_input(str(outside), creations_dir) == creations.store_input(gradient(), creations_dir)
    assert creations.store_input(first, creations_dir) == first
    assert creations.store_input(creations_dir / first, creations_dir) == first
    assert all_files(creations_dir) == [first]


def test_request_from_file_refuses_inputs_outside_the_creations_folder(tmp_path):
    record = {**make_request().to_dict(), "init_image": "../../secret.png", "dreamworld_version": "0"}
    info = PngImagePlugin.PngInfo()
    info.add_itxt("dreamworld", json.dumps(record))
    (tmp_path / "day").mkdir()
    gradient().save(tmp_path / "day" / "x.png", pnginfo=info)
    with pytest.raises(CreationError, match="names the init_image '../../secret.png', which is not an input stored"):
        creations.request_from_file(tmp_path / "day" / "x.png", tmp_path)


@pytest.mark.parametrize("name, value", [
    ("init_image", "{near}/private.png"),  # beside the untrusted file: its grandparent holds the private image
    ("init_image", "{abs}"),  # an absolute path
    ("mask", "2024-01-01/00001-a-creation.png"),  # inside the creations folder, but not a stored input
    ("mask", "inputs/../2024-01-01/00001-a-creation.png"),
    ("init_image", "inputs/0123456789abcdef.png"),  # the right form, but no such stored input
    ("init_image", 123),
])
def test_a_creation_s_inputs_come_only_from_the_creations_inputs_folder(tmp_path, name, value):
    """Issue 19: a tampered image whose JSON names a private file must not get that file copied into
    creations/inputs (which the GUI serves): only stored inputs are read back."""
    creations_dir, private = tmp_path / "creations", tmp_path / "secret" / "private.png"
    private.parent.mkdir()
    gradient().save(private)
    (creations_dir / "2024-01-01").mkdir(parents=True)
    gradient().save(creations_dir / "2024-01-01" / "00001-a-creation.png")
    if isinstance(value, str):
        value = value.format(near="secret", abs=private)
    stored = creations.store_input(gradient(), creations_dir)
    record = {**make_request(mode="inpaint", init_image=stored, mask=stored).to_dict(), name: value,
              "dreamworld_version": "0"}
    info = PngImagePlugin.PngInfo()
    info.add_itxt("dreamworld", json.dumps(record))
    (tmp_path / "day").mkdir()
    gradient().save(tmp_path / "day" / "x.png", pnginfo=info)
    before = all_files(creations_dir)
    with pytest.raises(CreationError, match=f"'x.png' names the {name} ") as error:
        creations.request_from_file(tmp_path / "day" / "x.png", creations_dir)
    assert "\n" not in str(error.value)
    assert all_files(creations_dir) == before


def test_a_creation_used_as_an_input_is_stored_as_an_input(tmp_path):
    creations_dir = tmp_path / "creations"
    path, _ = save(make_request(), creations_dir)
    stored = creations.store_input(path, creations_dir)
    assert re.fullmatch(r"inputs/[0-9a-f]{16}\.png", stored) and creations.store_input(stored, creations_dir) == stored


def test_a_jpeg_prompt_too_long_for_its_metadata_is_refused_before_generating(tmp_path):
    """check_fits (called before generating) and the save agree, with a margin for the model's name."""
    fits = make_request(prompt="a" * 20000, negative_prompt="", format="jpg")
    creations.check_fits(fits)
    save(fits, tmp_path)
    too_long = make_request(prompt="a" * 21000, negative_prompt="", format="jpg")
    with pytest.raises(RequestError) as error:
        creations.check_fits(too_long)
    assert error.value.field == "prompt" and "too long to embed in a JPEG" in str(error.value)
    creations.check_fits(too_long.replace(format="png"))
    creations.check_fits(too_long.replace(format="webp"))


# ----- saving fails -----------------------------------------------------------------
def _disk_fills_up(monkeypatch):
    """The image writer writes part of the file, then the disk is full."""
    def encoder(image, fmt, parameters, record):
        def write(f):
            f.write(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return write
    monkeypatch.setattr(creations, "encoder", encoder)


def test_a_full_disk_while_saving_is_one_sentence_and_leaves_nothing(tmp_path, monkeypatch):
    creations_dir = tmp_path / "creations"
    _disk_fills_up(monkeypatch)
    with pytest.raises(CreationError, match=r"^cannot save in .*: the disk is full \(free some space") as error:
        save(make_request(), creations_dir)
    assert "\n" not in str(error.value) and all_files(creations_dir) == []
    run = creations.new_run_folder(creations_dir, "a run")
    with pytest.raises(CreationError, match="the disk is full"):
        runs.save_frame(gradient(), make_request(), parameters="p", run_dir=run, index=0,
                        creations_dir=creations_dir, cinema={})
    assert all_files(creations_dir) == []


def test_temp_files_of_dead_writers_are_removed_and_those_of_live_ones_kept(tmp_path):
    import os
    import subprocess
    import sys

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    stale = [".00001-x.tmp.mp4", f".00001-a-run.{dead}-140001.tmp.mp4", f".frame_00002.png.{dead}-7.tmp",
             f".cinema.json.{dead}-7.tmp", ".frame_00003.txt.tmp"]
    kept = [f".00001-a-run.{os.getppid()}-1.tmp.gif", f".frame_00004.png.{os.getpid()}-1.tmp", "frame_00000.png",
            ".hidden", "notes.tmp", "x.tmp.mp4"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    removed = files.remove_stale_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_the_creations_folder_is_checked_before_anything_is_made(tmp_path):
    assert creations.check_folder(tmp_path / "new" / "creations").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(CreationError, match=r"^the creations folder .*file is a file, not a folder"):
        creations.check_folder(tmp_path / "file")
    with pytest.raises(CreationError, match=r"cannot be used: a part of that path is a file, not a folder$"):
        creations.check_folder(tmp_path / "file" / "creations")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["creations", "file", "new"]  # no probe left


# ----- untrusted uploads -------------------------------------------------------------
def test_open_image_returns_loaded_rgb_or_rgba(tmp_path):
    gradient(mode="P").save(tmp_path / "p.png")
    gradient(mode="RGBA").save(tmp_path / "a.png")
    gradient().save(tmp_path / "c.jpg")
    assert creations.open_image(tmp_path / "p.png").mode == "RGB"
    assert creations.open_image(tmp_path / "a.png").mode == "RGBA"
    image = creations.open_image(str(tmp_path / "c.jpg"))
    assert image.mode == "RGB" and image.size == (16, 16)


def test_open_image_applies_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    gradient((16, 8)).save(tmp_path / "phone.jpg", exif=exif)
    assert creations.open_image(tmp_path / "phone.jpg").size == (8, 16)


def test_open_image_rejects_corrupt_and_non_images(tmp_path):
    buffer = io.BytesIO()
    gradient((64, 64)).save(buffer, format="PNG")
    (tmp_path / "x.png").write_bytes(buffer.getvalue()[:-40])
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CreationError, match=r"^cannot read 'x\.png' as an image: the file is damaged"):
        creations.open_image(tmp_path / "x.png")
    with pytest.raises(CreationError, match=r"^cannot read 'notes\.txt' as an image: it is not an image file"):
        creations.open_image(tmp_path / "notes.txt")
    with pytest.raises(CreationError, match=r"^cannot read 'gone\.png' as an image: the file does not exist"):
        creations.open_image(tmp_path / "gone.png")


def test_open_image_rejects_oversized_images(tmp_path):
    Image.new("L", (8200, 1)).save(tmp_path / "wide.png")
    with pytest.raises(CreationError, match=r"'wide\.png' is 8200x1 pixels, larger than the 8192"):
        creations.open_image(tmp_path / "wide.png")


def test_exif_that_is_not_exif_is_never_opened_as_a_file_name(tmp_path):
    secret = tmp_path / "secret.jpg"
    exif = piexif.dump({"Exif": {piexif.ExifIFD.UserComment: piexif.helper.UserComment.dump("secret", encoding="unicode")}})
    gradient().save(secret, exif=exif)
    gradient().save(tmp_path / "crafted.webp", exif=str(secret).encode())
    assert creations.read_creation(tmp_path / "crafted.webp") == {"parameters": None, "request": None}


def test_a_deleted_creation_goes_to_the_trash_and_comes_back(tmp_path):
    from dreamworld import trash
    made = creations.save_creation(Image.new("RGB", (8, 8), "red"), Request(prompt="to delete"),
                                   parameters="to delete", creations_dir=tmp_path)
    text = made.with_suffix(".txt")
    assert creations.list_creations(tmp_path) == [made] and text.is_file()
    entry = trash.delete(made, tmp_path)
    assert not made.exists() and not text.exists() and creations.list_creations(tmp_path) == []
    assert trash.latest(tmp_path) == entry
    assert trash.restore(entry, tmp_path) == [made, text]
    assert creations.list_creations(tmp_path) == [made] and text.read_text() == "to delete"
    assert trash.latest(tmp_path) is None


def test_a_frame_of_a_cinema_run_deletes_the_whole_run(tmp_path):
    from dreamworld import trash
    run = creations.new_run_folder(tmp_path, "a run")
    (run / creations.RUN_SETTINGS).write_text("{}")
    for i in range(2):
        Image.new("RGB", (8, 8)).save(run / creations.frame_name(i))
    entry = trash.delete(run / creations.frame_name(1), tmp_path)
    assert not run.exists()
    (tmp_path / "inputs").mkdir()
    with pytest.raises(CreationError, match="not a creation"):
        trash.delete(tmp_path / "inputs", tmp_path)
    run.mkdir()  # a new folder of that name: restoring must not mix the two
    with pytest.raises(CreationError, match="something else has that name now"):
        trash.restore(entry, tmp_path)
    run.rmdir()
    assert trash.restore(entry, tmp_path) == [run] and len(list(run.glob("frame_*.png"))) == 2
