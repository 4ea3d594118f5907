"""Reading back what a training run logged to TensorBoard (`OUT/logs`), as the TensorBoard UI would."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image


def logged_images(log_dir: Path) -> dict[str, list[tuple[int, Image.Image]]]:
    """Every image tag of the run in `log_dir`: {tag: [(step, decoded image), ...]}."""
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={IMAGES: 0})
    events.Reload()
    return {tag: [(e.step, Image.open(io.BytesIO(e.encoded_image_string))) for e in events.Images(tag)]
            for tag in events.Tags()[IMAGES]}
