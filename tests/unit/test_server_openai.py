"""The OpenAI-compatible `POST /v1/images/generations` of `latentdiff serve`, on a tiny random pipeline."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from helpers.server_client import server_client


@pytest.fixture(scope="module")
def client(tiny_pipeline_dir):
    with server_client(tiny_pipeline_dir) as (client, _):
        yield client


def test_b64_json_images_with_infotext(client):
    response = client.post("/v1/images/generations", json={"prompt": "a red circle", "n": 2, "size": "32x16",
                                                            "response_format": "b64_json", "model": "dall-e-3"})
    assert response.status_code == 200, response.text
    payload = response.json()
    assert isinstance(payload["created"], int) and len(payload["data"]) == 2
    images = [Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))) for item in payload["data"]]
    assert all(im.size == (32, 16) for im in images)
    infotexts = [im.info["parameters"] for im in images]
    assert infotexts[0].startswith("a red circle\n") and "Size: 32x16" in infotexts[0]
    seeds = [int(text.split("Seed: ")[1].split(",")[0]) for text in infotexts]
    assert seeds[1] == seeds[0] + 1


def test_default_size_and_url_format(client):
    response = client.post("/v1/images/generations", json={"prompt": "a blue square", "response_format": "url"})
    assert response.status_code == 200, response.text
    url = response.json()["data"][0]["url"]
    assert url.startswith("http://127.0.0.1:7860/api/jobs/")
    image_response = client.get(url)
    assert image_response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(image_response.content))
    default = client.get("/api/info").json()["defaults"]
    assert image.size == (default["width"], default["height"]) and "parameters" in image.info


@pytest.mark.parametrize("body, param", [
    ({"n": 1}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "x", "n": 0}, "n"),
    ({"prompt": "x", "n": 17}, "n"),
    ({"prompt": "x", "n": "two"}, "n"),
    ({"prompt": "x", "size": "big"}, "size"),
    ({"prompt": "x", "size": "1024x4096"}, "size"),
    ({"prompt": "x", "size": "30x30"}, "size"),
    ({"prompt": "x", "response_format": "jpeg"}, "response_format"),
    ({"prompt": ["a", "b"]}, "prompt"),
])
def test_bad_input_is_a_400_in_openai_error_shape(client, body, param):
    response = client.post("/v1/images/generations", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and param in error["message"]


def test_malformed_json(client):
    response = client.post("/v1/images/generations", content=b"prompt=x", headers={"content-type": "application/json"})
    assert response.status_code == 400 and "JSON" in response.json()["error"]["message"]
