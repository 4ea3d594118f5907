"""One request cannot hold the server for hours. A per-request compute budget
(pixels x U-Net evaluations x images, 413 past it), a time limit per running job (504 after it), and
sizes a request leaves out taken from the model (its native size), not a fixed 512."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from helpers.server_client import server_client


def native_size(pipeline_dir) -> int:
    """The pipeline's own size: unet sample_size x the VAE's downsampling factor."""
    unet = json.loads((pipeline_dir / "unet" / "config.json").read_text())
    vae = json.loads((pipeline_dir / "vae" / "config.json").read_text())
    return unet["sample_size"] * 2 ** (len(vae["block_out_channels"]) - 1)


@pytest.fixture(scope="module")
def server(tiny_pipeline_dir):
    with server_client(tiny_pipeline_dir) as (client, queue):
        yield client, queue


def test_a_request_past_the_default_budget_gets_413_and_never_runs(server):
    client, queue = server
    made = queue.images_made
    # the case at the model's own size: 16 images of 150 guided Heun steps (598 U-Net evaluations each)
    body = {"prompt": "x", "steps": 150, "sampler_name": "Heun", "cfg_scale": 7, "batch_size": 16}
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 413, response.text
    detail = response.json()["detail"]
    assert "--max-request-cost" in detail and "598 U-Net evaluations" in detail
    assert "at most 2 images (batch_size)" in detail
    response = client.post("/v1/images/generations", json={"prompt": "x", "n": 16, "size": "1024x1024"})
    assert response.status_code == 413 and "--max-request-cost" in response.json()["error"]["message"]
    assert queue.images_made == made and queue.snapshot()["waiting"] == 0


def test_the_default_budget_lets_requests_at_the_native_size_through(server, tiny_pipeline_dir):
    from latentdiff.server.job_types import JobParams

    client, _ = server
    state = client.app.state.latentdiff
    side = native_size(tiny_pipeline_dir)
    biggest_usual = JobParams(prompt="x", negative_prompt="", seed=0, steps=50, guidance=7.5, scheduler="euler",
                              width=side, height=side, num_images=16)
    assert state.engine.cost(biggest_usual).total <= state.max_request_cost
    response = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 2, "batch_size": 2})
    assert response.status_code == 200, response.text


def test_the_default_budget_refuses_sides_past_four_times_the_native_one(server, tiny_pipeline_dir):
    # the budget counts U-Net work, linear in the pixels; memory grows with their square (a 1024x1024 request to
    # a 64 px model reached 19.5 GB), so under the default budget a side is at most 4x the model's own
    client, queue = server
    side = native_size(tiny_pipeline_dir)
    made = queue.images_made
    response = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 1, "cfg_scale": 1,
                                                      "width": 4 * side + 8, "height": side})
    assert response.status_code == 413, response.text
    assert f"{4 * side}x{4 * side}" in response.json()["detail"] and "--max-request-cost" in response.json()["detail"]
    assert queue.images_made == made
    assert client.get("/api/info").json()["limits"]["max_image_side"] == 4 * side
    response = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 1, "cfg_scale": 1,
                                                      "width": 4 * side, "height": 4 * side})
    assert response.status_code == 200, response.text


def test_heun_and_guidance_each_double_the_cost(tiny_pipeline_dir):
    side, steps, images = 32, 4, 2
    euler_guided = side * side * steps * 2 * images / 1e6
    with server_client(tiny_pipeline_dir, max_request_cost=euler_guided) as (client, _):
        def status(sampler, cfg_scale):
            body = {"prompt": "x", "steps": steps, "sampler_name": sampler, "cfg_scale": cfg_scale,
                    "batch_size": images, "width": side, "height": side}
            return client.post("/sdapi/v1/txt2img", json=body).status_code
        assert status("Euler", 7) == 200  # exactly the budget
        assert status("Heun", 1) == 200  # 2 * steps - 1 evaluations, unguided
        assert status("Heun", 7) == 413  # twice per step and twice per evaluation
        response = client.post("/api/jobs", json={"prompt": "x", "steps": steps, "num_images": images + 1,
                                                  "width": side, "height": side, "guidance": 7, "scheduler": "euler"})
        assert response.status_code == 413
        assert f"at most {images} images (num_images)" in response.json()["detail"]


def test_a_job_past_the_time_limit_is_stopped_with_a_clear_error(tiny_pipeline_dir):
    with server_client(tiny_pipeline_dir, max_job_seconds=1e-6) as (client, queue):
        response = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 50, "width": 32, "height": 32})
        assert response.status_code == 504 and "time limit" in response.json()["detail"]
        assert "--max-job-seconds" in response.json()["detail"]
        response = client.post("/v1/images/generations", json={"prompt": "x", "size": "32x32"})
        assert response.status_code == 504 and "time limit" in response.json()["error"]["message"]
        assert queue.snapshot()["running"] == []


@pytest.mark.slow  # 6 s: generates at the model's native size
def test_sizes_left_out_are_the_models_native_size(server, tiny_pipeline_dir):
    client, _ = server
    side = native_size(tiny_pipeline_dir)
    assert side != 512
    payload = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 2}).json()
    image = Image.open(io.BytesIO(base64.b64decode(payload["images"][0])))
    assert image.size == (side, side)
    data = client.post("/v1/images/generations", json={"prompt": "x"}).json()["data"]
    assert Image.open(io.BytesIO(base64.b64decode(data[0]["b64_json"]))).size == (side, side)


def test_serve_refuses_a_budget_or_time_limit_that_is_not_positive(tiny_pipeline_dir, capsys):
    from latentdiff.stages.serve import main

    assert main(["--model", str(tiny_pipeline_dir), "--max-request-cost", "0"]) == 2
    assert "--max-request-cost" in capsys.readouterr().err
    assert main(["--model", str(tiny_pipeline_dir), "--max-job-seconds", "-1"]) == 2
    assert "--max-job-seconds" in capsys.readouterr().err
