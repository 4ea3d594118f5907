"""A deterministic analyser of `shapes` images, and GenEval-style attribute accuracy.

The analyser decides what an image shows (objects with colour, shape, size, position) from pixels alone:
  1. each pixel takes the nearest colour of the `shapes` palette or the white background (RGB distance),
     or none when it is far from all of them;
  2. 4-connected regions of one palette colour are objects, once smaller than MIN_OBJECT_AREA_FRACTION of
     the image (blur, fringes between two colours) are dropped;
  3. each object's shape comes from its geometry: solidity (area / convex-hull area) separates the star,
     the only non-convex shape; the fill of its bounding box separates square (1), circle (pi/4) and
     triangle/diamond (1/2); the vertical centroid separates triangle (2/3 down) from diamond (1/2).
Real `shapes` images are flat colours without antialiasing, so the analyser is exact on them (tested).

Scoring follows GenEval (Ghosh et al. 2023): an image is checked only for what its caption asks for,
and each category's accuracy is the fraction of images that asked for it and got it right:
  colors, shapes   the set of colours / shapes present is the caption's
  counting         the number of objects is the caption's
  objects          every (colour, shape) pair is present: attribute binding
  sizes, positions absolute size / position of each object (when the caption says it), the arrangement
                   of two identical objects (side by side / stacked)
  relations        "A above B" and the like hold between the matched objects
  overall          every checked category right for that image
The truth is the dataset's per-image `attributes` (see `latentdiff.data.sources.shapes`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from latentdiff.data.sources.shapes import PALETTE, POSITION_PHRASES, POSITIONS, SIZE_FRACTIONS

BACKGROUND_RGB = (255, 255, 255)
# A pixel farther than this (RGB Euclidean) from every palette colour and white belongs to no object.
MAX_COLOR_DISTANCE = 90.0
# Regions smaller than this fraction of the image are blur or colour fringes, not objects. The smallest
# real object (a small star) covers about 2.5% of the image.
MIN_OBJECT_AREA_FRACTION = 0.008
STAR_MAX_SOLIDITY = 0.8  # stars measure about 0.6, every convex shape above 0.85
SQUARE_MIN_FILL = 0.89  # square 1.0, circle pi/4 = 0.785
CIRCLE_MIN_FILL = 0.66  # triangle and diamond 0.5
TRIANGLE_MIN_CENTROID = 0.58  # vertical centroid in its box: triangle (apex up) 2/3, diamond 1/2
# One shape's box is about square (a star's is 0.95 as wide as tall); a region at least this elongated is
# two same-coloured shapes of one size that touch (a generator may join the two shapes of a two-object
# scene), split at the middle of its long side.
MERGED_MIN_ASPECT = 1.6
CATEGORIES = ("colors", "shapes", "counting", "objects", "sizes", "positions", "relations", "overall")

_LABEL_COLORS = list(PALETTE)  # label i < len(PALETTE): that colour; len(PALETTE): background; -1: none
_LABEL_RGB = np.array([PALETTE[c] for c in _LABEL_COLORS] + [BACKGROUND_RGB], dtype=np.float64)  # (7, 3)
_SIZE_THRESHOLD = (SIZE_FRACTIONS["small"] + SIZE_FRACTIONS["large"]) / 2


@dataclass
class DetectedObject:
    color: str
    shape: str
    size: str
    position: str
    center: tuple[float, float]  # (x, y) centre of its bounding box, in pixels
    area: int


def label_pixels(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) int labels: palette index, background, or -1."""
    pixels = image.reshape(-1, 1, 3).astype(np.float64)  # (H*W, 1, 3)
    distances = np.sqrt(((pixels - _LABEL_RGB[None]) ** 2).sum(-1))  # (H*W, 7)
    labels = distances.argmin(axis=1)
    labels[distances.min(axis=1) > MAX_COLOR_DISTANCE] = -1
    return labels.reshape(image.shape[:2])


def connected_regions(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected regions of a (H, W) bool mask, each as an (N, 2) array of (y, x), in scan order."""
    seen = np.zeros_like(mask, dtype=bool)
    height, width = mask.shape
    regions = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        seen[y0, x0] = True
        stack, pixels = [(y0, x0)], []
        while stack:
            y, x = stack.pop()
            pixels.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        regions.append(np.array(pixels))
    return regions


def _hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of (N, 2) points (Andrew's monotone chain, shoelace formula)."""
    pts = sorted(set(map(tuple, points.tolist())))
    if len(pts) < 3:
        return 0.0

    def half(seq):
        chain: list[tuple[float, float]] = []
        for p in seq:
            while len(chain) >= 2 and ((chain[-1][0] - chain[-2][0]) * (p[1] - chain[-2][1])
                                       - (chain[-1][1] - chain[-2][1]) * (p[0] - chain[-2][0])) <= 0:
                chain.pop()
            chain.append(p)
        return chain

    hull = half(pts)[:-1] + half(reversed(pts))[:-1]
    xs, ys = np.array([p[0] for p in hull]), np.array([p[1] for p in hull])
    return 0.5 * abs(float(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))


def split_touching(pixels: np.ndarray) -> list[np.ndarray]:
    """pixels: (N, 2) (y, x) of one region -> one region, or two when it is two touching shapes."""
    ys, xs = pixels[:, 0], pixels[:, 1]
    height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    if max(height, width) < MERGED_MIN_ASPECT * min(height, width):
        return [pixels]
    axis, start, length = (1, xs.min(), width) if width > height else (0, ys.min(), height)
    first = pixels[:, axis] < start + length / 2
    return [pixels[first], pixels[~first]]


def classify_shape(pixels: np.ndarray) -> str:
    """pixels: (N, 2) (y, x) of one region -> circle, square, triangle, diamond or star."""
    ys, xs = pixels[:, 0], pixels[:, 1]
    height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    # Each pixel is a unit square: its four corners make the hull of the region's area.
    corners = np.concatenate([pixels + offset for offset in ((0, 0), (0, 1), (1, 0), (1, 1))])
    solidity = len(pixels) / max(_hull_area(corners), 1.0)
    if solidity < STAR_MAX_SOLIDITY:
        return "star"
    fill = len(pixels) / float(height * width)
    if fill >= SQUARE_MIN_FILL:
        return "square"
    if fill >= CIRCLE_MIN_FILL:
        return "circle"
    centroid = (ys.mean() - ys.min() + 0.5) / height
    return "triangle" if centroid >= TRIANGLE_MIN_CENTROID else "diamond"


def _nearest_position(cx: float, cy: float, image_size: int) -> str:
    return min(POSITIONS, key=lambda p: (cx - POSITIONS[p][0] * image_size) ** 2 + (cy - POSITIONS[p][1] * image_size) ** 2)


def analyse_image(image: np.ndarray) -> list[DetectedObject]:
    """(H, W, 3) uint8 -> the objects seen, largest first (ties: scan order), deterministically."""
    labels = label_pixels(image)
    image_size = image.shape[0]
    min_area = MIN_OBJECT_AREA_FRACTION * image.shape[0] * image.shape[1]
    objects = []
    for index, color in enumerate(_LABEL_COLORS):
        regions = [part for region in connected_regions(labels == index) for part in split_touching(region)]
        for pixels in regions:
            if len(pixels) < min_area:
                continue
            ys, xs = pixels[:, 0], pixels[:, 1]
            side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
            # centre of the bounding box: the shape's drawing centre (a triangle's centroid is lower)
            cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
            objects.append(DetectedObject(color=color, shape=classify_shape(pixels),
                                          size="large" if side / image_size > _SIZE_THRESHOLD else "small",
                                          position=_nearest_position(cx, cy, image_size),
                                          center=(float(cx), float(cy)), area=len(pixels)))
    return sorted(objects, key=lambda o: -o.area)


def _match(truth: list[dict[str, Any]], detected: list[DetectedObject]) -> list[DetectedObject | None]:
    """For each true object, a distinct detected one: same colour and shape, else same colour, else same shape."""
    free = list(detected)
    matched: list[DetectedObject | None] = []
    for want in truth:
        pick = None
        for same in (lambda o: o.color == want["color"] and o.shape == want["shape"],
                     lambda o: o.color == want["color"], lambda o: o.shape == want["shape"]):
            pick = next((o for o in free if same(o)), None)
            if pick is not None:
                break
        if pick is not None:
            free.remove(pick)
        matched.append(pick)
    return matched


def _relation_holds(subject: DetectedObject, reference: DetectedObject, relation: str) -> bool:
    dx = subject.center[0] - reference.center[0]
    dy = subject.center[1] - reference.center[1]  # y grows downwards
    horizontal = abs(dx) > abs(dy)
    return {"above": not horizontal and dy < 0, "below": not horizontal and dy > 0,
            "left of": horizontal and dx < 0, "right of": horizontal and dx > 0}[relation]


def score_image(detected: list[DetectedObject], attributes: dict[str, Any], caption: str) -> dict[str, bool]:
    """Which categories `caption` asks for, and whether the detected objects get each right."""
    truth = attributes["objects"]
    text = f" {caption.lower()} "
    matched = _match(truth, detected)
    result = {
        "colors": {o.color for o in detected} == {t["color"] for t in truth},
        "shapes": {o.shape for o in detected} == {t["shape"] for t in truth},
        "counting": len(detected) == attributes["count"],
        "objects": Counter((o.color, o.shape) for o in detected) == Counter((t["color"], t["shape"]) for t in truth),
    }
    if any(f" {size} " in text for size in SIZE_FRACTIONS):
        result["sizes"] = all(m is not None and m.size == t["size"] for m, t in zip(matched, truth))
    scene = attributes["scene"]
    if scene == "single" and POSITION_PHRASES[truth[0]["position"]] in text:
        result["positions"] = matched[0] is not None and matched[0].position == truth[0]["position"]
    if scene == "count" and ("side by side" in text or "one above the other" in text):
        side_by_side = truth[0]["position"] in ("left", "right")
        ok = len(detected) == 2
        if ok:
            a, b = detected[0].center, detected[1].center
            ok = (abs(a[0] - b[0]) > abs(a[1] - b[1])) == side_by_side
        result["positions"] = ok
    if scene == "relation":
        result["relations"] = (None not in matched
                               and _relation_holds(matched[0], matched[1], attributes["relation"]))
    result["overall"] = all(result.values())
    return result


def attribute_accuracy(images: list[np.ndarray], attributes: list[dict[str, Any]], captions: list[str]) -> dict[str, Any]:
    """Per-category accuracy over the images that asked for that category, with how many did."""
    asked: Counter[str] = Counter()
    right: Counter[str] = Counter()
    for image, attrs, caption in zip(images, attributes, captions):
        for category, ok in score_image(analyse_image(image), attrs, caption).items():
            asked[category] += 1
            right[category] += int(ok)
    return {"accuracy": {c: right[c] / asked[c] for c in CATEGORIES if asked[c]},
            "num_images": {c: asked[c] for c in CATEGORIES if asked[c]}}


def is_shapes_dataset(attributes: list[dict[str, Any] | None]) -> bool:
    """True when every record carries `shapes` ground truth (scene + objects)."""
    return bool(attributes) and all(isinstance(a, dict) and "objects" in a and "scene" in a for a in attributes)
