"""`--max-minutes`: fix a run's step count from its measured speed, so the LR schedule (built for that count)
still ends on time.

Steps (TIMING_SKIP_STEPS, TIMING_STEPS] of a run are timed (the first steps are slower: allocator and
kernel warm-up) and the count is set from their speed (or, if the budget is spent before step TIMING_STEPS,
the run ends at the step where it is spent); then the speed is measured again each time
RETIME_FRACTION of the budget has passed, so a machine that gets busier (or quieter) mid-run still ends on
time. A resumed run keeps the count it was given (it is saved in the checkpoints).
"""

from __future__ import annotations

from typing import Callable

TIMING_SKIP_STEPS = 5
TIMING_STEPS = 25
RETIME_FRACTION = 0.1


class TimeBudget:
    def __init__(self, max_minutes: float):
        self.max_seconds = max_minutes * 60
        self.steps_fixed = max_minutes <= 0  # without a budget the count is fixed from the start
        self.retime = max_minutes > 0  # timed during one uninterrupted run; a resumed run keeps its count
        self._timed_from: tuple[float, int] = (0.0, 0)  # (perf_counter, step) where the current timing began

    def timing_due(self, steps_this_run: int, step: int, now: float, agreed: Callable[[bool], bool],
                   seconds_so_far: float = 0.0) -> bool:
        """Whether to set the step count now. The first timing is by step count (the same on every
        process), or earlier if the whole budget is spent before it (steps that each take minutes); a
        re-timing is due by the clock. Whatever the clock decides, `agreed(due)` makes every process take."""
        if not self.retime:
            return False
        if not self.steps_fixed:
            if steps_this_run == TIMING_SKIP_STEPS:
                self._timed_from = (now, step)
            if steps_this_run == TIMING_STEPS:
                return True
            return TIMING_SKIP_STEPS < steps_this_run < TIMING_STEPS and agreed(seconds_so_far >= self.max_seconds)
        return agreed(now - self._timed_from[0] >= RETIME_FRACTION * self.max_seconds)

    def steps_that_fit(self, step: int, seconds_so_far: float, now: float) -> tuple[int, float]:
        """(the step count that uses the rest of the budget at the speed measured since the timing began,
        that speed in steps/s); the next timing starts now. A spent budget gives `step` itself: the run ends
        here (one more step each time would never end a run whose steps outlast a re-timing interval)."""
        since, since_step = self._timed_from
        steps_per_second = (step - since_step) / (now - since)
        seconds_left = self.max_seconds - seconds_so_far
        self._timed_from = (now, step)
        return step + max(0, int(seconds_left * steps_per_second)), steps_per_second
