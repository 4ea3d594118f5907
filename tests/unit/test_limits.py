"""Seeds and image sides have one definition (latentdiff.limits) that the CLI and the server share."""

from __future__ import annotations

import pytest

from latentdiff import limits
from latentdiff.errors import UserError
from latentdiff.pipeline import GenerationRequest
from latentdiff.server.job_types import JobParams


def test_cli_and_server_give_the_images_of_a_request_the_same_seeds_wrapping_at_uint32():
    request = GenerationRequest(prompts=["a", "b"], num_images=2, seed=limits.MAX_SEED - 1)
    cli_seeds = [seed for _, seed in request.prompts_and_seeds()]
    assert cli_seeds == [2**32 - 2, 2**32 - 1, 0, 1]  # A1111's uint32 range, wrapped as uint32 does
    job = JobParams(prompt="a", negative_prompt="", seed=limits.MAX_SEED - 1, steps=2, guidance=1.0,
                    scheduler="ddim", width=64, height=64, num_images=4)
    assert job.image_seeds() == cli_seeds


def test_cli_refuses_a_seed_the_server_and_a1111_could_not_take(tiny_pipeline_dir):
    from latentdiff.pipeline import TextToImage

    text_to_image = TextToImage.load(str(tiny_pipeline_dir), "cpu")
    with pytest.raises(UserError, match=f"--seed must be between 0 and {limits.MAX_SEED}"):
        text_to_image.check_request(GenerationRequest(prompts=["a"], seed=limits.MAX_SEED + 1, steps=1))
    assert text_to_image.check_request(GenerationRequest(prompts=["a"], seed=limits.MAX_SEED, steps=1)).seed == limits.MAX_SEED
