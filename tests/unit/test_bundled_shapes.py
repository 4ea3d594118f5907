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
    from latentdiff.model_source import model_guidance

    source = resolve_model("shapes")
    assert source.path == SHAPES_DIR.resolve() and source.name == "latentdiff-shapes"
    # it draws best at guidance 2 (docs/speedrun/shapes.md: the model before its last 95 minutes got all attributes of
    # the test scenes right 0.78 of the time at 2, 0.49 at diffusers' 7.5)
    assert model_guidance(SHAPES_DIR) == 2.0
    total = sum(f.stat().st_size for folder in BUNDLED_MODELS.values() for f in folder.rglob("*") if f.is_file())
    assert total <= MAX_BUNDLED_BYTES


def hits(prompts: dict, judge) -> tuple[int, int]:
    """(images judged right, images) over two images per prompt (seeds 0..), 20 steps, the model's own guidance;
    `judge(wanted, objects)` looks at what the evaluation's scene analyser found in one image."""
    import numpy as np

    from latentdiff.evaluation.attributes import analyse_image
    from latentdiff.pipeline import GenerationRequest, TextToImage

    model = TextToImage.load("shapes", "cpu", "torch")
    results = model.generate(GenerationRequest(list(prompts), num_images=2, seed=0, steps=20))
    found = [judge(prompts[r.prompt], analyse_image(np.asarray(r.image.convert("RGB")))) for r in results]
    return sum(found), len(found)


@pytest.mark.slow  # 8 images, 20 steps (~10 s)
def test_it_draws_the_asked_colours_and_counts():
    prompts = {"a red circle": ("red", 1), "a blue square": ("blue", 1), "a yellow star": ("yellow", 1),
               "two green triangles": ("green", 2)}
    right, total = hits(prompts, lambda want, objects: len(objects) == want[1] and all(o.color == want[0] for o in objects))
    # A model that ignored the prompt would get the colour right about 1 time in 6 and the count about 6 in 10:
    # about 0.8 hits of 8 (5 or more: under 0.1%). The bundled model gets 7 at its guidance 2 (test split: colour
    # 0.99, count 0.98; docs/speedrun/shapes.md); a retrained one must not draw less of what it is asked.
    assert right >= 5, f"{right} of {total} images had the asked colour and count"


@pytest.mark.slow  # 8 images, 20 steps (~10 s)
def test_it_puts_a_single_shape_where_it_is_asked():
    prompts = {"a green circle on the left": "left", "a green circle on the right": "right",
               "a purple square at the top": "top", "a purple square at the bottom": "bottom"}
    right, total = hits(prompts, lambda want, objects: len(objects) == 1 and objects[0].position == want)
    # Ignoring the prompt, one of five positions (centre, left, right, top, bottom) is right about 1 time in 5:
    # 1.6 hits of 8. The bundled model gets 8 (test split: 1.0; the speedrun alone, which had not learnt
    # position words, 0.16).
    assert right >= 6, f"{right} of {total} images put the shape where the prompt said"


@pytest.mark.slow  # 16 images, 20 steps (~15 s)
def test_it_draws_the_asked_shape():
    prompts = {"a large orange circle": "circle", "a large orange square": "square", "a large blue triangle": "triangle",
               "a large blue star": "star", "a large red diamond": "diamond", "a large purple circle": "circle",
               "a large purple square": "square", "a large green diamond": "diamond"}
    right, total = hits(prompts, lambda want, objects: len(objects) == 1 and objects[0].shape == want)
    # One of five shapes by chance: about 3 hits of 16. The bundled model gets 15 at its own guidance (2; test
    # split: 0.95); circles and squares, told apart by how much of their box they fill, were its last confusion.
    assert right >= 12, f"{right} of {total} images had the asked shape"
