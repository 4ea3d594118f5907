"""A live `latentdiff serve` on 127.0.0.1 under load: 8 concurrent clients x 10 requests each through
the A1111 API. Every request is answered with its own image and seed, none is lost, and the worker
batched concurrent requests (fewer model calls than requests)."""

from __future__ import annotations

import base64
import io
import json
import threading

import httpx
import pytest
from PIL import Image

from helpers.live_server import live_server

CLIENTS = 8
REQUESTS_PER_CLIENT = 10


@pytest.mark.slow
def test_eight_clients_times_ten_requests_all_answered(tiny_pipeline_dir):
    with live_server(tiny_pipeline_dir, "--max-queue", str(CLIENTS * 2)) as server:
        answers: dict[tuple[int, int], dict] = {}
        errors: list[str] = []
        lock = threading.Lock()

        def client(c: int) -> None:
            with httpx.Client(base_url=server.url, timeout=120) as http:
                for r in range(REQUESTS_PER_CLIENT):
                    seed = 1000 * c + r
                    body = {"prompt": f"client {c} request {r}", "seed": seed, "steps": 3, "width": 32,
                            "height": 32, "sampler_name": "Euler"}
                    try:
                        response = http.post("/sdapi/v1/txt2img", json=body)
                    except httpx.HTTPError as err:
                        with lock:
                            errors.append(f"{c}/{r}: {err!r}")
                        continue
                    with lock:
                        if response.status_code != 200:
                            errors.append(f"{c}/{r}: {response.status_code} {response.text[:200]}")
                        else:
                            answers[(c, r)] = response.json()

        threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert not errors, errors[:5]
        assert len(answers) == CLIENTS * REQUESTS_PER_CLIENT

        job_ids = set()
        for (c, r), payload in answers.items():
            info = json.loads(payload["info"])
            assert info["all_seeds"] == [1000 * c + r] and info["prompt"] == f"client {c} request {r}"
            image = Image.open(io.BytesIO(base64.b64decode(payload["images"][0])))
            assert image.size == (32, 32) and f"Seed: {1000 * c + r}," in image.info["parameters"]
            job_ids.add(info["job_id"])
        assert len(job_ids) == CLIENTS * REQUESTS_PER_CLIENT

        queue = httpx.get(server.url + "/api/info").json()["queue"]
        assert queue["images_made"] == CLIENTS * REQUESTS_PER_CLIENT and queue["waiting"] == 0
        assert queue["batches_run"] < CLIENTS * REQUESTS_PER_CLIENT  # concurrent requests shared model calls
