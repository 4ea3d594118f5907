"""What the page at `/` reads from /api beyond submitting jobs: the history it shows again after a reload,
a preview of every image of a batch while it forms, and the time left."""

from __future__ import annotations

import json
import time

import pytest

from helpers.server_client import server_client

FAST = {"steps": 2, "width": 32, "height": 32}


@pytest.fixture(scope="module")
def server(tiny_pipeline_dir):
    with server_client(tiny_pipeline_dir, max_batch=8) as (client, queue):
        yield client, queue


def run_job(client, **body) -> dict:
    response = client.post("/api/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def events_of(client, job_id: str) -> list[tuple[str, dict]]:
    events, name = [], None
    with client.stream("GET", f"/api/jobs/{job_id}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: "):])))
    return events


def test_history_lists_finished_jobs_newest_first_with_their_settings(server):
    client, _ = server
    older = run_job(client, prompt="a red circle", seed=10, num_images=3, **FAST)
    newer = run_job(client, prompt="a blue square", negative_prompt="green", seed=20, num_images=2, guidance=3,
                    steps=3, width=32, height=32)
    jobs = client.get("/api/history").json()["jobs"]
    ids = [job["id"] for job in jobs]
    assert ids.index(newer["id"]) < ids.index(older["id"])  # newest first
    by_id = {job["id"]: job for job in jobs}
    assert [im["seed"] for im in by_id[older["id"]]["images"]] == [10, 11, 12]  # seed order within a batch
    assert by_id[newer["id"]]["params"] == newer["params"]
    assert by_id[newer["id"]]["params"]["negative_prompt"] == "green" and by_id[newer["id"]]["params"]["steps"] == 3
    image = client.get(by_id[older["id"]]["images"][2]["url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert [job["id"] for job in client.get("/api/history?limit=1").json()["jobs"]] == [ids[0]]
    assert client.get("/api/history?limit=0").status_code == 422


def test_history_leaves_out_cancelled_jobs(server):
    client, _ = server
    response = client.post("/api/jobs", json={"prompt": "never mind", "steps": 150, "width": 32, "height": 32})
    job_id = response.json()["id"]
    client.post(f"/api/jobs/{job_id}/cancel")
    while client.get(f"/api/jobs/{job_id}").json()["status"] != "cancelled":
        time.sleep(0.02)
    assert job_id not in [job["id"] for job in client.get("/api/history").json()["jobs"]]


def test_history_keeps_only_the_newest_jobs(server):
    from latentdiff.server.job_types import JobParams
    from latentdiff.server.jobs import JobQueue

    _, served = server
    queue = JobQueue(served.engine, finished_jobs_kept=2)  # the fixture's queue is idle: one model user at a time
    queue.start()
    try:
        jobs = [queue.submit(JobParams(f"p{i}", "", i, 2, 7.5, "euler", 32, 32, 1)) for i in range(3)]
        deadline = time.monotonic() + 60
        while not all(j.finished for j in jobs) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [job.id for job in queue.history()] == [jobs[2].id, jobs[1].id]
    finally:
        queue.close()


def test_progress_shows_a_preview_of_every_image_and_the_time_left(server):
    client, _ = server
    job = client.post("/api/jobs", json={"prompt": "a red circle", "seed": 3, "num_images": 3, "steps": 8,
                                         "width": 32, "height": 32}).json()
    events = events_of(client, job["id"])
    progress = [data for name, data in events if name == "progress"]
    with_previews = [data["previews"] for data in progress if "previews" in data]
    assert with_previews, progress
    last = with_previews[-1]
    assert len(last) == 3 and all(p and p.startswith("data:image/png;base64,") for p in last)
    assert len(set(last)) == 3  # three seeds: three different images forming
    running = [data for data in progress if data["status"] == "running" and data["step"] >= 1]
    assert running and all(data["seconds_left"] >= 0 for data in running)
    assert events[-1][0] == "done" and events[-1][1]["seconds_left"] == 0
