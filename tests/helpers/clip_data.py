"""A tiny prepared dataset (the layout of `latentdiff.data.prepared`) for CLIP tests: coloured squares
and circles on white, each with an English and a Chinese caption. Colour is the easy signal a tiny
CLIP picks up in a few dozen steps, so retrieval beats chance quickly."""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

COLORS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 60, 220), "yellow": (230, 210, 20)}
COLORS_ZH = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色"}
SHAPES = {"square": "方块", "circle": "圆"}


def write_tiny_clip_dataset(root: Path, num_train: int = 48, num_validation: int = 16, image_size: int = 32,
                            seed: int = 0) -> Path:
    rng = random.Random(seed)
    root = Path(root)
    counts = {"train": num_train, "validation": num_validation}
    for split, count in counts.items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(count):
            color = list(COLORS)[i % len(COLORS)]
            shape = list(SHAPES)[(i // len(COLORS)) % len(SHAPES)]
            img = Image.new("RGB", (image_size, image_size), (255, 255, 255))
            margin = rng.randint(2, image_size // 5)
            box = (margin, margin, image_size - margin, image_size - margin)
            draw = ImageDraw.Draw(img)
            (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=COLORS[color])
            name = f"{i:06d}.png"
            img.save(folder / name)
            rows.append({"file_name": name, "id": f"{split}-{i}",
                         "text": [f"a {color} {shape}", f"{COLORS_ZH[color]}的{SHAPES[shape]}"],
                         "language": ["en", "zh"], "attributes": {"color": color, "shape": shape}})
        (folder / "metadata.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                               encoding="utf-8")
    manifest = {"source": "test-tiny-clip", "image_size": image_size, "languages": ["en", "zh"], "counts": counts,
                "skipped": []}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return root


def keep_english_captions(root: Path) -> Path:
    """The dataset at `root` rewritten with each image's English caption only (one caption language)."""
    for split in ("train", "validation"):
        meta = Path(root) / split / "metadata.jsonl"
        rows = [json.loads(line) for line in meta.read_text(encoding="utf-8").splitlines()]
        meta.write_text("".join(json.dumps({**row, "text": row["text"][0], "language": "en"}) + "\n" for row in rows),
                        encoding="utf-8")
    return Path(root)
