"""Jobs in `latentdiff serve`: the page's API (/api), batching, the bounded queue, cancel, progress
events, image downloads, and a model failure that must not take the server down."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
from PIL import Image

from helpers.server_client import server_client

FAST = {"steps": 2, "width": 32, "height": 32}
SLOW = {"steps": 150, "width": 32, "height": 32}  # keeps the worker busy until cancelled


@pytest.fixture(scope="module")
def server(tiny_pipeline_dir):
    with server_client(tiny_pipeline_dir, max_queue=3, max_batch=4) as (client, queue):
        yield client, queue


def wait_for(client, job_id: str, predicate, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if predicate(job):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached the state wanted; last: {job}")


def finished(job: dict) -> bool:
    return job["status"] in ("done", "failed", "cancelled")


def submit(client, **body) -> dict:
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()


def test_a_job_runs_and_its_images_download_with_infotext(server):
    client, _ = server
    job = submit(client, prompt="a red circle", seed=5, num_images=2, **FAST)
    assert job["status"] in ("queued", "running") and job["id"]
    job = wait_for(client, job["id"], finished)
    assert job["status"] == "done" and [im["seed"] for im in job["images"]] == [5, 6]
    response = client.get(job["images"][1]["url"])
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (32, 32) and image.info["parameters"] == job["images"][1]["infotext"]
    download = client.get(job["images"][1]["url"] + "?download=1")
    assert download.headers["content-disposition"] == 'attachment; filename="latentdiff-6.png"'
    assert download.content == response.content
    assert client.get(f"/api/jobs/{job['id']}/images/2").status_code == 404
    assert client.get("/api/jobs/no-such-job").status_code == 404
    assert client.get("/api/jobs/no-such-job/images/0").status_code == 404


def test_events_stream_progress_with_previews_then_the_result(server):
    client, _ = server
    job = submit(client, prompt="a blue square", steps=6, width=32, height=32)
    events = []
    with client.stream("GET", f"/api/jobs/{job['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: "):])))
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"progress"}
    steps = [data["step"] for name, data in events if name == "progress"]
    assert steps == sorted(steps) and max(steps) >= 1
    previews = [data["preview"] for name, data in events if name == "progress" and "preview" in data]
    assert previews and previews[-1].startswith("data:image/png;base64,")
    assert len(events[-1][1]["images"]) == 1


def test_compatible_jobs_are_batched_and_keep_their_own_seeds(server):
    client, queue = server
    blocker = submit(client, prompt="busy", **SLOW)
    wait_for(client, blocker["id"], lambda j: j["status"] == "running")
    batches_before = queue.snapshot()["batches_run"]
    a = submit(client, prompt="a red circle", seed=100, **FAST)
    b = submit(client, prompt="a green triangle", seed=200, num_images=2, **FAST)
    other = submit(client, prompt="a red circle", seed=100, steps=3, width=32, height=32)  # other steps
    client.post(f"/api/jobs/{blocker['id']}/cancel")
    a, b, other = (wait_for(client, j["id"], finished) for j in (a, b, other))
    assert a["status"] == b["status"] == other["status"] == "done"
    assert a["batch_size"] == b["batch_size"] == 3  # a (1 image) and b (2 images) shared one model call
    assert other["batch_size"] == 1
    assert queue.snapshot()["batches_run"] - batches_before == 3  # blocker, a+b, other
    assert [im["seed"] for im in b["images"]] == [200, 201] and a["images"][0]["seed"] == 100

    # the batched image is the image the same settings give alone
    alone = wait_for(client, submit(client, prompt="a red circle", seed=100, **FAST)["id"], finished)
    assert alone["batch_size"] == 1
    pixels = [np.asarray(Image.open(io.BytesIO(client.get(j["images"][0]["url"]).content)), dtype=int)
              for j in (a, alone)]
    assert np.abs(pixels[0] - pixels[1]).max() <= 2


def test_full_queue_answers_429_with_retry_after_and_loses_nothing(server):
    client, queue = server
    blocker = submit(client, prompt="busy", **SLOW)
    wait_for(client, blocker["id"], lambda j: j["status"] == "running")
    waiting = [submit(client, prompt=f"queued {i}", seed=i, steps=2 + i, width=32, height=32) for i in range(3)]
    assert [j["queue_position"] for j in waiting] == [1, 2, 3]
    for path, body in (("/api/jobs", {"prompt": "one more", **FAST}),
                       ("/sdapi/v1/txt2img", {"prompt": "one more", **FAST}),
                       ("/v1/images/generations", {"prompt": "one more"})):
        response = client.post(path, json=body)
        assert response.status_code == 429, path
        assert int(response.headers["retry-after"]) >= 1
    client.post(f"/api/jobs/{blocker['id']}/cancel")
    results = [wait_for(client, j["id"], finished) for j in waiting]
    assert [r["status"] for r in results] == ["done"] * 3
    assert [r["images"][0]["seed"] for r in results] == [0, 1, 2]


def test_cancel_a_waiting_and_a_running_job(server):
    client, _ = server
    running = submit(client, prompt="busy", **SLOW)
    waiting = submit(client, prompt="never runs", **FAST)
    wait_for(client, running["id"], lambda j: j["status"] == "running" and j["step"] >= 1)
    cancelled = client.post(f"/api/jobs/{waiting['id']}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["images"] == []
    client.post(f"/api/jobs/{running['id']}/cancel")
    stopped = wait_for(client, running["id"], finished)
    assert stopped["status"] == "cancelled" and stopped["step"] < 150 and stopped["images"] == []
    # cancelling a finished job changes nothing; an unknown one is a 404
    assert client.post(f"/api/jobs/{stopped['id']}/cancel").json()["status"] == "cancelled"
    assert client.post("/api/jobs/nope/cancel").status_code == 404


def test_a_model_failure_fails_that_batch_only(server, monkeypatch):
    client, queue = server
    real_generate = queue.engine.text_to_image.generate
    calls = []

    def failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated out of memory")
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(queue.engine.text_to_image, "generate", failing_once)
    failed = wait_for(client, submit(client, prompt="unlucky", **FAST)["id"], finished)
    assert failed["status"] == "failed" and "simulated out of memory" in failed["error"]
    response = client.post("/sdapi/v1/txt2img", json={"prompt": "lucky", **FAST})
    assert response.status_code == 200 and len(response.json()["images"]) == 1


@pytest.mark.parametrize("body, field", [
    ({"prompt": "x", "num_images": 0}, "num_images"),
    ({"prompt": "x", "num_images": 17}, "num_images"),
    ({"prompt": "x", "guidance": 1e9}, "guidance"),
    ({"prompt": "x", "scheduler": "warp-drive"}, "scheduler"),
    ({"prompt": "x", "width": 12}, "width"),
    ({"prompt": "x", "stepz": 3}, "stepz"),
    ({"negative_prompt": "x"}, "prompt"),
])
def test_bad_job_requests(server, body, field):
    client, _ = server
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 422 and response.json()["field"] == field, response.text


def test_info_reports_model_defaults_limits_and_queue(server):
    client, _ = server
    info = client.get("/api/info").json()
    assert info["model"]["name"] == "tiny" and info["defaults"]["scheduler"] in {s["name"] for s in info["schedulers"]}
    assert info["limits"]["max_steps"] == 150 and info["queue"]["max_queue"] == 3


def test_finished_jobs_history_is_bounded_by_count_and_bytes(server):
    from latentdiff.server.job_types import JobParams
    from latentdiff.server.jobs import JobQueue

    _, served = server
    params = [JobParams(f"p{i}", "", i, 2, 7.5, "euler", 32, 32, 1) for i in range(4)]

    def run_all(queue):
        jobs = [queue.submit(p) for p in params]
        deadline = time.monotonic() + 60
        while not all(j.finished for j in jobs) and time.monotonic() < deadline:
            time.sleep(0.02)
        return jobs

    by_count = JobQueue(served.engine, finished_jobs_kept=2)  # idle fixture queue: one model user at a time
    by_count.start()
    try:
        jobs = run_all(by_count)
        assert [by_count.get(j.id) is not None for j in jobs] == [False, False, True, True]
    finally:
        by_count.close()
    by_bytes = JobQueue(served.engine, finished_bytes_kept=1)  # every PNG is over: keep only the newest
    by_bytes.start()
    try:
        jobs = run_all(by_bytes)
        assert all(j.status == "done" for j in jobs)
        assert [by_bytes.get(j.id) is not None for j in jobs] == [False, False, False, True]
    finally:
        by_bytes.close()
