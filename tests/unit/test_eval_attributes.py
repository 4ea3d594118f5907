"""The `shapes` attribute analyser and GenEval-style scoring."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.eval_data import shapes_scenes

from latentdiff.evaluation.attributes import analyse_image, attribute_accuracy, score_image


@pytest.mark.parametrize("image_size,count", [(64, 150), (32, 60), (128, 30)])
def test_analyser_is_exact_on_generated_ground_truth(image_size, count):
    images, attributes, captions = shapes_scenes(count, image_size)
    for image, attrs, caps in zip(images, attributes, captions):
        detected = analyse_image(image)
        truth = sorted((o["color"], o["shape"], o["size"]) for o in attrs["objects"])
        assert sorted((o.color, o.shape, o.size) for o in detected) == truth, caps[0]
        for caption in caps:  # every caption of the scene is fully right
            assert all(score_image(detected, attrs, caption).values()), caption


def test_real_images_score_perfectly_on_every_category():
    images, attributes, captions = shapes_scenes(80)
    result = attribute_accuracy(images, attributes, [c[0] for c in captions])
    assert set(result["accuracy"]) >= {"colors", "shapes", "counting", "objects", "relations", "overall"}
    assert all(value == 1.0 for value in result["accuracy"].values())


def test_images_of_other_scenes_score_low():
    images, attributes, captions = shapes_scenes(80)
    shifted = images[1:] + images[:1]  # image i now shows scene i+1
    result = attribute_accuracy(shifted, attributes, [c[0] for c in captions])
    assert result["accuracy"]["overall"] < 0.1
    assert result["accuracy"]["colors"] < 0.5


def test_mild_noise_does_not_change_the_answer():
    images, attributes, captions = shapes_scenes(30)
    rng = np.random.default_rng(0)
    noisy = [np.clip(img.astype(np.int16) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8) for img in images]
    result = attribute_accuracy(noisy, attributes, [c[0] for c in captions])
    assert result["accuracy"]["overall"] == 1.0


def test_blank_image_has_no_objects():
    _, attributes, captions = shapes_scenes(1)
    blank = np.full((64, 64, 3), 255, dtype=np.uint8)
    assert analyse_image(blank) == []
    scores = score_image([], attributes[0], captions[0][0])
    assert not scores["counting"] and not scores["overall"]
