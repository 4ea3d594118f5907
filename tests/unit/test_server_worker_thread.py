"""The job worker owns the model: `JobQueue.start(load_engine=...)` builds it on the worker thread (torch's
CPU thread pool belongs to the thread that first computes; see JobQueue.start), and a load that fails
reaches the caller as the same error, before any request is taken."""

from __future__ import annotations

import threading

import pytest

from latentdiff.errors import UserError
from latentdiff.server.jobs import JobQueue


def test_the_engine_is_built_on_the_thread_that_runs_the_jobs():
    built_on = []

    def load_engine():
        built_on.append(threading.current_thread())
        return object()  # stands in for PipelineEngine: this test only asks where it was made

    queue = JobQueue(None)
    queue.start(load_engine=load_engine)
    try:
        assert queue.engine is not None
        assert built_on == [queue._thread]
        assert built_on[0] is not threading.main_thread()
    finally:
        queue.close(timeout_s=5)


def test_a_failed_load_is_raised_to_the_caller_and_starts_nothing():
    def load_engine():
        raise UserError("Model 'nowhere' is neither an existing folder nor a Hugging Face Hub id.")

    queue = JobQueue(None)
    with pytest.raises(UserError, match="nowhere"):
        queue.start(load_engine=load_engine)
    assert queue._thread is None and queue.engine is None
