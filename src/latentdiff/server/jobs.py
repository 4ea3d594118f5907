"""Jobs: one bounded queue, one worker thread that owns the model, batching of compatible requests.

Every HTTP request that asks for images becomes a `Job` with an id. Jobs wait in one FIFO queue; a
single worker thread takes the oldest job plus every other waiting job with the same `batch_key`
(size, steps, scheduler, guidance: what must be equal for the images to share one denoising loop)
and runs them as one call to the model. Only that thread ever touches the pipeline, so its scheduler
(which keeps per-call state in diffusers) is never used by two requests at once.

The event loop never blocks on the worker: waiting for a job (or for its next progress update) is an
`asyncio.Future` that the worker resolves through `loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from latentdiff import limits
from latentdiff.server.job_types import CANCELLED, DONE, FAILED, RUNNING, Engine, Job, JobParams


@dataclass
class _Task:
    """Work for the worker thread that is not a batch (loading another model), run in submission order."""

    fn: Callable[[], Any]
    seq: int
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class QueueFull(Exception):
    def __init__(self, retry_after_s: int):
        super().__init__(f"the queue is full; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class JobQueue:
    def __init__(self, engine: Engine | None, *, max_queue: int = limits.DEFAULT_MAX_QUEUE,
                 max_batch_images: int = limits.DEFAULT_MAX_BATCH_IMAGES,
                 finished_jobs_kept: int = limits.FINISHED_JOBS_KEPT,
                 finished_bytes_kept: int = limits.FINISHED_IMAGE_BYTES_KEPT,
                 max_job_seconds: float = limits.DEFAULT_MAX_JOB_SECONDS):
        if max_queue < 1 or max_batch_images < 1 or not max_job_seconds > 0:
            raise ValueError("max_queue and max_batch_images must be at least 1, max_job_seconds above 0")
        self.engine = engine  # None until start(load_engine=...) has built it on the worker thread
        self.max_queue = max_queue
        self.max_batch_images = max_batch_images
        self.finished_jobs_kept = finished_jobs_kept
        self.finished_bytes_kept = finished_bytes_kept
        self.max_job_seconds = max_job_seconds
        self._batch_deadline = math.inf  # time.monotonic() past which the running batch is stopped
        self._batch_timed_out = False
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._tasks: deque[_Task] = deque()
        self._seq = itertools.count(1)  # orders jobs and tasks together
        self._running: list[Job] = []
        self._jobs: dict[str, Job] = {}
        self._finished_order: OrderedDict[str, int] = OrderedDict()  # job id -> bytes of its PNGs
        self._kept_bytes = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._batch_seconds_ema: float | None = None
        self.batches_run = 0
        self.images_made = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self, load_engine: Callable[[], Engine] | None = None) -> None:
        """Start the worker thread. With `load_engine`, the worker builds the engine itself before taking
        jobs, and this returns once it has (re-raising a load error). Why: torch's CPU thread pool (OpenMP)
        belongs to the thread that runs parallel work; a model loaded on the main thread and run on the
        worker leaves two pools competing for the cores: 4 images took 3.2-4.7 s instead of 1.6-1.8 s on
        the 2-core development CPU."""
        if self._thread is not None:
            return
        ready, failures = threading.Event(), []

        def work() -> None:
            if load_engine is not None:
                try:
                    self.engine = load_engine()
                except BaseException as err:  # handed to the caller of start()
                    failures.append(err)
                    return
                finally:
                    ready.set()
            self._work()

        self._thread = threading.Thread(target=work, name="latentdiff-worker", daemon=True)
        self._thread.start()
        if load_engine is not None:
            ready.wait()
            if failures:
                self._thread = None
                raise failures[0]

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking batches, cancel the running one (it stops at its next step), fail what still waits and
        the pending worker tasks."""
        with self._cond:
            self._stopping = True
            for job in self._running:
                job.cancel_requested = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._cond:
            while self._waiting:
                self._finish(self._waiting.popleft(), FAILED, error="the server shut down before this job ran")
            while self._tasks:
                task = self._tasks.popleft()
                task.error = RuntimeError("the server shut down before this could run")
                task.done.set()

    # ------------------------------------------------------------------ client side
    def submit(self, params: JobParams) -> Job:
        with self._cond:
            if self._stopping:
                raise QueueFull(self._retry_after())
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(self._retry_after())
            job = Job(params, seq=next(self._seq))
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._cond.notify_all()
            return job

    def run_on_worker(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the worker thread (the one that owns the model) once every job submitted before
        this call has run, and return its result or raise its error. Blocks: call it off the event loop."""
        with self._cond:
            if self._stopping:
                raise QueueFull(self._retry_after())
            task = _Task(fn, next(self._seq))
            self._tasks.append(task)
            self._cond.notify_all()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.result

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """A waiting job is dropped at once; a running one stops at the next step if every job in its
        batch is cancelled, else its images are discarded when the batch ends."""
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None or job.finished:
                return job
            if job in self._waiting:
                self._waiting.remove(job)
                self._finish(job, CANCELLED)
            else:
                job.cancel_requested = True
                self._touch(job)
            return job

    def interrupt(self) -> int:
        """A1111's /interrupt: stop whatever is running now. Returns how many jobs it touched."""
        with self._cond:
            for job in self._running:
                job.cancel_requested = True
                self._touch(job)
            return len(self._running)

    def history(self) -> list[Job]:
        """The finished jobs still kept (bounded by `finished_jobs_kept` and `finished_bytes_kept`),
        the newest first: what the page shows again after a reload."""
        with self._cond:
            return [self._jobs[job_id] for job_id in reversed(self._finished_order) if job_id in self._jobs]

    def queue_position(self, job: Job) -> int:
        """0 while running or finished; 1 for the next to run, ..."""
        with self._cond:
            try:
                return self._waiting.index(job) + 1
            except ValueError:
                return 0

    def snapshot(self) -> dict[str, Any]:
        """Counters and the running batch, for /sdapi/v1/progress and /api/info."""
        with self._cond:
            running = list(self._running)
            head = running[0] if running else None
            return {
                "waiting": len(self._waiting),
                "running": [j.id for j in running],
                "step": head.step if head else 0,
                "total_steps": head.total_steps if head else 0,
                "started_at": head.started_at if head else None,
                "preview_png": head.preview_png if head else None,
                "interrupted": any(j.cancel_requested for j in running),
                "batches_run": self.batches_run,
                "images_made": self.images_made,
                "max_queue": self.max_queue,
                "max_batch_images": self.max_batch_images,
            }

    async def wait_finished(self, job: Job) -> Job:
        while not job.finished:
            await self.wait_changed(job, job.version)
        return job

    async def wait_changed(self, job: Job, seen_version: int, timeout_s: float | None = None) -> int:
        """Wait until `job.version` differs from `seen_version` (or the timeout); returns the version."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._cond:
            if job.version != seen_version:
                return job.version
            job._waiters.append((loop, fut))
        try:
            await asyncio.wait_for(fut, timeout_s)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._cond:
                job._waiters = [w for w in job._waiters if w[1] is not fut]
        return job.version

    # ------------------------------------------------------------------ worker side
    def _touch(self, job: Job) -> None:
        """Record a change and wake whoever waits on this job (call with the lock held)."""
        job.version += 1
        waiters, job._waiters = job._waiters, []
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, fut)
            except RuntimeError:  # that event loop has closed (its client went away)
                pass

    def _finish(self, job: Job, status: str, error: str | None = None) -> None:
        job.status = status
        job.error = error
        job.finished_at = time.time()
        job.preview_png, job.previews = None, {}
        if job.params.init_image:  # img2img: a finished job keeps only that it had a picture, not its bytes
            job.params = dataclasses.replace(job.params, init_image=b"")  # (up to the body limit, uncounted)
        size = sum(len(im.png) for im in job.images)
        self._finished_order[job.id] = size
        self._kept_bytes += size
        # forget the oldest finished jobs past either bound (never the one finishing now)
        while len(self._finished_order) > 1 and (len(self._finished_order) > self.finished_jobs_kept
                                                 or self._kept_bytes > self.finished_bytes_kept):
            old_id, old_size = self._finished_order.popitem(last=False)
            self._kept_bytes -= old_size
            self._jobs.pop(old_id, None)
        self._touch(job)

    def _retry_after(self) -> int:
        per_batch_s = self._batch_seconds_ema or 1.0
        batches_ahead = math.ceil(max(len(self._waiting), 1) / self.max_batch_images)
        return int(min(max(math.ceil(per_batch_s * batches_ahead), 1), 600))

    def _take_batch(self) -> list[Job] | _Task | None:
        with self._cond:
            while not self._waiting and not self._tasks and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            if self._tasks and (not self._waiting or self._tasks[0].seq < self._waiting[0].seq):
                return self._tasks.popleft()
            head = self._waiting.popleft()
            batch, images = [head], head.params.num_images
            key = head.params.batch_key()
            for job in list(self._waiting):
                if job.params.batch_key() == key and images + job.params.num_images <= self.max_batch_images:
                    self._waiting.remove(job)
                    batch.append(job)
                    images += job.params.num_images
            now = time.time()
            for job in batch:
                job.status, job.started_at = RUNNING, now
                job.total_steps, job.batch_size = job.params.steps, images
                self._touch(job)
            self._running = batch
            return batch

    def _on_step(self, batch: list[Job], step: int, total: int, previews: dict[int, dict[int, bytes]]) -> bool:
        with self._cond:
            for j, job in enumerate(batch):
                job.step, job.total_steps = step, total
                if previews.get(j):
                    job.previews.update(previews[j])
                    job.preview_png = previews[j][min(previews[j])]
                self._touch(job)
            self._batch_timed_out = time.monotonic() > self._batch_deadline
            return self._batch_timed_out or all(job.cancel_requested for job in batch)

    def _run_batch(self, batch: list[Job]) -> None:
        started = time.perf_counter()
        self._batch_deadline, self._batch_timed_out = time.monotonic() + self.max_job_seconds, False
        model, error_status = batch[0].params.model, 500
        try:
            if model and model != getattr(self.engine, "model_name", model):
                error_status = 409
                # another model was loaded after this job was checked against its own: do not run it on that
                results, error = None, (f"The server switched to the model '{self.engine.model_name}' while this "
                                        f"job for '{model}' waited; send it again.")
            else:
                results = self.engine.run([j.params for j in batch], lambda s, t, p: self._on_step(batch, s, t, p))
                error = None
        except Exception as exc:  # the model failed (out of memory, ...): fail this batch, keep serving
            results, error = None, f"generation failed: {type(exc).__name__}: {exc}"
        if self._batch_timed_out:
            error = (f"The job ran past this server's time limit of {self.max_job_seconds:g} s (--max-job-seconds) "
                     f"and was stopped; ask for fewer images or steps, or a smaller size.")
        elapsed = time.perf_counter() - started
        with self._cond:
            self._running = []
            for i, job in enumerate(batch):
                if error is not None:
                    job.error_status = 504 if self._batch_timed_out else error_status
                    self._finish(job, FAILED, error=error)
                    continue
                if job.cancel_requested:  # a job cancelled while it shared the batch: its images are dropped
                    self._finish(job, CANCELLED)
                else:
                    job.images = results[i]
                    job.step = job.total_steps
                    self._finish(job, DONE)
            self.batches_run += 1
            self.images_made += sum(j.params.num_images for j in batch)
            self._batch_seconds_ema = elapsed if self._batch_seconds_ema is None else (
                0.8 * self._batch_seconds_ema + 0.2 * elapsed)

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if isinstance(batch, _Task):
                try:
                    batch.result = batch.fn()
                except BaseException as err:  # handed to the caller of run_on_worker
                    batch.error = err
                batch.done.set()
                continue
            self._run_batch(batch)
