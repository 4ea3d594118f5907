"""The EfficientNet-Lite0 feature extractor behind fd_lite0 and prompt fidelity."""

from __future__ import annotations

import torch
from helpers.eval_data import as_tensor, lite0, shapes_features, shapes_scenes

from latentdiff.evaluation.features import FEATURE_DIM, load_lite0, normalize_for_lite0


def test_lite0_reproduces_the_reference_implementation():
    """Logits of a fixed gradient image, recorded once from the `efficientnet_lite_pytorch` reference
    implementation (ml-illustrated, same weights); a change in padding, BN eps or block order moves them."""
    ramp = torch.linspace(0, 1, 224)
    image = torch.stack([ramp[None, :].expand(224, 224), ramp[:, None].expand(224, 224), torch.full((224, 224), 0.5)])
    with torch.no_grad():
        logits = load_lite0()(normalize_for_lite0(image[None]))[0]
    values, indices = logits.topk(3)
    assert indices.tolist() == [818, 782, 872]
    assert torch.allclose(values, torch.tensor([4.5039, 4.4097, 3.59]), atol=2e-3)


def test_features_are_deterministic_and_tell_images_apart():
    images, _, _ = shapes_scenes(16)
    first = shapes_features(16)  # one batch tensor of 16 images
    second = lite0()(list(as_tensor(images[:3])))  # a list of images, another batch size
    assert first.shape == (16, FEATURE_DIM) and first.dtype == torch.float64
    assert torch.allclose(first[:3], second, atol=1e-4)
    assert torch.equal(lite0()(as_tensor(images[:3])), lite0()(as_tensor(images[:3])))  # same inputs, same numbers
    distances = torch.cdist(first, first)
    assert (distances + torch.eye(16) * 1e9).min() > 1.0  # different scenes, different features
