"""How the server's worker sizes its model calls: as many images at once as the free memory allows, half
as many after an out-of-memory error (every job still gets all its images, their own seeds and previews),
and a cancelled job that shares its model call with others does not take their images away."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
from PIL import Image

from latentdiff.server.engine import PipelineEngine
from latentdiff.server.job_types import CANCELLED, DONE, JobParams
from latentdiff.server.jobs import JobQueue

STEPS = 3


class OutOfMemoryAbove:
    """Stands in for the diffusers pipeline: a call with more than `max_images` images raises
    torch.OutOfMemoryError, as a GPU that is too small does; smaller calls run the real pipeline.
    Records the number of images of every call."""

    def __init__(self, pipe, max_images: int):
        object.__setattr__(self, "_pipe", pipe)
        object.__setattr__(self, "max_images", max_images)
        object.__setattr__(self, "calls", [])

    def __call__(self, **kwargs):
        images = kwargs["prompt_embeds"].shape[0]  # (B, T, D): one row per image
        self.calls.append(images)
        if images > self.max_images:
            raise torch.OutOfMemoryError(f"simulated: {images} images do not fit, {self.max_images} do")
        return self._pipe(**kwargs)

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def __setattr__(self, name, value):  # the pipeline sets `pipe.scheduler` before each call
        setattr(self._pipe, name, value)


@pytest.fixture(scope="module")
def engine(tiny_pipeline_dir):
    return PipelineEngine.load(str(tiny_pipeline_dir), "cpu")


@pytest.fixture
def pipe_calls(engine, monkeypatch):
    """Installs an OutOfMemoryAbove(max_images) over the engine's pipeline; returns it."""
    def install(max_images: int = 10**6) -> OutOfMemoryAbove:
        real = engine.text_to_image.pipe
        while isinstance(real, OutOfMemoryAbove):  # installed again in the same test: replace, do not nest
            real = real._pipe
        fake = OutOfMemoryAbove(real, max_images)
        monkeypatch.setattr(engine.text_to_image, "pipe", fake)
        return fake
    return install


def _free_memory(monkeypatch, free_bytes: int) -> None:
    import latentdiff.pipeline

    monkeypatch.setattr(latentdiff.pipeline, "free_memory_bytes", lambda device: free_bytes)


def _params(prompt: str, seed: int, num_images: int, steps: int = STEPS) -> JobParams:
    return JobParams(prompt, "", seed, steps, 7.5, "euler", 32, 32, num_images)


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)), dtype=np.int16)


def _run(engine, batch):
    """engine.run, recording every progress report as (step, total, {(job, image) previewed})."""
    seen = []

    def on_step(step, total, previews):
        seen.append((step, total, {(j, k) for j, images in previews.items() for k in images}))
        return False

    return engine.run(batch, on_step), seen


def test_the_batch_is_as_large_as_the_free_memory_allows(engine, pipe_calls, monkeypatch):
    from latentdiff.memory import estimate_bytes_per_image
    from latentdiff.pipeline import MEMORY_BUDGET_FRACTION

    batch = [_params("a red circle", 10, 3), _params("a blue square", 20, 2)]
    _free_memory(monkeypatch, 2**40)
    fake = pipe_calls()
    _run(engine, batch)
    assert fake.calls == [5]  # plenty of memory: every image of both jobs in one call

    latent = 32 // engine.text_to_image.vae_scale_factor
    per_image = estimate_bytes_per_image(engine.text_to_image.pipe.unet.config, latent, latent, guided=True)
    _free_memory(monkeypatch, int(2.5 * per_image / MEMORY_BUDGET_FRACTION))  # room for two and a half images
    fake = pipe_calls()
    results, seen = _run(engine, batch)
    assert fake.calls == [2, 2, 1]
    assert [[im.seed for im in job] for job in results] == [[10, 11, 12], [20, 21]]
    assert [s for s, _, _ in seen] == list(range(1, 3 * STEPS + 1)) and {t for _, t, _ in seen} == {3 * STEPS}

    _free_memory(monkeypatch, 0)  # none at all: still one image at a time, never zero
    fake = pipe_calls()
    _run(engine, batch)
    assert fake.calls == [1] * 5


def test_out_of_memory_halves_the_batch_and_every_job_gets_its_images(engine, pipe_calls, monkeypatch):
    batch = [_params("a red circle", 10, 2), _params("a blue square", 20, 2)]
    _free_memory(monkeypatch, 2**40)
    reference, _ = _run(engine, batch)  # all four in one call

    fake = pipe_calls(max_images=2)
    results, seen = _run(engine, batch)
    assert fake.calls == [4, 2, 2]  # 4 ran out of memory; retried two at a time
    assert [[im.seed for im in job] for job in results] == [[10, 11], [20, 21]]
    for job, expected in zip(results, reference):
        for image, same in zip(job, expected):
            assert image.infotext == same.infotext
            assert np.abs(_pixels(image.png) - _pixels(same.png)).max() <= 2  # batching may round differently
    # progress counts the steps of both halves, and never goes back
    assert [s for s, _, _ in seen] == list(range(1, 2 * STEPS + 1)) and {t for _, t, _ in seen} == {2 * STEPS}


def test_after_out_of_memory_each_job_still_sees_previews_of_its_own_images(engine, pipe_calls, monkeypatch):
    batch = [_params("a red circle", 10, 2), _params("a blue square", 20, 2)]
    _free_memory(monkeypatch, 2**40)
    pipe_calls(max_images=2)
    _, seen = _run(engine, batch)
    first_half = set().union(*(keys for step, _, keys in seen if step <= STEPS))
    second_half = set().union(*(keys for step, _, keys in seen if step > STEPS))
    assert first_half == {(0, 0), (0, 1)} and second_half == {(1, 0), (1, 1)}


def test_out_of_memory_for_a_single_image_fails_the_job_and_the_server_goes_on(engine, pipe_calls, monkeypatch):
    _free_memory(monkeypatch, 2**40)
    fake = pipe_calls(max_images=0)
    queue = JobQueue(engine)
    queue.start()
    try:
        job = queue.submit(_params("a red circle", 10, 2))
        _wait(lambda: job.finished)
        assert job.status == "failed" and "Out of memory even for one 32x32 image" in job.error
        assert fake.calls == [2, 1]  # two, then one, then no smaller batch to try
    finally:
        queue.close()


def _wait(condition, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class _CancelAtFirstStep:
    """The engine, except that job `victim` is cancelled (as DELETE from another client would) when the shared
    batch reports its first step: deterministic, where a client racing the worker thread is not."""

    def __init__(self, engine, queue_of, victim_of):
        self.engine, self.queue_of, self.victim_of = engine, queue_of, victim_of

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def run(self, batch, on_step):
        def cancelling(step, total, previews):
            if step == 1:
                self.queue_of().cancel(self.victim_of().id)
            return on_step(step, total, previews)
        return self.engine.run(batch, cancelling)


def test_cancelling_one_job_of_a_shared_batch_leaves_the_others_whole(engine, monkeypatch):
    _free_memory(monkeypatch, 2**40)
    jobs = {}
    queue = JobQueue(_CancelAtFirstStep(engine, lambda: queue, lambda: jobs["cancelled"]))
    # submitted before the worker starts, so that they share one model call
    jobs["cancelled"] = queue.submit(_params("a red circle", 10, 2, steps=6))
    jobs["kept"] = queue.submit(_params("a blue square", 20, 1, steps=6))
    queue.start()
    try:
        _wait(lambda: all(job.finished for job in jobs.values()))
    finally:
        queue.close()
    cancelled, kept = jobs["cancelled"], jobs["kept"]
    assert cancelled.status == CANCELLED and kept.status == DONE
    assert kept.batch_size == 3 and queue.batches_run == 1  # they did share the call
    assert kept.step == kept.total_steps == 6  # the batch ran to its end for the job still wanted
    (image,) = kept.images
    assert image.seed == 20
    alone, _ = _run(engine, [_params("a blue square", 20, 1, steps=6)])
    assert np.abs(_pixels(image.png) - _pixels(alone[0][0].png)).max() <= 2
