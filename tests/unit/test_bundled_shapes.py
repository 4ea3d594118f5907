"""The bundled shapes model (src/latentdiff/shapes_model, made by runs/shapes.sh): `--model shapes` finds it, all
bundled models together stay within 60 MB, and it follows compositional prompts far above chance: the asked colour,
the asked number of shapes and the asked position, checked by the same scene analyser `latentdiff evaluate` uses."""

from __future__ import annotations

import pytest

from latentdiff.folder_kinds import MODEL_INDEX
from latentdiff.model_source import BUNDLED_MODELS, resolve_model

SHAPES_DIR = BUNDLED_MODELS["shapes"]
pytestmark = pytest.mark.skipif(not (SHAPES_DIR / MODEL_INDEX).is_file(),
                                reason=f"no shapes model is bundled in {SHAPES_DIR} (runs/shapes.sh makes it)")

MAX_BUNDLED_BYTES = 60 * 1024 * 1024  # every bundled model together (scripts/bundle_model.py)


def test_it_is_found_by_name_and_everything_bundled_fits_in_60_mb():
    source = resolve_model("shapes")
    assert source.path == SHAPES_DIR.resolve() and source.name == "latentdiff-shapes"
    total = sum(f.stat().st_size for folder in BUNDLED_MODELS.values() for f in folder.rglob("*") if f.is_file())
    assert total <= MAX_BUNDLED_BYTES


@pytest.mark.slow  # 8 images, 20 steps (~10 s)
def test_it_draws_the_asked_colours_and_counts():
    import numpy as np

    from latentdiff.evaluation.attributes import analyse_image
    from latentdiff.pipeline import GenerationRequest, TextToImage

    prompts = {"a red circle": ("red", 1), "a blue square": ("blue", 1), "a yellow star": ("yellow", 1),
               "two green triangles": ("green", 2)}
    model = TextToImage.load("shapes", "cpu", "torch")
    results = model.generate(GenerationRequest(list(prompts), num_images=2, seed=0, steps=20))
    hits = 0
    for result in results:
        colour, count = prompts[result.prompt]
        objects = analyse_image(np.asarray(result.image.convert("RGB")))
        hits += len(objects) == count and all(obj.color == colour for obj in objects)
    # A model that ignored the prompt would get the colour right about 1 time in 6 and the count about 6 in 10:
    # about 0.8 hits of 8 (5 or more: under 0.1%). The bundled model gets 7 (its test-split accuracy: colour
    # 0.81, count 0.76; docs/speedrun.md); a retrained one must not draw less of what it is asked.
    assert hits >= 5, f"{hits} of {len(results)} images had the asked colour and count"


@pytest.mark.slow  # 8 images, 20 steps (~10 s)
def test_it_puts_a_single_shape_where_it_is_asked():
    import numpy as np

    from latentdiff.evaluation.attributes import analyse_image
    from latentdiff.pipeline import GenerationRequest, TextToImage

    prompts = {"a green circle on the left": "left", "a green circle on the right": "right",
               "a purple square at the top": "top", "a purple square at the bottom": "bottom"}
    model = TextToImage.load("shapes", "cpu", "torch")
    results = model.generate(GenerationRequest(list(prompts), num_images=2, seed=0, steps=20))
    hits = 0
    for result in results:
        objects = analyse_image(np.asarray(result.image.convert("RGB")))
        hits += len(objects) == 1 and objects[0].position == prompts[result.prompt]
    # Ignoring the prompt, one of five positions (centre, left, right, top, bottom) is right about 1 time in 5:
    # 1.6 hits of 8. The bundled model gets 8 (test split: 0.98; the speedrun alone, which had not learnt
    # position words, 0.16).
    assert hits >= 6, f"{hits} of {len(results)} images put the shape where the prompt said"
