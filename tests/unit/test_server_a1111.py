"""The AUTOMATIC1111-compatible API (/sdapi/v1) of `latentdiff serve`, on a tiny random pipeline."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image

from helpers.server_client import server_client

FAST = {"steps": 2, "width": 32, "height": 32}  # a request that takes a fraction of a second


@pytest.fixture(scope="module")
def server(tiny_pipeline_dir):
    with server_client(tiny_pipeline_dir) as (client, queue):
        yield client, queue


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def test_txt2img_returns_pngs_with_the_same_infotext_as_generate(server, tiny_pipeline_dir):
    from latentdiff.pipeline import GenerationRequest, TextToImage

    client, _ = server
    body = {"prompt": "a red circle", "negative_prompt": "blurry", "seed": 11, "steps": 3, "cfg_scale": 5,
            "width": 32, "height": 48, "batch_size": 2, "n_iter": 2, "sampler_name": "Euler a"}
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    info = json.loads(payload["info"])  # A1111 sends `info` as a JSON string
    images = [decode(b64) for b64 in payload["images"]]
    assert len(images) == 4 and all(im.size == (32, 48) and im.format == "PNG" for im in images)
    assert info["all_seeds"] == [11, 12, 13, 14]
    assert info["sampler_name"] == "Euler a" and info["cfg_scale"] == 5 and info["steps"] == 3
    assert payload["parameters"]["prompt"] == "a red circle" and payload["parameters"]["seed"] == 11
    assert [im.info["parameters"] for im in images] == info["infotexts"]

    # `latentdiff generate`'s pipeline, same settings: the same infotext and the same pixels
    reference = TextToImage.load(str(tiny_pipeline_dir)).generate(GenerationRequest(
        ["a red circle"], negative_prompt="blurry", num_images=4, seed=11, steps=3, guidance=5.0,
        scheduler="euler-a", width=32, height=48))
    assert [r.infotext for r in reference] == info["infotexts"]
    assert "Sampler: Euler a" in info["infotexts"][0] and "Seed: 12" in info["infotexts"][1]
    for ours, theirs in zip(images, reference):
        diff = np.abs(np.asarray(ours, dtype=int) - np.asarray(theirs.image, dtype=int))
        assert diff.max() <= 2


def test_defaults_fill_what_a_request_leaves_out(server):
    client, _ = server
    options = client.get("/sdapi/v1/options").json()
    defaults = options["latentdiff_defaults"]
    payload = client.post("/sdapi/v1/txt2img", json={"prompt": "a blue square", "steps": 2}).json()
    info = json.loads(payload["info"])
    assert (info["width"], info["height"]) == (defaults["width"], defaults["height"])
    assert info["sampler_name"] == defaults["sampler_name"] and info["cfg_scale"] == defaults["cfg_scale"]
    assert decode(payload["images"][0]).size == (defaults["width"], defaults["height"])
    assert 0 <= info["seed"] < 2**32  # seed -1 became a concrete, reported seed


def test_images_differ_by_prompt_and_repeat_by_seed(server):
    client, _ = server
    def pixels(prompt, seed):
        payload = client.post("/sdapi/v1/txt2img", json={"prompt": prompt, "seed": seed, **FAST}).json()
        return np.asarray(decode(payload["images"][0]), dtype=int)
    a, b, a_again = pixels("a red circle", 3), pixels("a green triangle", 3), pixels("a red circle", 3)
    assert np.abs(a - b).max() > 0
    assert np.abs(a - a_again).max() <= 2


def test_send_images_false_returns_info_only(server):
    client, _ = server
    payload = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "send_images": False, **FAST}).json()
    assert payload["images"] == [] and len(json.loads(payload["info"])["infotexts"]) == 1


def test_samplers_models_and_options(server):
    import importlib.util

    from latentdiff.diffusion.schedulers import SCHEDULERS

    client, _ = server
    samplers = client.get("/sdapi/v1/samplers").json()
    listed = {s["name"] for s in samplers}
    assert {"Euler", "Euler a", "DDIM", "DPM++ 2M", "DPM++ 2M Karras"} <= listed
    assert listed <= {spec.a1111_name for spec in SCHEDULERS.values()}
    assert ("LMS" in listed) == (importlib.util.find_spec("scipy") is not None)  # listed only when usable
    assert all(set(s) == {"name", "aliases", "options"} for s in samplers)
    for sampler in samplers:  # every sampler listed is accepted by txt2img under that name
        response = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "sampler_name": sampler["name"], **FAST})
        assert response.status_code == 200, (sampler, response.text)
    models = client.get("/sdapi/v1/sd-models").json()
    assert len(models) == 1 and models[0]["model_name"] == "tiny" and len(models[0]["hash"]) == 10
    assert "/" not in models[0]["filename"]  # no server path is revealed
    options = client.get("/sdapi/v1/options").json()
    assert options["sd_model_checkpoint"] == models[0]["title"] and options["samples_format"] == "png"
    # txt2img takes A1111's sampler names, in sampler_name or the older sampler_index
    response = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "sampler_name": "DPM++ 2M Karras", **FAST})
    assert "Sampler: DPM++ 2M Karras" in json.loads(response.json()["info"])["infotexts"][0]
    response = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "sampler_index": "DDIM", **FAST})
    assert json.loads(response.json()["info"])["sampler_name"] == "DDIM"


def test_progress_preview_and_interrupt(server):
    client, queue = server
    idle = client.get("/sdapi/v1/progress").json()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0 and idle["current_image"] is None

    result = {}
    worker = threading.Thread(target=lambda: result.update(
        response=client.post("/sdapi/v1/txt2img", json={"prompt": "slow", "steps": 150, "width": 32, "height": 32})))
    worker.start()
    deadline = time.monotonic() + 60
    progress = idle
    while time.monotonic() < deadline:
        progress = client.get("/sdapi/v1/progress").json()
        if progress["state"]["sampling_step"] >= 2 and progress["current_image"]:
            break
        time.sleep(0.05)
    assert 0 < progress["progress"] < 1 and progress["state"]["sampling_steps"] == 150
    preview = decode(progress["current_image"])
    assert preview.format == "PNG" and min(preview.size) >= 16

    assert client.post("/sdapi/v1/interrupt").status_code == 200
    worker.join(60)
    response = result["response"]
    assert response.status_code == 200
    info = json.loads(response.json()["info"])
    assert info["interrupted"] is True and response.json()["images"] == []
    job = queue.get(info["job_id"])
    assert job.status == "cancelled" and job.step < 150
    # the server keeps serving after an interrupt
    assert client.post("/sdapi/v1/txt2img", json={"prompt": "after", **FAST}).status_code == 200


@pytest.mark.parametrize("body, field", [
    ({"prompt": "x", "steps": 0}, "steps"),
    ({"prompt": "x", "steps": 100000}, "steps"),
    ({"prompt": "x", "steps": "many"}, "steps"),
    ({"prompt": "x", "steps": 2.5}, "steps"),
    ({"prompt": "x", "cfg_scale": -1}, "cfg_scale"),
    ({"prompt": "x", "cfg_scale": "high"}, "cfg_scale"),
    ({"prompt": "x", "width": 33}, "width"),
    ({"prompt": "x", "width": 4096}, "width"),
    ({"prompt": "x", "height": 0}, "height"),
    ({"prompt": "x", "batch_size": 0}, "batch_size"),
    ({"prompt": "x", "batch_size": 8, "n_iter": 8}, "batch_size"),
    ({"prompt": "x", "seed": -2}, "seed"),
    ({"prompt": "x", "seed": 2**40}, "seed"),
    ({"prompt": 42}, "prompt"),
    ({"prompt": "x" * 5000}, "prompt"),
    ({"prompt": "x", "sampler_name": "Euler z"}, "sampler_name"),
    ({"prompt": "x", "sampler_index": "k_magic"}, "sampler_index"),
])
def test_bad_input_is_a_4xx_naming_the_field(server, body, field):
    client, queue = server
    before = queue.snapshot()["batches_run"]
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["field"] == field and field in response.json()["detail"]
    assert queue.snapshot()["batches_run"] == before  # nothing reached the model


def test_malformed_json_and_oversized_bodies(server):
    client, _ = server
    response = client.post("/sdapi/v1/txt2img", content=b'{"prompt": "x",', headers={"content-type": "application/json"})
    assert response.status_code == 400 and "JSON" in response.json()["detail"]
    response = client.post("/sdapi/v1/txt2img", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert response.status_code == 422
    huge = json.dumps({"prompt": "x", "padding": "y" * 400_000}).encode()
    response = client.post("/sdapi/v1/txt2img", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "limit" in response.json()["detail"]
    # and the server still answers a good request
    assert client.post("/sdapi/v1/txt2img", json={"prompt": "fine", **FAST}).status_code == 200


def test_unknown_fields_from_real_clients_are_ignored(server):
    client, _ = server
    # what webuiapi and similar clients send alongside the fields we use
    body = {"prompt": "x", "restore_faces": False, "tiling": False, "styles": [], "subseed": -1,
            "override_settings": {"sd_model_checkpoint": "whatever"}, "script_args": [], "eta": 0, **FAST}
    assert client.post("/sdapi/v1/txt2img", json=body).status_code == 200


def test_txt2img_refuses_a_size_the_model_cannot_make_with_422_and_makes_the_smallest(server):
    """8x8 at cfg_scale 1 was a 500; the tiny model's smallest image side is 16."""
    client, _ = server
    body = {"prompt": "red", "steps": 1, "cfg_scale": 1, "seed": 1}
    response = client.post("/sdapi/v1/txt2img", json={**body, "width": 8, "height": 8})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "width" and "at least 16 pixels" in response.json()["detail"]
    assert client.get("/api/info").json()["limits"]["min_image_side"] == 16  # the page's input minimum
    response = client.post("/sdapi/v1/txt2img", json={**body, "width": 16, "height": 16})
    assert response.status_code == 200, response.text
    assert decode(response.json()["images"][0]).size == (16, 16)
