"""The A1111 HTTP API (issue 16)."""
from dreamworld import schema
from dreamworld.api import models


def test_models_carry_every_schema_field_under_its_a1111_name():
    names = set(models.Txt2Img.model_fields)
    for spec in schema.FIELDS.values():
        if spec.name not in models.SKIPPED:
            assert (spec.api or spec.name) in names
    assert {"cfg_scale", "sampler_name", "n_iter", "batch_size"} <= names
    assert {"init_images", "denoising_strength", "mask", "inpainting_fill"} <= set(models.Img2Img.model_fields)
    assert models.Txt2Img.model_fields["steps"].metadata  # the schema's range


def test_unknown_fields_ignored_and_a1111_fields_mapped():
    body = models.Txt2Img.model_validate({"prompt": "a cat", "cfg_scale": 5, "n_iter": 2, "batch_size": 3,
                                          "sampler_index": "Euler", "nonsense": 1, "seed": -1,
                                          "override_settings": {"sd_model_checkpoint": "dreamworld-tiny"}})
    values = models.to_values(body, "txt2img")
    assert values == {"prompt": "a cat", "guidance_scale": 5, "count": 6, "scheduler": "Euler", "seed": -1,
                      "model": "dreamworld-tiny", "mode": "txt2img"}
    assert models.to_values(models.Txt2Img.model_validate({}), "txt2img") == {"mode": "txt2img"}
    request = schema.validate({**values, "count": 2})
    assert request.guidance_scale == 5 and request.seed == -1


# ----- the routes, on a bare FastAPI app over a Service (the GUI mount is tested over HTTP below) ----------
import base64  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image, PngImagePlugin  # noqa: E402

from dreamworld.api import server  # noqa: E402
from dreamworld.service import Service  # noqa: E402

FAST = {"steps": 2, "width": 64, "height": 64}
A1111_TEXT = ("a castle on a hill\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, "
              "Seed: 1234, Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.9.4")


@pytest.fixture(scope="module")
def service(world):
    service = Service(world)
    yield service
    service.close()


@pytest.fixture
def client(service):
    defaults = dict(service.world.settings.defaults)
    with TestClient(server.standalone(service)) as client:
        yield client
    service.world.settings.defaults.clear()
    service.world.settings.defaults.update(defaults)


def png(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def b64(image: Image.Image, parameters: str | None = None) -> str:
    info = PngImagePlugin.PngInfo()
    if parameters:
        info.add_text("parameters", parameters)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode()


def test_txt2img_answers_a1111_shape_with_the_seed_and_prompt_in_image_and_info(client):
    answer = client.post("/sdapi/v1/txt2img", json={"prompt": "a red fox", "seed": 77, **FAST,
                                                    "cfg_scale": 6, "sampler_name": "Euler", "n_iter": 2})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert set(data) == {"images", "parameters", "info"} and len(data["images"]) == 2
    assert data["parameters"]["prompt"] == "a red fox" and data["parameters"]["cfg_scale"] == 6
    info = json.loads(data["info"])
    assert (info["seed"], info["all_seeds"], info["prompt"]) == (77, [77, 78], "a red fox")
    assert (info["width"], info["height"], info["sampler_name"], info["cfg_scale"], info["steps"]) == \
        (64, 64, "Euler", 6, 2)
    image = png(data["images"][0])
    assert image.format == "PNG" and image.size == (64, 64)
    assert "Seed: 77" in image.info["parameters"] and image.info["parameters"].startswith("a red fox")
    assert info["infotexts"][1] == png(data["images"][1]).info["parameters"]


def test_seed_minus_one_and_a1111_only_fields_are_accepted(client):
    answer = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "seed": -1, **FAST, "batch_size": 1,
                                                    "sampler_index": "Euler a", "override_settings": {},
                                                    "send_images": True, "save_images": False,
                                                    "alwayson_scripts": {}, "no_such_field": [1, 2]})
    assert answer.status_code == 200, answer.text
    assert json.loads(answer.json()["info"])["seed"] >= 0


def test_the_lora_field_takes_name_weight_strings_or_pairs_and_is_recorded(client):
    def made(lora):
        answer = client.post("/sdapi/v1/txt2img", json={"prompt": "a red circle", "seed": 3, **FAST, "lora": lora})
        assert answer.status_code == 200, answer.text
        return answer.json()

    as_text, as_pair, without = made(["outline:0.8"]), made([["outline", 0.8]]), made([])
    assert as_text["images"] == as_pair["images"] != without["images"]
    assert 'Lora hashes: "outline: ' in json.loads(as_text["info"])["infotexts"][0]
    bad = client.post("/sdapi/v1/txt2img", json={**FAST, "lora": ["outline:99"]})
    assert bad.status_code == 422 and bad.json()["field"] == "lora" and "from -10.0 to 10.0" in bad.json()["detail"]


@pytest.mark.parametrize("body, field", [
    ({"steps": 0}, "steps"), ({"cfg_scale": "lots"}, "cfg_scale"), ({"sampler_name": "Nope"}, "sampler_name"),
    ({"width": 65}, "width"), ({"n_iter": 9, "batch_size": 2}, "n_iter"),
    ({"override_settings": {"sd_model_checkpoint": "no-such-model"}}, None)])
def test_invalid_values_answer_422_naming_the_field(client, body, field):
    answer = client.post("/sdapi/v1/txt2img", json={**FAST, **body})
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and "Traceback" not in detail
    assert field is None or (answer.json()["field"], detail.split()[0].rstrip(":")) == (field, field)


def test_img2img_and_inpaint_take_base64_images(client):
    start = b64(Image.new("RGB", (64, 64), (200, 30, 30)))
    answer = client.post("/sdapi/v1/img2img", json={"prompt": "p", "seed": 5, **FAST, "init_images": [start],
                                                    "denoising_strength": 0.5})
    assert answer.status_code == 200, answer.text
    info = json.loads(answer.json()["info"])
    assert info["denoising_strength"] == 0.5 and answer.json()["parameters"]["init_images"] is None
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    answer = client.post("/sdapi/v1/img2img", json={"prompt": "p", "seed": 5, **FAST, "init_images": [start],
                                                    "mask": b64(mask), "mask_blur": 2, "inpainting_fill": 1})
    assert answer.status_code == 200, answer.text
    out = png(answer.json()["images"][0])
    assert "Mask blur: 2" in out.info["parameters"]
    assert out.convert("RGB").getpixel((2, 2))[0] > 120  # outside the mask: the red start kept
    bad = client.post("/sdapi/v1/img2img", json={**FAST, "init_images": ["not an image"]})
    assert bad.status_code == 422 and bad.json()["field"] == "init_images"
    none = client.post("/sdapi/v1/img2img", json={**FAST})
    assert none.status_code == 422 and none.json()["field"] == "init_images"


def test_progress_while_running_and_idle_and_interrupt_stops_the_job(client):
    idle = client.get("/sdapi/v1/progress").json()
    assert idle == {"progress": 0.0, "eta_relative": 0.0, "state": idle["state"], "current_image": None,
                    "textinfo": None} and idle["state"]["job_count"] == 0
    answers = []
    worker = threading.Thread(target=lambda: answers.append(client.post(
        "/sdapi/v1/txt2img", json={"prompt": "long", "seed": 1, "steps": 40, "width": 64, "height": 64,
                                   "n_iter": 16})))
    worker.start()
    deadline = time.monotonic() + 120
    while (seen := client.get("/sdapi/v1/progress").json())["current_image"] is None:
        assert time.monotonic() < deadline and worker.is_alive()
        time.sleep(0.05)
    assert 0 < seen["progress"] < 1 and seen["eta_relative"] >= 0 and seen["textinfo"].startswith("image ")
    assert seen["state"]["job_count"] >= 1 and seen["state"]["sampling_steps"] == 40
    assert png(seen["current_image"]).size == (64, 64)
    assert client.post("/sdapi/v1/interrupt").json() == {}
    worker.join(60)
    info = json.loads(answers[0].json()["info"])
    assert answers[0].status_code == 200 and info["interrupted"] and 1 <= len(info["all_seeds"]) < 16


def test_options_switch_the_default_model(client, service):
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "dreamworld-tiny"
    titles = [m["title"] for m in client.get("/sdapi/v1/sd-models").json()]
    copy = next(t for t in titles if t.startswith("tiny-copy ["))
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": copy, "unknown_option": 1}).json() is None
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "tiny-copy"
    info = json.loads(client.post("/sdapi/v1/txt2img", json={"prompt": "m", **FAST}).json()["info"])
    assert info["sd_model_name"] == "tiny-copy"
    bad = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "no-such-model"})
    assert bad.status_code == 422 and "no-such-model" in bad.json()["detail"]
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "tiny-copy"


def test_lists_name_our_models_and_samplers(client):
    models_ = client.get("/sdapi/v1/sd-models").json()
    assert {"dreamworld-tiny", "tiny-copy"} <= {m["model_name"] for m in models_}
    assert set(models_[0]) == {"title", "model_name", "hash", "sha256", "filename", "config"}
    samplers = [s["name"] for s in client.get("/sdapi/v1/samplers").json()]
    assert samplers == list(schema.FIELDS["scheduler"].choices)
    assert client.get("/sdapi/v1/schedulers").json()[0]["name"] == "automatic"
    assert client.get("/sdapi/v1/embeddings").json() == {"loaded": {"dwsun": {
        "step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": 128, "vectors": 4}}, "skipped": {}}
    assert "outline" in [lora["name"] for lora in client.get("/sdapi/v1/loras").json()]
    upscalers = client.get("/sdapi/v1/upscalers").json()
    assert [u["name"] for u in upscalers][:3] == ["None", "Lanczos", "dreamworld-2x"]
    assert upscalers[2]["scale"] == 2 and upscalers[2]["model_path"].endswith("dreamworld-2x.safetensors")
    assert client.post("/sdapi/v1/refresh-checkpoints").status_code == 200


def test_png_info_reads_ours_and_a1111_text(client):
    ours = client.post("/sdapi/v1/txt2img", json={"prompt": "owl", "seed": 9, **FAST}).json()["images"][0]
    read = client.post("/sdapi/v1/png-info", json={"image": ours}).json()
    assert read["parameters"]["Prompt"] == "owl" and read["parameters"]["Seed"] == "9"
    assert "dreamworld" in read["items"] and read["info"].startswith("owl")
    theirs = client.post("/sdapi/v1/png-info", json={"image": b64(Image.new("RGB", (8, 8)), A1111_TEXT)}).json()
    assert theirs["info"] == A1111_TEXT
    assert theirs["parameters"]["Negative prompt"] == "blurry" and theirs["parameters"]["Size-2"] == "768"
    assert theirs["parameters"]["Sampler"] == "DPM++ 2M Karras"
    plain = client.post("/sdapi/v1/png-info", json={"image": b64(Image.new("RGB", (8, 8)))}).json()
    assert plain == {"info": "", "items": {}, "parameters": {}}
    assert client.post("/sdapi/v1/png-info", json={"image": "@@@"}).status_code == 422


def test_extra_single_image_upscales_with_lanczos_or_a_model(client):
    answer = client.post("/sdapi/v1/extra-single-image",
                         json={"image": b64(Image.new("RGB", (32, 16))), "upscaling_resize": 2})
    assert answer.status_code == 200 and png(answer.json()["image"]).size == (64, 32)
    picture = Image.new("RGB", (32, 16), (20, 20, 200))
    picture.paste((230, 200, 20), (8, 4, 20, 12))
    model = client.post("/sdapi/v1/extra-single-image", json={"image": b64(picture), "upscaler_1": "dreamworld-2x",
                                                              "resize_mode": 1, "upscaling_resize_w": 64,
                                                              "upscaling_resize_h": 32}).json()
    lanczos = picture.resize((64, 32), Image.LANCZOS)
    assert png(model["image"]).size == (64, 32) and png(model["image"]).tobytes() != lanczos.tobytes()
    assert model["html_info"] == "Postprocess upscale by: 2, Postprocess upscaler: dreamworld-2x"
    bad = client.post("/sdapi/v1/extra-single-image", json={"image": b64(Image.new("RGB", (8, 8))),
                                                             "upscaler_1": "R-ESRGAN 4x+"})
    assert bad.status_code == 422 and bad.json()["field"] == "upscaler_1"


def test_txt2img_hires_fix_only_with_enable_hr(client):
    hires = {"hr_scale": 2, "hr_second_pass_steps": 2, "hr_upscaler": "Lanczos", "denoising_strength": 0.5}
    off = client.post("/sdapi/v1/txt2img", json={"prompt": "owl", "seed": 3, **FAST, **hires}).json()
    assert png(off["images"][0]).size == (64, 64) and "Hires" not in json.loads(off["info"])["infotexts"][0]
    on = client.post("/sdapi/v1/txt2img", json={"prompt": "owl", "seed": 3, **FAST, **hires, "enable_hr": True})
    assert png(on.json()["images"][0]).size == (128, 128)
    assert ("Denoising strength: 0.5, Hires upscale: 2, Hires steps: 2, Hires upscaler: Lanczos"
            in json.loads(on.json()["info"])["infotexts"][0])


def test_served_with_the_gui_behind_api_auth_and_ten_concurrent_clients_each_get_their_own(tmp_path):
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from tests.test_serving import get, serve

    with serve(tmp_path, "--api", "--api-auth", "ann:secret", "--creations-dir", str(tmp_path / "out")) as (url, _):
        assert get(url)[0] == 200 and get(url + "docs")[0] == 200  # the GUI and the API's page
        assert b"/sdapi/v1/txt2img" in get(url + "openapi.json")[1]
        assert get(url + "sdapi/v1/sd-models")[0] == 401
        wrong = {"Authorization": "Basic " + base64.b64encode(b"ann:nope").decode()}
        assert get(url + "sdapi/v1/sd-models", wrong)[0] == 401
        auth = {"Authorization": "Basic " + base64.b64encode(b"ann:secret").decode()}
        assert get(url + "sdapi/v1/sd-models", auth)[0] == 200

        def txt2img(seed):
            body = json.dumps({"prompt": f"client {seed}", "seed": seed, **FAST}).encode()
            request = urllib.request.Request(url + "sdapi/v1/txt2img", body, method="POST",
                                             headers={**auth, "Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=300) as r:
                return json.loads(r.read())

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(txt2img, range(100, 110)))
    for seed, answer in zip(range(100, 110), answers):
        info, text = json.loads(answer["info"]), png(answer["images"][0]).info["parameters"]
        assert (info["seed"], info["prompt"]) == (seed, f"client {seed}")
        assert text.startswith(f"client {seed}\n") and f"Seed: {seed}," in text


def test_sessions_and_jobs_over_http_each_user_sees_and_stops_only_their_own(service):
    users = [("ann", "a-pass"), ("bob", "b-pass")]
    with TestClient(server.standalone(service, users)) as client:
        ann, bob = (dict(auth=pair) for pair in users)
        made = client.post("/dreamworld/v1/sessions", json={"project": "../posters", "fields": {**FAST}}, **ann)
        session = made.json()["session"]
        assert client.post("/dreamworld/v1/sessions", json={"project": "x", "bogus": 1}, **ann).status_code == 422
        assert client.post(f"/dreamworld/v1/sessions/{session}/jobs", json={"count": 1}, **bob).status_code == 404
        slow = client.post(f"/dreamworld/v1/sessions/{session}/jobs",
                           json={"seeds": [5, 6], "fields": {"steps": 30}}, **ann).json()["job"]
        quick = client.post(f"/dreamworld/v1/sessions/{session}/jobs", json={"seeds": [9]}, **ann).json()["job"]
        assert [j["id"] for j in client.get("/dreamworld/v1/jobs", **ann).json()] == [slow, quick]
        assert client.get("/dreamworld/v1/jobs", **bob).json() == []
        assert client.get(f"/dreamworld/v1/jobs/{slow}", **bob).status_code == 404
        refused = client.post(f"/dreamworld/v1/jobs/{slow}/cancel", **bob)
        assert refused.status_code == 404 and "no job" in refused.json()["detail"]
        client.post("/sdapi/v1/interrupt", **bob)  # bob's interrupt leaves ann's job alone
        assert client.post(f"/dreamworld/v1/jobs/{slow}/cancel", **ann).json()["status"] in ("cancelled", "running")
        deadline = time.monotonic() + 120
        while (job := client.get(f"/dreamworld/v1/jobs/{quick}", **ann).json())["status"] != "done":
            assert time.monotonic() < deadline and job["status"] in ("pending", "running")
            time.sleep(0.2)
        assert client.get(f"/dreamworld/v1/jobs/{slow}", **ann).json()["status"] in ("cancelled", "interrupted")
    [file] = job["files"]
    assert file["seed"] == 9 and "Seed: 9," in file["parameters"]
    assert Path(file["path"]).parent.parent == service.world.creations_dir / "ann" / "posters"


def square(left: int = 8) -> Image.Image:
    picture = Image.new("RGB", (64, 64), (0, 0, 0))
    picture.paste((255, 255, 255), (left, 16, left + 24, 40))
    return picture


def test_controlnet_units_in_the_a1111_extensions_shape_with_base64_images(client):
    def made(**unit):
        a1111 = {"enabled": True, "module": "canny", "model": "control_dreamworld_edges [0123abcd]",
                 "weight": 1.0, "image": b64(square()), "guidance_start": 0.0, "guidance_end": 1.0,
                 "threshold_a": -1, "threshold_b": -1, "processor_res": 512, "resize_mode": "Just Resize",
                 "control_mode": "Balanced", "pixel_perfect": False, **unit}
        answer = client.post("/sdapi/v1/txt2img", json={"prompt": "a red circle on a blue background", "seed": 4,
                                                        **FAST, "alwayson_scripts": {"controlnet": {"args": [a1111]}}})
        assert answer.status_code == 200, answer.text
        pixels = png(answer.json()["images"][0]).convert("RGB").tobytes()
        return pixels, json.loads(answer.json()["info"])["infotexts"][0]

    guided, text = made()
    off, _ = made(weight=0)
    unused, plain_text = made(enabled=False)
    moved, _ = made(image=b64(square(left=32)))
    assert 'ControlNet 0: "Module: canny, Model: control_dreamworld_edges [' in text
    assert "ControlNet" not in plain_text
    assert guided != off == unused and moved != guided


@pytest.mark.parametrize("unit", [{"model": "control_dreamworld_edges", "image": "/etc/hostname"},
                                  {"model": "control_dreamworld_edges", "image": "creations/00001.png"}])
def test_a_unit_image_is_never_a_path_on_the_server(client, unit):
    answer = client.post("/sdapi/v1/txt2img", json={"prompt": "x", **FAST, "controlnet": [unit]})
    assert answer.status_code == 422 and answer.json()["field"] == "controlnet", answer.text
    assert "image" in answer.json()["detail"]


def test_the_jobs_api_takes_pictures_as_base64_never_as_server_paths(service, tmp_path):
    secret = tmp_path / "secret.png"
    square().save(secret)
    with TestClient(server.standalone(service)) as client:
        session = client.post("/dreamworld/v1/sessions", json={"project": "p", "mode": "img2img",
                                                               "fields": {**FAST}}).json()["session"]
        jobs = f"/dreamworld/v1/sessions/{session}/jobs"
        by_path = client.post(jobs, json={"fields": {"init_image": str(secret)}})
        assert by_path.status_code == 422 and by_path.json()["field"] == "init_images", by_path.text  # A1111 names
        in_session = client.post("/dreamworld/v1/sessions", json={"project": "p", "mode": "img2img",
                                                                  "fields": {"init_image": b64(square())}})
        assert in_session.status_code == 422 and "each job" in in_session.json()["detail"]
        sent = client.post(jobs, json={"fields": {"init_image": b64(square()), "strength": 0.5}})
        assert sent.status_code == 200, sent.text
