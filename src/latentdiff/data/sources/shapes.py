"""`shapes`: generated scenes of one or two flat-coloured shapes on white, with captions that state
their colours, shapes, sizes, positions, relation and count, and the TRUE attributes stored per image.

Scenes (each drawn directly at `--image-size`, no antialiasing, so every shape pixel has exactly its
palette colour and an analyser can recover the scene):
  - single:   one shape with a size and a position   "a small yellow star on the left"
  - relation: two different shapes, one above/below/left of/right of the other
                                                      "a red circle above a blue square"
  - count:    two identical shapes side by side or stacked          "two green triangles"

`attributes` of each image (pixel coordinates, x to the right, y down):
  {"scene": "single"|"relation"|"count", "count": 1|2, "relation": "none"|"above"|"below"|"left of"|"right of",
   "image_size": S, "background": [255, 255, 255],
   "objects": [{"shape", "color", "rgb": [r, g, b], "size": "small"|"large", "position": "left"|...,
                "center": [x, y], "bbox": [x0, y0, x1, y1]}, ...],
   "stated": [[category, ...] per caption]}   # what each caption states, parallel to `text`
For a relation, `objects[0]` is the subject ("a red circle") and `objects[1]` the reference ("a blue
square"): "objects[0] is <relation> objects[1]". `center` is always a pixel inside the shape.
`stated` lets an evaluator score a generated image only on what its prompt said: categories are
count, color, shape, size, position (the named position or "side by side"/"one above the other"),
relation. All captions of an image are distinct, so the writer keeps them all and `stated` stays
parallel to `text`.
"""

from __future__ import annotations

import math
import random
from functools import partial
from typing import Any

from PIL import Image, ImageDraw

from latentdiff.data.sources import require_english_only
from latentdiff.data.writer import SourceItem, SourceResult
from latentdiff.errors import UserError

BACKGROUND = (255, 255, 255)
# Well separated flat colours (hue and lightness both differ), with the word used in captions.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 60),
    "blue": (30, 70, 220),
    "yellow": (245, 205, 20),
    "purple": (140, 40, 180),
    "orange": (245, 130, 20),
}
SHAPES = ("circle", "square", "triangle", "star", "diamond")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars", "diamond": "diamonds"}
# Side of the shape's bounding box, as a fraction of the image side.
SIZE_FRACTIONS = {"small": 0.28, "large": 0.42}
# Centre of each named position, as fractions of the image side (x, y).
# Two large shapes at opposite positions keep a gap of 0.08 of the side (5 pixels at 64) between them.
POSITIONS = {"center": (0.5, 0.5), "left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25),
             "bottom": (0.5, 0.75)}
POSITION_PHRASES = {"center": "in the center", "left": "on the left", "right": "on the right",
                    "top": "at the top", "bottom": "at the bottom"}
RELATIONS = {"above": ("top", "bottom"), "below": ("bottom", "top"), "left of": ("left", "right"),
             "right of": ("right", "left")}
RELATION_PHRASES = {"above": "above", "below": "below", "left of": "to the left of", "right of": "to the right of"}
INVERSE_RELATION = {"above": "below", "below": "above", "left of": "right of", "right of": "left of"}
SCENE_WEIGHTS = {"single": 0.4, "relation": 0.4, "count": 0.2}
MAX_JITTER_FRACTION = 0.03  # positions move up to this fraction of the side, so scenes are not all alike
MAX_CAPTIONS = 5


def shape_points(shape: str, cx: float, cy: float, side: float) -> list[tuple[float, float]]:
    """Polygon of `shape` in its `side` x `side` box centred on (cx, cy); circles are drawn as ellipses."""
    h = side / 2
    if shape == "square":
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":  # apex up; the box centre is inside (the triangle is half as wide there)
        return [(cx, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "diamond":
        return [(cx, cy - h), (cx + h, cy), (cx, cy + h), (cx - h, cy)]
    if shape == "star":  # five points, inner radius 0.45 of the outer one
        points = []
        for i in range(10):
            radius = h if i % 2 == 0 else 0.45 * h
            angle = -math.pi / 2 + i * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    raise ValueError(f"unknown shape {shape!r}")


def draw_object(draw: ImageDraw.ImageDraw, obj: dict[str, Any]) -> None:
    x0, y0, x1, y1 = obj["bbox"]
    fill = tuple(obj["rgb"])
    if obj["shape"] == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    else:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        draw.polygon(shape_points(obj["shape"], cx, cy, x1 - x0), fill=fill)


def make_object(rng: random.Random, shape: str, color: str, size: str, position: str, image_size: int,
                jitter_x: bool = True, jitter_y: bool = True) -> dict[str, Any]:
    """Two-object scenes jitter only across the axis that separates the objects, so they never touch."""
    side = round(SIZE_FRACTIONS[size] * image_size)
    fx, fy = POSITIONS[position]
    jitter = MAX_JITTER_FRACTION * image_size
    cx = round(fx * image_size + (rng.uniform(-jitter, jitter) if jitter_x else 0.0))
    cy = round(fy * image_size + (rng.uniform(-jitter, jitter) if jitter_y else 0.0))
    # Keep the whole shape inside the image.
    half = side // 2
    cx = min(max(cx, half + 1), image_size - 2 - half)
    cy = min(max(cy, half + 1), image_size - 2 - half)
    x0, y0 = cx - half, cy - half
    return {"shape": shape, "color": color, "rgb": list(PALETTE[color]), "size": size, "position": position,
            "center": [cx, cy], "bbox": [x0, y0, x0 + side, y0 + side]}


def a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def make_scene(seed: int, index: int, image_size: int) -> tuple[dict[str, Any], list[str]]:
    """(attributes, captions) of scene `index`; the same (seed, index, size) always gives the same scene."""
    rng = random.Random(f"shapes:{seed}:{index}")
    scene = rng.choices(list(SCENE_WEIGHTS), weights=list(SCENE_WEIGHTS.values()))[0]
    colors, shapes = list(PALETTE), list(SHAPES)
    if scene == "single":
        shape, color = rng.choice(shapes), rng.choice(colors)
        size, position = rng.choice(list(SIZE_FRACTIONS)), rng.choice(list(POSITIONS))
        objects = [make_object(rng, shape, color, size, position, image_size)]
        where = POSITION_PHRASES[position]
        everything = ["count", "color", "shape", "size", "position"]
        captions = [(f"{a(size)} {color} {shape} {where}", everything),
                    (f"{a(color)} {shape} {where}", ["count", "color", "shape", "position"]),
                    (f"{a(size)} {color} {shape}", ["count", "color", "shape", "size"]),
                    (f"{a(color)} {shape}, {size}, {where}", everything),
                    (f"a picture of {a(size)} {color} {shape} {where} on a white background", everything)]
        relation = "none"
    elif scene == "relation":
        shape1, shape2 = rng.sample(shapes, 2)  # different shapes, so "the circle" names one object
        color1, color2 = rng.choice(colors), rng.choice(colors)
        relation = rng.choice(list(RELATIONS))
        pos1, pos2 = RELATIONS[relation]
        size = "small" if rng.random() < 0.5 else "large"
        vertical = relation in ("above", "below")
        objects = [make_object(rng, shape1, color1, size, pos1, image_size, vertical, not vertical),
                   make_object(rng, shape2, color2, size, pos2, image_size, vertical, not vertical)]
        one, two = f"{color1} {shape1}", f"{color2} {shape2}"
        phrase, inverse = RELATION_PHRASES[relation], RELATION_PHRASES[INVERSE_RELATION[relation]]
        stated = ["count", "color", "shape", "relation"]
        captions = [(f"{a(one)} {phrase} {a(two)}", stated), (f"{a(two)} {inverse} {a(one)}", stated),
                    (f"{a(one)} and {a(two)}, the {shape1} {phrase} the {shape2}", stated),
                    (f"{a(color1)} {shape1} is {phrase} {a(color2)} {shape2}", stated),
                    (f"two shapes: {a(one)} {phrase} {a(two)}", stated)]
    else:
        shape, color = rng.choice(shapes), rng.choice(colors)
        size = "small" if rng.random() < 0.5 else "large"
        layout = rng.choice(["side by side", "stacked"])
        pos1, pos2 = ("left", "right") if layout == "side by side" else ("top", "bottom")
        vertical = layout == "stacked"
        objects = [make_object(rng, shape, color, size, pos1, image_size, vertical, not vertical),
                   make_object(rng, shape, color, size, pos2, image_size, vertical, not vertical)]
        many = f"{color} {PLURALS[shape]}"
        arrangement = "side by side" if layout == "side by side" else "one above the other"
        stated = ["count", "color", "shape"]
        captions = [(f"two {many}", stated), (f"two {size} {many}", stated + ["size"]),
                    (f"two {many} {arrangement}", stated + ["position"]), (f"a pair of {many}", stated),
                    (f"2 {many}, {arrangement}", stated + ["position"])]
        relation = "none"
    captions = captions[:MAX_CAPTIONS]
    attributes = {"scene": scene, "count": len(objects), "relation": relation, "image_size": image_size,
                  "background": list(BACKGROUND), "objects": objects,
                  "stated": [categories for _, categories in captions]}
    return attributes, [text for text, _ in captions]


def render_scene(attributes: dict[str, Any]) -> Image.Image:
    size = attributes["image_size"]
    image = Image.new("RGB", (size, size), tuple(attributes["background"]))
    draw = ImageDraw.Draw(image)  # Pillow draws without antialiasing: flat colours, exact palette values
    for obj in attributes["objects"]:
        draw_object(draw, obj)
    return image


def read(*, num_images: int, image_size: int, seed: int = 0, max_images: int = 0,
         languages: list[str] = ("en",)) -> SourceResult:
    require_english_only(languages, "shapes")
    if num_images < 1:
        raise UserError(f"--num-images {num_images} is too small; ask for at least 1 scene (e.g. 2000).")
    if image_size < 32:
        raise UserError(f"--image-size {image_size} is too small for shapes scenes; use 32 pixels or more.")
    count = min(num_images, max_images) if max_images else num_images

    def items():
        for index in range(count):
            attributes, captions = make_scene(seed, index, image_size)
            yield SourceItem(key=f"shapes-{seed}-{index:06d}", load_image=partial(render_scene, attributes),
                             captions=captions, attributes=attributes)

    return SourceResult(source="shapes", items=items(), num_items=count,
                        info={"num_images": num_images, "palette": {k: list(v) for k, v in PALETTE.items()},
                              "shapes": list(SHAPES), "sizes": SIZE_FRACTIONS})
