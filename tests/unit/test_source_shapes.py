"""The shapes source: captions state the scene, and the stored attributes agree with the pixels."""

from __future__ import annotations

import numpy as np
import pytest

from latentdiff.config import PrepareDataConfig
from latentdiff.data.prepared import load_image_array, open_prepared
from latentdiff.data.sources import shapes
from latentdiff.errors import UserError
from latentdiff.stages.prepare_data import run


def prepare(tmp_path, **kwargs):
    cfg = PrepareDataConfig(source="shapes", out=str(tmp_path / "shapes"), **kwargs)
    run(cfg)
    return open_prepared(cfg.out)


def all_records(dataset):
    return [record for split in ("train", "validation", "test") for record in dataset.records(split)]


def check_pixels_match_attributes(array: np.ndarray, attributes: dict) -> None:
    size = attributes["image_size"]
    assert array.shape == (size, size, 3)
    objects = attributes["objects"]
    assert len(objects) == attributes["count"]
    for obj in objects:
        cx, cy = obj["center"]
        assert tuple(array[cy, cx]) == tuple(obj["rgb"]), obj  # the colour at the stored centre
        assert tuple(obj["rgb"]) == shapes.PALETTE[obj["color"]]
        x0, y0, x1, y1 = obj["bbox"]
        assert 0 <= x0 < x1 < size and 0 <= y0 < y1 < size
    # Every non-white pixel lies in the box of an object of that very colour (no stray or merged shapes).
    background = np.all(array == 255, axis=-1)
    explained = np.zeros_like(background)
    for obj in objects:
        x0, y0, x1, y1 = obj["bbox"]
        in_colour = np.all(array == np.array(obj["rgb"], dtype=np.uint8), axis=-1)
        box = np.zeros_like(background)
        box[y0:y1 + 1, x0:x1 + 1] = True
        explained |= in_colour & box
    assert np.all(background | explained)
    if len(objects) == 2:  # separate shapes, so an analyser can count them
        (a0, b0, a1, b1), (c0, d0, c1, d1) = objects[0]["bbox"], objects[1]["bbox"]
        assert a1 < c0 or c1 < a0 or b1 < d0 or d1 < b0


def test_attributes_agree_with_pixels_and_captions(tmp_path):
    dataset = prepare(tmp_path, num_images=60, seed=3)
    records = all_records(dataset)
    assert len(records) == 60
    scenes = set()
    for record in records:
        attributes = record.attributes
        scenes.add(attributes["scene"])
        check_pixels_match_attributes(load_image_array(record.path), attributes)
        assert 1 <= len(record.captions) <= 5 and record.languages == ["en"] * len(record.captions)
        assert len(attributes["stated"]) == len(record.captions)  # parallel to the captions
        for caption, stated in zip(record.captions, attributes["stated"]):
            obj = attributes["objects"][0]
            assert obj["color"] in caption and {"count", "color", "shape"} <= set(stated)
            assert (obj["size"] in caption) == ("size" in stated)
            assert ("relation" in stated) == (attributes["relation"] != "none")
        for obj in attributes["objects"]:
            first = record.captions[0]
            assert obj["color"] in first
            assert obj["shape"] in first or shapes.PLURALS[obj["shape"]] in first
        if attributes["scene"] == "relation":
            subject, reference = attributes["objects"]
            phrase = shapes.RELATION_PHRASES[attributes["relation"]]
            assert record.captions[0] == (f"{shapes.a(subject['color'] + ' ' + subject['shape'])} {phrase} "
                                          f"{shapes.a(reference['color'] + ' ' + reference['shape'])}")
            # The relation is true of the drawn positions.
            (sx, sy), (rx, ry) = subject["center"], reference["center"]
            assert {"above": sy < ry, "below": sy > ry, "left of": sx < rx, "right of": sx > rx}[attributes["relation"]]
        if attributes["scene"] == "count":
            assert record.captions[0].startswith("two ")
        if attributes["scene"] == "single":
            obj = attributes["objects"][0]
            assert obj["size"] in record.captions[0]
            assert shapes.POSITION_PHRASES[obj["position"]] in record.captions[0]
    assert scenes == {"single", "relation", "count"}


@pytest.mark.parametrize("image_size", [32, 128])
def test_scenes_are_exact_at_other_sizes(image_size):
    for index in range(150):
        attributes, captions = shapes.make_scene(seed=0, index=index, image_size=image_size)
        image = shapes.render_scene(attributes)
        check_pixels_match_attributes(np.asarray(image), attributes)


def test_same_seed_same_scenes_and_other_seed_differs():
    same = [shapes.make_scene(7, i, 64) for i in range(20)]
    assert same == [shapes.make_scene(7, i, 64) for i in range(20)]
    assert same != [shapes.make_scene(8, i, 64) for i in range(20)]


def test_num_images_and_max_images(tmp_path):
    dataset = prepare(tmp_path, num_images=30, max_images=12)
    assert len(all_records(dataset)) == 12
    assert dataset.manifest["num_images"] == 30


def test_bad_options_say_what_to_do(tmp_path):
    with pytest.raises(UserError, match="--num-images"):
        prepare(tmp_path, num_images=0)
    with pytest.raises(UserError, match="English"):
        prepare(tmp_path, languages=["fr"])
