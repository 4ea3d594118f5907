"""Ctrl-C (SIGINT) and SIGTERM during training: finish the optimizer step, save, exit 130.

Without this a Ctrl-C lost every step since the last periodic checkpoint (up to --checkpoint-every - 1).
`StopRequests` turns the first signal into a flag the loop reads once per optimizer step; it then puts
the previous handlers back, so a second Ctrl-C stops at once (Python's KeyboardInterrupt) for a user who
cannot wait for the save.
"""

from __future__ import annotations

import signal
import sys
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_STATUS = 130  # 128 + SIGINT: what shells report for a Ctrl-C'd command


class TrainingInterrupted(KeyboardInterrupt):
    """Stopped by SIGINT/SIGTERM after saving the training state; the message says how to resume.
    A KeyboardInterrupt so every caller that handles Ctrl-C (exit 130) handles this one too."""


class StopRequests:
    """`with StopRequests() as stop: ... if stop.requested: ...`; handlers are installed only in the main
    thread (Python allows no other), elsewhere `requested` stays False."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        self._restore()  # a second signal acts at once
        print(f"\n{self.signal_name}: finishing this training step and saving the training state "
              f"(press Ctrl-C again to stop at once, losing the steps since the last checkpoint).",
              file=sys.stderr, flush=True)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()
